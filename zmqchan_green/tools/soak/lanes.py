"""The soak's lanes and their topology: which sockets, how they are made, bound and closed.

Theory of operation
===================

One process, one gevent hub, one green context. Six *lanes*, each a sending
pair (a ``DEALER`` or ``PUSH`` socket wrapped in a
:class:`~zmqchan_green.ChannelPair`) connected to a receiving pair (``ROUTER``
or ``PULL``), over tcp (127.0.0.1) and inproc:

* ``echo`` lanes (DEALER -> ROUTER): one *consumer* greenlet reads the ROUTER
  pair and sends every message back through it, with ``ROUTER_MANDATORY`` (an
  echo for a peer the ROUTER no longer knows is reported on ``pair.errors``);
  greenlets and native threads receive the echoes on the DEALER pair, the same
  pair the senders share.
* ``pull-kill`` lanes (PUSH -> PULL): greenlet and thread receivers, some of
  them killed while they wait in ``recv``.
* ``pull-order`` lanes (PUSH -> PULL): greenlet and thread receivers, none
  killed, so each receiver's view of each sender can be checked for order.

Messages on inproc lanes have 1 to 4 payload frames, and 32 to 160 while a
churning peer is on the lane (:meth:`Lane.frames`); on tcp lanes, one.

Faults replace a lane's pairs: each pair is a *generation* (:class:`TxGen`,
:class:`RxGen`; a churning peer's connection is a :class:`PeerGen`) with a
number unique in the run, and messages carry the generation of the sending
pair they went through. A replaced receiving pair is bound again on the
lane's endpoint; tcp senders reconnect by themselves, inproc senders are
reconnected through ``pair.call``. An extra peer (a plain green DEALER, see
:mod:`.stall`) may connect to an echo lane's ROUTER. High-water marks and
kernel buffers are small and bounded, so back-pressure reaches the pairs
quickly and what a fault can make libzmq drop is bounded too
(:data:`LOSS_CAPACITY`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import gevent
import zmq
import zmq.green as zmq_green

from ... import ChannelClosed, ChannelPair, ThreadPort, WouldBlock
from ..common import bind_fresh
from .losses import LossEvent
from .messages import GEN

if TYPE_CHECKING:
    from .ledger import Ledger, Sender, Worker
    from .stall import StalledPeer

__all__ = [
    "ECHO",
    "CHURN_FRAMES",
    "HWM",
    "KERNEL_BUFFER",
    "LANES",
    "LOSS_CAPACITY",
    "PULL_KILL",
    "THREAD_LANES",
    "Lane",
    "LaneSpec",
    "PeerGen",
    "RxGen",
    "SoakConfig",
    "Topology",
    "TxGen",
    "leftovers",
]

#: ZeroMQ high-water marks: small, so back-pressure reaches the pairs quickly.
HWM = 500
#: Kernel socket buffers (tcp), bounded so that what a peer restart can lose
#: in them is bounded too.
KERNEL_BUFFER = 64 * 1024
#: The most messages one libzmq-dropping fault may cost, by transport. inproc:
#: one pipe, SNDHWM + RCVHWM. tcp: both pipes, plus both kernel buffers (Linux
#: doubles SO_SNDBUF/SO_RCVBUF) and both engines' 8 KiB batches, filled with the
#: smallest message on the wire (3 frames of 18 + 0 + 8 bytes, 2 bytes of
#: ZMTP framing each; echoes are larger).
_WIRE_MIN = 18 + 0 + 8 + 3 * 2
LOSS_CAPACITY = {
    "inproc": 2 * HWM,
    "tcp": 2 * HWM + (2 * 2 * KERNEL_BUFFER + 2 * 8192) // _WIRE_MIN,
}
_RECONNECT_IVL_MS = 20

ECHO, PULL_KILL, PULL_ORDER = "echo", "pull-kill", "pull-order"


class LaneSpec:
    """One lane: a sending pair and the receiving pair it is connected to."""

    __slots__ = ("frames", "kind", "peer_rx", "peer_tx", "rx_size", "transport", "tx_size")

    def __init__(
        self,
        kind: str,
        transport: str,
        tx_size: int,
        rx_size: int,
        peer_tx: int,
        peer_rx: int,
        frames: int = 1,
    ) -> None:
        self.kind = kind
        self.transport = transport
        #: Buffers of the sending (DEALER/PUSH) pair.
        self.tx_size = tx_size
        self.rx_size = rx_size
        #: Buffers of the receiving (ROUTER/PULL) pair.
        self.peer_tx = peer_tx
        self.peer_rx = peer_rx
        #: Payload frames per message: 1 to this many.
        self.frames = frames

    def describe(self) -> str:
        """``DEALER->ROUTER tcp (8/8 -> 64/64)``, for reports."""
        tx, rx = ("DEALER", "ROUTER") if self.kind == ECHO else ("PUSH", "PULL")
        return (
            f"{self.kind} {tx}->{rx} {self.transport} "
            f"(buffers {self.tx_size}/{self.rx_size} -> {self.peer_tx}/{self.peer_rx}, "
            f"3-{2 + self.frames} frames)"
        )


#: Payload frames per message on inproc lanes (1 to this many), where
#: peer_churn tears pipes down: a message rolled back there has more than one
#: frame boundary to get wrong.
_INPROC_FRAMES = 4
#: Payload frames per message on a lane while its peer churns: long messages
#: keep the sending pump writing a batch for more than the millisecond after
#: which libzmq looks at its commands (a pipe's end among them) while sending,
#: so the pipe dies between two frames of a message (see :mod:`.churn`).
CHURN_FRAMES = (32, 160)
#: The lanes of every soak: each kind over both transports, buffer sizes mixed
#: (0 is a rendezvous).
LANES = (
    LaneSpec(ECHO, "tcp", 0, 0, 64, 64),
    LaneSpec(ECHO, "inproc", 32, 8, 0, 16, _INPROC_FRAMES),
    LaneSpec(PULL_KILL, "tcp", 16, 0, 0, 0),
    LaneSpec(PULL_KILL, "inproc", 0, 0, 0, 32, _INPROC_FRAMES),
    LaneSpec(PULL_ORDER, "tcp", 64, 0, 0, 8),
    LaneSpec(PULL_ORDER, "inproc", 4, 0, 0, 0, _INPROC_FRAMES),
)
#: Which lane native thread ``i`` works on: spread over kinds first.
THREAD_LANES = (0, 5, 2, 4, 1, 3)


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
        "rollbacks",
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
        self.rollbacks = 0
        self.echo_delivered = 0


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
        "rollbacks",
        "seen",
        "sent",
        "stall_accepted",
    )

    def __init__(self, gen: int, lane: int, pair: ChannelPair, with_port: bool) -> None:
        self.gen = gen
        self.gen_frame = GEN.pack(gen)
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
        #: Replies to stalled peers accepted (see :mod:`.stall`).
        self.stall_accepted = 0
        self.sent = self.errors = self.errors_dropped = self.received = 0
        self.returned = 0
        self.rollbacks = 0


class PeerGen:
    """One connection of a churning peer (see :mod:`.churn`): a plain socket in a
    native thread, bound on the lane's endpoint for a few ms, in place of the
    receiving pair; what the ledger needs of a receiving end."""

    __slots__ = ("delivered", "echo_accepted", "gen", "lane", "loss_event", "seen")

    def __init__(self, gen: int, lane: int) -> None:
        self.gen = gen
        self.lane = lane
        self.delivered = 0
        self.echo_accepted = 0
        self.seen = True
        #: Never set: only the receiving pair bound after the churn bounds its loss.
        self.loss_event: LossEvent | None = None


class Lane:
    """A lane's current pairs, its senders and receivers."""

    __slots__ = (
        "churning",
        "consumer",
        "echo_accepted_at",
        "echoes_accepted",
        "endpoint",
        "index",
        "loss_events",
        "paused_until",
        "receivers",
        "rx",
        "senders",
        "spec",
        "stalled",
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
        #: Faults on this lane after which libzmq may drop messages, in order.
        self.loss_events: list[LossEvent] = []
        self.paused_until = 0.0
        #: Echo lanes: the ROUTER pair's consumer; when it last had an echo for a
        #: lane's own DEALER accepted, and how many so far (the stall's progress check).
        self.consumer: Worker | None = None
        self.echo_accepted_at = 0.0
        self.echoes_accepted = 0
        #: The stalled peer on this lane's ROUTER while it stalls (at most one).
        self.stalled: StalledPeer | None = None
        #: Whether a churning peer is in place of the receiving pair (see :mod:`.churn`).
        self.churning = False

    def frames(self) -> tuple[int, int]:
        """How many payload frames the lane's next message has: at least, at most."""
        return CHURN_FRAMES if self.churning else (1, self.spec.frames)


class Topology:
    """The green context, the lanes, and every pair made for them.

    Closing a pair hands what it returns and reports to the :class:`~.ledger.Ledger`.
    """

    def __init__(self, lanes: list[Lane], ledger: Ledger) -> None:
        self.lanes = lanes
        self.ledger = ledger
        self.ctx: zmq.Context[Any] = zmq_green.Context()
        self.tx_gens: list[TxGen] = []
        self.rx_gens: list[RxGen] = []
        self._next_gen = 1

    def open_lanes(self) -> None:
        """Give every lane its first receiving and sending pair."""
        for lane in self.lanes:
            lane.rx = self.new_rx(lane)
            lane.tx = self.new_tx(lane)

    def gen_id(self) -> int:
        """The next generation number (unique in the run)."""
        gen = self._next_gen
        self._next_gen += 1
        return gen

    def _socket(self, kind: int) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, HWM)
        sock.setsockopt(zmq.RCVHWM, HWM)
        sock.setsockopt(zmq.SNDBUF, KERNEL_BUFFER)
        sock.setsockopt(zmq.RCVBUF, KERNEL_BUFFER)
        return sock

    def _bind(self, sock: zmq.Socket[Any], lane: Lane) -> None:
        """Bind ``sock`` on the lane's endpoint, retrying while the old one is let go."""
        if not lane.endpoint:
            lane.endpoint = bind_fresh(sock, lane.spec.transport, f"zmqchan-soak-{lane.index}")
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

    def new_rx(self, lane: Lane) -> RxGen:
        """A new receiving pair (ROUTER or PULL), bound on the lane's endpoint."""
        echo = lane.spec.kind == ECHO
        sock = self._socket(zmq.ROUTER if echo else zmq.PULL)
        try:
            if echo:
                sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            self._bind(sock, lane)
            pair = ChannelPair(sock, lane.spec.peer_tx, lane.spec.peer_rx)
        except BaseException:
            sock.close(linger=0)
            raise
        rx = RxGen(self.gen_id(), lane.index, pair, with_port=not echo)
        self.rx_gens.append(rx)
        return rx

    def new_tx(self, lane: Lane) -> TxGen:
        """A new sending pair (DEALER or PUSH), connected to the lane's endpoint."""
        gen = self.gen_id()
        sock = self._socket(zmq.DEALER if lane.spec.kind == ECHO else zmq.PUSH)
        try:
            sock.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_IVL_MS)
            if lane.spec.kind == ECHO:
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

    def close_tx(self, tx: TxGen, linger: float, fault: bool) -> int:
        """Close a sending pair; count what ``close()`` returns as returned."""
        tx.fault_closed = fault
        returned = tx.pair.close(linger=linger)
        tx.closed = True
        tx.returned += len(returned)
        self.ledger.drain_errors_tx(tx)
        self.ledger.returned_by_close(returned, tx)
        return len(returned)

    def close_rx(self, rx: RxGen, linger: float, fault: bool) -> int:
        """Close a receiving pair; count the echoes ``close()`` returns as returned."""
        rx.fault_closed = fault
        returned = rx.pair.close(linger=linger)
        rx.closed = True
        rx.returned += len(returned)
        self.ledger.drain_errors_rx(rx)
        self.ledger.echoes_returned_by_close(returned, rx)
        return len(returned)

    def reconnect(self, lane: Lane) -> None:
        """inproc does not reconnect by itself: the lane's sender connects again."""
        lane.tx.pair.call(_reconnect, lane.endpoint)

    def reconnect_from_thread(self, lane: Lane) -> None:
        """:meth:`reconnect`, from a native thread (through the sending pair's ThreadPort)."""
        lane.tx.port.call(_reconnect, lane.endpoint)

    def bind_rx(self, lane: Lane, event: LossEvent) -> RxGen:
        """Bind a new receiving pair on the lane's endpoint in place of its closed
        one (inproc senders are reconnected); the new pair gets ``event``, whose
        upper bound it sets with its first message (see :class:`~.losses.LossEvent`)."""
        new = self.new_rx(lane)
        new.loss_event = event  # before any switch: nothing can have arrived yet
        lane.rx = new
        if lane.spec.transport == "inproc":
            self.reconnect(lane)
        event.new_gen = new.gen
        return new

    def replace_rx(self, lane: Lane, event: LossEvent) -> RxGen:
        """Close the lane's receiving pair (linger 0) and :meth:`bind_rx` a new one."""
        self.close_rx(lane.rx, 0.0, fault=True)
        return self.bind_rx(lane, event)

    def peer_socket(self, lane: Lane, identity: bytes, rcvhwm: int) -> zmq.Socket[Any]:
        """A plain green DEALER named ``identity``, connected to the lane's ROUTER:
        an extra peer (see :mod:`.stall`), used by one greenlet; the caller closes it."""
        sock = self._socket(zmq.DEALER)
        try:
            sock.setsockopt(zmq.RCVHWM, rcvhwm)
            sock.setsockopt(zmq.ROUTING_ID, identity)
            sock.connect(lane.endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        return sock

    def open_pairs(self) -> Iterator[ChannelPair]:
        """The lanes' current pairs."""
        for lane in self.lanes:
            yield lane.tx.pair
            yield lane.rx.pair

    def close_all(self) -> None:
        """Close every pair ever made (linger 0); a failure to close is a problem. Idempotent."""
        gens: list[TxGen | RxGen] = [*self.tx_gens, *self.rx_gens]
        for gen in gens:
            try:
                gen.pair.close(linger=0)
            except Exception as exc:
                self.ledger.problem(f"closing pair {gen.gen} at shut-down: {exc!r}")


def _reconnect(sock: zmq.Socket[Any], endpoint: str) -> None:
    """Inside the pump: drop a dead inproc connection and connect again."""
    try:
        sock.disconnect(endpoint)
    except zmq.ZMQError:
        pass  # already gone with its peer
    sock.connect(endpoint)


def leftovers(pair: ChannelPair) -> Iterable[list[Any]]:
    """What a closed pair still buffers."""
    while True:
        try:
            yield pair.recv_nowait()
        except (WouldBlock, ChannelClosed):
            return
