"""The soak's ledger: what became of every attempt, recorded as it happens.

Theory of operation
===================

Every sender numbers its attempts 0, 1, 2... and keeps three bytes per
attempt: the outcome of its ``send`` (pending, accepted, not accepted, or
*maybe*: the greenlet was killed inside ``send``, so its message may or may
not have been accepted), the fate of the message (delivered, returned by
``close()``, reported on ``errors``) and the fate of its echo. The owner
writes the outcome; everything else is written under one real lock (an
unpatched ``_thread`` lock), because receivers run in threads too.

Each receiving worker checks the checksum, that the sender exists and made
that attempt, that the message was not delivered before (duplicates), and,
where the order is defined, that sequence numbers only grow: the single
consumer of a ROUTER sees each (sender, sending pair) in order, across
restarts of the ROUTER too; each receiver on a pull-order lane and each echo
receiver sees each (sender, sending pair, receiving pair) in order. Receivers
on pull-kill lanes are not order-checked: a receiver killed with a message in
hand gives it back to the head of the stream, behind messages other receivers
already hold.

The ledger also keeps, per (sender, sending pair), the highest sequence number
delivered so far (and likewise for echoes): a fault that may make libzmq drop
messages takes a copy of these as the lower bound of what it can have dropped
(:class:`~.losses.LossEvent`).

Fragments. Every message is checked against what its attempt sent
(:func:`~.messages.unpack`): its header (sender, sending pair, sequence
number: unique to the attempt) says how many frames follow, and its last
frame is a BLAKE2b digest over the header and every payload frame with its
length. A message missing frames, or with extra ones, has the wrong count; a
message whose frames come from two attempts (the head of one and the tail of
another), or whose frame boundaries moved, has a header and a digest that do
not match; a tail without its header has no header at all. Each is a
``checksum_errors`` problem, and fails the run; such a message never counts
as delivered either, so the accounting misses it as well. Echoes are checked
the same way, plus their trailing ROUTER generation frame; the stalled peers'
requests and replies are compared with what was sent, frame by frame
(:mod:`.stall`).

Messages for and from stalled ROUTER peers (the ``router_peer_stall`` fault)
are recognised by the identity frame and handed to their own record
(:class:`~.stall.StalledPeer`), wherever they turn up: read by the consumer,
reported on ``errors``, returned by ``close()`` or swept.
"""

from __future__ import annotations

import sys
from bisect import bisect_right
from collections import Counter
from typing import TYPE_CHECKING, Any

import gevent

from ... import SendError
from ..common import real_lock
from .lanes import ECHO, Lane, PeerGen, RxGen, TxGen
from .losses import LossEvent
from .messages import GEN, unpack

if TYPE_CHECKING:
    from .stall import StalledPeer

__all__ = [
    "ACC",
    "DLV",
    "EACC",
    "EDLV",
    "EERR",
    "ENACC",
    "ERET",
    "ERR",
    "MAYBE",
    "NACC",
    "PENDING",
    "RET",
    "Ledger",
    "Sender",
    "Worker",
    "gen_at",
]

# Outcome of a send (one byte per attempt, written by the sender only).
PENDING, ACC, NACC, MAYBE = 0, 1, 2, 3
# Fate of a message (one byte per attempt, bits, under the lock).
DLV, RET, ERR = 4, 8, 16
# Fate of its echo (one byte per attempt, bits, under the lock).
EACC, ENACC, ERET, EERR, EDLV = 1, 2, 4, 8, 16

#: At most this many problems are kept (and listed); all are counted.
_MAX_LISTED = 20


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
        #: Per attempt: PENDING/ACC/NACC/MAYBE (written by the owner only).
        self.outcome = bytearray()
        #: Per attempt: DLV/RET/ERR bits (under the ledger's lock).
        self.fwd = bytearray()
        #: Per attempt: the echo's E* bits (under the ledger's lock).
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
        self.outcome.append(PENDING)
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


def gen_at(table: list[tuple[int, int]], seq: int) -> int | None:
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


class Ledger:
    """Every sender's attempts, what became of them, and the live counters.

    Methods that take the lock may be called from any thread; ``problem`` may
    be called with the lock held or not.
    """

    def __init__(self, lanes: list[Lane]) -> None:
        self.lock = real_lock()
        self.lanes = lanes
        self.senders: dict[int, Sender] = {}
        #: The same senders, as a list the watchdog thread can read safely.
        self.sender_list: list[Sender] = []
        self._next_sid = 1
        #: (sender id, sending pair) -> highest sequence number delivered so far.
        self.max_dlv: dict[tuple[int, int], int] = {}
        #: (sender id, DEALER pair, ROUTER pair) -> highest echo delivered so far.
        self.max_echo: dict[tuple[int, int, int], int] = {}
        #: Moves whenever something happens; the watchdog reads it.
        self.progress = 0
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
        #: Stalls during which the lane's own DEALER waited too long (see :mod:`.stall`).
        self.hol_blocked = 0
        #: The most messages a pair held parked, as sampled.
        self.parked_high_water = 0
        #: Every stalled peer, by identity (hub greenlets only).
        self.stalled_peers: dict[bytes, StalledPeer] = {}
        self.faults: Counter[str] = Counter()
        self.info: Counter[str] = Counter()
        self.problems: list[str] = []
        self.problem_count = 0

    # ------------------------------------------------------------ problems and counts

    def problem(self, text: str) -> None:
        """Record an invariant that did not hold (the run will fail)."""
        self.problem_count += 1
        if len(self.problems) < _MAX_LISTED:
            self.problems.append(text)

    def fault(self, kind: str) -> None:
        """Count one injected fault (any thread)."""
        with self.lock:
            self.faults[kind] += 1

    def count_info(self, key: str, n: int) -> None:
        """Count something worth reporting that is not a fault (any thread)."""
        with self.lock:
            self.info[key] += n

    def stall(self, text: str) -> None:
        """A send waited its full deadline: a stall, and a problem (any thread)."""
        with self.lock:
            self.stalls += 1
        self.problem(text)

    # ------------------------------------------------------------ senders

    def add_sender(self, lane: Lane, kind: str) -> Sender:
        """A new sender on ``lane`` (``greenlet`` or ``thread``), with the next id."""
        sender = Sender(self._next_sid, lane.index, kind)
        self._next_sid += 1
        with self.lock:
            self.senders[sender.sid] = sender
        self.sender_list.append(sender)
        lane.senders.append(sender)
        return sender

    # ------------------------------------------------------------ messages

    def _parse(self, frames: list[Any], where: str) -> tuple[Sender, int, int] | None:
        """Check ``[header, payload, checksum]``; the sender, its pair's generation and seq.

        Called under the lock.
        """
        got = unpack(frames)
        if isinstance(got, str):
            self.checksum_errors += 1
            self.problem(f"{where}: {got}")
            return None
        sid, gen, seq = got
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
        if flags & (RET | ERR):
            self.duplicates += 1
            self.problem(f"sender {sender.sid} message {seq} returned twice")
        sender.fwd[seq] = flags | RET
        self.returned += 1

    def _mark_echo(self, msg: list[Any], bit: int, what: str) -> None:
        """An echo ``[identity, header, payload, checksum, gen]`` came back unsent."""
        parsed = self._parse(msg[1:-1], f"echo {what}")
        if parsed is None:
            return
        sender, _gen, seq = parsed
        flags = sender.echo[seq]
        if flags & (ERET | EERR):
            self.duplicates += 1
            self.problem(f"echo of sender {sender.sid} message {seq} {what} twice")
        sender.echo[seq] = flags | bit

    def returned_by_close(self, returned: list[list[Any]], tx: TxGen) -> None:
        """What ``close()`` of the sending pair ``tx`` gave back: returned, not lost."""
        with self.lock:
            for msg in returned:
                self._mark_returned(msg, tx)

    def echoes_returned_by_close(self, returned: list[list[Any]], rx: RxGen) -> None:
        """What ``close()`` of a ROUTER pair gave back: echoes (and replies to
        stalled peers) returned, not lost."""
        for msg in returned:
            peer = self.stalled_peers.get(msg[0])
            if peer is not None:
                peer.returned(msg, rx.gen)
                continue
            with self.lock:
                self._mark_echo(msg, ERET, "returned by close()")
                self.echo_returned += 1

    def deliver(
        self, frames: list[Any], rx: RxGen | PeerGen, worker: Worker
    ) -> tuple[Sender, int] | None:
        """A message taken from a receiving pair; the sender and seq if it checked out."""
        with self.lock:
            self.progress += 1
            rx.delivered += 1
            body = frames[1:] if self.lanes[rx.lane].spec.kind == ECHO else frames
            parsed = self._parse(body, f"lane {rx.lane} pair {rx.gen} ({worker.name})")
            if parsed is None:
                return None
            sender, gen, seq = parsed
            if sender.lane != rx.lane:
                self.misrouted += 1
                self.problem(f"sender {sender.sid} (lane {sender.lane}) arrived on lane {rx.lane}")
                return None
            flags = sender.fwd[seq]
            if flags & DLV:
                self.duplicates += 1
                self.problem(f"sender {sender.sid} message {seq} delivered twice")
                return None
            sender.fwd[seq] = flags | DLV
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

    def deliver_echo(self, frames: list[Any], tx: TxGen, worker: Worker) -> None:
        """An echo taken from a DEALER pair."""
        with self.lock:
            self.progress += 1
            tx.echo_delivered += 1
            where = f"lane {tx.lane} echo on pair {tx.gen} ({worker.name})"
            if len(frames) < 4 or len(frames[-1]) != GEN.size:
                self.checksum_errors += 1
                self.problem(f"{where}: malformed echo of {len(frames)} frame(s)")
                return
            parsed = self._parse(frames[:-1], where)
            if parsed is None:
                return
            sender, gen, seq = parsed
            if gen != tx.gen:
                self.misrouted += 1
                self.problem(f"{where}: echo of a message sent through pair {gen}")
                return
            flags = sender.echo[seq]
            if flags & EDLV:
                self.duplicates += 1
                self.problem(f"{where}: echo of sender {sender.sid} message {seq} twice")
                return
            if not sender.fwd[seq] & DLV:
                self.phantoms += 1
                self.problem(f"{where}: echo of a message the echo peer never received")
            sender.echo[seq] = flags | EDLV
            self.echo_delivered += 1
            (rgen,) = GEN.unpack(bytes(frames[-1]))
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

    def echo_outcome(self, sender: Sender, seq: int, rx: RxGen | PeerGen, accepted: bool) -> None:
        """Whether the echo of ``seq`` was accepted by the ROUTER pair ``rx`` (or refused,
        or never offered: its pair was closed first)."""
        with self.lock:
            if accepted:
                sender.echo[seq] |= EACC
                rx.echo_accepted += 1
                self.echo_accepted += 1
            else:
                sender.echo[seq] |= ENACC
                self.echo_not_accepted += 1

    # ------------------------------------------------------------ errors queues

    def drain_errors_tx(self, tx: TxGen) -> None:
        """Take the SendErrors a sending pair reported: those messages were reported."""
        queue = tx.pair.errors
        while not queue.empty():
            err: SendError = queue.get_nowait()
            with self.lock:
                self.fwd_errors += 1
                parsed = self._parse(err.message, f"SendError on pair {tx.gen}")
                if parsed is not None:
                    sender, _gen, seq = parsed
                    sender.fwd[seq] |= ERR

    def drain_errors_rx(self, rx: RxGen) -> None:
        """Take the SendErrors a ROUTER pair reported: those echoes were reported."""
        queue = rx.pair.errors
        while not queue.empty():
            err: SendError = queue.get_nowait()
            msg: list[Any] = err.message
            peer = self.stalled_peers.get(msg[0])
            if peer is not None:
                peer.reported(err.message)
                continue
            with self.lock:
                self.echo_errors += 1
                self._mark_echo(err.message, EERR, "reported on errors")

    def note_parked(self, parked: int) -> None:
        """A sample of how many messages a pair holds parked."""
        self.parked_high_water = max(self.parked_high_water, parked)

    # ------------------------------------------------------------ stalled peers

    def stall_read(self, peer: StalledPeer, frames: list[Any], rx: RxGen) -> int | None:
        """A stalled peer's request, taken from ROUTER pair ``rx``; its number if it checked out."""
        with self.lock:
            self.progress += 1
            rx.delivered += 1
        return peer.read(frames, rx.gen)

    def stall_swept(self, peer: StalledPeer, frames: list[Any], rx: RxGen) -> None:
        """A stalled peer's request left in a closed ROUTER pair (never replied)."""
        with self.lock:
            rx.delivered += 1
        peer.swept(frames, rx.gen)

    # ------------------------------------------------------------ faults

    def loss_event(self, kind: str, lane: Lane, old_gen: int) -> LossEvent:
        """Record a fault after which libzmq may drop messages, bounded by what was
        delivered so far (see :class:`~.losses.LossEvent`)."""
        with self.lock:
            event = LossEvent(kind, lane.index, old_gen, dict(self.max_dlv), dict(self.max_echo))
        lane.loss_events.append(event)
        return event
