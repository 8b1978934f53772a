"""The cases a child runs, and the child's entry point (``bench --run-case JSON``).

Cases
=====

Throughput (each a :class:`~.harness.Transfer`, PUSH→PULL):

* ``raw_green``: raw ``zmq.green``, one sending and one receiving greenlet.
* ``green_lock``: a ``zmq.green`` PUSH shared by ``G`` greenlets behind a
  :class:`gevent.lock.Semaphore`.
* ``plain_threads``: plain pyzmq, one sending and one receiving OS thread.
* ``ceiling``: plain pyzmq, both ends non-blocking in one loop in one thread.
* ``pair`` / ``pair_rendezvous``: ``G`` greenlets send through one
  :class:`~zmqchan_green.ChannelPair` (buffered 64/64, or 0/0) into a PULL
  that is also wrapped in a pair, with one receiving greenlet.
* ``threadport``: 4 native threads send through the pair's
  :class:`~zmqchan_green.ThreadPort`; a greenlet receives through the PULL pair.
* ``shared``: the drop-in: PUSH and PULL are both
  :class:`~zmqchan_green.SharedSocket` sockets (no send buffer, as pyzmq), ``G``
  greenlets call ``send_multipart`` on the one PUSH at once (no lock), one
  greenlet calls ``recv_multipart``. Compared with ``raw_green`` (G=1) and
  ``green_lock`` (G=10): what a program gains by switching.

Latency: ``rtt_raw`` / ``rtt_pair``: DEALER↔ROUTER round trips over tcp, one
request in flight, raw ``zmq.green`` or through pairs (default sizes 0/0),
pinned to one CPU and unpinned.

RPC: 50 caller greenlets make calls at once against a ROUTER echo server in a
pair, over tcp, each waiting for its reply before the next call:
``rpc_requester`` through one :class:`~zmqchan_green.Requester` (a DEALER
pair), ``rpc_req_each`` with one ``zmq.green`` REQ socket per greenlet, and
``rpc_req_lock`` with one ``zmq.green`` REQ behind a
:class:`gevent.lock.Semaphore`. Calls per second and per-call p50/p99.

Memory: ``rss_growth``: RSS growth between 100k and 1.1M messages through
pairs; ``waiters_event`` / ``waiters_pair``: RSS per greenlet blocked on a
:class:`gevent.event.Event` or in ``pair.recv()`` (10,000 of them).

Lag: ``hub_lag``: the lag of a 1 ms heartbeat greenlet while the pairs are
saturated.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from typing import Any

import gevent
import gevent.event
import gevent.lock
import zmq

from ... import ChannelClosed, ChannelPair, Requester, SharedSocket
from ..common import bind_fresh
from .harness import (
    OP_TIMEOUT,
    RUN_TIMEOUT,
    BenchError,
    Progress,
    Transfer,
    check_pair,
    connected,
    green_context,
    malformed,
    message,
    new_socket,
    pair_extra,
    percentile,
    plain_context,
    rss_bytes,
    run_workers,
    sized_run,
    socket_extra,
    wrap,
)
from .plan import BUFFER, Spec

__all__ = ["child_main", "run_case"]

#: Messages the ceiling loop tries to send before it turns to receiving.
_CEILING_BATCH = 256
#: Heartbeat period of ``hub_lag``, seconds.
_HEARTBEAT = 0.001


# ------------------------------------------------------------ throughput


def _raw_green(spec: Spec, stack: ExitStack) -> Callable[[int], float]:
    ctx = green_context(stack)
    pull, push = connected(ctx, zmq.PULL, zmq.PUSH, spec.transport, stack)
    return Transfer(
        spec.size, spec.greenlets, push.send_multipart, pull.recv_multipart, socket_extra(pull)
    ).run


def _shared(spec: Spec, stack: ExitStack) -> Callable[[int], float]:
    ctx = green_context(stack)
    pull, push = connected(ctx, zmq.PULL, zmq.PUSH, spec.transport, stack, SharedSocket)
    return Transfer(
        spec.size, spec.greenlets, push.send_multipart, pull.recv_multipart, socket_extra(pull)
    ).run


def _green_lock(spec: Spec, stack: ExitStack) -> Callable[[int], float]:
    ctx = green_context(stack)
    pull, push = connected(ctx, zmq.PULL, zmq.PUSH, spec.transport, stack)
    lock = gevent.lock.Semaphore()

    def send(msg: list[bytes]) -> None:
        with lock:
            push.send_multipart(msg)

    return Transfer(spec.size, spec.greenlets, send, pull.recv_multipart, socket_extra(pull)).run


def _plain_threads(spec: Spec, stack: ExitStack) -> Callable[[int], float]:
    ctx = plain_context(stack)
    pull, push = connected(ctx, zmq.PULL, zmq.PUSH, spec.transport, stack)
    timeout_ms = int(OP_TIMEOUT * 1000)
    pull.setsockopt(zmq.RCVTIMEO, timeout_ms)
    push.setsockopt(zmq.SNDTIMEO, timeout_ms)
    return Transfer(
        spec.size,
        spec.greenlets,
        push.send_multipart,
        pull.recv_multipart,
        socket_extra(pull),
        sender_threads=True,
        receiver_thread=True,
    ).run


def _ceiling(spec: Spec, stack: ExitStack) -> Callable[[int], float]:
    ctx = plain_context(stack)
    pull, push = connected(ctx, zmq.PULL, zmq.PUSH, spec.transport, stack)
    msg = message(spec.size)

    def loop(progress: Progress) -> None:
        """Send a batch until EAGAIN, receive whatever is there, repeat."""
        count = progress.expected
        sent = 0
        stalled_since = time.perf_counter()
        while progress.received < count:
            before = sent + progress.received
            try:
                for _ in range(min(_CEILING_BATCH, count - sent)):
                    push.send_multipart(msg, zmq.NOBLOCK)
                    sent += 1
            except zmq.Again:
                pass
            try:
                while True:
                    got = pull.recv_multipart(zmq.NOBLOCK)
                    if len(got) != 2 or len(got[1]) != spec.size:
                        malformed(got, progress.received)
                    progress.received += 1
            except zmq.Again:
                pass
            now = time.perf_counter()
            if sent + progress.received != before:
                stalled_since = now
            elif now - stalled_since > OP_TIMEOUT:
                raise BenchError(
                    f"lost messages: {progress.received} of {count} received "
                    f"({sent} sent), then nothing for {OP_TIMEOUT} s"
                )
        if progress.received != sent:
            raise BenchError(f"received {progress.received}, sent {sent}")

    def run(count: int) -> float:
        progress = Progress(count)
        elapsed = run_workers([partial(loop, progress)], progress=progress)
        if pull.poll(50, zmq.POLLIN):
            raise BenchError(f"more messages arrived than the {count} sent")
        return elapsed

    return run


def _pair_transfer(spec: Spec, stack: ExitStack) -> Transfer:
    """``spec.greenlets`` senders through a PUSH pair into a PULL pair, as a :class:`Transfer`."""
    ctx = green_context(stack)
    pull, push = connected(ctx, zmq.PULL, zmq.PUSH, spec.transport, stack)
    size = 0 if spec.case == "pair_rendezvous" else BUFFER
    tx = wrap(push, size, stack)
    rx = wrap(pull, size, stack)
    threaded = spec.case == "threadport"
    sender: Any = tx.for_threads() if threaded else tx

    def check(total: int) -> None:
        check_pair(tx, "sent", total)
        check_pair(rx, "received", total)

    return Transfer(
        spec.size,
        spec.greenlets,
        partial(sender.send, timeout=OP_TIMEOUT),
        partial(rx.recv, timeout=OP_TIMEOUT),
        pair_extra(rx),
        sender_threads=threaded,
        check=check,
    )


def _pair_case(spec: Spec, stack: ExitStack) -> Callable[[int], float]:
    return _pair_transfer(spec, stack).run


_THROUGHPUT: dict[str, Callable[[Spec, ExitStack], Callable[[int], float]]] = {
    "raw_green": _raw_green,
    "green_lock": _green_lock,
    "plain_threads": _plain_threads,
    "ceiling": _ceiling,
    "pair": _pair_case,
    "pair_rendezvous": _pair_case,
    "threadport": _pair_case,
    "shared": _shared,
}


def _throughput(spec: Spec) -> dict[str, Any]:
    with ExitStack() as stack:
        run = _THROUGHPUT[spec.case](spec, stack)
        count, elapsed = sized_run(run, spec)
    return {
        "messages": count,
        "seconds": elapsed,
        "rate": count / elapsed,
        "mib_per_s": count * (spec.size + 1) / elapsed / 2**20,
    }


# ------------------------------------------------------------ latency


def _echo_raw(router: zmq.Socket[Any]) -> None:
    while True:
        router.send_multipart(router.recv_multipart())


def _echo_pair(pair: ChannelPair) -> None:
    try:
        for msg in pair:
            pair.send(msg, timeout=OP_TIMEOUT)
    except ChannelClosed:
        pass  # closed at the end of the case


def _latency(spec: Spec) -> dict[str, Any]:
    """Round trips DEALER→ROUTER→DEALER over tcp, one request in flight."""
    samples: list[int] = []
    with ExitStack() as stack:
        ctx = green_context(stack)
        router, dealer = connected(ctx, zmq.ROUTER, zmq.DEALER, "tcp", stack)
        echo: gevent.Greenlet[Any, Any]
        if spec.case == "rtt_pair":
            server = wrap(router, 0, stack)
            client = wrap(dealer, 0, stack)
            request: Callable[[list[bytes]], Any] = partial(client.send, timeout=OP_TIMEOUT)
            reply: Callable[[], list[Any]] = partial(client.recv, timeout=OP_TIMEOUT)
            echo = gevent.spawn(_echo_pair, server)
        else:
            request, reply = dealer.send_multipart, dealer.recv_multipart
            echo = gevent.spawn(_echo_raw, router)
        stack.callback(echo.kill, timeout=OP_TIMEOUT)  # unwinds first: before pairs and sockets
        msg = message(spec.size)
        clock = time.perf_counter_ns

        def client_loop(count: int) -> None:
            samples.clear()
            for _ in range(count):
                started = clock()
                request(msg)
                got = reply()
                samples.append(clock() - started)
                if len(got) != 2 or len(got[1]) != spec.size:
                    malformed(got, len(samples) - 1)

        count, elapsed = sized_run(
            lambda n: run_workers([partial(client_loop, n)]),
            dataclasses.replace(spec, warmup=spec.warmup // 4),
        )
    micros = [s / 1000 for s in samples]
    return {
        "round_trips": count,
        "seconds": elapsed,
        "p50_us": percentile(micros, 0.50),
        "p99_us": percentile(micros, 0.99),
        "mean_us": statistics.fmean(micros),
        "cpus": sorted(os.sched_getaffinity(0)),
    }


# ------------------------------------------------------------ rpc


def _rpc_callers(spec: Spec, ctx: zmq.Context[Any], endpoint: str, stack: ExitStack) -> Any:
    """``call(msg)`` for each of ``spec.greenlets`` callers, as the case makes them."""
    if spec.case == "rpc_requester":
        dealer = _client(ctx, zmq.DEALER, endpoint, stack)
        requester = Requester(wrap(dealer, BUFFER, stack))
        return [partial(requester.request, timeout=OP_TIMEOUT)] * spec.greenlets
    if spec.case == "rpc_req_each":
        return [
            partial(_req_call, _client(ctx, zmq.REQ, endpoint, stack))
            for _ in range(spec.greenlets)
        ]
    req = _client(ctx, zmq.REQ, endpoint, stack)
    lock = gevent.lock.Semaphore()

    def locked(msg: list[bytes]) -> list[Any]:
        with lock:
            return _req_call(req, msg)

    return [locked] * spec.greenlets


def _client(ctx: zmq.Context[Any], kind: int, endpoint: str, stack: ExitStack) -> zmq.Socket[Any]:
    sock = new_socket(ctx, kind, stack)
    sock.connect(endpoint)
    return sock


def _req_call(req: zmq.Socket[Any], msg: list[bytes]) -> list[Any]:
    req.send_multipart(msg)
    reply: list[Any] = req.recv_multipart()
    return reply


def _rpc(spec: Spec) -> dict[str, Any]:
    """Calls by ``spec.greenlets`` greenlets at once, each waiting for its reply."""
    samples: list[int] = []
    with ExitStack() as stack:
        ctx = green_context(stack)
        router = new_socket(ctx, zmq.ROUTER, stack)
        endpoint = bind_fresh(router, "tcp", "zmqchan-green-bench")
        server = wrap(router, BUFFER, stack)
        echo = gevent.spawn(_echo_pair, server)
        stack.callback(echo.kill, timeout=OP_TIMEOUT)
        calls = _rpc_callers(spec, ctx, endpoint, stack)
        msg = message(spec.size)
        clock = time.perf_counter_ns

        def caller(call: Callable[[list[bytes]], list[Any]], count: int) -> None:
            for _ in range(count):
                started = clock()
                got = call(msg)
                samples.append(clock() - started)
                if len(got) != 2 or len(got[1]) != spec.size:
                    malformed(got, len(samples) - 1)

        def run(count: int) -> float:
            samples.clear()
            share = max(count // len(calls), 1)
            return run_workers([partial(caller, call, share) for call in calls])

        _, elapsed = sized_run(run, spec)
    calls_made = len(samples)
    micros = [s / 1000 for s in samples]
    return {
        "calls": calls_made,
        "seconds": elapsed,
        "rate": calls_made / elapsed,
        "p50_us": percentile(micros, 0.50),
        "p99_us": percentile(micros, 0.99),
    }


# ------------------------------------------------------------ memory


def _rss_growth(spec: Spec) -> dict[str, Any]:
    """RSS growth between ``count / 10`` and ``1.1 * count`` messages through pairs."""
    with ExitStack() as stack:
        transfer = _pair_transfer(dataclasses.replace(spec, case="pair"), stack)
        baseline = spec.count // 10
        transfer.run(baseline)
        gc.collect()
        before = rss_bytes()
        elapsed = transfer.run(spec.count)
        gc.collect()
        after = rss_bytes()
    return {
        "messages": spec.count,
        "baseline_messages": baseline,
        "rss_before_mib": before / 2**20,
        "rss_after_mib": after / 2**20,
        "growth_mib": (after - before) / 2**20,
        "rate": spec.count / elapsed,
    }


def _blocked_cost(block: Callable[[], Any], release: Callable[[], None], count: int) -> float:
    """RSS bytes per greenlet blocked in ``block()``, ``count`` of them at once."""
    started = 0

    def waiter() -> None:
        nonlocal started
        started += 1
        try:
            block()
        except ChannelClosed:
            pass  # how the pair case releases its receivers

    gc.collect()
    before = rss_bytes()
    waiters = [gevent.spawn(waiter) for _ in range(count)]
    deadline = time.perf_counter() + RUN_TIMEOUT
    while started < count:
        if time.perf_counter() > deadline:
            raise BenchError(f"only {started} of {count} waiters started")
        gevent.sleep(0)
    gevent.sleep(0)  # the last one to start blocks now
    after = rss_bytes()
    if any(w.dead for w in waiters):
        raise BenchError("a waiter returned before it was released")
    release()
    gevent.joinall(waiters, timeout=RUN_TIMEOUT)
    if not all(w.dead for w in waiters):
        raise BenchError("waiters did not finish after their release")
    failed = [w.exception for w in waiters if w.exception is not None]
    if failed:
        raise BenchError(f"a waiter failed: {failed[0]!r}") from failed[0]
    return (after - before) / count


def _waiters(spec: Spec) -> dict[str, Any]:
    """Per-waiter RSS of greenlets blocked on an Event, or in ``pair.recv()``."""
    with ExitStack() as stack:
        if spec.case == "waiters_event":
            event = gevent.event.Event()
            cost = _blocked_cost(partial(event.wait, timeout=RUN_TIMEOUT), event.set, spec.count)
        else:
            ctx = green_context(stack)
            pull, _push = connected(ctx, zmq.PULL, zmq.PUSH, "tcp", stack)
            pair = wrap(pull, BUFFER, stack)

            def release() -> None:
                waiting = pair.stats().get("rx_waiting", spec.count)
                if waiting != spec.count:
                    raise BenchError(f"{waiting} receivers waiting, expected {spec.count}")
                pair.close(linger=0)

            cost = _blocked_cost(partial(pair.recv, timeout=RUN_TIMEOUT), release, spec.count)
    return {"waiters": spec.count, "bytes_per_waiter": cost}


# ------------------------------------------------------------ lag


def _hub_lag(spec: Spec) -> dict[str, Any]:
    """Heartbeat lag (ms) of a 1 ms ``gevent.sleep`` loop, idle and with the pairs saturated."""
    lags: list[float] = []
    running = [False]

    def heartbeat() -> None:
        clock = time.perf_counter
        while running[0]:
            started = clock()
            gevent.sleep(_HEARTBEAT)
            lags.append((clock() - started - _HEARTBEAT) * 1000)

    def beating(work: Callable[[], float]) -> tuple[float, list[float]]:
        lags.clear()
        running[0] = True
        beat = gevent.spawn(heartbeat)
        try:
            elapsed = work()
        finally:
            running[0] = False
        beat.join(timeout=OP_TIMEOUT)
        if not beat.dead or not beat.successful():
            raise BenchError(f"the heartbeat did not stop cleanly: {beat.exception!r}")
        return elapsed, list(lags)

    _, idle = beating(lambda: run_workers([partial(gevent.sleep, min(spec.seconds, 0.5))]))
    with ExitStack() as stack:
        transfer = _pair_transfer(dataclasses.replace(spec, case="pair"), stack)
        count, _ = sized_run(transfer.run, spec)
        elapsed, busy = beating(partial(transfer.run, count))
    if len(busy) < 10:
        raise BenchError(f"only {len(busy)} heartbeats while saturated")
    return {
        "messages": count,
        "rate": count / elapsed,
        "beats": len(busy),
        "p50_ms": percentile(busy, 0.50),
        "p99_ms": percentile(busy, 0.99),
        "max_ms": max(busy),
        "idle_p50_ms": percentile(idle, 0.50),
        "idle_p99_ms": percentile(idle, 0.99),
    }


# ------------------------------------------------------------ the child


def run_case(spec: Spec) -> dict[str, Any]:
    """Run one spec in this process and return its result (raises :class:`BenchError`)."""
    if spec.pinned:
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {0 if 0 in allowed else allowed[0]})
    if spec.group == "throughput":
        return _throughput(spec)
    if spec.group == "latency":
        return _latency(spec)
    if spec.group == "rpc":
        return _rpc(spec)
    if spec.case == "rss_growth":
        return _rss_growth(spec)
    if spec.group == "memory":
        return _waiters(spec)
    return _hub_lag(spec)


def child_main(text: str) -> int:
    """The ``--run-case`` entry: run the spec given as JSON, print one JSON line."""
    spec = Spec(**json.loads(text))
    try:
        result = run_case(spec)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        # Threads stuck in libzmq could make interpreter shutdown hang.
        os._exit(1)
    print(json.dumps({"key": spec.key, "result": result}), flush=True)
    return 0
