"""The soak's fault injector: one greenlet that breaks things on a seeded schedule.

Theory of operation
===================

Faults come every 20 to 200 ms, their kind drawn with fixed weights from a
seeded RNG:

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
  through ``pair.call``.

The last two may make libzmq drop what it still queued: each records a
:class:`~.losses.LossEvent` for the accounting. A fault that cannot be
injected is a problem, and ends the injection.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import gevent

from .lanes import PULL_KILL, Topology
from .ledger import Ledger
from .workers import STALL, Workers

__all__ = ["FAULT_KINDS", "FaultInjector"]

#: Faults come this often (seconds between two, uniform).
_FAULT_GAP = (0.02, 0.2)
_FAULT_WEIGHTS = {
    "sender_kill": 40,
    "receiver_kill": 20,
    "receiver_stall": 6,
    "sender_recycle": 6,
    "peer_restart": 3,
}
#: The kinds of fault the injector chooses from.
FAULT_KINDS = tuple(_FAULT_WEIGHTS)
#: Lingers for sending pairs closed by a fault (seconds).
_RECYCLE_LINGERS = (0.0, 0.002, 0.01, 0.05, 0.5)


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

    def run(self) -> None:
        """Inject a fault every little while until the senders stop."""
        rng = self.rng
        kinds = list(_FAULT_WEIGHTS)
        weights = [_FAULT_WEIGHTS[k] for k in kinds]
        actions: dict[str, Callable[[random.Random], None]] = {
            "sender_kill": self._sender_kill,
            "receiver_kill": self._receiver_kill,
            "receiver_stall": self._receiver_stall,
            "sender_recycle": self._sender_recycle,
            "peer_restart": self._peer_restart,
        }
        while not self.workers.stopping:
            gevent.sleep(rng.uniform(*_FAULT_GAP))
            if self.workers.stopping:
                return
            kind = rng.choices(kinds, weights)[0]
            try:
                actions[kind](rng)
            except Exception as exc:
                self.ledger.problem(f"fault {kind} could not be injected: {exc!r}")
                return

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

    def _peer_restart(self, rng: random.Random) -> None:
        lane = rng.choice(self.lanes)
        old = lane.rx
        event = self.ledger.loss_event("peer_restart", lane, old.gen)
        self.topology.close_rx(old, 0.0, fault=True)
        new = self.topology.new_rx(lane)
        event.new_gen = new.gen
        new.loss_event = event
        lane.rx = new
        if lane.spec.transport == "inproc":
            self.topology.reconnect(lane)
        self.ledger.fault("peer_restart")
