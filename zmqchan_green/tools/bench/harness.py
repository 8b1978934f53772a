"""What every case of a child is built from: sockets, workers with deadlines, the transfer.

Theory of operation
===================

A child measures one spec, so nothing here is shared between cases at run
time. Every wait has a deadline (:data:`OP_TIMEOUT` for one send, receive or
join; :data:`RUN_TIMEOUT` for a whole run), so a broken case raises
:class:`BenchError` instead of hanging.

A throughput case is a :class:`Transfer`: ``G`` senders (greenlets or
threads) push ``N`` two-frame messages (a 1-byte header and a payload), one
receiver takes them and checks their shape; afterwards no message may be left
over, and the case's own counters (a pair's ``stats()``) must agree with the
total. :func:`run_workers` starts the senders and the receiver together and
times them from the first start to the last join; the first failure of a
greenlet kills the others, so a broken run ends at once. :func:`sized_run`
runs a case three times: a warm-up (it also waits out the tcp connect), a
short calibration, and the measured run, sized from the calibration to last
about ``spec.seconds``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from typing import Any, NoReturn

import gevent
import zmq
import zmq.green as zmq_green

from ... import ChannelPair
from ..common import bind_fresh, proc_status_kib
from .plan import Spec

__all__ = [
    "OP_TIMEOUT",
    "RUN_TIMEOUT",
    "BenchError",
    "Progress",
    "Transfer",
    "check_pair",
    "connected",
    "green_context",
    "malformed",
    "message",
    "new_socket",
    "pair_extra",
    "percentile",
    "plain_context",
    "rss_bytes",
    "run_workers",
    "sized_run",
    "socket_extra",
    "wrap",
]

#: Seconds any single send, receive or join may wait inside a child.
OP_TIMEOUT = 10.0
#: Seconds a whole transfer (or round-trip series) may take inside a child.
RUN_TIMEOUT = 60.0
#: The calibration run lasts about this share of the measured run.
_CALIBRATE = 0.15
#: Measured runs have at least / at most this many messages (or round trips).
_MIN_COUNT = 200
_MAX_COUNT = 5_000_000


class BenchError(Exception):
    """A case went wrong: lost, extra or malformed messages, a timeout, a dead worker."""


# ------------------------------------------------------------ small helpers


def message(size: int) -> list[bytes]:
    """The benchmark's message: a 1-byte header and a ``size``-byte payload."""
    return [b"\x01", b"x" * size]


def _split(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` counts that differ by at most one."""
    share, extra = divmod(total, parts)
    return [share + (1 if i < extra else 0) for i in range(parts)]


def _clamp(count: float) -> int:
    return int(min(max(count, _MIN_COUNT), _MAX_COUNT))


def rss_bytes() -> int:
    """This process's resident set size, from ``/proc/self/status``."""
    kib = proc_status_kib("VmRSS")
    if kib is None:
        raise BenchError("no VmRSS in /proc/self/status")
    return kib * 1024


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    rank = max(0, math.ceil(fraction * len(ordered)) - 1)
    return ordered[rank]


@dataclass
class Progress:
    """How far a receiver got, for the report when a run times out."""

    expected: int
    received: int = 0


# ------------------------------------------------------------ sockets and pairs


def green_context(stack: ExitStack) -> zmq.Context[Any]:
    """A ``zmq.green`` context, terminated when ``stack`` unwinds."""
    ctx: zmq.Context[Any] = zmq_green.Context()
    stack.callback(ctx.term)
    return ctx


def plain_context(stack: ExitStack) -> zmq.Context[Any]:
    """A plain pyzmq context, terminated when ``stack`` unwinds."""
    ctx: zmq.Context[Any] = zmq.Context()
    stack.callback(ctx.term)
    return ctx


def new_socket(
    ctx: zmq.Context[Any], kind: int, stack: ExitStack, socket_class: Any = None
) -> zmq.Socket[Any]:
    """A socket with ``linger=0``, closed when ``stack`` unwinds (if nothing closed it first)."""
    sock: zmq.Socket[Any] = ctx.socket(kind, socket_class=socket_class)
    sock.setsockopt(zmq.LINGER, 0)
    stack.callback(sock.close, 0)
    return sock


def connected(
    ctx: zmq.Context[Any],
    bind_kind: int,
    connect_kind: int,
    transport: str,
    stack: ExitStack,
    socket_class: Any = None,
) -> tuple[zmq.Socket[Any], zmq.Socket[Any]]:
    """``(bound, connected)`` sockets of the two kinds (of ``socket_class``, if
    given), joined over ``transport``."""
    bound = new_socket(ctx, bind_kind, stack, socket_class)
    peer = new_socket(ctx, connect_kind, stack, socket_class)
    peer.connect(bind_fresh(bound, transport, "zmqchan-green-bench"))
    return bound, peer


def wrap(sock: zmq.Socket[Any], size: int, stack: ExitStack) -> ChannelPair:
    """``sock`` wrapped in a pair of buffer sizes ``size``/``size``, closed with linger 0."""
    pair = ChannelPair(sock, size, size)
    stack.callback(pair.close, 0)
    return pair


def check_pair(pair: ChannelPair, what: str, expected: int) -> None:
    """The pair's ``stats()[what]`` must be ``expected``, and no send error reported."""
    stats = pair.stats()
    if stats[what] != expected:
        raise BenchError(f"{pair!r}: stats()[{what!r}] is {stats[what]}, expected {expected}")
    if stats["errors"] or stats["errors_dropped"]:
        raise BenchError(f"{pair!r} reported send errors: {stats}")


# ------------------------------------------------------------ workers


def run_workers(
    greenlets: Sequence[Callable[[], None]],
    threads: Sequence[Callable[[], None]] = (),
    timeout: float = RUN_TIMEOUT,
    progress: Progress | None = None,
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
        gevent.killall(late, timeout=OP_TIMEOUT)
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


def _receive_all(recv: Callable[[], list[Any]], size: int, progress: Progress) -> None:
    """Receive ``progress.expected`` messages of the benchmark's shape, or fail."""
    for i in range(progress.expected):
        try:
            msg = recv()
        except (TimeoutError, zmq.Again) as exc:
            raise BenchError(
                f"lost messages: {i} of {progress.expected} received, then nothing "
                f"for {OP_TIMEOUT} s"
            ) from exc
        if len(msg) != 2 or len(msg[1]) != size:
            malformed(msg, i)
        progress.received = i + 1


def malformed(msg: Sequence[Any], index: int) -> NoReturn:
    """Fail on a message that is not the benchmark's 1 B + payload shape."""
    raise BenchError(f"message {index} is malformed: frame lengths {[len(f) for f in msg]}")


# ------------------------------------------------------------ the transfer


@dataclass
class Transfer:
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
        msg = message(self.size)
        progress = Progress(count)
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
        elapsed = run_workers(green, native, progress=progress)
        self.total += count
        if self.extra():
            raise BenchError(f"more messages arrived than the {count} sent")
        if self.check is not None:
            self.check(self.total)
        return elapsed


def socket_extra(sock: zmq.Socket[Any]) -> Callable[[], bool]:
    """A :attr:`Transfer.extra` for a plain socket: is a message waiting on it?"""
    return lambda: bool(sock.poll(50, zmq.POLLIN))


def pair_extra(pair: ChannelPair) -> Callable[[], bool]:
    """A :attr:`Transfer.extra` for a pair: can one more message be received?"""

    def extra() -> bool:
        try:
            pair.recv(timeout=0.05)
        except TimeoutError:
            return False
        return True

    return extra


def sized_run(run: Callable[[int], float], spec: Spec) -> tuple[int, float]:
    """Warm up, calibrate, then run for about ``spec.seconds``: ``(count, seconds)``."""
    count = max(spec.warmup, spec.greenlets)
    elapsed = run(count)
    count = _clamp(count / elapsed * spec.seconds * _CALIBRATE)
    elapsed = run(count)
    count = _clamp(count / elapsed * spec.seconds)
    return count, run(count)
