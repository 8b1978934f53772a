"""The soak's run, phase by phase: set up, soak, stop, drain, close, sweep, account.

:class:`Soak` composes the parts: the :class:`~.ledger.Ledger` (what became
of every attempt), the :class:`~.lanes.Topology` (lanes and pairs), the
:class:`~.workers.Workers` and the :class:`~.faults.FaultInjector`. It owns
the phases, which the watchdog reads; ``ledger.progress`` moves whenever
anything happens, so the watchdog can tell a slow run from a stuck one.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TextIO

import gevent

from ..common import proc_status_kib
from .accounting import Accounting
from .faults import FaultInjector
from .lanes import ECHO, LANES, Lane, SoakConfig, Topology, leftovers
from .ledger import Ledger, Worker
from .messages import Payloads
from .report import document
from .workers import SEND_DEADLINE, Workers

__all__ = ["Soak"]

#: The end: drained once nothing moved for this long (and nothing is pending).
_DRAIN_QUIET = 1.0
_DRAIN_LIMIT = 20.0
_FINAL_LINGER = 2.0
#: How long stopping workers may take (a send's deadline, and then some).
_JOIN_LIMIT = SEND_DEADLINE + 5.0


class Soak:
    """Runs one soak; see the package docstring."""

    def __init__(self, config: SoakConfig, err: TextIO) -> None:
        self.config = config
        self.err = err
        #: The seeded RNG every other one is drawn from: payloads first, then
        #: each worker as it starts, then the fault injector.
        self.rng = random.Random(config.seed)
        self.payloads = Payloads(self.rng)
        lanes = [Lane(i, spec) for i, spec in enumerate(LANES)]
        self.ledger = Ledger(lanes)
        self.topology = Topology(lanes, self.ledger)
        self.workers = Workers(self.ledger, self.topology, self.payloads, self.rng)
        # Phase and time, read by the watchdog thread.
        self.phase = "setting up"
        self.started = time.monotonic()
        self.soak_ended: float | None = None

    def run(self) -> None:
        """Set up, soak, stop, drain, close, sweep; the ledger then holds every fate."""
        cfg = self.config
        ledger, topology, workers = self.ledger, self.topology, self.workers
        topology.open_lanes()
        workers.start(cfg.greenlets, cfg.threads)
        drainer = gevent.spawn(workers.errors_drainer)
        injector = gevent.spawn(FaultInjector(ledger, topology, workers, workers.draw_rng()).run)
        self.phase = "soaking"
        self.started = time.monotonic()
        gevent.sleep(cfg.seconds)
        self.soak_ended = time.monotonic()

        self._set_phase("stopping senders")
        workers.stopping = True
        injector.join(timeout=_JOIN_LIMIT)
        if not injector.dead:
            ledger.problem("the fault injector did not stop")
            injector.kill(block=False)
        greenlet_senders = workers.sending_greenlets()
        gevent.joinall(greenlet_senders, timeout=_JOIN_LIMIT)
        stuck = [g for g in greenlet_senders if not g.dead]
        if stuck:
            ledger.problem(f"{len(stuck)} sender greenlet(s) did not stop")
            gevent.killall(stuck, block=False)
        self._wait(workers.threads_done, _JOIN_LIMIT)
        if not workers.threads_done():
            ledger.problem("native thread(s) did not stop")

        self._set_phase("draining")
        self._drain()
        workers.rx_stop = True
        readers = workers.receiving_greenlets()
        gevent.joinall(readers, timeout=_JOIN_LIMIT)
        stuck = [g for g in readers if not g.dead]
        if stuck:
            ledger.problem(f"{len(stuck)} receiver greenlet(s) did not stop")
            gevent.killall(stuck, block=False)

        self._set_phase("closing")
        for lane in topology.lanes:
            returned = topology.close_tx(lane.tx, _FINAL_LINGER, fault=False)
            ledger.progress += 1
            if returned:
                ledger.problem(f"lane {lane.index}: final close returned {returned} message(s)")
        for lane in topology.lanes:
            topology.close_rx(lane.rx, _FINAL_LINGER, fault=False)
            ledger.progress += 1
        workers.errors_stop = True
        drainer.join(timeout=1.0)
        self._sweep()
        for thread in workers.threads:
            thread.join(timeout=1.0)
        self._set_phase("accounting")

    def account(self) -> dict[str, Any]:
        """Check every invariant and return the figures (the ``--json`` document)."""
        return document(self, Accounting(self.ledger, self.topology).run())

    def shut_down(self) -> None:
        """Stop every worker and close every pair (linger 0): after a failure, so that
        ``Context.term()`` cannot hang on a socket left open. Idempotent."""
        workers = self.workers
        workers.stopping = workers.rx_stop = workers.errors_stop = True
        self.topology.close_all()

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self.ledger.progress += 1
        print(f"soak: {phase}", file=self.err, flush=True)

    def _wait(self, condition: Callable[[], bool], limit: float) -> None:
        deadline = time.monotonic() + limit
        while not condition() and time.monotonic() < deadline:
            gevent.sleep(0.05)

    def _drain(self) -> None:
        """Wait until nothing moved for a while and no pair holds anything."""
        deadline = time.monotonic() + _DRAIN_LIMIT
        last = self.ledger.progress
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            gevent.sleep(0.1)
            now = time.monotonic()
            if self.ledger.progress != last:
                last = self.ledger.progress
                quiet_since = now
                continue
            pending = sum(
                s["tx_pending"] + s["rx_pending"]
                for s in (p.stats() for p in self.topology.open_pairs())
            )
            if not pending and now - quiet_since >= _DRAIN_QUIET:
                return
        self.ledger.problem(f"the pairs did not drain within {_DRAIN_LIMIT} s")

    def _sweep(self) -> None:
        """Take what closed pairs still buffer (e.g. given back by a killed receiver)."""
        ledger = self.ledger
        sweeper = Worker("sweeper", ordered=False)
        for rx in self.topology.rx_gens:
            echo = self.topology.lanes[rx.lane].spec.kind == ECHO
            for frames in leftovers(rx.pair):
                ledger.count_info("swept", 1)
                peer = ledger.stalled_peers.get(frames[0]) if echo else None
                if peer is not None:
                    ledger.stall_swept(peer, frames, rx)
                    continue
                got = ledger.deliver(frames, rx, sweeper)
                if got is not None and echo:
                    sender, seq = got
                    # Never echoed: its pair was closed.
                    ledger.echo_outcome(sender, seq, rx, accepted=False)
        for tx in self.topology.tx_gens:
            if self.topology.lanes[tx.lane].spec.kind == ECHO:
                for frames in leftovers(tx.pair):
                    ledger.count_info("swept", 1)
                    ledger.deliver_echo(frames, tx, sweeper)

    def snapshot(self) -> dict[str, Any]:
        """Rough live figures for progress lines and an aborted run (any thread)."""
        ledger = self.ledger
        senders = ledger.sender_list[:]
        return {
            "phase": self.phase,
            "elapsed": round(time.monotonic() - self.started, 1),
            "sent": sum(s.attempts for s in senders),
            "accepted": sum(s.accepted for s in senders),
            "delivered": ledger.delivered,
            "echoes_delivered": ledger.echo_delivered,
            "faults": sum(ledger.faults.values()),
            "problems": ledger.problem_count,
            "rss_kib": proc_status_kib("VmRSS") or 0,
        }
