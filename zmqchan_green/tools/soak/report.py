"""The soak's report: the JSON document of a finished run, and its summary.

The document (``--json``) holds every figure; :func:`summary` renders it for
the terminal. A run is ``ok`` when every invariant held.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import gevent
import zmq

from ... import __version__
from ..common import proc_status_kib
from .accounting import Tally
from .faults import FAULT_KINDS
from .lanes import HWM, LOSS_CAPACITY, RxGen, TxGen
from .stall import ENDINGS, HOL_LIMIT, STALL_CAPACITY, StalledPeer

if TYPE_CHECKING:
    from .driver import Soak

#: The JSON lists at most this many stalls one by one.
_MAX_STALLS_LISTED = 100

__all__ = ["document", "mib", "summary"]


def mib(kib: int) -> str:
    """KiB as ``12.3 MiB``."""
    return f"{kib / 1024:.1f} MiB"


def document(soak: Soak, tally: Tally) -> dict[str, Any]:
    """Every figure of a finished run, and whether each invariant held."""
    ledger = soak.ledger
    peers = list(ledger.stalled_peers.values())
    end = time.monotonic()
    soak_end = soak.soak_ended or end
    soak_seconds = soak_end - soak.started
    events = [
        {
            "kind": e.kind,
            "lane": e.lane,
            "closed_pair": e.old_gen,
            "new_pair": e.new_gen,
            "teardowns": e.teardowns,
            "lost": e.lost,
            "echoes_lost": e.echo_lost,
        }
        for lane in soak.topology.lanes
        for e in lane.loss_events
    ]
    faults = dict(sorted(ledger.faults.items()))
    for kind in FAULT_KINDS:
        faults.setdefault(kind, 0)
    faults.setdefault("send_timeout", 0)
    faults.setdefault("recv_timeout", 0)
    faults["sender_killed_in_send"] = tally.totals["maybe"]
    lost_in_libzmq = sum(tally.lost_by_cause.values())
    echo_lost_in_libzmq = sum(tally.echo_lost_by_cause.values())
    invariants = {
        "no_loss": tally.totals["lost"] == 0 and tally.totals["echo_lost"] == 0,
        "no_duplicates": ledger.duplicates == 0,
        "in_order": ledger.order_violations == 0,
        "checksums": ledger.checksum_errors == 0,
        "nothing_unaccepted_delivered": ledger.phantoms == 0,
        "nothing_misrouted": ledger.misrouted == 0,
        "counters_agree": tally.totals["counter_mismatches"] == 0,
        "no_stalls": ledger.stalls == 0,
        "no_head_of_line_blocking": ledger.hol_blocked == 0,
        "stalled_peers_accounted": tally.stalled["lost"] == 0,
        "libzmq_losses_within_queue_capacity": not tally.over_capacity,
        "no_other_problems": ledger.problem_count == 0,
    }
    return {
        "tool": "zmqchan_green soak",
        "version": __version__,
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "gevent": gevent.__version__,
        "seed": soak.config.seed,
        "config": {
            "seconds": soak.config.seconds,
            "greenlets": soak.config.greenlets,
            "threads": soak.config.threads,
            "lanes": [lane.spec.describe() for lane in soak.topology.lanes],
            "hwm": HWM,
        },
        "duration": {
            "soak_seconds": round(soak_seconds, 3),
            "total_seconds": round(end - soak.started, 3),
        },
        "messages": {
            "sent": tally.totals["attempted"],
            "accepted": tally.totals["accepted"],
            "not_accepted": tally.totals["not_accepted"],
            "maybe": tally.totals["maybe"],
            "maybe_accepted": tally.totals["maybe_accepted"],
            "delivered": tally.totals["delivered"],
            "returned": tally.totals["returned"],
            "reported": tally.totals["reported"],
            "delivered_per_second": round(tally.totals["delivered"] / soak_seconds)
            if soak_seconds > 0
            else 0,
            "order_checked": ledger.order_checked,
        },
        "echoes": {
            "accepted": ledger.echo_accepted,
            "not_accepted": ledger.echo_not_accepted,
            "delivered": ledger.echo_delivered,
            "returned": ledger.echo_returned,
            "reported": ledger.echo_errors,
        },
        "faults": faults,
        "faults_total": sum(v for k, v in faults.items() if k not in ("sender_killed_in_send",)),
        "losses": {
            "lost": tally.totals["lost"],
            "echo_lost": tally.totals["echo_lost"],
            "lost_in_libzmq": lost_in_libzmq,
            "lost_in_libzmq_by_cause": dict(sorted(tally.lost_by_cause.items())),
            "echo_lost_in_libzmq": echo_lost_in_libzmq,
            "echo_lost_in_libzmq_by_cause": dict(sorted(tally.echo_lost_by_cause.items())),
            "maybe_undelivered": tally.totals["maybe_undelivered"],
            "libzmq_loss_capacity": LOSS_CAPACITY,
            "libzmq_loss_events": events,
        },
        "rollbacks": _rollbacks(soak),
        "parked_high_water": max([ledger.parked_high_water] + [p.parked_high_water for p in peers]),
        "router_peer_stall": _stalls(tally, peers),
        "duplicates": ledger.duplicates,
        "order_violations": ledger.order_violations,
        "checksum_errors": ledger.checksum_errors,
        "phantoms": ledger.phantoms,
        "misrouted": ledger.misrouted,
        "stalls": ledger.stalls,
        "counter_mismatches": tally.totals["counter_mismatches"],
        "pairs_created": {
            "sending": len(soak.topology.tx_gens),
            "receiving": len(soak.topology.rx_gens),
        },
        "info": dict(sorted(ledger.info.items())),
        "peak_rss_kib": proc_status_kib("VmHWM") or 0,
        "bookkeeping_kib": _bookkeeping(soak) // 1024,
        "invariants": invariants,
        "problems": ledger.problems,
        "problem_count": ledger.problem_count,
        "ok": all(invariants.values()),
    }


def _rollbacks(soak: Soak) -> dict[str, Any]:
    """Messages libzmq rolled back (a pipe died mid-message) and the pairs sent again whole."""
    by_lane = [0] * len(soak.topology.lanes)
    gens: list[TxGen | RxGen] = [*soak.topology.tx_gens, *soak.topology.rx_gens]
    for gen in gens:
        by_lane[gen.lane] += gen.rollbacks
    return {"total": sum(by_lane), "by_lane": by_lane}


def _stalls(tally: Tally, peers: list[StalledPeer]) -> dict[str, Any]:
    """The stalled ROUTER peers: how they ended, their replies' fates, the lanes' progress."""
    endings = {ending: sum(p.ending == ending for p in peers) for ending in ENDINGS}
    stalled = tally.stalled
    return {
        "stalls": len(peers),
        "endings": endings,
        "parked_seen": sum(p.parked_seen for p in peers),
        "stalled_seconds": round(sum(p.stalled_seconds for p in peers), 3),
        "requests": stalled["requests"],
        "requests_read": stalled["read"],
        "requests_swept": stalled["swept"],
        "replies_accepted": stalled["accepted"],
        "replies_not_accepted": stalled["not_accepted"],
        "replies_delivered": stalled["delivered"],
        "replies_reported": stalled["reported"],
        "replies_returned": stalled["returned"],
        "replies_lost_with_pipe": stalled["lost_with_pipe"],
        "replies_lost": stalled["lost"],
        "pipe_capacity": STALL_CAPACITY,
        "real_echoes_accepted_while_stalled": sum(p.real_echoes for p in peers),
        "real_echoes_delivered_while_stalled": sum(p.real_delivered for p in peers),
        "longest_real_echo_gap_ms": round(max([0.0] + [p.longest_gap for p in peers]) * 1000, 1),
        "gap_limit_ms": round(HOL_LIMIT * 1000),
        "each": [p.figures() for p in peers[:_MAX_STALLS_LISTED]],
    }


def _bookkeeping(soak: Soak) -> int:
    """Roughly how many bytes the soak's own records take (part of the peak RSS)."""
    total = 0
    for s in soak.ledger.sender_list:
        total += sys.getsizeof(s.outcome) + sys.getsizeof(s.fwd) + sys.getsizeof(s.echo)
    masters: list[dict[Any, int]] = [soak.ledger.max_dlv, soak.ledger.max_echo]
    masters += [w.last for w in [*soak.workers.workers, *soak.workers.thread_workers]]
    for d in masters:
        # The table, plus each entry's own tuple key and int (about 100 bytes).
        total += sys.getsizeof(d) + 100 * len(d)
    for lane in soak.topology.lanes:
        for e in lane.loss_events:
            # Copies share their keys and values with the masters: tables only.
            total += sys.getsizeof(e.low) + sys.getsizeof(e.echo_low)
            total += sys.getsizeof(e.high) if e.high is not None else 0
    return total


def summary(doc: dict[str, Any]) -> str:
    """The human-readable summary of a finished run's document."""
    msgs, echoes, losses, faults = doc["messages"], doc["echoes"], doc["losses"], doc["faults"]
    cfg, st = doc["config"], doc["router_peer_stall"]
    endings = ", ".join(f"{k} {v}" for k, v in st["endings"].items())
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
        f"edges:         rollbacks {doc['rollbacks']['total']:,} (by lane "
        f"{', '.join(str(n) for n in doc['rollbacks']['by_lane'])}) | parked high-water "
        f"{doc['parked_high_water']:,}",
        f"stalled peers: {st['stalls']} ({endings}); replies accepted "
        f"{st['replies_accepted']:,} | delivered {st['replies_delivered']:,} | reported "
        f"{st['replies_reported']:,} | returned {st['replies_returned']:,} | lost with the "
        f"peer's pipe {st['replies_lost_with_pipe']:,} | lost {st['replies_lost']:,} | not "
        f"accepted {st['replies_not_accepted']:,}; own DEALER served meanwhile: "
        f"{st['real_echoes_accepted_while_stalled']:,} echoes, longest gap "
        f"{st['longest_real_echo_gap_ms']:,.0f} ms (limit {st['gap_limit_ms']:,})",
        f"integrity:     duplicates {doc['duplicates']:,} | order violations "
        f"{doc['order_violations']:,} (of {msgs['order_checked']:,} checked) | checksum errors "
        f"(fragments, mixed or damaged frames) {doc['checksum_errors']:,} | "
        f"unaccepted but delivered {doc['phantoms']:,} | "
        f"misrouted {doc['misrouted']:,} | stalls {doc['stalls']:,} | counter mismatches "
        f"{doc['counter_mismatches']:,}",
        f"pairs:         {doc['pairs_created']['sending']} sending, "
        f"{doc['pairs_created']['receiving']} receiving created",
        f"peak RSS:      {mib(doc['peak_rss_kib'])} (VmHWM), of which about "
        f"{mib(doc['bookkeeping_kib'])} is the soak's own record of every message",
    ]
    failed = [name for name, held in doc["invariants"].items() if not held]
    lines.append(
        "result:        "
        + ("OK: all invariants held" if not failed else "FAILED: " + ", ".join(failed))
    )
    return "\n".join(lines)
