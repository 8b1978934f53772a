"""``python -m zmqchan_green soak``: a bounded soak under injected faults.

Theory of operation
===================

Topology. One process, one gevent hub, one green context. Six *lanes*, each a
sending pair (a ``DEALER`` or ``PUSH`` socket wrapped in a
:class:`~zmqchan_green.ChannelPair`) connected to a receiving pair (``ROUTER``
or ``PULL``), over tcp (127.0.0.1) and inproc:

* ``echo`` lanes (DEALER -> ROUTER): one *consumer* greenlet reads the ROUTER
  pair and sends every message back through it, with ``ROUTER_MANDATORY`` (an
  echo for a peer the ROUTER no longer knows is reported on ``pair.errors``);
  greenlets and native threads receive the echoes on the DEALER pair, the same
  pair the senders share. The consumer never blocks long on an echo (see
  ``_ECHO_WAIT``): one it cannot place within 50 ms is refused, i.e. not
  accepted and not owed, and the next ones for 50 ms are only offered.
* ``pull-kill`` lanes (PUSH -> PULL): greenlet and thread receivers, some of
  them killed while they wait in ``recv``.
* ``pull-order`` lanes (PUSH -> PULL): greenlet and thread receivers, none
  killed, so each receiver's view of each sender can be checked for order.

Senders are greenlets and native OS threads (through the pair's
:class:`~zmqchan_green.ThreadPort`); a thread also receives on its lane. A
message is ``[header, payload, checksum]``: the header holds the sender id,
the generation of the sending pair and the sequence number, the checksum is a
BLAKE2b digest of header and payload.

Bookkeeping. Every sender numbers its attempts 0, 1, 2... and keeps three
bytes per attempt: the outcome of its ``send`` (pending, accepted, not
accepted, or *maybe*: the greenlet was killed inside ``send``, so its message
may or may not have been accepted), the fate of the message (delivered,
returned by ``close()``, reported on ``errors``) and the fate of its echo. The
owner writes the outcome; everything else is written under one real lock,
because receivers run in threads too. Each receiving worker checks the
checksum, that the sender exists and made that attempt, that the message was
not delivered before (duplicates), and, where the order is defined, that
sequence numbers only grow: the single consumer of a ROUTER sees each
(sender, sending pair) in order, across restarts of the ROUTER too; each
receiver on a pull-order lane and each echo receiver sees each (sender,
sending pair, receiving pair) in order. Receivers on pull-kill lanes are not
order-checked: a receiver killed with a message in hand gives it back to the
head of the stream, behind messages other receivers already hold.

Faults, on a schedule drawn from a seeded RNG: senders killed (preferably
inside ``send``), receivers killed inside ``recv`` (pull-kill lanes),
receivers stalled for a moment (back-pressure), sending pairs closed with a
short linger and replaced (``sender_recycle``: what ``close()`` returns is
counted as returned), receiving pairs closed and re-bound on the same endpoint
(``peer_restart``: tcp reconnects by itself, inproc senders reconnect through
``pair.call``). Every send and receive has a deadline; a small share of them
get a tiny one (``send_timeout``, ``recv_timeout``): a timed-out send was not
accepted, so its message must never arrive.

Accounting, at the end, after senders stopped, receivers drained, every pair
closed and every closed pair swept of what it still buffered. For every
accepted message (and echo): delivered, returned by ``close()``, reported on
``errors``, or lost. A lost message is *lost in libzmq* only if a fault that
makes libzmq drop queued messages could have caught it in libzmq's queues
(:class:`LossEvent`): its sending pair was closed by a ``sender_recycle``
(libzmq drops what it still holds when the linger ends), or its lane's
receiving pair was closed by a ``peer_restart``; and only if it was not
behind the fault: a pipe is FIFO, so a message older than one already
delivered from the same (sender, sending pair) had left libzmq before the
fault, and a message attempted after the new receiving pair got its first
message rides behind that one on a live connection. Each such fault may cost
at most what libzmq's queues hold (``_LOSS_CAPACITY``). Anything else is a
loss, and a failure. The pairs' own counters are checked against the tally
too: for each sending pair, handed to the socket + returned + reported lies
between the accepted and the accepted-plus-maybe messages, and no more
messages count as lost in libzmq than were handed to the socket and never
arrived; for each receiving pair, read from the socket == delivered to
receivers; for each ROUTER pair, echoes handed + returned + reported ==
echoes accepted.

Liveness. A watchdog OS thread aborts the run (exit 1, with a stack dump and
the JSON so far) if nothing moves for 30 seconds, or if the whole run
overshoots its time by far; it also prints progress to stderr. A send that
waits its full (long) deadline counts as a stall, and a stall is a failure.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import os
import random
import re
import struct
import sys
import time
import uuid
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

import gevent
import zmq
import zmq.green as zmq_green
from gevent.monkey import get_original

from ._checks import Frame
from ._errors import ChannelBroken, ChannelClosed, SendError, WouldBlock
from ._pair import ChannelPair
from ._threads import ThreadPort
from ._version import __version__

__all__ = ["LANES", "LaneSpec", "SoakConfig", "add_soak_command", "run_soak"]

_allocate_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")
_Thread: Any = get_original("threading", "Thread")

# ------------------------------------------------------------------ constants

#: sender id, generation of the sending pair, sequence number.
_HEADER = struct.Struct(">IIQ")
#: Generation of the ROUTER pair that echoed a message (appended to echoes).
_GEN = struct.Struct(">I")
_DIGEST_SIZE = 8
#: Payloads come from a seeded pool of this many, 0 to _MAX_PAYLOAD bytes long.
_POOL = 97
_MAX_PAYLOAD = 160

#: ZeroMQ high-water marks: small, so back-pressure reaches the pairs quickly.
_HWM = 500
#: Kernel socket buffers (tcp), bounded so that what a peer restart can lose
#: in them is bounded too.
_KERNEL_BUFFER = 64 * 1024
#: The most messages one libzmq-dropping fault may cost, by transport. inproc:
#: one pipe, SNDHWM + RCVHWM. tcp: both pipes, plus both kernel buffers (Linux
#: doubles SO_SNDBUF/SO_RCVBUF) and both engines' 8 KiB batches, filled with the
#: smallest message on the wire (3 frames of 16 + 0 + 8 bytes, 2 bytes of
#: ZMTP framing each; echoes are larger).
_WIRE_MIN = 16 + 0 + 8 + 3 * 2
_LOSS_CAPACITY = {
    "inproc": 2 * _HWM,
    "tcp": 2 * _HWM + (2 * 2 * _KERNEL_BUFFER + 2 * 8192) // _WIRE_MIN,
}
_RECONNECT_IVL_MS = 20

#: A send that waits this long is a stall (a failure).
_SEND_DEADLINE = 10.0
#: How long the ROUTER's consumer waits for an echo to be accepted. It must not
#: block for long: when a DEALER vanishes with messages still queued for the
#: ROUTER, libzmq keeps its route until the ROUTER has read them, accepting
#: echoes for it into the dead pipe and then, with ROUTER_MANDATORY, refusing
#: them with EAGAIN; a reader blocked on such an echo would never read them.
_ECHO_WAIT = 0.05
#: How long receivers wait before they look at the stop flag and pauses again.
_RECV_WAIT = 0.5
#: Threads receive only briefly, then go back to sending.
_THREAD_RECV_WAIT = 0.02
_THREAD_BATCH = 64
#: Share of sends and receives that get a tiny timeout (injected timeouts).
_TINY_SEND_P = 0.01
_TINY_RECV_P = 0.02
_TINY = 0.002
#: Faults come this often (seconds between two, uniform).
_FAULT_GAP = (0.02, 0.2)
_FAULT_WEIGHTS = {
    "sender_kill": 40,
    "receiver_kill": 20,
    "receiver_stall": 6,
    "sender_recycle": 6,
    "peer_restart": 3,
}
#: Lingers for sending pairs closed by a fault (seconds).
_RECYCLE_LINGERS = (0.0, 0.002, 0.01, 0.05, 0.5)
_STALL = (0.05, 0.3)
#: The end: drained once nothing moved for this long (and nothing is pending).
_DRAIN_QUIET = 1.0
_DRAIN_LIMIT = 20.0
_FINAL_LINGER = 2.0
_JOIN_LIMIT = _SEND_DEADLINE + 5.0
#: Watchdog: abort if nothing moves for this long.
_WATCHDOG = 30.0
#: ... or if the run takes this much longer than asked.
_OVERTIME = 150.0
_MAX_LISTED = 20

# Outcome of a send (one byte per attempt, written by the sender only).
_PENDING, _ACC, _NACC, _MAYBE = 0, 1, 2, 3
# Fate of a message (one byte per attempt, bits, under the lock).
_DLV, _RET, _ERR = 4, 8, 16
# Fate of its echo (one byte per attempt, bits, under the lock).
_EACC, _ENACC, _ERET, _EERR, _EDLV = 1, 2, 4, 8, 16

_ECHO, _PULL_KILL, _PULL_ORDER = "echo", "pull-kill", "pull-order"
#: bytes.translate tables: 1 where a message was delivered / its echo was attempted.
_DELIVERED = bytes(1 if v & _DLV else 0 for v in range(256))
_ECHO_ATTEMPTED = bytes(1 if v & (_EACC | _ENACC) else 0 for v in range(256))


class LaneSpec:
    """One lane: a sending pair and the receiving pair it is connected to."""

    __slots__ = ("kind", "peer_rx", "peer_tx", "rx_size", "transport", "tx_size")

    def __init__(
        self, kind: str, transport: str, tx_size: int, rx_size: int, peer_tx: int, peer_rx: int
    ) -> None:
        self.kind = kind
        self.transport = transport
        #: Buffers of the sending (DEALER/PUSH) pair.
        self.tx_size = tx_size
        self.rx_size = rx_size
        #: Buffers of the receiving (ROUTER/PULL) pair.
        self.peer_tx = peer_tx
        self.peer_rx = peer_rx

    def describe(self) -> str:
        """``DEALER->ROUTER tcp (8/8 -> 64/64)``, for reports."""
        tx, rx = ("DEALER", "ROUTER") if self.kind == _ECHO else ("PUSH", "PULL")
        return (
            f"{self.kind} {tx}->{rx} {self.transport} "
            f"(buffers {self.tx_size}/{self.rx_size} -> {self.peer_tx}/{self.peer_rx})"
        )


#: The lanes of every soak: each kind over both transports, buffer sizes mixed
#: (0 is a rendezvous).
LANES = (
    LaneSpec(_ECHO, "tcp", 0, 0, 64, 64),
    LaneSpec(_ECHO, "inproc", 32, 8, 0, 16),
    LaneSpec(_PULL_KILL, "tcp", 16, 0, 0, 0),
    LaneSpec(_PULL_KILL, "inproc", 0, 0, 0, 32),
    LaneSpec(_PULL_ORDER, "tcp", 64, 0, 0, 8),
    LaneSpec(_PULL_ORDER, "inproc", 4, 0, 0, 0),
)
#: Which lane native thread ``i`` works on: spread over kinds first.
_THREAD_LANES = (0, 5, 2, 4, 1, 3)


class SoakConfig:
    """What to run: length, workers, seed."""

    __slots__ = ("greenlets", "seconds", "seed", "threads")

    def __init__(self, seconds: float, greenlets: int, threads: int, seed: int) -> None:
        if seconds <= 0:
            raise ValueError("seconds must be more than 0")
        if greenlets < 3 * len(LANES):
            raise ValueError(f"greenlets must be at least {3 * len(LANES)} (3 per lane)")
        if threads < 0:
            raise ValueError("threads must be at least 0")
        self.seconds = seconds
        self.greenlets = greenlets
        self.threads = threads
        self.seed = seed


# ------------------------------------------------------------------ helpers


def _digest(header: bytes, payload: bytes) -> bytes:
    return hashlib.blake2b(header + payload, digest_size=_DIGEST_SIZE).digest()


def _or_bytes(a: bytes | bytearray, b: bytes | bytearray) -> bytes:
    """Byte-wise OR of two equally long byte strings (at C speed)."""
    n = len(a)
    return (int.from_bytes(a, "little") | int.from_bytes(b, "little")).to_bytes(n, "little")


def _mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def _proc_status(field: str) -> int:
    """A ``kB`` figure from ``/proc/self/status`` (``VmHWM``, ``VmRSS``), in KiB; 0 if absent."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


# ------------------------------------------------------------------ the actors


class Sender:
    """One sender (a greenlet or a native thread) and what became of each of its attempts."""

    __slots__ = (
        "accepted",
        "cur_gen",
        "echo",
        "fwd",
        "gens",
        "greenlet",
        "in_send",
        "killed",
        "kind",
        "lane",
        "maybe",
        "not_accepted",
        "outcome",
        "rgens",
        "sid",
    )

    def __init__(self, sid: int, lane: int, kind: str) -> None:
        self.sid = sid
        self.lane = lane
        self.kind = kind
        #: Per attempt: _PENDING/_ACC/_NACC/_MAYBE (written by the owner only).
        self.outcome = bytearray()
        #: Per attempt: _DLV/_RET/_ERR bits (under the soak's lock).
        self.fwd = bytearray()
        #: Per attempt: the echo's _E* bits (under the soak's lock).
        self.echo = bytearray()
        #: (first sequence number, sending pair generation), in order.
        self.gens: list[tuple[int, int]] = []
        #: (first sequence number, ROUTER generation that echoed it), as the consumer saw them.
        self.rgens: list[tuple[int, int]] = []
        self.cur_gen = -1
        self.in_send = False
        self.killed = False
        self.greenlet: gevent.Greenlet[Any, Any] | None = None
        self.accepted = 0
        self.not_accepted = 0
        self.maybe = 0

    def begin(self, gen: int) -> int:
        """Number a new attempt through the pair of generation ``gen``."""
        seq = len(self.outcome)
        if gen != self.cur_gen:
            self.gens.append((seq, gen))
            self.cur_gen = gen
        # outcome last: a receiver checks seq < len(outcome) before it indexes the others.
        self.fwd.append(0)
        self.echo.append(0)
        self.outcome.append(_PENDING)
        return seq

    @property
    def attempts(self) -> int:
        """Attempts made so far."""
        return len(self.outcome)

    def ranges(self) -> list[tuple[int, int, int]]:
        """(generation, first, end) for each stretch of attempts through one sending pair."""
        out = []
        for i, (start, gen) in enumerate(self.gens):
            end = self.gens[i + 1][0] if i + 1 < len(self.gens) else len(self.outcome)
            out.append((gen, start, end))
        return out


def _gen_at(table: list[tuple[int, int]], seq: int) -> int | None:
    """The generation a (first seq, generation) table gives for ``seq``."""
    i = bisect_right(table, (seq, sys.maxsize)) - 1
    return table[i][1] if i >= 0 else None


class Worker:
    """A receiving greenlet or thread: its order state and what it is doing."""

    __slots__ = ("across_pairs", "done", "greenlet", "in_recv", "killed", "last", "name", "ordered")

    def __init__(self, name: str, ordered: bool, across_pairs: bool = False) -> None:
        self.name = name
        #: Whether this worker's view of each sender is checked for order.
        self.ordered = ordered
        #: Order per sending pair across receiving pairs (the ROUTER's single
        #: consumer, which drains an old pair before the new one), not per
        #: (sending pair, receiving pair).
        self.across_pairs = across_pairs
        self.last: dict[tuple[int, ...], int] = {}
        self.in_recv = False
        self.killed = False
        self.done = False
        self.greenlet: gevent.Greenlet[Any, Any] | None = None


class TxGen:
    """One sending pair (DEALER or PUSH) of a lane; replaced by ``sender_recycle``."""

    __slots__ = (
        "closed",
        "echo_delivered",
        "errors",
        "errors_dropped",
        "fault_closed",
        "gen",
        "lane",
        "pair",
        "port",
        "received",
        "returned",
        "sent",
    )

    def __init__(self, gen: int, lane: int, pair: ChannelPair) -> None:
        self.gen = gen
        self.lane = lane
        self.pair = pair
        self.port: ThreadPort = pair.for_threads()
        self.closed = False
        self.fault_closed = False
        #: From the pair's stats() once closed.
        self.sent = self.errors = self.errors_dropped = self.received = 0
        self.returned = 0
        self.echo_delivered = 0


class LossEvent:
    """A fault after which libzmq may drop what it holds: ``peer_restart`` (the
    receiving pair ``old_gen`` closed, ``new_gen`` bound in its place) or
    ``sender_recycle`` (the sending pair ``old_gen`` closed with a short linger).

    What it can have dropped is bounded below: a pipe is FIFO, so once a
    receiver got message ``n`` of (sender, sending pair), every earlier one had
    left libzmq already. ``peer_restart`` is bounded above too: once the new
    receiving pair got its first message the sender had reconnected, and
    every message attempted after that rides behind it.
    """

    __slots__ = (
        "echo_lost",
        "echo_low",
        "high",
        "kind",
        "lane",
        "lost",
        "low",
        "new_gen",
        "old_gen",
    )

    def __init__(
        self,
        kind: str,
        lane: int,
        old_gen: int,
        low: dict[tuple[int, int], int],
        echo_low: dict[tuple[int, int, int], int],
    ) -> None:
        self.kind = kind
        self.lane = lane
        self.old_gen = old_gen
        self.new_gen = 0
        #: (sender id, sending pair) -> highest sequence number delivered before the fault.
        self.low = low
        #: (sender id, DEALER pair, ROUTER pair) -> highest echo delivered before the fault.
        self.echo_low = echo_low
        #: peer_restart: sender id -> attempts made when the new pair got its
        #: first message; ``None`` while the lane is not proven live again.
        self.high: dict[int, int] | None = None
        self.lost = 0
        self.echo_lost = 0

    def covers(self, sid: int, gen: int, seq: int) -> bool:
        """Whether message ``seq`` of ``sid`` through sending pair ``gen`` may be lost here."""
        if self.kind == "sender_recycle" and gen != self.old_gen:
            return False
        if seq <= self.low.get((sid, gen), -1):
            return False
        return self.kind == "sender_recycle" or self.high is None or seq < self.high.get(sid, 0)

    def covers_echo(self, sid: int, tgen: int, rgen: int, seq: int) -> bool:
        """Whether the echo of that message, through ROUTER pair ``rgen``, may be lost here."""
        if (tgen if self.kind == "sender_recycle" else rgen) != self.old_gen:
            return False
        return seq > self.echo_low.get((sid, tgen, rgen), -1)


class RxGen:
    """One receiving pair (ROUTER or PULL) of a lane; replaced by ``peer_restart``."""

    __slots__ = (
        "closed",
        "delivered",
        "echo_accepted",
        "errors",
        "errors_dropped",
        "fault_closed",
        "gen",
        "gen_frame",
        "lane",
        "loss_event",
        "pair",
        "port",
        "received",
        "returned",
        "seen",
        "sent",
    )

    def __init__(self, gen: int, lane: int, pair: ChannelPair, with_port: bool) -> None:
        self.gen = gen
        self.gen_frame = _GEN.pack(gen)
        self.lane = lane
        self.pair = pair
        self.port: ThreadPort | None = pair.for_threads() if with_port else None
        self.closed = False
        self.fault_closed = False
        #: The peer_restart that bound this pair, until it got its first message.
        self.loss_event: LossEvent | None = None
        self.seen = False
        #: Messages taken from this pair by workers (and the final sweep).
        self.delivered = 0
        self.echo_accepted = 0
        self.sent = self.errors = self.errors_dropped = self.received = 0
        self.returned = 0


class Lane:
    """A lane's current pairs, its senders and receivers."""

    __slots__ = (
        "endpoint",
        "index",
        "loss_events",
        "paused_until",
        "receivers",
        "rx",
        "senders",
        "spec",
        "tx",
    )

    def __init__(self, index: int, spec: LaneSpec) -> None:
        self.index = index
        self.spec = spec
        self.endpoint = ""
        self.tx: TxGen
        self.rx: RxGen
        self.senders: list[Sender] = []
        self.receivers: list[Worker] = []
        #: peer_restart and sender_recycle faults on this lane, in order.
        self.loss_events: list[LossEvent] = []
        self.paused_until = 0.0


# ------------------------------------------------------------------ the soak


class Soak:
    """Runs one soak; see the module docstring."""

    def __init__(self, config: SoakConfig, err: TextIO) -> None:
        self.config = config
        self.err = err
        self.rng = random.Random(config.seed)
        pool_rng = random.Random(self.rng.getrandbits(64))
        self.payloads = [
            pool_rng.randbytes(pool_rng.randint(0, _MAX_PAYLOAD)) for _ in range(_POOL)
        ]
        self.ctx: zmq.Context[Any] = zmq_green.Context()
        self.lock = _allocate_lock()
        self.lanes = [Lane(i, spec) for i, spec in enumerate(LANES)]
        self.senders: dict[int, Sender] = {}
        #: (sender id, sending pair) -> highest sequence number delivered so far.
        self.max_dlv: dict[tuple[int, int], int] = {}
        #: (sender id, DEALER pair, ROUTER pair) -> highest echo delivered so far.
        self.max_echo: dict[tuple[int, int, int], int] = {}
        #: The same senders, as a list the watchdog thread can read safely.
        self.sender_list: list[Sender] = []
        self.tx_gens: list[TxGen] = []
        self.rx_gens: list[RxGen] = []
        self.workers: list[Worker] = []
        self.threads: list[Any] = []
        self.thread_workers: list[Worker] = []
        self._next_sid = 1
        self._next_gen = 1
        # Phase and progress, read by the watchdog thread.
        self.phase = "setting up"
        self.progress = 0
        self.started = time.monotonic()
        self.soak_ended: float | None = None
        self.stopping = False
        self.rx_stop = False
        self.errors_stop = False
        self.finished = False
        # Live counters (under the lock, or written by one greenlet).
        self.delivered = 0
        self.echo_delivered = 0
        self.returned = 0
        self.echo_accepted = 0
        self.echo_not_accepted = 0
        self.echo_returned = 0
        self.echo_errors = 0
        self.fwd_errors = 0
        self.duplicates = 0
        self.order_violations = 0
        self.order_checked = 0
        self.checksum_errors = 0
        self.phantoms = 0
        self.misrouted = 0
        self.stalls = 0
        self.faults: Counter[str] = Counter()
        self.info: Counter[str] = Counter()
        self.problems: list[str] = []
        self.problem_count = 0
        self.result: dict[str, Any] | None = None

    # ------------------------------------------------------------ problems

    def problem(self, text: str) -> None:
        """Record an invariant that did not hold (the run will fail)."""
        self.problem_count += 1
        if len(self.problems) < _MAX_LISTED:
            self.problems.append(text)

    def _fault(self, kind: str) -> None:
        """Count one injected fault (any thread)."""
        with self.lock:
            self.faults[kind] += 1

    def _info(self, key: str, n: int) -> None:
        """Count something worth reporting that is not a fault (any thread)."""
        with self.lock:
            self.info[key] += n

    # ------------------------------------------------------------ pairs

    def _gen_id(self) -> int:
        gen = self._next_gen
        self._next_gen += 1
        return gen

    def _socket(self, kind: int) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, _HWM)
        sock.setsockopt(zmq.RCVHWM, _HWM)
        sock.setsockopt(zmq.SNDBUF, _KERNEL_BUFFER)
        sock.setsockopt(zmq.RCVBUF, _KERNEL_BUFFER)
        return sock

    def _bind(self, sock: zmq.Socket[Any], lane: Lane) -> None:
        """Bind ``sock`` on the lane's endpoint, retrying while the old one is let go."""
        if not lane.endpoint:
            if lane.spec.transport == "tcp":
                port = sock.bind_to_random_port("tcp://127.0.0.1")
                lane.endpoint = f"tcp://127.0.0.1:{port}"
            else:
                lane.endpoint = f"inproc://zmqchan-soak-{uuid.uuid4().hex}-{lane.index}"
                sock.bind(lane.endpoint)
            return
        deadline = time.monotonic() + 5.0
        while True:
            try:
                sock.bind(lane.endpoint)
                return
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    raise
            gevent.sleep(0.005)

    def _new_rx(self, lane: Lane) -> RxGen:
        echo = lane.spec.kind == _ECHO
        sock = self._socket(zmq.ROUTER if echo else zmq.PULL)
        try:
            if echo:
                sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self._bind(sock, lane)
            pair = ChannelPair(sock, lane.spec.peer_tx, lane.spec.peer_rx)
        except BaseException:
            sock.close(linger=0)
            raise
        rx = RxGen(self._gen_id(), lane.index, pair, with_port=not echo)
        self.rx_gens.append(rx)
        return rx

    def _new_tx(self, lane: Lane) -> TxGen:
        gen = self._gen_id()
        sock = self._socket(zmq.DEALER if lane.spec.kind == _ECHO else zmq.PUSH)
        try:
            sock.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_IVL_MS)
            if lane.spec.kind == _ECHO:
                # Named after its generation: reports can say which socket an echo was for.
                sock.setsockopt(zmq.ROUTING_ID, b"dealer-%d" % gen)
            sock.connect(lane.endpoint)
            pair = ChannelPair(sock, lane.spec.tx_size, lane.spec.rx_size)
        except BaseException:
            sock.close(linger=0)
            raise
        tx = TxGen(gen, lane.index, pair)
        self.tx_gens.append(tx)
        return tx

    def _close_tx(self, tx: TxGen, linger: float, fault: bool) -> int:
        """Close a sending pair; count what ``close()`` returns as returned."""
        tx.fault_closed = fault
        returned = tx.pair.close(linger=linger)
        tx.closed = True
        tx.returned += len(returned)
        self._drain_errors_tx(tx)
        with self.lock:
            for msg in returned:
                self._mark_returned(msg, tx)
        return len(returned)

    def _close_rx(self, rx: RxGen, linger: float, fault: bool) -> int:
        rx.fault_closed = fault
        returned = rx.pair.close(linger=linger)
        rx.closed = True
        rx.returned += len(returned)
        self._drain_errors_rx(rx)
        with self.lock:
            for msg in returned:
                self._mark_echo(msg, _ERET, "returned by close()")
                self.echo_returned += 1
        return len(returned)

    # ------------------------------------------------------------ messages

    def _message(self, sid: int, gen: int, seq: int) -> list[Frame]:
        header = _HEADER.pack(sid, gen, seq)
        payload = self.payloads[(sid + seq) % _POOL]
        return [header, payload, _digest(header, payload)]

    def _parse(self, frames: list[Any], where: str) -> tuple[Sender, int, int] | None:
        """Check ``[header, payload, checksum]``; the sender, its pair's generation and seq.

        Called under the lock.
        """
        if len(frames) != 3:
            self.checksum_errors += 1
            self.problem(f"{where}: message of {len(frames)} frame(s), expected 3")
            return None
        header, payload, digest = (bytes(f) for f in frames)
        if len(header) != _HEADER.size or _digest(header, payload) != digest:
            self.checksum_errors += 1
            self.problem(f"{where}: checksum mismatch (frames damaged or mixed up)")
            return None
        sid, gen, seq = _HEADER.unpack(header)
        sender = self.senders.get(sid)
        if sender is None or seq >= len(sender.outcome):
            self.phantoms += 1
            self.problem(f"{where}: sender {sid} never attempted message {seq}")
            return None
        return sender, gen, seq

    def _mark_returned(self, msg: list[Any], tx: TxGen) -> None:
        parsed = self._parse(msg, f"returned by close() of pair {tx.gen}")
        if parsed is None:
            return
        sender, _gen, seq = parsed
        flags = sender.fwd[seq]
        if flags & (_RET | _ERR):
            self.duplicates += 1
            self.problem(f"sender {sender.sid} message {seq} returned twice")
        sender.fwd[seq] = flags | _RET
        self.returned += 1

    def _mark_echo(self, msg: list[Any], bit: int, what: str) -> None:
        """An echo ``[identity, header, payload, checksum, gen]`` came back unsent."""
        parsed = self._parse(msg[1:4], f"echo {what}")
        if parsed is None:
            return
        sender, _gen, seq = parsed
        flags = sender.echo[seq]
        if flags & (_ERET | _EERR):
            self.duplicates += 1
            self.problem(f"echo of sender {sender.sid} message {seq} {what} twice")
        sender.echo[seq] = flags | bit

    def _deliver(self, frames: list[Any], rx: RxGen, worker: Worker) -> tuple[Sender, int] | None:
        """A message taken from a receiving pair; the sender and seq if it checked out."""
        with self.lock:
            self.progress += 1
            rx.delivered += 1
            body = frames[1:] if self.lanes[rx.lane].spec.kind == _ECHO else frames
            parsed = self._parse(body, f"lane {rx.lane} pair {rx.gen} ({worker.name})")
            if parsed is None:
                return None
            sender, gen, seq = parsed
            if sender.lane != rx.lane:
                self.misrouted += 1
                self.problem(f"sender {sender.sid} (lane {sender.lane}) arrived on lane {rx.lane}")
                return None
            flags = sender.fwd[seq]
            if flags & _DLV:
                self.duplicates += 1
                self.problem(f"sender {sender.sid} message {seq} delivered twice")
                return None
            sender.fwd[seq] = flags | _DLV
            self.delivered += 1
            if not rx.seen:
                rx.seen = True
                event = rx.loss_event
                if event is not None:
                    lane = self.lanes[rx.lane]
                    event.high = {s.sid: s.attempts for s in lane.senders}
                    rx.loss_event = None
            key2 = (sender.sid, gen)
            if seq > self.max_dlv.get(key2, -1):
                self.max_dlv[key2] = seq
            if worker.ordered:
                key = (sender.sid, gen) if worker.across_pairs else (sender.sid, gen, rx.gen)
                self.order_checked += 1
                last = worker.last.get(key, -1)
                if seq <= last:
                    self.order_violations += 1
                    self.problem(
                        f"{worker.name}: sender {sender.sid} pair {gen}: message {seq} after {last}"
                    )
                worker.last[key] = seq
            return sender, seq

    def _deliver_echo(self, frames: list[Any], tx: TxGen, worker: Worker) -> None:
        """An echo taken from a DEALER pair."""
        with self.lock:
            self.progress += 1
            tx.echo_delivered += 1
            where = f"lane {tx.lane} echo on pair {tx.gen} ({worker.name})"
            if len(frames) != 4 or len(frames[3]) != _GEN.size:
                self.checksum_errors += 1
                self.problem(f"{where}: malformed echo of {len(frames)} frame(s)")
                return
            parsed = self._parse(frames[:3], where)
            if parsed is None:
                return
            sender, gen, seq = parsed
            if gen != tx.gen:
                self.misrouted += 1
                self.problem(f"{where}: echo of a message sent through pair {gen}")
                return
            flags = sender.echo[seq]
            if flags & _EDLV:
                self.duplicates += 1
                self.problem(f"{where}: echo of sender {sender.sid} message {seq} twice")
                return
            if not sender.fwd[seq] & _DLV:
                self.phantoms += 1
                self.problem(f"{where}: echo of a message the echo peer never received")
            sender.echo[seq] = flags | _EDLV
            self.echo_delivered += 1
            (rgen,) = _GEN.unpack(bytes(frames[3]))
            key = (sender.sid, gen, rgen)
            if seq > self.max_echo.get(key, -1):
                self.max_echo[key] = seq
            if worker.ordered:
                self.order_checked += 1
                last = worker.last.get(key, -1)
                if seq <= last:
                    self.order_violations += 1
                    self.problem(
                        f"{worker.name}: echoes of sender {sender.sid} pair {gen} "
                        f"via {rgen}: {seq} after {last}"
                    )
                worker.last[key] = seq

    # ------------------------------------------------------------ errors queues

    def _drain_errors_tx(self, tx: TxGen) -> None:
        queue = tx.pair.errors
        while not queue.empty():
            err: SendError = queue.get_nowait()
            with self.lock:
                self.fwd_errors += 1
                parsed = self._parse(err.message, f"SendError on pair {tx.gen}")
                if parsed is not None:
                    sender, _gen, seq = parsed
                    sender.fwd[seq] |= _ERR

    def _drain_errors_rx(self, rx: RxGen) -> None:
        queue = rx.pair.errors
        while not queue.empty():
            err: SendError = queue.get_nowait()
            with self.lock:
                self.echo_errors += 1
                self._mark_echo(err.message, _EERR, "reported on errors")

    def _errors_drainer(self) -> None:
        """Keep the pairs' ``errors`` queues short, so none is dropped."""
        while not self.errors_stop:
            for rx in self.rx_gens:
                if not rx.closed:
                    self._drain_errors_rx(rx)
            for tx in self.tx_gens:
                if not tx.closed:
                    self._drain_errors_tx(tx)
            gevent.sleep(0.02)

    # ------------------------------------------------------------ greenlet workers

    def _spawn_sender(self, lane: Lane) -> Sender:
        sender = Sender(self._next_sid, lane.index, "greenlet")
        self._next_sid += 1
        with self.lock:
            self.senders[sender.sid] = sender
        self.sender_list.append(sender)
        lane.senders.append(sender)
        rng = random.Random(self.rng.getrandbits(64))
        sender.greenlet = gevent.spawn(self._green_sender, sender, lane, rng)
        return sender

    def _green_sender(self, sender: Sender, lane: Lane, rng: random.Random) -> None:
        seq = -1
        try:
            while not self.stopping:
                tx = lane.tx
                seq = sender.begin(tx.gen)
                msg = self._message(sender.sid, tx.gen, seq)
                tiny = rng.random() < _TINY_SEND_P
                timeout = rng.uniform(0.0, _TINY) if tiny else _SEND_DEADLINE
                sender.in_send = True
                try:
                    tx.pair.send(msg, timeout=timeout)
                except TimeoutError:
                    sender.outcome[seq] = _NACC
                    sender.not_accepted += 1
                    self._send_timed_out(tiny, f"greenlet sender {sender.sid}")
                except ChannelBroken as exc:
                    sender.outcome[seq] = _NACC
                    sender.not_accepted += 1
                    self.problem(f"greenlet sender {sender.sid}: {exc!r}")
                    return
                except ChannelClosed:
                    sender.outcome[seq] = _NACC  # recycled under us: not accepted
                    sender.not_accepted += 1
                    self._info("send_closed", 1)
                else:
                    sender.outcome[seq] = _ACC
                    sender.accepted += 1
                finally:
                    sender.in_send = False
        except gevent.GreenletExit:
            if seq >= 0 and sender.outcome[seq] == _PENDING:
                sender.outcome[seq] = _MAYBE  # killed inside send: accepted or not
                sender.maybe += 1
            raise

    def _send_timed_out(self, tiny: bool, who: str) -> None:
        if tiny:
            self._fault("send_timeout")
        else:
            with self.lock:
                self.stalls += 1
            self.problem(f"{who}: send stalled for {_SEND_DEADLINE} s")

    def _spawn_receiver(self, lane: Lane, number: int) -> Worker:
        ordered = lane.spec.kind != _PULL_KILL
        worker = Worker(f"receiver {lane.index}.{number}", ordered)
        self.workers.append(worker)
        lane.receivers.append(worker)
        rng = random.Random(self.rng.getrandbits(64))
        if lane.spec.kind == _ECHO:
            worker.greenlet = gevent.spawn(self._green_echo_receiver, lane, worker, rng)
        else:
            worker.greenlet = gevent.spawn(self._green_receiver, lane, worker, rng)
        return worker

    def _recv_timeout(self, rng: random.Random) -> tuple[bool, float]:
        tiny = rng.random() < _TINY_RECV_P
        return tiny, (rng.uniform(0.0, _TINY) if tiny else _RECV_WAIT)

    def _pause(self, lane: Lane) -> bool:
        """Sleep out a stall injected on the lane; whether there was one."""
        wait = lane.paused_until - time.monotonic()
        if wait > 0:
            gevent.sleep(wait)
            return True
        return False

    def _green_receiver(self, lane: Lane, worker: Worker, rng: random.Random) -> None:
        """Receive on a PULL lane until told to stop."""

        def deliver(frames: list[Any], end: RxGen | TxGen) -> None:
            assert isinstance(end, RxGen)
            self._deliver(frames, end, worker)

        self._green_receive_loop(lane, worker, rng, lambda: lane.rx, deliver)

    def _green_echo_receiver(self, lane: Lane, worker: Worker, rng: random.Random) -> None:
        """Receive echoes on an echo lane's DEALER pair until told to stop."""

        def deliver(frames: list[Any], end: RxGen | TxGen) -> None:
            assert isinstance(end, TxGen)
            self._deliver_echo(frames, end, worker)

        self._green_receive_loop(lane, worker, rng, lambda: lane.tx, deliver)

    def _green_receive_loop(
        self,
        lane: Lane,
        worker: Worker,
        rng: random.Random,
        current: Callable[[], RxGen | TxGen],
        deliver: Callable[[list[Any], RxGen | TxGen], None],
    ) -> None:
        """Receive from the lane's current ``current()`` pair until told to stop;
        a pair closed under the receiver is waited out until it is replaced."""
        try:
            while True:
                got = self._receive_once(lane, worker, rng, current)
                if got is False:
                    return
                if got is not True:
                    deliver(*got)
        finally:
            worker.done = True

    def _receive_once(
        self,
        lane: Lane,
        worker: Worker,
        rng: random.Random,
        current: Callable[[], RxGen | TxGen],
    ) -> tuple[list[Any], RxGen | TxGen] | bool:
        """One receive from the lane's current pair: ``(frames, pair end)``;
        ``True`` to try again (a stall, a timeout, a pair being replaced);
        ``False`` to stop (told to, or the pair broke)."""
        if self._pause(lane):
            return True
        end = current()
        tiny, timeout = self._recv_timeout(rng)
        worker.in_recv = True
        try:
            frames = end.pair.recv(timeout=timeout)
        except TimeoutError:
            if tiny:
                self._fault("recv_timeout")
                return True
            return not self.rx_stop
        except ChannelBroken as exc:
            self.problem(f"{worker.name}: {exc!r}")
            return False
        except ChannelClosed:
            if end is current():
                if self.rx_stop:
                    return False
                gevent.sleep(0.001)
            return True
        finally:
            worker.in_recv = False
        return frames, end

    def _echo_consumer(self, lane: Lane, worker: Worker, rng: random.Random) -> None:
        """The ROUTER's only reader: check each message and send it back.

        An echo that cannot be accepted within ``_ECHO_WAIT`` is refused (not
        accepted, and so never owed); for ``_ECHO_WAIT`` after that, echoes are
        only offered (``send_nowait``), so the reader keeps reading.
        """
        refuse_until = 0.0
        try:
            while True:
                received = self._receive_once(lane, worker, rng, lambda: lane.rx)
                if received is False:
                    return
                if received is True:
                    continue
                frames, rx = received
                assert isinstance(rx, RxGen)
                got = self._deliver(frames, rx, worker)
                if got is None:
                    continue
                sender, seq = got
                if not sender.rgens or sender.rgens[-1][1] != rx.gen:
                    sender.rgens.append((seq, rx.gen))
                bit = _ENACC
                echo = [*frames, rx.gen_frame]
                try:
                    if time.monotonic() < refuse_until:
                        rx.pair.send_nowait(echo)
                    else:
                        rx.pair.send(echo, timeout=_ECHO_WAIT)
                except WouldBlock:
                    self._info("echoes_refused", 1)
                except TimeoutError:
                    # Never block the only reader for long: see _ECHO_WAIT.
                    refuse_until = time.monotonic() + _ECHO_WAIT
                    self._info("echoes_refused", 1)
                except ChannelBroken as exc:
                    self.problem(f"{worker.name}: echo: {exc!r}")
                    return
                except ChannelClosed:
                    pass  # restarted under us: the echo was not accepted
                else:
                    bit = _EACC
                with self.lock:
                    sender.echo[seq] |= bit
                    if bit == _EACC:
                        rx.echo_accepted += 1
                        self.echo_accepted += 1
                    else:
                        self.echo_not_accepted += 1
        finally:
            worker.done = True

    # ------------------------------------------------------------ native threads

    def _start_thread(self, index: int) -> None:
        lane = self.lanes[_THREAD_LANES[index % len(_THREAD_LANES)]]
        sender = Sender(self._next_sid, lane.index, "thread")
        self._next_sid += 1
        with self.lock:
            self.senders[sender.sid] = sender
        self.sender_list.append(sender)
        lane.senders.append(sender)
        worker = Worker(f"thread {index}", ordered=lane.spec.kind != _PULL_KILL)
        self.thread_workers.append(worker)
        rng = random.Random(self.rng.getrandbits(64))
        thread = _Thread(
            target=self._thread_main,
            args=(lane, sender, worker, rng),
            name=f"soak-thread-{index}",
            daemon=True,
        )
        self.threads.append(thread)
        thread.start()

    def _thread_main(self, lane: Lane, sender: Sender, worker: Worker, rng: random.Random) -> None:
        """A native thread: a batch of sends through its lane's ThreadPort, then receives."""
        try:
            while not self.stopping:
                self._thread_send_batch(lane, sender, rng)
                self._thread_recv_batch(lane, worker, rng)
        except BaseException as exc:
            self.problem(f"{worker.name} crashed: {exc!r}")
        finally:
            worker.done = True

    def _thread_send_batch(self, lane: Lane, sender: Sender, rng: random.Random) -> None:
        for _ in range(_THREAD_BATCH):
            if self.stopping:
                return
            tx = lane.tx
            seq = sender.begin(tx.gen)
            msg = self._message(sender.sid, tx.gen, seq)
            tiny = rng.random() < _TINY_SEND_P
            timeout = rng.uniform(0.0, _TINY) if tiny else _SEND_DEADLINE
            try:
                tx.port.send(msg, timeout=timeout)
            except TimeoutError:
                sender.outcome[seq] = _NACC
                sender.not_accepted += 1
                self._send_timed_out(tiny, f"thread sender {sender.sid}")
            except ChannelBroken as exc:
                sender.outcome[seq] = _NACC
                sender.not_accepted += 1
                raise RuntimeError(f"send: {exc!r}") from exc
            except ChannelClosed:
                sender.outcome[seq] = _NACC
                sender.not_accepted += 1
                self._info("send_closed", 1)
                time.sleep(0.001)
            else:
                sender.outcome[seq] = _ACC
                sender.accepted += 1

    def _thread_recv_batch(self, lane: Lane, worker: Worker, rng: random.Random) -> None:
        echo = lane.spec.kind == _ECHO
        for _ in range(_THREAD_BATCH):
            wait = lane.paused_until - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, _STALL[1]))
                return
            tx = lane.tx
            rx = lane.rx
            port = tx.port if echo else rx.port
            assert port is not None
            tiny = rng.random() < _TINY_RECV_P
            timeout = rng.uniform(0.0, _TINY) if tiny else _THREAD_RECV_WAIT
            try:
                frames = port.recv(timeout=timeout)
            except TimeoutError:
                if tiny:
                    self._fault("recv_timeout")
                    continue
                return  # nothing there now: back to sending
            except ChannelBroken as exc:
                raise RuntimeError(f"recv: {exc!r}") from exc
            except ChannelClosed:
                time.sleep(0.001)  # replaced under us: drained, the lane has a new pair
                continue
            if echo:
                self._deliver_echo(frames, tx, worker)
            else:
                self._deliver(frames, rx, worker)

    # ------------------------------------------------------------ faults

    def _injector(self, rng: random.Random) -> None:
        kinds = list(_FAULT_WEIGHTS)
        weights = [_FAULT_WEIGHTS[k] for k in kinds]
        actions: dict[str, Callable[[random.Random], None]] = {
            "sender_kill": self._fault_sender_kill,
            "receiver_kill": self._fault_receiver_kill,
            "receiver_stall": self._fault_receiver_stall,
            "sender_recycle": self._fault_sender_recycle,
            "peer_restart": self._fault_peer_restart,
        }
        while not self.stopping:
            gevent.sleep(rng.uniform(*_FAULT_GAP))
            if self.stopping:
                return
            kind = rng.choices(kinds, weights)[0]
            try:
                actions[kind](rng)
            except Exception as exc:
                self.problem(f"fault {kind} could not be injected: {exc!r}")
                return

    def _fault_sender_kill(self, rng: random.Random) -> None:
        alive = [
            s
            for lane in self.lanes
            for s in lane.senders
            if s.greenlet is not None and not s.killed and not s.greenlet.dead
        ]
        if not alive:
            return
        sending = [s for s in alive if s.in_send]
        victim = rng.choice(sending or alive)
        victim.killed = True
        assert victim.greenlet is not None
        victim.greenlet.kill(block=False)
        self._fault("sender_kill")
        self._spawn_sender(self.lanes[victim.lane])

    def _fault_receiver_kill(self, rng: random.Random) -> None:
        candidates = [
            (lane, w)
            for lane in self.lanes
            if lane.spec.kind == _PULL_KILL
            for w in lane.receivers
            if w.greenlet is not None and not w.killed and not w.greenlet.dead and w.in_recv
        ]
        if not candidates:
            return
        lane, victim = rng.choice(candidates)
        victim.killed = True
        assert victim.greenlet is not None
        victim.greenlet.kill(block=False)
        self._fault("receiver_kill")
        self._spawn_receiver(lane, len(lane.receivers))

    def _fault_receiver_stall(self, rng: random.Random) -> None:
        lane = rng.choice(self.lanes)
        lane.paused_until = time.monotonic() + rng.uniform(*_STALL)
        self._fault("receiver_stall")

    def _loss_event(self, kind: str, lane: Lane, old_gen: int) -> LossEvent:
        with self.lock:
            event = LossEvent(kind, lane.index, old_gen, dict(self.max_dlv), dict(self.max_echo))
        lane.loss_events.append(event)
        return event

    def _fault_sender_recycle(self, rng: random.Random) -> None:
        lane = rng.choice(self.lanes)
        old = lane.tx
        lane.tx = self._new_tx(lane)  # new sends go to the new pair from now on
        event = self._loss_event("sender_recycle", lane, old.gen)
        event.new_gen = lane.tx.gen
        linger = rng.choice(_RECYCLE_LINGERS)
        returned = self._close_tx(old, linger, fault=True)
        self._fault("sender_recycle")
        self._info("sender_recycle_returned", returned)

    def _fault_peer_restart(self, rng: random.Random) -> None:
        lane = rng.choice(self.lanes)
        old = lane.rx
        event = self._loss_event("peer_restart", lane, old.gen)
        self._close_rx(old, 0.0, fault=True)
        new = self._new_rx(lane)
        event.new_gen = new.gen
        new.loss_event = event
        lane.rx = new
        if lane.spec.transport == "inproc":
            # inproc does not reconnect by itself: the sender connects again.
            lane.tx.pair.call(_reconnect, lane.endpoint)
        self._fault("peer_restart")

    # ------------------------------------------------------------ run

    def run(self) -> None:
        """Set up, soak, stop, drain, close, sweep; the accounting is left in ``self``."""
        cfg = self.config
        for lane in self.lanes:
            lane.rx = self._new_rx(lane)
            lane.tx = self._new_tx(lane)
        share = [cfg.greenlets // len(self.lanes)] * len(self.lanes)
        for i in range(cfg.greenlets % len(self.lanes)):
            share[i] += 1
        for lane, n in zip(self.lanes, share, strict=True):
            receivers = max(1, n // 4)
            senders = n - receivers
            if lane.spec.kind == _ECHO:
                senders -= 1
                consumer = Worker(f"consumer {lane.index}", ordered=True, across_pairs=True)
                rng = random.Random(self.rng.getrandbits(64))
                consumer.greenlet = gevent.spawn(self._echo_consumer, lane, consumer, rng)
                self.workers.append(consumer)
            for number in range(receivers):
                self._spawn_receiver(lane, number)
            for _ in range(senders):
                self._spawn_sender(lane)
        for index in range(cfg.threads):
            self._start_thread(index)
        drainer = gevent.spawn(self._errors_drainer)
        injector = gevent.spawn(self._injector, random.Random(self.rng.getrandbits(64)))
        self.phase = "soaking"
        self.started = time.monotonic()
        gevent.sleep(cfg.seconds)
        self.soak_ended = time.monotonic()

        self._set_phase("stopping senders")
        self.stopping = True
        injector.join(timeout=_JOIN_LIMIT)
        if not injector.dead:
            self.problem("the fault injector did not stop")
            injector.kill(block=False)
        greenlet_senders = [s.greenlet for s in self.senders.values() if s.greenlet is not None]
        gevent.joinall(greenlet_senders, timeout=_JOIN_LIMIT)
        stuck = [g for g in greenlet_senders if not g.dead]
        if stuck:
            self.problem(f"{len(stuck)} sender greenlet(s) did not stop")
            gevent.killall(stuck, block=False)
        self._wait(lambda: all(w.done for w in self.thread_workers), _JOIN_LIMIT)
        if not all(w.done for w in self.thread_workers):
            self.problem("native thread(s) did not stop")

        self._set_phase("draining")
        self._drain()
        self.rx_stop = True
        readers = [w.greenlet for w in self.workers if w.greenlet is not None]
        gevent.joinall(readers, timeout=_JOIN_LIMIT)
        stuck = [g for g in readers if not g.dead]
        if stuck:
            self.problem(f"{len(stuck)} receiver greenlet(s) did not stop")
            gevent.killall(stuck, block=False)

        self._set_phase("closing")
        for lane in self.lanes:
            returned = self._close_tx(lane.tx, _FINAL_LINGER, fault=False)
            self.progress += 1
            if returned:
                self.problem(f"lane {lane.index}: final close returned {returned} message(s)")
        for lane in self.lanes:
            self._close_rx(lane.rx, _FINAL_LINGER, fault=False)
            self.progress += 1
        self.errors_stop = True
        drainer.join(timeout=1.0)
        self._sweep()
        for thread in self.threads:
            thread.join(timeout=1.0)
        self._set_phase("accounting")

    def shut_down(self) -> None:
        """Stop every worker and close every pair (linger 0): after a failure, so that
        ``Context.term()`` cannot hang on a socket left open. Idempotent."""
        self.stopping = self.rx_stop = self.errors_stop = True
        gens: list[TxGen | RxGen] = [*self.tx_gens, *self.rx_gens]
        for gen in gens:
            try:
                gen.pair.close(linger=0)
            except Exception as exc:
                self.problem(f"closing pair {gen.gen} at shut-down: {exc!r}")

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self.progress += 1
        print(f"soak: {phase}", file=self.err, flush=True)

    def _wait(self, condition: Callable[[], bool], limit: float) -> None:
        deadline = time.monotonic() + limit
        while not condition() and time.monotonic() < deadline:
            gevent.sleep(0.05)

    def _open_pairs(self) -> Iterable[ChannelPair]:
        for lane in self.lanes:
            yield lane.tx.pair
            yield lane.rx.pair

    def _drain(self) -> None:
        """Wait until nothing moved for a while and no pair holds anything."""
        deadline = time.monotonic() + _DRAIN_LIMIT
        last = self.progress
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            gevent.sleep(0.1)
            now = time.monotonic()
            if self.progress != last:
                last = self.progress
                quiet_since = now
                continue
            pending = sum(
                s["tx_pending"] + s["rx_pending"] for s in (p.stats() for p in self._open_pairs())
            )
            if not pending and now - quiet_since >= _DRAIN_QUIET:
                return
        self.problem(f"the pairs did not drain within {_DRAIN_LIMIT} s")

    def _sweep(self) -> None:
        """Take what closed pairs still buffer (e.g. given back by a killed receiver)."""
        sweeper = Worker("sweeper", ordered=False)
        for rx in self.rx_gens:
            echo = self.lanes[rx.lane].spec.kind == _ECHO
            for frames in _leftovers(rx.pair):
                self._info("swept", 1)
                got = self._deliver(frames, rx, sweeper)
                if got is not None and echo:
                    sender, seq = got
                    with self.lock:
                        sender.echo[seq] |= _ENACC  # never echoed: its pair was closed
                        self.echo_not_accepted += 1
        for tx in self.tx_gens:
            if self.lanes[tx.lane].spec.kind == _ECHO:
                for frames in _leftovers(tx.pair):
                    self._info("swept", 1)
                    self._deliver_echo(frames, tx, sweeper)

    # ------------------------------------------------------------ accounting

    def account(self) -> dict[str, Any]:
        """Check every invariant and return the figures (also kept as ``self.result``)."""
        for tx in self.tx_gens:
            stats = tx.pair.stats()
            tx.sent, tx.errors = stats["sent"], stats["errors"]
            tx.errors_dropped, tx.received = stats["errors_dropped"], stats["received"]
        for rx in self.rx_gens:
            stats = rx.pair.stats()
            rx.sent, rx.errors = stats["sent"], stats["errors"]
            rx.errors_dropped, rx.received = stats["errors_dropped"], stats["received"]

        totals: Counter[str] = Counter()
        lost_by_cause: Counter[str] = Counter()
        echo_lost_by_cause: Counter[str] = Counter()
        per_tx: dict[int, Counter[str]] = {tx.gen: Counter() for tx in self.tx_gens}
        for sender in self.senders.values():
            n = sender.attempts
            outcome = bytes(sender.outcome[:n])
            fwd = bytes(sender.fwd[:n])
            echo = bytes(sender.echo[:n])
            combined = _or_bytes(outcome, fwd)
            lane = self.lanes[sender.lane]
            totals["attempted"] += n
            for gen, start, end in sender.ranges():
                counts = per_tx[gen]
                part = combined[start:end]
                hist = Counter(part)
                counts["acc"] += sum(c for v, c in hist.items() if v & 3 == _ACC)
                counts["maybe"] += sum(c for v, c in hist.items() if v & 3 == _MAYBE)
                counts["dlv"] += sum(c for v, c in hist.items() if v & _DLV)
            hist = Counter(combined)
            for value, count in hist.items():
                self._classify(value, count, sender, totals)
            for match in re.finditer(b"\x01", combined):  # accepted, and nothing more
                seq = match.start()
                cause = self._loss_cause(sender, seq)
                if cause is None:
                    self.problem(
                        f"LOST: sender {sender.sid} (lane {sender.lane}) message {seq}: "
                        "accepted, never delivered nor returned"
                    )
                    totals["lost"] += 1
                else:
                    lost_by_cause[cause] += 1
                    lost_gen = _gen_at(sender.gens, seq)
                    assert lost_gen is not None
                    per_tx[lost_gen]["libzmq_lost"] += 1
            if lane.spec.kind == _ECHO:
                self._account_echo(sender, fwd, echo, totals, echo_lost_by_cause)
        self._check_counters(per_tx, totals)
        return self._figures(totals, lost_by_cause, echo_lost_by_cause)

    def _classify(self, value: int, count: int, sender: Sender, totals: Counter[str]) -> None:
        """Tally ``count`` attempts whose outcome | fate byte is ``value``."""
        outcome, fate = value & 3, value & ~3
        if fate & _DLV:
            totals["delivered"] += count
        if fate & _RET:
            totals["returned"] += count
        if fate & _ERR:
            totals["reported"] += count
        if bin(fate).count("1") > 1:
            self.duplicates += count
            self.problem(f"sender {sender.sid}: {count} message(s) with two fates ({fate:#x})")
        if outcome == _PENDING:
            self.problem(f"sender {sender.sid}: {count} send(s) never finished")
        elif outcome == _ACC:
            totals["accepted"] += count
        elif outcome == _NACC:
            totals["not_accepted"] += count
            if fate:
                self.phantoms += count
                self.problem(
                    f"sender {sender.sid}: {count} message(s) not accepted (timeout or "
                    f"closed) yet {'delivered' if fate & _DLV else 'returned/reported'}"
                )
        else:
            totals["maybe"] += count
            if fate:
                totals["maybe_accepted"] += count
                totals["accepted"] += count
            else:
                totals["maybe_undelivered"] += count

    def _loss_cause(self, sender: Sender, seq: int) -> str | None:
        """Why libzmq may have dropped this accepted message; ``None``: it may not have."""
        gen = _gen_at(sender.gens, seq)
        assert gen is not None
        for event in self.lanes[sender.lane].loss_events:
            if event.covers(sender.sid, gen, seq):
                event.lost += 1
                return event.kind
        return None

    def _account_echo(
        self,
        sender: Sender,
        fwd: bytes,
        echo: bytes,
        totals: Counter[str],
        lost_by_cause: Counter[str],
    ) -> None:
        for value, count in Counter(echo).items():
            if value & _EDLV and not value & _EACC:
                self.phantoms += count
                self.problem(f"sender {sender.sid}: {count} echo(es) delivered, never accepted")
            if bin(value & (_ERET | _EERR | _EDLV)).count("1") > 1:
                self.duplicates += count
                self.problem(f"sender {sender.sid}: {count} echo(es) with two fates")
            if value & _EACC and value & _ENACC:
                self.problem(f"sender {sender.sid}: {count} echo(es) both accepted and not")
        # Delivered to the echo peer, yet neither echoed nor refused: at C speed.
        delivered = int.from_bytes(fwd.translate(_DELIVERED), "little")
        attempted = int.from_bytes(echo.translate(_ECHO_ATTEMPTED), "little")
        unechoed = (delivered & ~attempted).to_bytes(len(fwd), "little")
        for match in re.finditer(b"\x01", unechoed):
            self.problem(f"sender {sender.sid} message {match.start()}: delivered, never echoed")
        for match in re.finditer(bytes([_EACC]), echo):
            seq = match.start()
            rgen = _gen_at(sender.rgens, seq)
            tgen = _gen_at(sender.gens, seq)
            assert rgen is not None and tgen is not None
            for event in self.lanes[sender.lane].loss_events:
                if event.covers_echo(sender.sid, tgen, rgen, seq):
                    event.echo_lost += 1
                    lost_by_cause[event.kind] += 1
                    break
            else:
                totals["echo_lost"] += 1
                self.problem(
                    f"LOST: echo of sender {sender.sid} message {seq}: accepted by the "
                    "ROUTER pair, never delivered, returned nor reported"
                )

    def _check_counters(self, per_tx: dict[int, Counter[str]], totals: Counter[str]) -> None:
        """The pairs' own counters against the tally."""
        for tx in self.tx_gens:
            counts = per_tx[tx.gen]
            out = tx.sent + tx.returned + tx.errors
            if not counts["acc"] <= out <= counts["acc"] + counts["maybe"]:
                totals["counter_mismatches"] += 1
                self.problem(
                    f"sending pair {tx.gen}: handed {tx.sent} + returned {tx.returned} + "
                    f"reported {tx.errors} = {out}, but {counts['acc']} accepted and "
                    f"{counts['maybe']} maybe"
                )
            if counts["dlv"] > tx.sent:
                totals["counter_mismatches"] += 1
                self.problem(f"sending pair {tx.gen}: {counts['dlv']} delivered > {tx.sent} sent")
            if counts["libzmq_lost"] > tx.sent - counts["dlv"]:
                totals["counter_mismatches"] += 1
                self.problem(
                    f"sending pair {tx.gen}: {counts['libzmq_lost']} lost in libzmq but only "
                    f"{tx.sent - counts['dlv']} handed to the socket and not delivered"
                )
            if tx.errors_dropped:
                self.problem(f"sending pair {tx.gen}: {tx.errors_dropped} SendError(s) dropped")
            if self.lanes[tx.lane].spec.kind == _ECHO and tx.received != tx.echo_delivered:
                totals["counter_mismatches"] += 1
                self.problem(
                    f"DEALER pair {tx.gen}: read {tx.received} echoes, "
                    f"receivers got {tx.echo_delivered}"
                )
        for rx in self.rx_gens:
            if rx.received != rx.delivered:
                totals["counter_mismatches"] += 1
                self.problem(
                    f"receiving pair {rx.gen}: read {rx.received}, receivers got {rx.delivered}"
                )
            if self.lanes[rx.lane].spec.kind == _ECHO:
                out = rx.sent + rx.returned + rx.errors
                if out != rx.echo_accepted:
                    totals["counter_mismatches"] += 1
                    self.problem(
                        f"ROUTER pair {rx.gen}: handed {rx.sent} + returned {rx.returned} + "
                        f"reported {rx.errors} != {rx.echo_accepted} echoes accepted"
                    )
                if rx.errors_dropped:
                    self.problem(f"ROUTER pair {rx.gen}: {rx.errors_dropped} SendError(s) dropped")

    def _figures(
        self,
        totals: Counter[str],
        lost_by_cause: Counter[str],
        echo_lost_by_cause: Counter[str],
    ) -> dict[str, Any]:
        end = time.monotonic()
        soak_end = self.soak_ended or end
        soak_seconds = soak_end - self.started
        over_capacity = []
        for lane in self.lanes:
            capacity = _LOSS_CAPACITY[lane.spec.transport]
            for e in lane.loss_events:
                if max(e.lost, e.echo_lost) > capacity:
                    over_capacity.append(e)
                    self.problem(
                        f"{e.kind} of pair {e.old_gen} (lane {lane.index}): {e.lost} messages "
                        f"and {e.echo_lost} echoes lost, more than libzmq can hold ({capacity})"
                    )
        events = [
            {
                "kind": e.kind,
                "lane": e.lane,
                "closed_pair": e.old_gen,
                "new_pair": e.new_gen,
                "lost": e.lost,
                "echoes_lost": e.echo_lost,
            }
            for lane in self.lanes
            for e in lane.loss_events
        ]
        faults = dict(sorted(self.faults.items()))
        for kind in _FAULT_WEIGHTS:
            faults.setdefault(kind, 0)
        faults.setdefault("send_timeout", 0)
        faults.setdefault("recv_timeout", 0)
        faults["sender_killed_in_send"] = totals["maybe"]
        lost_in_libzmq = sum(lost_by_cause.values())
        echo_lost_in_libzmq = sum(echo_lost_by_cause.values())
        invariants = {
            "no_loss": totals["lost"] == 0 and totals["echo_lost"] == 0,
            "no_duplicates": self.duplicates == 0,
            "in_order": self.order_violations == 0,
            "checksums": self.checksum_errors == 0,
            "nothing_unaccepted_delivered": self.phantoms == 0,
            "nothing_misrouted": self.misrouted == 0,
            "counters_agree": totals["counter_mismatches"] == 0,
            "no_stalls": self.stalls == 0,
            "libzmq_losses_within_queue_capacity": not over_capacity,
            "no_other_problems": self.problem_count == 0,
        }
        return {
            "tool": "zmqchan_green soak",
            "version": __version__,
            "pyzmq": zmq.pyzmq_version(),
            "libzmq": zmq.zmq_version(),
            "gevent": gevent.__version__,
            "seed": self.config.seed,
            "config": {
                "seconds": self.config.seconds,
                "greenlets": self.config.greenlets,
                "threads": self.config.threads,
                "lanes": [lane.spec.describe() for lane in self.lanes],
                "hwm": _HWM,
            },
            "duration": {
                "soak_seconds": round(soak_seconds, 3),
                "total_seconds": round(end - self.started, 3),
            },
            "messages": {
                "sent": totals["attempted"],
                "accepted": totals["accepted"],
                "not_accepted": totals["not_accepted"],
                "maybe": totals["maybe"],
                "maybe_accepted": totals["maybe_accepted"],
                "delivered": totals["delivered"],
                "returned": totals["returned"],
                "reported": totals["reported"],
                "delivered_per_second": round(totals["delivered"] / soak_seconds)
                if soak_seconds > 0
                else 0,
                "order_checked": self.order_checked,
            },
            "echoes": {
                "accepted": self.echo_accepted,
                "not_accepted": self.echo_not_accepted,
                "delivered": self.echo_delivered,
                "returned": self.echo_returned,
                "reported": self.echo_errors,
            },
            "faults": faults,
            "faults_total": sum(
                v for k, v in faults.items() if k not in ("sender_killed_in_send",)
            ),
            "losses": {
                "lost": totals["lost"],
                "echo_lost": totals["echo_lost"],
                "lost_in_libzmq": lost_in_libzmq,
                "lost_in_libzmq_by_cause": dict(sorted(lost_by_cause.items())),
                "echo_lost_in_libzmq": echo_lost_in_libzmq,
                "echo_lost_in_libzmq_by_cause": dict(sorted(echo_lost_by_cause.items())),
                "maybe_undelivered": totals["maybe_undelivered"],
                "libzmq_loss_capacity": _LOSS_CAPACITY,
                "libzmq_loss_events": events,
            },
            "duplicates": self.duplicates,
            "order_violations": self.order_violations,
            "checksum_errors": self.checksum_errors,
            "phantoms": self.phantoms,
            "misrouted": self.misrouted,
            "stalls": self.stalls,
            "counter_mismatches": totals["counter_mismatches"],
            "pairs_created": {"sending": len(self.tx_gens), "receiving": len(self.rx_gens)},
            "info": dict(sorted(self.info.items())),
            "peak_rss_kib": _proc_status("VmHWM"),
            "bookkeeping_kib": self._bookkeeping() // 1024,
            "invariants": invariants,
            "problems": self.problems,
            "problem_count": self.problem_count,
            "ok": all(invariants.values()),
        }

    def _bookkeeping(self) -> int:
        """Roughly how many bytes the soak's own records take (part of the peak RSS)."""
        total = 0
        for s in self.sender_list:
            total += sys.getsizeof(s.outcome) + sys.getsizeof(s.fwd) + sys.getsizeof(s.echo)
        masters: list[dict[Any, int]] = [self.max_dlv, self.max_echo]
        masters += [w.last for w in [*self.workers, *self.thread_workers]]
        for d in masters:
            # The table, plus each entry's own tuple key and int (about 100 bytes).
            total += sys.getsizeof(d) + 100 * len(d)
        for lane in self.lanes:
            for e in lane.loss_events:
                # Copies share their keys and values with the masters: tables only.
                total += sys.getsizeof(e.low) + sys.getsizeof(e.echo_low)
                total += sys.getsizeof(e.high) if e.high is not None else 0
        return total

    # ------------------------------------------------------------ live view

    def snapshot(self) -> dict[str, Any]:
        """Rough live figures for progress lines and an aborted run (any thread)."""
        senders = self.sender_list[:]
        return {
            "phase": self.phase,
            "elapsed": round(time.monotonic() - self.started, 1),
            "sent": sum(s.attempts for s in senders),
            "accepted": sum(s.accepted for s in senders),
            "delivered": self.delivered,
            "echoes_delivered": self.echo_delivered,
            "faults": sum(self.faults.values()),
            "problems": self.problem_count,
            "rss_kib": _proc_status("VmRSS"),
        }


def _reconnect(sock: zmq.Socket[Any], endpoint: str) -> None:
    """Inside the pump: drop a dead inproc connection and connect again."""
    try:
        sock.disconnect(endpoint)
    except zmq.ZMQError:
        pass  # already gone with its peer
    sock.connect(endpoint)


def _leftovers(pair: ChannelPair) -> Iterable[list[Any]]:
    """What a closed pair still buffers."""
    while True:
        try:
            yield pair.recv_nowait()
        except (WouldBlock, ChannelClosed):
            return


# ------------------------------------------------------------------ watchdog


class _Watchdog:
    """An OS thread: progress lines, and an abort if nothing moves (never hang)."""

    def __init__(self, soak: Soak, interval: float, json_path: str | None) -> None:
        self.soak = soak
        self.interval = interval
        self.json_path = json_path
        self.stop = False
        self.thread: Any = _Thread(target=self._run, name="soak-watchdog", daemon=True)

    def _run(self) -> None:
        soak = self.soak
        last: tuple[int, str] = (-1, "")
        last_change = time.monotonic()
        next_report = time.monotonic() + self.interval
        hard_deadline = time.monotonic() + soak.config.seconds + _OVERTIME
        while not self.stop:
            time.sleep(0.25)
            if self.stop:
                return
            now = time.monotonic()
            state = (soak.progress, soak.phase)
            if state != last:
                last, last_change = state, now
            elif now - last_change > _WATCHDOG:
                self._abort(f"no progress for {_WATCHDOG:.0f} s in phase {soak.phase!r}")
            if now > hard_deadline:
                self._abort(f"the run overshot its time by {_OVERTIME:.0f} s")
            if now >= next_report and soak.phase == "soaking":
                next_report = now + self.interval
                self._report()

    def _report(self) -> None:
        snap = self.soak.snapshot()
        elapsed = max(snap["elapsed"], 1e-9)
        print(
            f"soak: {snap['elapsed']:7.1f} s  sent {snap['sent']:,}  accepted "
            f"{snap['accepted']:,}  delivered {snap['delivered']:,} "
            f"({snap['delivered'] / elapsed:,.0f}/s)  echoes {snap['echoes_delivered']:,}  "
            f"faults {snap['faults']:,}  problems {snap['problems']}  "
            f"rss {_mib(snap['rss_kib'])}",
            file=self.soak.err,
            flush=True,
        )

    def _abort(self, reason: str) -> None:
        err = self.soak.err
        print(f"soak: WATCHDOG: {reason}; aborting (exit 1)", file=err, flush=True)
        snap = self.soak.snapshot()
        print(f"soak: state at abort: {snap}", file=err, flush=True)
        for problem in self.soak.problems:
            print(f"  - {problem}", file=err)
        try:
            faulthandler.dump_traceback(file=err, all_threads=True)
        except (OSError, ValueError, AttributeError):
            pass  # err may not be a real file
        if self.json_path:
            document = {
                "aborted": reason,
                "ok": False,
                "state": snap,
                "problems": self.soak.problems,
            }
            try:
                Path(self.json_path).write_text(json.dumps(document, indent=2) + "\n", "utf-8")
            except OSError:
                pass
        err.flush()
        os._exit(1)


# ------------------------------------------------------------------ driver


def _summary(doc: dict[str, Any]) -> str:
    msgs, echoes, losses, faults = doc["messages"], doc["echoes"], doc["losses"], doc["faults"]
    cfg = doc["config"]
    fault_text = ", ".join(f"{k} {v:,}" for k, v in faults.items())
    by_cause = ", ".join(f"{k} {v:,}" for k, v in losses["lost_in_libzmq_by_cause"].items())
    echo_cause = ", ".join(f"{k} {v:,}" for k, v in losses["echo_lost_in_libzmq_by_cause"].items())
    lines = [
        f"zmqchan_green soak: {cfg['seconds']:g} s, {cfg['greenlets']} greenlets, "
        f"{cfg['threads']} threads, {len(cfg['lanes'])} lanes, seed {doc['seed']}",
        f"duration:      {doc['duration']['soak_seconds']:.1f} s soak, "
        f"{doc['duration']['total_seconds']:.1f} s in all",
        f"messages:      sent {msgs['sent']:,} | accepted {msgs['accepted']:,} | "
        f"delivered {msgs['delivered']:,} | returned {msgs['returned']:,} | "
        f"not accepted {msgs['not_accepted']:,} | maybe {msgs['maybe']:,} "
        f"(of which accepted {msgs['maybe_accepted']:,})",
        f"throughput:    {msgs['delivered_per_second']:,} msg/s delivered",
        f"echoes:        accepted {echoes['accepted']:,} | delivered {echoes['delivered']:,} | "
        f"returned {echoes['returned']:,} | reported {echoes['reported']:,} | "
        f"not accepted {echoes['not_accepted']:,}",
        f"faults:        {doc['faults_total']:,} ({fault_text})",
        f"losses:        lost {losses['lost']:,} | echo lost {losses['echo_lost']:,} | "
        f"lost in libzmq {losses['lost_in_libzmq']:,} ({by_cause or 'none'}) | "
        f"echoes lost in libzmq {losses['echo_lost_in_libzmq']:,} ({echo_cause or 'none'}) | "
        f"maybe, never delivered {losses['maybe_undelivered']:,}",
        f"integrity:     duplicates {doc['duplicates']:,} | order violations "
        f"{doc['order_violations']:,} (of {msgs['order_checked']:,} checked) | checksum errors "
        f"{doc['checksum_errors']:,} | unaccepted but delivered {doc['phantoms']:,} | "
        f"misrouted {doc['misrouted']:,} | stalls {doc['stalls']:,} | counter mismatches "
        f"{doc['counter_mismatches']:,}",
        f"pairs:         {doc['pairs_created']['sending']} sending, "
        f"{doc['pairs_created']['receiving']} receiving created",
        f"peak RSS:      {_mib(doc['peak_rss_kib'])} (VmHWM), of which about "
        f"{_mib(doc['bookkeeping_kib'])} is the soak's own record of every message",
    ]
    failed = [name for name, held in doc["invariants"].items() if not held]
    lines.append(
        "result:        "
        + ("OK: all invariants held" if not failed else "FAILED: " + ", ".join(failed))
    )
    return "\n".join(lines)


def run_soak(
    seconds: float = 120.0,
    greenlets: int = 200,
    threads: int = 4,
    json_path: str | None = None,
    seed: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the soak, print a summary and write JSON; ``0`` if every invariant held, else ``1``."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    config = SoakConfig(seconds, greenlets, threads, seed)
    soak = Soak(config, err)
    interval = min(5.0, max(1.0, seconds / 5))
    watchdog = _Watchdog(soak, interval, json_path)
    print(
        f"soak: {seconds:g} s, {greenlets} greenlets, {threads} threads, seed {seed} "
        f"(repeat the schedule with --seed {seed})",
        file=err,
        flush=True,
    )
    watchdog.thread.start()
    try:
        soak.run()
        document = soak.account()
    finally:
        soak.shut_down()
        soak.ctx.term()
        watchdog.stop = True
    print(_summary(document), file=out)
    if soak.problems:
        print(f"problems ({soak.problem_count}):", file=err)
        for problem in soak.problems:
            print(f"  - {problem}", file=err)
    if json_path:
        Path(json_path).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"JSON written to {json_path}", file=out)
    return 0 if document["ok"] else 1


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _soak_command(args: argparse.Namespace) -> int:
    try:
        return run_soak(
            seconds=args.seconds,
            greenlets=args.greenlets,
            threads=args.threads,
            json_path=args.json or None,
            seed=args.seed,
        )
    except (RuntimeError, zmq.ZMQError) as exc:  # set-up failed: say why, no traceback
        print(f"soak failed: {exc}", file=sys.stderr)
        return 1


def add_soak_command(
    subcommands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register the ``soak`` subcommand; its handler is stored as ``args.handler``."""
    parser = subcommands.add_parser(
        "soak",
        help="bounded soak: greenlets and threads, injected faults, every message accounted for",
        description=(
            "Move messages through DEALER->ROUTER (echoed) and PUSH->PULL pairs over tcp and "
            "inproc, from greenlets and native threads at once, while killing senders and "
            "receivers, timing out sends and receives, closing and replacing pairs and "
            "restarting peers. At the end every accepted message must have been delivered "
            "once, in order where order is defined, or returned by close(); the only loss "
            "allowed is what libzmq dropped at an injected fault of that kind, and it is "
            "stated. Exits 0 if every invariant held, 1 otherwise."
        ),
    )
    parser.add_argument(
        "--seconds",
        type=_positive_float,
        default=120.0,
        help="how long to soak before draining and accounting (default: %(default)s)",
    )
    parser.add_argument(
        "--greenlets",
        type=_int_at_least(3 * len(LANES)),
        default=200,
        metavar="N",
        help=f"sending and receiving greenlets, spread over {len(LANES)} lanes "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=_int_at_least(0),
        default=4,
        metavar="N",
        help="native OS threads, each sending and receiving through a ThreadPort "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="write the figures here as JSON (default: none)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the fault schedule, timeouts and payloads (default: random, printed)",
    )
    parser.set_defaults(handler=_soak_command)
