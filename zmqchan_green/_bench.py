"""``python -m zmqchan_green bench``: the side-by-side benchmark.

Theory of operation
===================

The *driver* (``bench`` without ``--run-case``) builds a list of
:class:`Spec`\\ s, one per measurement, and runs every spec once per round, each
in a fresh subprocess (``python -m zmqchan_green bench --run-case JSON``), so
that no case inherits another's heap, sockets, threads or CPU caches. Rounds
alternate the order (forward, then backward) so that slow drift of the machine
does not always favour the same cases. The table shows per-spec medians, and
the ratios the project sets targets for (see BENCHMARKS.md) are computed from
medians measured in this same run; nothing is compared with figures from
another run.

A *child* (``--run-case``) runs one spec and prints one JSON line on stdout.
Every wait in it has a deadline, so a broken case fails instead of hanging, and
the driver kills a child that overruns anyway. A throughput case is a
*transfer*: ``G`` senders (greenlets or threads) push ``N`` two-frame messages
(a 1-byte header and a payload) over PUSH→PULL, one receiver takes them; the
transfer fails loudly when the receiver gets fewer, more, or malformed
messages. Each transfer is run three times on the same sockets: a warm-up (it
also waits out the tcp connect), a short calibration, and the measured run,
sized from the calibration to last about ``--seconds``.

Cases
-----
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
* ``rtt_raw`` / ``rtt_pair``: DEALER↔ROUTER round trips over tcp, one request
  in flight, raw ``zmq.green`` or through pairs (default sizes 0/0), pinned to
  one CPU and unpinned.
* ``rss_growth``: RSS growth between 100k and 1.1M messages through pairs.
* ``waiters_event`` / ``waiters_pair``: RSS per greenlet blocked on a
  :class:`gevent.event.Event` or in ``pair.recv()`` (10,000 of them).
* ``hub_lag``: the lag of a 1 ms heartbeat greenlet while the pairs are saturated.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, TextIO

import gevent
import gevent.event
import gevent.lock
import zmq
import zmq.green as zmq_green

from ._errors import ChannelClosed
from ._pair import ChannelPair
from ._version import __version__

__all__ = ["CASES", "GROUPS", "BenchError", "Spec", "add_bench_command", "plan_specs", "run_bench"]

# --------------------------------------------------------------------- knobs

#: Seconds any single send, receive or join may wait inside a child.
_OP_TIMEOUT = 10.0
#: Seconds a whole transfer (or round-trip series) may take inside a child.
_RUN_TIMEOUT = 60.0
#: Default seconds before the driver kills a child.
_CASE_TIMEOUT = 120.0
#: Buffer sizes of the pairs in the buffered cases.
_BUFFER = 64
#: Sending greenlets of the main-table cases, and of the sweep.
_GREENLETS = 10
_MANY_GREENLETS = 1000
_SWEEP = (1, 10, 100, 1000)
#: Native threads sending through a ThreadPort.
_PORT_THREADS = 4
#: Messages the ceiling loop tries to send before it turns to receiving.
_CEILING_BATCH = 256
#: The calibration run lasts about this share of the measured run.
_CALIBRATE = 0.15
#: Measured runs have at least / at most this many messages (or round trips).
_MIN_COUNT = 200
_MAX_COUNT = 5_000_000
#: Message counts of ``rss_growth``: a baseline, then this many more.
_RSS_BASELINE = 100_000
_RSS_MESSAGES = 1_000_000
#: Greenlets blocked at once in the ``waiters_*`` cases.
_WAITERS = 10_000
#: Heartbeat period of ``hub_lag``, seconds.
_HEARTBEAT = 0.001
#: The report warns about throughput specs whose rounds differ by more than
#: this share of their median, and about runs during which other processes
#: used more than this share of the machine.
_NOISY = 0.3
_BUSY = 0.1
#: Runs shorter than this (seconds) are not metered: CPU time comes in 10 ms ticks.
_METER_MIN = 0.5

SIZES = (64, 1024, 65536)
TRANSPORTS = ("tcp", "inproc")

#: Throughput cases of the main table, with the senders each one uses there.
_MAIN: dict[str, tuple[int, ...]] = {
    "raw_green": (1,),
    "green_lock": (_GREENLETS,),
    "plain_threads": (1,),
    "ceiling": (1,),
    "pair": (_GREENLETS, _MANY_GREENLETS),
    "pair_rendezvous": (_GREENLETS,),
    "threadport": (_PORT_THREADS,),
}
#: Cases swept over the number of sending greenlets (1+64 B over tcp).
_SWEPT = ("pair", "green_lock")

GROUPS: dict[str, tuple[str, ...]] = {
    "throughput": tuple(_MAIN),
    "latency": ("rtt_raw", "rtt_pair"),
    "memory": ("rss_growth", "waiters_event", "waiters_pair"),
    "lag": ("hub_lag",),
}
CASES: tuple[str, ...] = tuple(name for names in GROUPS.values() for name in names)

#: Throughput cases whose senders are OS threads (the table says "thr").
_THREADED = frozenset({"plain_threads", "threadport"})


class BenchError(Exception):
    """A case went wrong: lost, extra or malformed messages, a timeout, a dead worker."""


# ---------------------------------------------------------------------- specs


@dataclass(frozen=True)
class Spec:
    """One measurement: what a child runs and the driver files results under.

    ``greenlets`` is the number of senders (greenlets, or threads for the
    threaded cases). ``seconds`` sizes throughput and latency runs; ``warmup``
    is the size of the first, unmeasured run; ``count`` is the message count of
    ``rss_growth`` or the waiters of ``waiters_*``.
    """

    case: str
    size: int = 64
    transport: str = "tcp"
    greenlets: int = 1
    pinned: bool = False
    seconds: float = 1.0
    warmup: int = 2000
    count: int = 0

    @property
    def group(self) -> str:
        """``throughput``, ``latency``, ``memory`` or ``lag``."""
        return next(group for group, names in GROUPS.items() if self.case in names)

    @property
    def key(self) -> str:
        """A stable name, unique within one run: results and JSON are filed under it."""
        if self.group == "throughput":
            return f"{self.case}/{self.transport}/{self.size}/g{self.greenlets}"
        if self.group == "latency":
            return f"{self.case}/{'pinned' if self.pinned else 'unpinned'}"
        return self.case

    @property
    def label(self) -> str:
        """How the progress lines name the spec."""
        if self.group == "throughput":
            what = f"{self.case} {self.transport} 1+{_size_name(self.size)}"
            if self.case == "ceiling":
                return what
            return f"{what} {'thr' if self.case in _THREADED else 'G'}={self.greenlets}"
        if self.group == "latency":
            pinning = "pinned" if self.pinned else "unpinned"
            return f"{self.case} tcp 1+{_size_name(self.size)} {pinning}"
        return self.case


def _size_name(size: int) -> str:
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024}KiB"
    return f"{size}B"


@dataclass(frozen=True)
class Plan:
    """What the driver runs: specs, rounds, and the child's time limit."""

    specs: tuple[Spec, ...]
    rounds: int
    case_timeout: float


def plan_specs(
    cases: Sequence[str] = CASES,
    sizes: Sequence[int] = SIZES,
    transports: Sequence[str] = TRANSPORTS,
    quick: bool = False,
    seconds: float | None = None,
) -> tuple[Spec, ...]:
    """The specs for one round, in the order the first round runs them.

    Throughput cases run for every size and transport asked for; the sweep
    over sending greenlets is added when 1+64 B over tcp is among them. The
    latency, memory and lag cases always use 1+64 B over tcp. ``quick`` makes
    every run short (smoke tests): fewer messages, waiters and seconds.
    """
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise ValueError(f"unknown case(s): {', '.join(unknown)}")
    if seconds is None:
        seconds = 0.2 if quick else 1.0
    scale = 20 if quick else 1
    make = partial(Spec, seconds=seconds, warmup=200 if quick else 2000)
    specs: list[Spec] = []
    for transport in transports:
        for size in sizes:
            for case, senders in _MAIN.items():
                if case in cases:
                    specs.extend(make(case, size, transport, g) for g in senders)
    if 64 in sizes and "tcp" in transports:
        specs.extend(make(case, 64, "tcp", g) for case in _SWEPT if case in cases for g in _SWEEP)
    for case in GROUPS["latency"]:
        if case in cases:
            specs.extend(make(case, pinned=pinned) for pinned in (True, False))
    if "rss_growth" in cases:
        specs.append(make("rss_growth", greenlets=_GREENLETS, count=_RSS_MESSAGES // scale))
    for case in ("waiters_event", "waiters_pair"):
        if case in cases:
            specs.append(make(case, count=_WAITERS // scale))
    if "hub_lag" in cases:
        specs.append(make("hub_lag", greenlets=_GREENLETS))
    unique = dict.fromkeys(specs)  # the sweep repeats some main-table specs
    return tuple(unique)


# ============================================================ child: helpers


def _message(size: int) -> list[bytes]:
    """The benchmark's message: a 1-byte header and a ``size``-byte payload."""
    return [b"\x01", b"x" * size]


def _split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts that differ by at most one."""
    share, extra = divmod(total, parts)
    return [share + (1 if i < extra else 0) for i in range(parts)]


def _clamp(count: float) -> int:
    return int(min(max(count, _MIN_COUNT), _MAX_COUNT))


def _rss_bytes() -> int:
    """This process's resident set size, from ``/proc/self/status``."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise BenchError("no VmRSS in /proc/self/status")


def _percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    rank = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[rank]


@dataclass
class _Progress:
    """How far a receiver got, for the report when a run times out."""

    expected: int
    received: int = 0


def _green_context(stack: ExitStack) -> zmq.Context[Any]:
    ctx: zmq.Context[Any] = zmq_green.Context()
    stack.callback(ctx.term)
    return ctx


def _plain_context(stack: ExitStack) -> zmq.Context[Any]:
    ctx: zmq.Context[Any] = zmq.Context()
    stack.callback(ctx.term)
    return ctx


def _socket(ctx: zmq.Context[Any], kind: int, stack: ExitStack) -> zmq.Socket[Any]:
    """A socket with ``linger=0``, closed when ``stack`` unwinds (if nothing closed it first)."""
    sock: zmq.Socket[Any] = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    stack.callback(sock.close, 0)
    return sock


def _bind(sock: zmq.Socket[Any], transport: str) -> str:
    """Bind ``sock`` on a fresh endpoint (tcp: 127.0.0.1, random port) and return it."""
    if transport == "tcp":
        port = sock.bind_to_random_port("tcp://127.0.0.1")
        return f"tcp://127.0.0.1:{port}"
    if transport == "inproc":
        endpoint = f"inproc://zmqchan-green-bench-{uuid.uuid4().hex}"
        sock.bind(endpoint)
        return endpoint
    raise ValueError(f"unknown transport {transport!r}")


def _connected(
    ctx: zmq.Context[Any], bind_kind: int, connect_kind: int, transport: str, stack: ExitStack
) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
    """``(bound, connected)`` sockets of the two kinds, joined over ``transport``."""
    bound = _socket(ctx, bind_kind, stack)
    connected = _socket(ctx, connect_kind, stack)
    connected.connect(_bind(bound, transport))
    return bound, connected


def _pair(sock: zmq.Socket[Any], size: int, stack: ExitStack) -> ChannelPair:
    """``sock`` wrapped in a pair of buffer sizes ``size``/``size``, closed with linger 0."""
    pair = ChannelPair(sock, size, size)
    stack.callback(pair.close, 0)
    return pair


def _check_pair(pair: ChannelPair, what: str, expected: int) -> None:
    """The pair's ``stats()[what]`` must be ``expected``, and no send error reported."""
    stats = pair.stats()
    if stats[what] != expected:
        raise BenchError(f"{pair!r}: stats()[{what!r}] is {stats[what]}, expected {expected}")
    if stats["errors"] or stats["errors_dropped"]:
        raise BenchError(f"{pair!r} reported send errors: {stats}")


def _run_workers(
    greenlets: Sequence[Callable[[], None]],
    threads: Sequence[Callable[[], None]] = (),
    timeout: float = _RUN_TIMEOUT,
    progress: _Progress | None = None,
) -> float:
    """Run callables as greenlets and native threads at once; return the seconds taken.

    The clock runs from just before the first one starts until all are
    joined. The first failure of a greenlet kills the other greenlets (so the
    run ends at once) and is raised as :class:`BenchError`; so is a thread's
    failure, or any worker still running after ``timeout`` seconds.
    """
    failures: list[BaseException] = []
    spawned: list[gevent.Greenlet[Any, Any]] = []

    def green(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            failures.append(exc)
            for other in spawned:
                if other is not gevent.getcurrent():
                    other.kill(block=False)

    def native(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            failures.append(exc)

    workers = [threading.Thread(target=native, args=(fn,), daemon=True) for fn in threads]
    started = time.perf_counter()
    deadline = started + timeout
    for worker in workers:
        worker.start()
    spawned.extend(gevent.spawn(green, fn) for fn in greenlets)
    gevent.joinall(spawned, timeout=timeout)
    late = [g for g in spawned if not g.dead]
    for worker in workers:
        worker.join(max(0.0, deadline - time.perf_counter()))
    elapsed = time.perf_counter() - started
    late_threads = sum(worker.is_alive() for worker in workers)
    if late:
        gevent.killall(late, timeout=_OP_TIMEOUT)
    if failures:
        raise BenchError(f"a worker failed: {failures[0]!r}") from failures[0]
    if late or late_threads:
        got = f"; {progress.received} of {progress.expected} received" if progress else ""
        raise BenchError(
            f"{len(late)} greenlet(s) and {late_threads} thread(s) still running "
            f"after {timeout} s{got}"
        )
    return elapsed


def _send_all(send: Callable[[list[bytes]], Any], msg: list[bytes], count: int) -> None:
    for _ in range(count):
        send(msg)


def _receive_all(recv: Callable[[], list[Any]], size: int, progress: _Progress) -> None:
    """Receive ``progress.expected`` messages of the benchmark's shape, or fail."""
    for i in range(progress.expected):
        try:
            msg = recv()
        except (TimeoutError, zmq.Again) as exc:
            raise BenchError(
                f"lost messages: {i} of {progress.expected} received, then nothing "
                f"for {_OP_TIMEOUT} s"
            ) from exc
        if len(msg) != 2 or len(msg[1]) != size:
            _malformed(msg, i)
        progress.received = i + 1


def _malformed(msg: Sequence[Any], index: int) -> NoReturn:
    """Fail on a message that is not the benchmark's 1 B + payload shape."""
    raise BenchError(f"message {index} is malformed: frame lengths {[len(f) for f in msg]}")


@dataclass
class _Transfer:
    """How a throughput case moves messages; :meth:`run` is the shared driver loop.

    ``send``/``recv`` move one message; ``senders`` of them share ``send``,
    as threads if ``sender_threads``, and one receiver (a thread if
    ``receiver_thread``) calls ``recv``. ``extra`` tells whether a message
    beyond the expected ones is waiting; ``check`` is handed the total sent
    so far, to compare with the case's own counters.
    """

    size: int
    senders: int
    send: Callable[[list[bytes]], Any]
    recv: Callable[[], list[Any]]
    extra: Callable[[], bool]
    sender_threads: bool = False
    receiver_thread: bool = False
    check: Callable[[int], None] | None = None
    total: int = field(default=0, init=False)

    def run(self, count: int) -> float:
        """Send and receive ``count`` messages; the seconds it took. Fails on any loss."""
        msg = _message(self.size)
        progress = _Progress(count)
        senders = [
            partial(_send_all, self.send, msg, share)
            for share in _split(count, self.senders)
            if share
        ]
        receiver = partial(_receive_all, self.recv, self.size, progress)
        green: list[Callable[[], None]] = []
        native: list[Callable[[], None]] = []
        (native if self.sender_threads else green).extend(senders)
        (native if self.receiver_thread else green).append(receiver)
        elapsed = _run_workers(green, native, progress=progress)
        self.total += count
        if self.extra():
            raise BenchError(f"more messages arrived than the {count} sent")
        if self.check is not None:
            self.check(self.total)
        return elapsed


def _socket_extra(sock: zmq.Socket[Any]) -> Callable[[], bool]:
    return lambda: bool(sock.poll(50, zmq.POLLIN))


def _pair_extra(pair: ChannelPair) -> Callable[[], bool]:
    def extra() -> bool:
        try:
            pair.recv(timeout=0.05)
        except TimeoutError:
            return False
        return True

    return extra


# ======================================================= child: throughput


def _raw_green(spec: Spec, stack: ExitStack) -> Callable[[int], float]:
    ctx = _green_context(stack)
    pull, push = _connected(ctx, zmq.PULL, zmq.PUSH, spec.transport, stack)
    return _Transfer(
        spec.size, spec.greenlets, push.send_multipart, pull.recv_multipart, _socket_extra(pull)
    ).run


def _green_lock(spec: Spec, stack: ExitStack) -> Callable[[int], float]:
    ctx = _green_context(stack)
    pull, push = _connected(ctx, zmq.PULL, zmq.PUSH, spec.transport, stack)
    lock = gevent.lock.Semaphore()

    def send(msg: list[bytes]) -> None:
        with lock:
            push.send_multipart(msg)

    return _Transfer(spec.size, spec.greenlets, send, pull.recv_multipart, _socket_extra(pull)).run


def _plain_threads(spec: Spec, stack: ExitStack) -> Callable[[int], float]:
    ctx = _plain_context(stack)
    pull, push = _connected(ctx, zmq.PULL, zmq.PUSH, spec.transport, stack)
    timeout_ms = int(_OP_TIMEOUT * 1000)
    pull.setsockopt(zmq.RCVTIMEO, timeout_ms)
    push.setsockopt(zmq.SNDTIMEO, timeout_ms)
    return _Transfer(
        spec.size,
        spec.greenlets,
        push.send_multipart,
        pull.recv_multipart,
        _socket_extra(pull),
        sender_threads=True,
        receiver_thread=True,
    ).run


def _ceiling(spec: Spec, stack: ExitStack) -> Callable[[int], float]:
    ctx = _plain_context(stack)
    pull, push = _connected(ctx, zmq.PULL, zmq.PUSH, spec.transport, stack)
    msg = _message(spec.size)

    def loop(progress: _Progress) -> None:
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
                        _malformed(got, progress.received)
                    progress.received += 1
            except zmq.Again:
                pass
            now = time.perf_counter()
            if sent + progress.received != before:
                stalled_since = now
            elif now - stalled_since > _OP_TIMEOUT:
                raise BenchError(
                    f"lost messages: {progress.received} of {count} received "
                    f"({sent} sent), then nothing for {_OP_TIMEOUT} s"
                )
        if progress.received != sent:
            raise BenchError(f"received {progress.received}, sent {sent}")

    def run(count: int) -> float:
        progress = _Progress(count)
        elapsed = _run_workers([partial(loop, progress)], progress=progress)
        if pull.poll(50, zmq.POLLIN):
            raise BenchError(f"more messages arrived than the {count} sent")
        return elapsed

    return run


def _pair_transfer(spec: Spec, stack: ExitStack) -> _Transfer:
    """``spec.greenlets`` senders through a PUSH pair into a PULL pair, as a :class:`_Transfer`."""
    ctx = _green_context(stack)
    pull, push = _connected(ctx, zmq.PULL, zmq.PUSH, spec.transport, stack)
    size = 0 if spec.case == "pair_rendezvous" else _BUFFER
    tx = _pair(push, size, stack)
    rx = _pair(pull, size, stack)
    threaded = spec.case == "threadport"
    sender: Any = tx.for_threads() if threaded else tx

    def check(total: int) -> None:
        _check_pair(tx, "sent", total)
        _check_pair(rx, "received", total)

    return _Transfer(
        spec.size,
        spec.greenlets,
        partial(sender.send, timeout=_OP_TIMEOUT),
        partial(rx.recv, timeout=_OP_TIMEOUT),
        _pair_extra(rx),
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
}


def _sized_run(run: Callable[[int], float], spec: Spec) -> tuple[int, float]:
    """Warm up, calibrate, then run for about ``spec.seconds``: ``(count, seconds)``."""
    count = max(spec.warmup, spec.greenlets)
    elapsed = run(count)
    count = _clamp(count / elapsed * spec.seconds * _CALIBRATE)
    elapsed = run(count)
    count = _clamp(count / elapsed * spec.seconds)
    return count, run(count)


def _throughput(spec: Spec) -> dict[str, Any]:
    with ExitStack() as stack:
        run = _THROUGHPUT[spec.case](spec, stack)
        count, elapsed = _sized_run(run, spec)
    return {
        "messages": count,
        "seconds": elapsed,
        "rate": count / elapsed,
        "mib_per_s": count * (spec.size + 1) / elapsed / 2**20,
    }


# ========================================================== child: latency


def _echo_raw(router: zmq.Socket[Any]) -> None:
    while True:
        router.send_multipart(router.recv_multipart())


def _echo_pair(pair: ChannelPair) -> None:
    try:
        for msg in pair:
            pair.send(msg, timeout=_OP_TIMEOUT)
    except ChannelClosed:
        pass  # closed at the end of the case


def _latency(spec: Spec) -> dict[str, Any]:
    """Round trips DEALER→ROUTER→DEALER over tcp, one request in flight."""
    samples: list[int] = []
    with ExitStack() as stack:
        ctx = _green_context(stack)
        router, dealer = _connected(ctx, zmq.ROUTER, zmq.DEALER, "tcp", stack)
        echo: gevent.Greenlet[Any, Any]
        if spec.case == "rtt_pair":
            server = _pair(router, 0, stack)
            client = _pair(dealer, 0, stack)
            request: Callable[[list[bytes]], Any] = partial(client.send, timeout=_OP_TIMEOUT)
            reply: Callable[[], list[Any]] = partial(client.recv, timeout=_OP_TIMEOUT)
            echo = gevent.spawn(_echo_pair, server)
        else:
            request, reply = dealer.send_multipart, dealer.recv_multipart
            echo = gevent.spawn(_echo_raw, router)
        stack.callback(echo.kill, timeout=_OP_TIMEOUT)  # unwinds first: before pairs and sockets
        msg = _message(spec.size)
        clock = time.perf_counter_ns

        def client_loop(count: int) -> None:
            samples.clear()
            for _ in range(count):
                started = clock()
                request(msg)
                got = reply()
                samples.append(clock() - started)
                if len(got) != 2 or len(got[1]) != spec.size:
                    _malformed(got, len(samples) - 1)

        count, elapsed = _sized_run(
            lambda n: _run_workers([partial(client_loop, n)]),
            dataclasses.replace(spec, warmup=spec.warmup // 4),
        )
    micros = [s / 1000 for s in samples]
    return {
        "round_trips": count,
        "seconds": elapsed,
        "p50_us": _percentile(micros, 0.50),
        "p99_us": _percentile(micros, 0.99),
        "mean_us": statistics.fmean(micros),
        "cpus": sorted(os.sched_getaffinity(0)),
    }


# =========================================================== child: memory


def _rss_growth(spec: Spec) -> dict[str, Any]:
    """RSS growth between ``count / 10`` and ``1.1 * count`` messages through pairs."""
    with ExitStack() as stack:
        transfer = _pair_transfer(dataclasses.replace(spec, case="pair"), stack)
        baseline = spec.count // 10
        transfer.run(baseline)
        gc.collect()
        before = _rss_bytes()
        elapsed = transfer.run(spec.count)
        gc.collect()
        after = _rss_bytes()
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
    before = _rss_bytes()
    waiters = [gevent.spawn(waiter) for _ in range(count)]
    deadline = time.perf_counter() + _RUN_TIMEOUT
    while started < count:
        if time.perf_counter() > deadline:
            raise BenchError(f"only {started} of {count} waiters started")
        gevent.sleep(0)
    gevent.sleep(0)  # the last one to start blocks now
    after = _rss_bytes()
    if any(w.dead for w in waiters):
        raise BenchError("a waiter returned before it was released")
    release()
    gevent.joinall(waiters, timeout=_RUN_TIMEOUT)
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
            cost = _blocked_cost(partial(event.wait, timeout=_RUN_TIMEOUT), event.set, spec.count)
        else:
            ctx = _green_context(stack)
            pull, _push = _connected(ctx, zmq.PULL, zmq.PUSH, "tcp", stack)
            pair = _pair(pull, _BUFFER, stack)

            def release() -> None:
                waiting = pair.stats().get("rx_waiting", spec.count)
                if waiting != spec.count:
                    raise BenchError(f"{waiting} receivers waiting, expected {spec.count}")
                pair.close(linger=0)

            cost = _blocked_cost(partial(pair.recv, timeout=_RUN_TIMEOUT), release, spec.count)
    return {"waiters": spec.count, "bytes_per_waiter": cost}


# ============================================================== child: lag


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
        beat.join(timeout=_OP_TIMEOUT)
        if not beat.dead or not beat.successful():
            raise BenchError(f"the heartbeat did not stop cleanly: {beat.exception!r}")
        return elapsed, list(lags)

    _, idle = beating(lambda: _run_workers([partial(gevent.sleep, min(spec.seconds, 0.5))]))
    with ExitStack() as stack:
        transfer = _pair_transfer(dataclasses.replace(spec, case="pair"), stack)
        count, _ = _sized_run(transfer.run, spec)
        elapsed, busy = beating(partial(transfer.run, count))
    if len(busy) < 10:
        raise BenchError(f"only {len(busy)} heartbeats while saturated")
    return {
        "messages": count,
        "rate": count / elapsed,
        "beats": len(busy),
        "p50_ms": _percentile(busy, 0.50),
        "p99_ms": _percentile(busy, 0.99),
        "max_ms": max(busy),
        "idle_p50_ms": _percentile(idle, 0.50),
        "idle_p99_ms": _percentile(idle, 0.99),
    }


def run_case(spec: Spec) -> dict[str, Any]:
    """Run one spec in this process and return its result (raises :class:`BenchError`)."""
    if spec.pinned:
        allowed = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {0 if 0 in allowed else allowed[0]})
    if spec.group == "throughput":
        return _throughput(spec)
    if spec.group == "latency":
        return _latency(spec)
    if spec.case == "rss_growth":
        return _rss_growth(spec)
    if spec.group == "memory":
        return _waiters(spec)
    return _hub_lag(spec)


def _child(text: str) -> int:
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


# ============================================================ driver: runs


@dataclass
class Outcome:
    """One child's run of one spec: its result, or why it failed."""

    spec: Spec
    round: int
    wall: float
    foreign: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


def _child_env() -> dict[str, str]:
    """The environment for children: this checkout's package comes first on the path."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


class _CpuMeter:
    """How much of the machine other processes used while one child ran.

    The machine's busy CPU time (``/proc/stat``) minus what this process and
    its children used (``getrusage``), as a share of all CPUs over the wall
    time: ``0.0`` on a quiet machine; ``None`` where ``/proc/stat`` is missing,
    or when the run was too short for the clock ticks these count in.
    """

    def __init__(self) -> None:
        self._busy = self._machine_busy()
        self._ours = self._our_cpu()
        self._started = time.monotonic()

    @staticmethod
    def _machine_busy() -> float | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = stat.readline().split()
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal: all but idle and iowait.
        ticks = [int(f) for f in fields[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _our_cpu() -> float:
        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        return total

    def stop(self) -> tuple[float, float | None]:
        """``(wall seconds, share of the machine used by others)`` since creation."""
        wall = time.monotonic() - self._started
        busy = self._machine_busy()
        if busy is None or self._busy is None or wall < _METER_MIN:
            return wall, None
        others = (busy - self._busy) - (self._our_cpu() - self._ours)
        return wall, max(0.0, others / (wall * (os.cpu_count() or 1)))


def _run_child(spec: Spec, round_: int, timeout: float) -> Outcome:
    """Run ``spec`` in a fresh interpreter; kill it after ``timeout`` seconds."""
    command = [
        sys.executable, "-m", "zmqchan_green", "bench",
        "--run-case", json.dumps(dataclasses.asdict(spec)),
    ]  # fmt: skip
    meter = _CpuMeter()
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=_child_env(), check=False
        )
    except subprocess.TimeoutExpired:
        wall, foreign = meter.stop()
        return Outcome(spec, round_, wall, foreign, error=f"killed after {timeout} s")
    wall, foreign = meter.stop()
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        return Outcome(spec, round_, wall, foreign, error=f"exit {proc.returncode}: {tail}")
    try:
        answer = json.loads(lines[-1])
    except json.JSONDecodeError:
        return Outcome(spec, round_, wall, foreign, error=f"no JSON result: {lines[-1][:200]!r}")
    return Outcome(spec, round_, wall, foreign, result=answer["result"])


def _run_all(plan: Plan, err: TextIO) -> list[Outcome]:
    """Every spec once per round, in alternating order, with progress on ``err``."""
    outcomes: list[Outcome] = []
    total = len(plan.specs) * plan.rounds
    width = len(str(total))
    for round_ in range(plan.rounds):
        order = plan.specs if round_ % 2 == 0 else plan.specs[::-1]
        for spec in order:
            done = len(outcomes) + 1
            print(
                f"[{done:>{width}}/{total}] round {round_ + 1}/{plan.rounds} {spec.label} ...",
                end="",
                file=err,
                flush=True,
            )
            outcome = _run_child(spec, round_ + 1, plan.case_timeout)
            outcomes.append(outcome)
            busy = ""
            if outcome.foreign is not None and outcome.foreign > _BUSY:
                busy = f", other processes used {outcome.foreign:.0%} of the machine"
            print(f" {_headline(outcome)} ({outcome.wall:.1f} s{busy})", file=err, flush=True)
            if outcome.error:
                print(f"    FAILED {spec.key}: {outcome.error}", file=err, flush=True)
    return outcomes


def _headline(outcome: Outcome) -> str:
    """The one figure the progress line shows for a finished run."""
    result = outcome.result
    if result is None:
        return "FAILED"
    group = outcome.spec.group
    if group == "throughput":
        return f"{result['rate']:,.0f} msg/s"
    if group == "latency":
        return f"p50 {result['p50_us']:.0f} us, p99 {result['p99_us']:.0f} us"
    if outcome.spec.case == "rss_growth":
        return f"+{result['growth_mib']:.2f} MiB"
    if group == "memory":
        return f"{result['bytes_per_waiter']:,.0f} B/waiter"
    return f"p99 lag {result['p99_ms']:.2f} ms"


# ======================================================= driver: medians


#: The figures of each group that get medians.
_FIGURES: dict[str, tuple[str, ...]] = {
    "throughput": ("rate",),
    "latency": ("p50_us", "p99_us", "mean_us"),
    "rss_growth": ("growth_mib",),
    "memory": ("bytes_per_waiter",),
    "lag": ("p50_ms", "p99_ms", "max_ms", "idle_p99_ms", "rate"),
}


def _figures(spec: Spec) -> tuple[str, ...]:
    return _FIGURES["rss_growth" if spec.case == "rss_growth" else spec.group]


def medians(outcomes: Sequence[Outcome]) -> dict[str, dict[str, Any]]:
    """Per spec key: the median (and min/max, runs) of each figure over its successful rounds."""
    by_key: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_key.setdefault(outcome.spec.key, []).append(outcome)
    table: dict[str, dict[str, Any]] = {}
    for key, runs in by_key.items():
        good = [o.result for o in runs if o.result is not None]
        entry: dict[str, Any] = {"runs": len(runs), "ok": len(good)}
        for name in _figures(runs[0].spec):
            values = [r[name] for r in good]
            if values:
                entry[name] = statistics.median(values)
                entry[f"{name}_min"] = min(values)
                entry[f"{name}_max"] = max(values)
        table[key] = entry
    return table


# ======================================================== driver: ratios


@dataclass(frozen=True)
class Target:
    """A figure computed from medians of this run, with the project's target for it (if any)."""

    name: str
    numerator: tuple[str, str]
    denominator: tuple[str, str] | None = None
    bound: float | None = None
    at_least: bool = True
    unit: str = "x"

    def evaluate(self, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """``{"name", "value", "target", "status"}``; status PASS, MISS, info or n/a."""
        value = _lookup(table, self.numerator)
        if value is not None and self.denominator is not None:
            below = _lookup(table, self.denominator)
            value = value / below if below else None
        target = None
        if self.bound is not None:
            target = f"{'>=' if self.at_least else '<='} {self.bound:g}{self.unit}"
        if value is None:
            status = "n/a"
        elif self.bound is None:
            status = "info"
        elif (value >= self.bound) if self.at_least else (value <= self.bound):
            status = "PASS"
        else:
            status = "MISS"
        return {
            "name": self.name,
            "value": value,
            "unit": self.unit,
            "target": target,
            "status": status,
        }


def _lookup(table: dict[str, dict[str, Any]], where: tuple[str, str]) -> float | None:
    value = table.get(where[0], {}).get(where[1])
    return None if value is None else float(value)


def _tp(case: str, greenlets: int, transport: str = "tcp", size: int = 64) -> tuple[str, str]:
    return (Spec(case, size, transport, greenlets).key, "rate")


_PINNED_RAW = (Spec("rtt_raw", pinned=True).key, "p50_us")
_PINNED_PAIR = (Spec("rtt_pair", pinned=True).key, "p50_us")

TARGETS: tuple[Target, ...] = (
    Target("pair G=10 / raw_green", _tp("pair", 10), _tp("raw_green", 1), 3.0),
    Target("pair G=1000 / pair G=10", _tp("pair", 1000), _tp("pair", 10), 0.8),
    Target(
        "pair_rendezvous G=10 / raw_green", _tp("pair_rendezvous", 10), _tp("raw_green", 1), 1.5
    ),
    Target("threadport 4 thr / plain_threads", _tp("threadport", 4), _tp("plain_threads", 1), 0.7),
    Target("RTT p50 pair / raw (pinned)", _PINNED_PAIR, _PINNED_RAW, 0.75, at_least=False),
    Target("pair G=10 / ceiling", _tp("pair", 10), _tp("ceiling", 1), 0.7),
    Target("RSS growth over 1M messages", ("rss_growth", "growth_mib"), None, 2.0, False, " MiB"),
    Target(
        "recv waiter cost beyond an Event waiter", ("waiter_cost", "bytes"), None, 2048, False, " B"
    ),
    Target("hub lag p99, pair saturated", ("hub_lag", "p99_ms"), None, 5.0, False, " ms"),
)

INFO: tuple[Target, ...] = (
    Target(
        "RTT p50 pair / raw (unpinned)",
        (Spec("rtt_pair").key, "p50_us"),
        (Spec("rtt_raw").key, "p50_us"),
    ),
    Target("RTT p99 pair / raw (pinned)", (_PINNED_PAIR[0], "p99_us"), (_PINNED_RAW[0], "p99_us")),
    Target("green_lock G=10 / raw_green", _tp("green_lock", 10), _tp("raw_green", 1)),
    Target("pair G=10 / plain_threads", _tp("pair", 10), _tp("plain_threads", 1)),
    Target("plain_threads / raw_green", _tp("plain_threads", 1), _tp("raw_green", 1)),
    Target("ceiling / raw_green", _tp("ceiling", 1), _tp("raw_green", 1)),
)


def _per_combo_info(specs: Sequence[Spec]) -> list[Target]:
    """``pair G=10 / raw_green`` for each size and transport besides 1+64 B over tcp."""
    combos = dict.fromkeys((s.transport, s.size) for s in specs if s.group == "throughput")
    return [
        Target(
            f"pair G=10 / raw_green, {transport} 1+{_size_name(size)}",
            _tp("pair", 10, transport, size),
            _tp("raw_green", 1, transport, size),
        )
        for transport, size in combos
        if (transport, size) != ("tcp", 64)
    ]


def ratios(table: dict[str, dict[str, Any]], specs: Sequence[Spec]) -> list[dict[str, Any]]:
    """The target checks (``n/a`` where a side was not measured), then the
    informational ratios that could be computed, from this run's medians."""
    table = dict(table)
    event = _lookup(table, ("waiters_event", "bytes_per_waiter"))
    pair = _lookup(table, ("waiters_pair", "bytes_per_waiter"))
    if event is not None and pair is not None:
        table["waiter_cost"] = {"bytes": pair - event}
    checks = [t.evaluate(table) for t in TARGETS]
    info = [t.evaluate(table) for t in (*INFO, *_per_combo_info(specs))]
    return checks + [row for row in info if row["status"] != "n/a"]


# ========================================================== driver: report


def _fmt_value(row: dict[str, Any]) -> str:
    value = row["value"]
    if value is None:
        return "-"
    if row["unit"] == "x":
        return f"{value:.2f}x"
    return f"{value:,.2f}{row['unit']}"


def _cell(entry: dict[str, Any] | None, name: str, fmt: str) -> str:
    if entry is None:
        return ""
    if name not in entry:
        return "FAILED"
    return format(entry[name], fmt)


def format_report(
    plan: Plan, table: dict[str, dict[str, Any]], checks: Sequence[dict[str, Any]]
) -> str:
    """The human-readable tables: throughput, sweep, latency, memory, lag, ratios."""
    specs = plan.specs
    title = (
        f"zmqchan_green {__version__} bench: medians of {plan.rounds} round(s); "
        f"Python {platform.python_version()}, pyzmq {zmq.pyzmq_version()}, "
        f"libzmq {zmq.zmq_version()}, gevent {gevent.__version__}, {os.cpu_count()} CPU(s)"
    )
    out: list[str] = [title]
    combos = list(dict.fromkeys((s.transport, s.size) for s in specs if s.group == "throughput"))
    main = [s for s in specs if s.group == "throughput" and s.greenlets in _MAIN[s.case]]
    rows = list(dict.fromkeys((s.case, s.greenlets) for s in main))
    if rows:
        out += ["", "Throughput, msg/s (PUSH->PULL, 2 frames: 1 B header + payload)"]
        header = f"{'case':<17}{'senders':>8}" + "".join(
            f"{t + '/' + _size_name(z):>13}" for t, z in combos
        )
        out += [header, "-" * len(header)]
        for case, g in rows:
            who = f"{g} thr" if case in _THREADED else f"{g}" if case != "ceiling" else "-"
            cells = "".join(
                f"{_cell(table.get(Spec(case, z, t, g).key), 'rate', ',.0f'):>13}"
                for t, z in combos
            )
            out.append(f"{case:<17}{who:>8}{cells}")
    sweep = [
        s
        for s in specs
        if s.group == "throughput" and s.case in _SWEPT and (s.transport, s.size) == ("tcp", 64)
    ]
    swept_g = sorted({s.greenlets for s in sweep})
    if len(swept_g) > 1:
        cases = list(dict.fromkeys(s.case for s in sweep))
        out += ["", "Sharing greenlets sweep, msg/s (tcp, 1+64 B)"]
        header = f"{'G':>6}" + "".join(f"{c:>14}" for c in cases)
        out += [header, "-" * len(header)]
        for g in swept_g:
            cells = "".join(
                f"{_cell(table.get(Spec(c, 64, 'tcp', g).key), 'rate', ',.0f'):>14}" for c in cases
            )
            out.append(f"{g:>6}{cells}")
    latency = [s for s in specs if s.group == "latency"]
    if latency:
        out += ["", "Round trip DEALER<->ROUTER, tcp, 1+64 B, one in flight, us"]
        header = f"{'case':<22}{'p50':>9}{'p99':>9}{'mean':>9}"
        out += [header, "-" * len(header)]
        for s in latency:
            entry = table.get(s.key)
            cells = "".join(
                f"{_cell(entry, n, ',.1f'):>9}" for n in ("p50_us", "p99_us", "mean_us")
            )
            out.append(f"{s.key:<22}{cells}")
    memory = [s for s in specs if s.group == "memory"]
    if memory:
        out += ["", "Memory"]
        for s in memory:
            entry = table.get(s.key)
            if s.case == "rss_growth":
                what = f"RSS growth over {s.count:,} messages after {s.count // 10:,}"
                out.append(f"  {what:<52}{_cell(entry, 'growth_mib', '.2f'):>10} MiB")
            else:
                what = f"{s.case}: RSS per blocked greenlet ({s.count:,})"
                out.append(f"  {what:<52}{_cell(entry, 'bytes_per_waiter', ',.0f'):>10} B")
    if any(s.group == "lag" for s in specs):
        entry = table.get("hub_lag")
        out += ["", "Hub lag of a 1 ms heartbeat, ms"]
        out.append(
            f"  pair saturated: p50 {_cell(entry, 'p50_ms', '.3f')}, "
            f"p99 {_cell(entry, 'p99_ms', '.3f')}, "
            f"max {_cell(entry, 'max_ms', '.3f')} (at {_cell(entry, 'rate', ',.0f')} msg/s); "
            f"idle p99 {_cell(entry, 'idle_p99_ms', '.3f')}"
        )
    out += ["", "Ratios (medians of this run; project targets, tcp 1+64 B)"]
    width = max(len(c["name"]) for c in checks) + 2
    for check in checks:
        target = check["target"] or ""
        out.append(
            f"  {check['name']:<{width}}{_fmt_value(check):>12}  {target:<12}{check['status']}"
        )
    return "\n".join(out)


def _noise_notes(outcomes: Sequence[Outcome], table: dict[str, dict[str, Any]]) -> list[str]:
    """Warnings for the reader: throughput specs whose rounds disagree, a busy machine."""
    notes = []
    noisy = sorted(
        key
        for key, entry in table.items()
        if "rate" in entry and (entry["rate_max"] - entry["rate_min"]) > _NOISY * entry["rate"]
    )
    if noisy:
        shown = ", ".join(noisy[:6]) + (", ..." if len(noisy) > 6 else "")
        notes.append(
            f"note: {len(noisy)} spec(s) varied by more than {_NOISY:.0%} of the median "
            f"between rounds ({shown}); min/max are in the JSON"
        )
    shares = [o.foreign for o in outcomes if o.foreign is not None]
    busy = sum(share > _BUSY for share in shares)
    if busy:
        notes.append(
            f"note: during {busy} of {len(outcomes)} run(s) other processes used more than "
            f"{_BUSY:.0%} of the machine (at most {max(shares):.0%}): those figures may be low"
        )
    return notes


#: Legend names of the swept cases.
_LEGEND = {
    "pair": f"pair (ChannelPair, buffers {_BUFFER}/{_BUFFER})",
    "green_lock": "green_lock (zmq.green + Semaphore)",
}


def draw_chart(table: dict[str, dict[str, Any]], specs: Sequence[Spec], path: str) -> str | None:
    """Draw throughput vs sharing greenlets as a PNG; the reason it was skipped, or ``None``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "matplotlib is not installed (pip install 'zmqchan-green[bench]')"
    series: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for s in specs:
        entry = table.get(s.key, {})
        if s.case in _SWEPT and (s.transport, s.size) == ("tcp", 64) and "rate" in entry:
            series.setdefault(s.case, []).append((s.greenlets, entry))
    if not series:
        return "no sweep results (pair or green_lock over tcp at 1+64 B)"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    try:
        for case, points in series.items():
            points.sort(key=lambda p: p[0])
            xs = [g for g, _ in points]
            ys = [e["rate"] for _, e in points]
            low = [e["rate"] - e["rate_min"] for _, e in points]
            high = [e["rate_max"] - e["rate"] for _, e in points]
            ax.errorbar(
                xs, ys, yerr=[low, high], marker="o", capsize=3, label=_LEGEND.get(case, case)
            )
        references = (
            ("raw_green", "raw zmq.green 1->1", ":"),
            ("plain_threads", "plain pyzmq, 2 threads", "--"),
            ("ceiling", "ceiling (1 thread, NOBLOCK)", "-."),
        )
        for case, name, style in references:
            rate = table.get(Spec(case, 64, "tcp", 1).key, {}).get("rate")
            if rate is not None:
                ax.axhline(rate, linestyle=style, color="grey", linewidth=1)
                ax.annotate(
                    name,
                    (0.01, rate),
                    xycoords=("axes fraction", "data"),
                    textcoords="offset points",
                    xytext=(0, 3),
                    fontsize=8,
                    color="dimgrey",
                )
        ax.set_xscale("log")
        ax.set_xticks(_SWEEP, [str(g) for g in _SWEEP])
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y / 1000:,.0f}k"))
        ax.set_xlabel("greenlets sharing one socket")
        ax.set_ylabel("messages / s (median, min-max bars)")
        ax.set_title("zmqchan_green: PUSH->PULL over tcp, 1 B + 64 B messages")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="center right", bbox_to_anchor=(1.0, 0.38))
        fig.tight_layout()
        fig.savefig(path)
    finally:
        plt.close(fig)
    return None


def _machine() -> dict[str, Any]:
    """What the JSON records about where it ran."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "gevent": gevent.__version__,
        "zmqchan_green": __version__,
    }


def run_bench(
    plan: Plan,
    json_path: str | None,
    png_path: str | None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the plan, print the report, write JSON and PNG.

    Returns ``0`` if every run succeeded, else ``1``.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    started = time.monotonic()
    outcomes = _run_all(plan, err)
    table = medians(outcomes)
    checks = ratios(table, plan.specs)
    print(format_report(plan, table, checks), file=out)
    for note in _noise_notes(outcomes, table):
        print(note, file=out)
    failed = [o for o in outcomes if o.error]
    if json_path:
        document = {
            "machine": _machine(),
            "rounds": plan.rounds,
            "seconds": time.monotonic() - started,
            "specs": [{"key": s.key, **dataclasses.asdict(s)} for s in plan.specs],
            "runs": [
                {
                    "key": o.spec.key,
                    "round": o.round,
                    "wall": o.wall,
                    "foreign_cpu": o.foreign,
                    "result": o.result,
                    "error": o.error,
                }
                for o in outcomes
            ],
            "medians": table,
            "ratios": checks,
            "failures": len(failed),
        }
        Path(json_path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"\nJSON written to {json_path}", file=out)
    if png_path:
        skipped = draw_chart(table, plan.specs, png_path)
        print(
            f"PNG chart skipped: {skipped}" if skipped else f"PNG chart written to {png_path}",
            file=out,
        )
    print(f"total {time.monotonic() - started:.0f} s", file=out)
    if failed:
        print(f"FAILED: {len(failed)} of {len(outcomes)} run(s) failed:", file=err)
        for o in failed:
            print(f"  - round {o.round} {o.spec.key}: {o.error}", file=err)
        return 1
    return 0


# ============================================================ driver: CLI


def _csv(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown) or '(empty)'}; choose from {', '.join(choices)}"
            )
        return names

    return parse


def _sizes(text: str) -> list[int]:
    sizes = []
    for item in (n.strip().lower() for n in text.split(",") if n.strip()):
        factor = 1024 if item.endswith("k") else 1
        try:
            size = int(item.rstrip("k")) * factor
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a size: {item!r}") from None
        if size < 0:
            raise argparse.ArgumentTypeError(f"negative size: {item!r}")
        sizes.append(size)
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def _positive(kind: Callable[[str], float]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
        return value

    return parse


def _expand(names: Iterator[str]) -> list[str]:
    return list(dict.fromkeys(c for n in names for c in GROUPS.get(n, (n,))))


def _bench_command(args: argparse.Namespace) -> int:
    if args.run_case is not None:
        return _child(args.run_case)
    cases = _expand(iter(args.cases)) if args.cases else list(CASES)
    sizes = args.sizes or ([64] if args.quick else list(SIZES))
    specs = plan_specs(cases, sizes, args.transports, args.quick, args.seconds)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    plan = Plan(specs, rounds, args.case_timeout)
    if args.list:
        for spec in specs:
            print(spec.key)
        return 0
    if not specs:
        print("bench: nothing to run with these filters", file=sys.stderr)
        return 1
    return run_bench(plan, args.json or None, args.png or None)


def add_bench_command(
    subcommands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register the ``bench`` subcommand; its handler is stored as ``args.handler``."""
    parser = subcommands.add_parser(
        "bench",
        help="side-by-side benchmark: pairs vs raw zmq.green, threads and the one-thread ceiling",
        description=(
            "Run each case in its own subprocess, alternate the cases over several rounds, "
            "and print medians and the ratios the project targets (throughput, round-trip latency, "
            "memory, hub lag). Exits 1 if any run failed (lost messages, timeouts)."
        ),
    )
    parser.add_argument(
        "--rounds",
        type=_positive(int),
        default=None,
        metavar="N",
        help="rounds over all cases (default: 3, or 1 with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 round, 1+64 B only, short runs, fewer waiters",
    )
    parser.add_argument(
        "--cases",
        type=_csv([*CASES, *GROUPS]),
        default=None,
        metavar="LIST",
        help=f"comma-separated cases or groups (default: all): {', '.join([*GROUPS, *CASES])}",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        metavar="LIST",
        help="payload sizes in bytes for throughput, e.g. 64,1k,64k (default: all three)",
    )
    parser.add_argument(
        "--transports",
        type=_csv(TRANSPORTS),
        default=list(TRANSPORTS),
        metavar="LIST",
        help="transports for throughput: tcp,inproc (latency, memory, lag use tcp)",
    )
    parser.add_argument(
        "--seconds",
        type=_positive(float),
        default=None,
        help="length of each measured run (default: 1.0, 0.2 with --quick)",
    )
    parser.add_argument(
        "--case-timeout",
        type=_positive(float),
        default=_CASE_TIMEOUT,
        metavar="SECONDS",
        help="kill a case's subprocess after this long (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        default="bench-results.json",
        metavar="PATH",
        help="write raw results, medians and ratios here (default: %(default)s; '' for none)",
    )
    parser.add_argument(
        "--png",
        default="bench-results.png",
        metavar="PATH",
        help=(
            "draw the sweep chart here if matplotlib is installed "
            "(default: %(default)s; '' for none)"
        ),
    )
    parser.add_argument("--list", action="store_true", help="list the measurements and exit")
    parser.add_argument("--run-case", default=None, help=argparse.SUPPRESS)
    parser.set_defaults(handler=_bench_command)
