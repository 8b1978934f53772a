"""A ROUTER peer that stops reading: the ``router_peer_stall`` fault.

Theory of operation
===================

On an echo lane (its ROUTER pair has ``ROUTER_MANDATORY``), an extra peer, a
plain green DEALER named ``stalled-N`` with a small ``RCVHWM``
(:data:`STALL_RCVHWM`), connects to the ROUTER and sends requests
``[header, payload]``: the header holds N and a sequence number, and the
payload (about 0.5 KiB, or 16 KiB on tcp) follows from the header, so every
frame of a request or reply is checked exactly. The lane's consumer hands each request
to the lane's *stall replier*, a greenlet that sends it back as the reply
through the ROUTER pair it came from, waiting as long as that takes: the
consumer never waits for a stalled peer, so whatever the pair does, only the
stalled peer's replies wait. The peer never reads: once its pipe is full (its
``RCVHWM`` plus the ROUTER's ``SNDHWM``, plus the kernel buffers on tcp) the
pair parks its replies. The peer sends requests until the pair has accepted
more replies for it than its pipe can hold (:data:`STALL_CAPACITY`; on tcp
the replies are 16 KiB, so that few fit in the kernel buffers and the bound
is close): the rest must be parked. Then it sends a few more and stalls for 1
to 3 s.

While it stalls, the lane's own DEALER must keep getting its echoes at once.
Every few ms the stalled peer looks at how long ago the consumer last had an
echo for the lane's DEALER accepted; a gap longer than :data:`HOL_LIMIT`
within the stall is a problem. A ROUTER that retried the stalled peer's
message until its peer drained would hold every echo behind it: the gap would
be the whole stall, and the lane would make no progress.

Then the stall ends, one way of three (drawn from the fault's RNG):

* ``resume``: the peer reads again; every reply the pair accepted for it
  must arrive, whole, once, in order;
* ``leave``: the peer closes; what was parked for it is reported on the pair's
  ``errors`` (``EHOSTUNREACH``), and so is every reply after that;
* ``restart``: the lane's ROUTER pair is closed and replaced under the
  stalled peer (a loss event of this fault, like a ``peer_restart``):
  ``close()`` returns what was parked for it; then the peer closes.

A ROUTER pair is not replaced by other faults while a stalled peer is on it,
and there is one stalled peer at a time. When the soak stops, a stall ends at
once, its own way.

The account (:meth:`StalledPeer.account`) is kept apart from the lanes'
messages, and nothing in it is ignored: every request the consumer read got a
reply that the pair accepted or refused (timeout, pair closed), unless it was
swept from a closed pair unread; every accepted reply was delivered,
reported on ``errors`` or returned by ``close()``, exactly once, or was lost
in libzmq with the peer's pipe. That loss is allowed only for ``leave`` and
``restart``, only for replies handed to the socket before everything that
was parked (for each ROUTER pair the lost replies precede the reported and
returned ones: a pipe fills in order, and parked replies go out in order),
and at most what the pipe holds (:data:`STALL_CAPACITY`). The ROUTER pairs'
own counters (handed + returned + reported) are checked against echoes plus
replies accepted.
"""

from __future__ import annotations

import hashlib
import random
import struct
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import zmq

from .lanes import HWM, KERNEL_BUFFER, Lane, Topology

if TYPE_CHECKING:
    from .ledger import Ledger

__all__ = [
    "ENDINGS",
    "HOL_LIMIT",
    "STALL_CAPACITY",
    "STALL_RCVHWM",
    "PeerStall",
    "StalledPeer",
    "request",
]

#: The stalled peer's receive high-water mark: small, so its pipe fills soon.
STALL_RCVHWM = 16
#: How a stall ends.
ENDINGS = ("resume", "leave", "restart")
#: The longest the lane's own DEALER may wait for an accepted echo while a
#: peer stalls (seconds); longer is head-of-line blocking, a problem.
HOL_LIMIT = 1.0
#: How long a stall lasts (seconds, uniform).
_STALL_SECONDS = (1.0, 3.0)
#: The stalled peer's pipe must overflow within this many requests and seconds.
_PARK_REQUESTS = 8000
_PARK_WITHIN = 10.0
#: After the pair parked something: this many more requests (uniform).
_EXTRA = (1, 48)
#: Before that, at most this many requests ahead of the replies.
_AHEAD = 64
#: How often the progress of the lane's own DEALER is sampled (seconds).
_SAMPLE = 0.005
#: A resumed peer must have every accepted reply within this many seconds.
_RESUME_LIMIT = 10.0

_HEADER = struct.Struct(">II")
#: Payload sizes by transport: the smallest, and how much more at most. On tcp
#: the kernel buffers hold few of them, so the pipe's capacity is known closely.
_PAYLOAD = {"inproc": (512, 511), "tcp": (16384, 511)}
#: The most replies a stalled peer's pipe holds, by transport: its RCVHWM plus
#: the ROUTER's SNDHWM (inproc: one pipe of both); tcp adds both kernel buffers
#: (Linux doubles SO_SNDBUF/SO_RCVBUF) and both engines' 8 KiB batches, filled
#: with the smallest reply (a short and a long ZMTP frame), and a message in
#: each engine's hand. More replies accepted than this means some are parked.
STALL_CAPACITY = {
    "inproc": HWM + STALL_RCVHWM,
    "tcp": HWM
    + STALL_RCVHWM
    + (2 * 2 * KERNEL_BUFFER + 2 * 8192) // (_HEADER.size + 2 + _PAYLOAD["tcp"][0] + 9)
    + 2,
}

# State of a request, bits.
_READ, _ACC, _NACC, _DLV, _ERR, _RET, _SWEPT = 1, 2, 4, 8, 16, 32, 64
_FATES = _DLV | _ERR | _RET


def request(number: int, seq: int, transport: str) -> list[bytes]:
    """Request ``seq`` of stalled peer ``number`` on a ``transport`` lane (and its
    reply, as the peer gets it)."""
    header = _HEADER.pack(number, seq)
    smallest, more = _PAYLOAD[transport]
    size = smallest + (seq * 131) % (more + 1)
    block = hashlib.blake2b(header, digest_size=64).digest()
    return [header, (block * (size // 64 + 1))[:size]]


class StalledPeer:
    """What became of one stalled peer's requests and replies; see the module docstring.

    Used by greenlets of the hub only; the ledger's counters it bumps are
    bumped under the ledger's lock.
    """

    __slots__ = (
        "accepted",
        "answered",
        "counts",
        "done",
        "ending",
        "identity",
        "lane",
        "last_delivered",
        "last_returned",
        "ledger",
        "longest_gap",
        "number",
        "parked_high_water",
        "parked_seen",
        "real_delivered",
        "real_echoes",
        "requests",
        "rgen",
        "stalled_seconds",
        "state",
        "transport",
    )

    def __init__(self, ledger: Ledger, number: int, lane: Lane, ending: str) -> None:
        self.ledger = ledger
        self.number = number
        self.identity = b"stalled-%d" % number
        self.lane = lane.index
        self.transport = lane.spec.transport
        self.ending = ending
        #: Per request: the state bits; the ROUTER pair that read it (0: none).
        self.state = bytearray()
        self.rgen: list[int] = []
        self.requests = 0
        #: Replies accepted, and replies accepted or refused, so far.
        self.accepted = 0
        self.answered = 0
        self.last_delivered = -1
        #: ROUTER pair -> the last reply its close() returned.
        self.last_returned: dict[int, int] = {}
        self.parked_seen = False
        self.parked_high_water = 0
        self.stalled_seconds = 0.0
        #: Echoes for the lane's own DEALER accepted / delivered while stalled,
        #: and the longest wait for one.
        self.real_echoes = 0
        self.real_delivered = 0
        self.longest_gap = 0.0
        self.done = False
        self.counts: Counter[str] = Counter()

    # ------------------------------------------------------------ live records

    def next_request(self) -> list[bytes]:
        """The next request to send (numbered from 0)."""
        seq = self.requests
        self.state.append(0)
        self.rgen.append(0)
        self.requests += 1
        return request(self.number, seq, self.transport)

    def _seq(self, frames: list[Any], where: str) -> int | None:
        """The request or reply ``[header, payload]`` is; ``None`` (a problem) unless it
        is exactly one this peer sent: a fragment, or frames of two messages, fail here."""
        what = f"stalled peer {self.number}: {where}"
        if len(frames) != 2 or len(frames[0]) != _HEADER.size:
            self._count("checksum_errors", f"{what}: message of {len(frames)} frame(s)")
            return None
        number: int
        seq: int
        number, seq = _HEADER.unpack(bytes(frames[0]))
        if number != self.number or seq >= self.requests:
            self._count("phantoms", f"{what}: never sent ({number}, {seq})")
            return None
        if [bytes(f) for f in frames] != request(number, seq, self.transport):
            self._count("checksum_errors", f"{what}: frames of message {seq} damaged or mixed")
            return None
        return seq

    def _count(self, counter: str, text: str) -> None:
        ledger = self.ledger
        with ledger.lock:
            setattr(ledger, counter, getattr(ledger, counter) + 1)
        ledger.problem(text)

    def _mark(self, seq: int, bit: int, what: str) -> None:
        state = self.state[seq]
        if state & bit or (bit & _FATES and state & _FATES):
            self._count("duplicates", f"stalled peer {self.number}: reply {seq} {what} twice")
        self.state[seq] = state | bit

    def read(self, frames: list[Any], rgen: int) -> int | None:
        """The consumer read ``[identity, header, payload]`` from ROUTER pair ``rgen``;
        its sequence number, if it checked out."""
        seq = self._seq(frames[1:], f"request read from ROUTER pair {rgen}")
        if seq is None:
            return None
        if self.state[seq] & _READ:
            self._count("duplicates", f"stalled peer {self.number}: request {seq} read twice")
            return None
        self.state[seq] |= _READ
        self.rgen[seq] = rgen
        return seq

    def swept(self, frames: list[Any], rgen: int) -> None:
        """A request left in a closed ROUTER pair: read from the socket, never replied."""
        seq = self.read(frames, rgen)
        if seq is not None:
            self.state[seq] |= _SWEPT

    def replied(self, seq: int, accepted: bool) -> None:
        """Whether the ROUTER pair accepted the reply to ``seq``."""
        self.state[seq] |= _ACC if accepted else _NACC
        self.accepted += accepted
        self.answered += 1

    def delivered(self, frames: list[Any]) -> None:
        """The peer received a reply: whole, once, and in order."""
        seq = self._seq(frames, "reply received")
        if seq is None:
            return
        self._mark(seq, _DLV, "delivered")
        if seq <= self.last_delivered:
            self._count(
                "order_violations",
                f"stalled peer {self.number}: reply {seq} after {self.last_delivered}",
            )
        self.last_delivered = seq

    def reported(self, msg: list[Any]) -> None:
        """A reply the ROUTER pair reported on ``errors``."""
        seq = self._seq(msg[1:], "reply reported on errors")
        if seq is not None:
            self._mark(seq, _ERR, "reported")

    def returned(self, msg: list[Any], rgen: int) -> None:
        """A reply ``close()`` of ROUTER pair ``rgen`` returned (in order, per pair)."""
        seq = self._seq(msg[1:], f"reply returned by close() of ROUTER pair {rgen}")
        if seq is None:
            return
        self._mark(seq, _RET, "returned")
        last = self.last_returned.get(rgen, -1)
        if seq <= last:
            self._count(
                "order_violations",
                f"stalled peer {self.number}: close() returned reply {seq} after {last}",
            )
        self.last_returned[rgen] = seq

    def settled(self) -> bool:
        """Every request read and replied to, every accepted reply delivered."""
        want = _READ | _ACC | _DLV
        return all(s == want or s == _READ | _NACC for s in self.state)

    # ------------------------------------------------------------ the account

    def account(self) -> Counter[str]:
        """Classify every request and reply (problems go to the ledger); the counts."""
        counts = self.counts
        counts.clear()
        lost: dict[int, list[int]] = {}
        first_out: dict[int, int] = {}
        where = f"stalled peer {self.number} (lane {self.lane}, {self.ending})"
        for seq, state in enumerate(self.state):
            counts["requests"] += 1
            if not state & _READ:
                counts["unread"] += 1  # dropped with the peer's own pipe when it left
                if state:
                    self._count("phantoms", f"{where}: reply {seq} to a request never read")
                continue
            counts["read"] += 1
            if state & _SWEPT:
                counts["swept"] += 1
                continue
            if state & _ACC and state & _NACC:
                self.ledger.problem(f"{where}: reply {seq} accepted and refused")
            if not state & (_ACC | _NACC):
                self.ledger.problem(f"{where}: request {seq} read, never replied")
                continue
            if state & _NACC:
                counts["not_accepted"] += 1
                if state & _FATES:
                    self._count("phantoms", f"{where}: reply {seq} refused, yet it came out")
                continue
            counts["accepted"] += 1
            counts["delivered"] += bool(state & _DLV)
            counts["reported"] += bool(state & _ERR)
            counts["returned"] += bool(state & _RET)
            rgen = self.rgen[seq]
            if state & (_ERR | _RET):
                first_out.setdefault(rgen, seq)
            elif not state & _DLV:
                lost.setdefault(rgen, []).append(seq)
        capacity = STALL_CAPACITY[self.transport]
        for rgen, seqs in lost.items():
            if self.ending == "resume":
                counts["lost"] += len(seqs)
                self.ledger.problem(
                    f"LOST: {where}: {len(seqs)} accepted replies never delivered "
                    f"(first {seqs[0]}), though the peer read again"
                )
                continue
            counts["lost_with_pipe"] += len(seqs)
            if len(seqs) > capacity:
                counts["lost"] += len(seqs)
                self.ledger.problem(
                    f"{where}: {len(seqs)} replies via ROUTER pair {rgen} lost with the "
                    f"peer's pipe, more than it holds ({capacity})"
                )
            if rgen in first_out and seqs[-1] > first_out[rgen]:
                counts["lost"] += 1
                self.ledger.problem(
                    f"LOST: {where}: reply {seqs[-1]} never delivered, though reply "
                    f"{first_out[rgen]}, accepted before it, was still held (parked)"
                )
        return counts

    def figures(self) -> dict[str, Any]:
        """This stall's figures for the JSON document."""
        return {
            "peer": self.number,
            "lane": self.lane,
            "ending": self.ending,
            "stalled_seconds": round(self.stalled_seconds, 3),
            "parked_seen": self.parked_seen,
            "parked_high_water": self.parked_high_water,
            "real_echoes_accepted": self.real_echoes,
            "real_echoes_delivered": self.real_delivered,
            "longest_real_echo_gap_ms": round(self.longest_gap * 1000, 1),
            **{k: v for k, v in sorted(self.counts.items())},
        }


class PeerStall:
    """Runs one stalled peer (:meth:`run` is its greenlet); see the module docstring.

    ``restart(lane)`` replaces the lane's ROUTER pair for the ``restart`` ending.
    """

    def __init__(
        self,
        peer: StalledPeer,
        lane: Lane,
        topology: Topology,
        stopping: Callable[[], bool],
        restart: Callable[[Lane], None],
        rng: random.Random,
    ) -> None:
        self.peer = peer
        self.lane = lane
        self.topology = topology
        self.ledger = peer.ledger
        self.stopping = stopping
        self.restart = restart
        self.rng = rng

    def run(self) -> None:
        """Connect, overflow the peer's pipe, stall, end; always close the socket."""
        peer, lane = self.peer, self.lane
        sock: zmq.Socket[Any] | None = None
        try:
            sock = self.topology.peer_socket(lane, peer.identity, STALL_RCVHWM)
            if self._request_until_parked(sock):
                self._stall()
            self._end(sock)
        except Exception as exc:
            self.ledger.problem(f"router_peer_stall {peer.number}: {exc!r}")
        finally:
            if sock is not None:
                sock.close(linger=0)
            lane.stalled = None
            peer.done = True

    def _parked(self) -> int:
        parked = self.lane.rx.pair.stats()["parked"]
        self.peer.parked_high_water = max(self.peer.parked_high_water, parked)
        return parked

    def _request_until_parked(self, sock: zmq.Socket[Any]) -> bool:
        """Send requests until the ROUTER pair parks replies for this peer, then a
        few more; ``False`` if the soak stopped first (or it never parked: a problem)."""
        peer = self.peer
        deadline = time.monotonic() + _PARK_WITHIN
        full_pipe = STALL_CAPACITY[peer.transport]
        extra: int | None = None  # requests still to send once something is parked
        pending: list[bytes] | None = None
        while not self.stopping():
            self._parked()
            if extra is None and peer.accepted > full_pipe:
                peer.parked_seen = True  # more than its pipe holds: the rest is parked
                extra = self.rng.randint(*_EXTRA)
            if extra == 0:
                return True
            if peer.requests >= _PARK_REQUESTS or time.monotonic() > deadline:
                self.ledger.problem(
                    f"router_peer_stall {peer.number}: nothing parked after {peer.requests} "
                    f"requests, {peer.accepted} replies accepted and never read"
                )
                return False
            if extra is None and peer.requests - peer.answered >= _AHEAD:
                gevent.sleep(0.001)  # wait for replies: overflow the pipe, not the replier
                continue
            if pending is None:
                pending = peer.next_request()
                if extra is not None:
                    extra -= 1
            try:
                sock.send_multipart(pending, zmq.NOBLOCK)
            except zmq.Again:
                gevent.sleep(0.001)  # the consumer is behind: let it read
                continue
            pending = None
            if peer.requests % 16 == 0:
                gevent.sleep(0.001)
        return False

    def _stall(self) -> None:
        """Read nothing for a while; meanwhile the lane's own DEALER must be served."""
        peer, lane = self.peer, self.lane
        start = now = time.monotonic()
        end = start + self.rng.uniform(*_STALL_SECONDS)
        last = start
        accepted = lane.echoes_accepted
        delivered = self._echoes_delivered()
        while now < end and not self.stopping():
            gevent.sleep(_SAMPLE)
            now = time.monotonic()
            self._parked()
            last = max(last, lane.echo_accepted_at)
            peer.longest_gap = max(peer.longest_gap, now - last)
        peer.stalled_seconds = now - start
        peer.real_echoes = lane.echoes_accepted - accepted
        peer.real_delivered = self._echoes_delivered() - delivered
        if peer.longest_gap > HOL_LIMIT:
            with self.ledger.lock:
                self.ledger.hol_blocked += 1
            self.ledger.problem(
                f"lane {lane.index}: no echo for its own DEALER accepted for "
                f"{peer.longest_gap:.2f} s while stalled peer {peer.number} was parked "
                f"(head-of-line blocking; limit {HOL_LIMIT} s)"
            )

    def _echoes_delivered(self) -> int:
        index = self.lane.index
        return sum(tx.echo_delivered for tx in self.topology.tx_gens if tx.lane == index)

    def _end(self, sock: zmq.Socket[Any]) -> None:
        ending = self.peer.ending
        if ending == "resume":
            self._read_all(sock)
        elif ending == "restart":
            self.restart(self.lane)

    def _read_all(self, sock: zmq.Socket[Any]) -> None:
        """Read again, until every reply the pair accepted has arrived."""
        peer = self.peer
        deadline = time.monotonic() + _RESUME_LIMIT
        while time.monotonic() < deadline:
            if sock.poll(20, zmq.POLLIN):
                peer.delivered(sock.recv_multipart(zmq.NOBLOCK))
            elif peer.settled():
                return
        self.ledger.problem(
            f"stalled peer {peer.number} read again, but its replies did not all "
            f"arrive within {_RESUME_LIMIT} s"
        )
