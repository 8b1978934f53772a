"""The soak's fault injector: one greenlet that breaks things on a seeded schedule.

Theory of operation
===================

Faults come every 20 to 200 ms, their kind drawn with fixed weights:

* ``sender_kill``: a sending greenlet is killed, preferably inside ``send``
  (its last attempt becomes *maybe*), and replaced;
* ``receiver_kill``: a receiving greenlet on a pull-kill lane is killed inside
  ``recv``, and replaced;
* ``receiver_stall``: every receiver of a lane pauses for a moment
  (back-pressure);
* ``sender_recycle``: a lane's sending pair is closed with a short linger and
  replaced; what ``close()`` returns is counted as returned;
* ``peer_restart``: a lane's receiving pair is closed and a new one bound on
  the same endpoint; tcp reconnects by itself, inproc senders reconnect
  through ``pair.call``;
* ``peer_churn``: on an inproc lane, the receiving pair is closed, and in
  its place a peer in a native thread connects and goes away 3 to 8 times, a
  few ms apart, while the senders keep sending; then a new receiving pair is
  bound (:mod:`.churn`). Pipes die while the sending pump writes, and a
  message whose pipe died after its first frames is rolled back by libzmq
  and sent again whole by the pump (the pairs' ``rollbacks``);
* ``router_peer_stall``: an extra peer connects to an echo lane's ROUTER and
  stops reading its replies, then reads again, leaves, or has its ROUTER pair
  restarted under it (:mod:`.stall`); it runs in a greenlet of its own, one
  at a time, while other faults go on.

``peer_churn`` is injected on inproc lanes only. There, a sending pair's
pipe goes with its peer, and libzmq keeps messages whole with one peer
reconnecting (``tests/test_churn.py``). On tcp, the lanes' senders connect,
and a connecting socket keeps its pipe across reconnections, so a peer that
reconnects never tears down the pipe a pump writes to (no rollback happens:
nothing the pump could get wrong); a peer that connects to a *binding* pair
gets a new pipe each time, while the old connection may still be shutting
down, and with two pipes attached libzmq 4.3.5 itself splits a message
between them, with plain pyzmq too (DESIGN.md hazard 13; RELIABILITY.md):
the soak does not test past that floor.

``sender_recycle``, ``peer_restart``, ``peer_churn`` and a stall that ends
with a restart may make libzmq drop what it still queued: each records a
:class:`~.losses.LossEvent` for the accounting. A receiving pair is not
replaced while a stalled peer is on it. A fault that cannot be injected is a
problem, and ends the injection.

The schedule (gaps and kinds) comes from the injector's seeded RNG, which
also gives each fault a seed of its own for its choices: however a fault goes
(it may choose among the workers alive at the time), the schedule after it is
the same for the same ``--seed``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.lock import Semaphore

from .churn import CONNECTIONS, ChurningPeer
from .lanes import ECHO, PULL_KILL, Lane, Topology
from .ledger import Ledger
from .stall import ENDINGS, PeerStall, StalledPeer
from .workers import SEND_DEADLINE, STALL, Workers

__all__ = ["FAULT_KINDS", "FaultInjector"]

#: Faults come this often (seconds between two, uniform).
_FAULT_GAP = (0.02, 0.2)
_FAULT_WEIGHTS = {
    "sender_kill": 40,
    "receiver_kill": 20,
    "receiver_stall": 6,
    "sender_recycle": 6,
    "peer_restart": 3,
    "peer_churn": 6,
    "router_peer_stall": 2,
}
#: The kinds of fault the injector chooses from.
FAULT_KINDS = tuple(_FAULT_WEIGHTS)
#: Lingers for sending pairs closed by a fault (seconds).
_RECYCLE_LINGERS = (0.0, 0.002, 0.01, 0.05, 0.5)
#: How long a churning peer may take (seconds).
_CHURN_LIMIT = 10.0
#: How long a stall may take to end once the soak stops (seconds).
_STALL_JOIN = SEND_DEADLINE + 5.0


class FaultInjector:
    """Injects faults until the workers are told to stop; :meth:`run` is the greenlet."""

    def __init__(
        self, ledger: Ledger, topology: Topology, workers: Workers, rng: random.Random
    ) -> None:
        self.ledger = ledger
        self.topology = topology
        self.lanes = topology.lanes
        self.workers = workers
        self.rng = rng
        #: Held while a fault changes the topology (a stall's restart comes from
        #: its own greenlet).
        self.lock = Semaphore()
        #: The stalled peer's greenlet, while there is one; how many there were.
        self.stall: gevent.Greenlet[Any, Any] | None = None
        self.stalls = 0

    def run(self) -> None:
        """Inject a fault every little while until the senders stop; then wait
        for a stall still going on to end."""
        schedule = self.rng
        kinds = list(_FAULT_WEIGHTS)
        weights = [_FAULT_WEIGHTS[k] for k in kinds]
        actions: dict[str, Callable[[random.Random], None]] = {
            "sender_kill": self._sender_kill,
            "receiver_kill": self._receiver_kill,
            "receiver_stall": self._receiver_stall,
            "sender_recycle": self._sender_recycle,
            "peer_restart": self._peer_restart,
            "peer_churn": self._peer_churn,
            "router_peer_stall": self._router_peer_stall,
        }
        try:
            while not self.workers.stopping:
                gevent.sleep(schedule.uniform(*_FAULT_GAP))
                if self.workers.stopping:
                    return
                kind = schedule.choices(kinds, weights)[0]
                rng = random.Random(schedule.getrandbits(64))
                try:
                    with self.lock:
                        actions[kind](rng)
                except Exception as exc:
                    self.ledger.problem(f"fault {kind} could not be injected: {exc!r}")
                    return
        finally:
            self._end_stall()

    def _end_stall(self) -> None:
        stall = self.stall
        if stall is not None:
            stall.join(timeout=_STALL_JOIN)
            if not stall.dead:
                self.ledger.problem("a stalled peer did not end")
                stall.kill(block=False)

    def _sender_kill(self, rng: random.Random) -> None:
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
        self.ledger.fault("sender_kill")
        self.workers.spawn_sender(self.lanes[victim.lane])

    def _receiver_kill(self, rng: random.Random) -> None:
        candidates = [
            (lane, w)
            for lane in self.lanes
            if lane.spec.kind == PULL_KILL
            for w in lane.receivers
            if w.greenlet is not None and not w.killed and not w.greenlet.dead and w.in_recv
        ]
        if not candidates:
            return
        lane, victim = rng.choice(candidates)
        victim.killed = True
        assert victim.greenlet is not None
        victim.greenlet.kill(block=False)
        self.ledger.fault("receiver_kill")
        self.workers.spawn_receiver(lane, len(lane.receivers))

    def _receiver_stall(self, rng: random.Random) -> None:
        lane = rng.choice(self.lanes)
        lane.paused_until = time.monotonic() + rng.uniform(*STALL)
        self.ledger.fault("receiver_stall")

    def _sender_recycle(self, rng: random.Random) -> None:
        lane = rng.choice(self.lanes)
        old = lane.tx
        lane.tx = self.topology.new_tx(lane)  # new sends go to the new pair from now on
        event = self.ledger.loss_event("sender_recycle", lane, old.gen)
        event.new_gen = lane.tx.gen
        linger = rng.choice(_RECYCLE_LINGERS)
        returned = self.topology.close_tx(old, linger, fault=True)
        self.ledger.fault("sender_recycle")
        self.ledger.count_info("sender_recycle_returned", returned)

    def _replaceable(self) -> list[Lane]:
        """Lanes whose receiving pair may be replaced: no stalled peer on it."""
        return [lane for lane in self.lanes if lane.stalled is None]

    def _peer_restart(self, rng: random.Random) -> None:
        lane = rng.choice(self._replaceable())
        event = self.ledger.loss_event("peer_restart", lane, lane.rx.gen)
        self.topology.replace_rx(lane, event)
        self.ledger.fault("peer_restart")

    def _peer_churn(self, rng: random.Random) -> None:
        lanes = [lane for lane in self._replaceable() if lane.spec.transport == "inproc"]
        if not lanes:
            self.ledger.count_info("peer_churn_skipped", 1)
            return
        lane = rng.choice(lanes)
        connections = rng.randint(*CONNECTIONS)
        event = self.ledger.loss_event("peer_churn", lane, lane.rx.gen)
        event.teardowns = connections + 1  # each connection, and the pair closed first
        self.topology.close_rx(lane.rx, 0.0, fault=True)
        peer = ChurningPeer(self.ledger, self.topology, lane, connections, rng)
        lane.churning = True  # long messages, while the peer churns
        try:
            peer.thread.start()
            deadline = time.monotonic() + _CHURN_LIMIT
            while not peer.done and time.monotonic() < deadline:
                gevent.sleep(0.002)
        finally:
            lane.churning = False
        if not peer.done:
            self.ledger.problem(f"lane {lane.index}: the churning peer did not end")
        elif peer.error is not None:
            self.ledger.problem(f"lane {lane.index}: the churning peer failed: {peer.error!r}")
        self.topology.bind_rx(lane, event)
        self.ledger.fault("peer_churn")
        self.ledger.count_info("peer_churn_connections", connections)

    def _router_peer_stall(self, rng: random.Random) -> None:
        if self.stall is not None and not self.stall.dead:
            self.ledger.count_info("router_peer_stall_skipped", 1)  # one at a time
            return
        lane = rng.choice([lane for lane in self.lanes if lane.spec.kind == ECHO])
        self.stalls += 1
        peer = StalledPeer(self.ledger, self.stalls, lane, rng.choice(ENDINGS))
        self.ledger.stalled_peers[peer.identity] = peer
        lane.stalled = peer  # from now on its ROUTER pair is not replaced by other faults
        runner = PeerStall(
            peer, lane, self.topology, lambda: self.workers.stopping, self._restart_stalled, rng
        )
        self.stall = gevent.spawn(runner.run)
        self.ledger.fault("router_peer_stall")

    def _restart_stalled(self, lane: Lane) -> None:
        """A stall's ``restart`` ending: the ROUTER pair replaced under the stalled peer."""
        with self.lock:
            event = self.ledger.loss_event("router_peer_stall", lane, lane.rx.gen)
            self.topology.replace_rx(lane, event)
