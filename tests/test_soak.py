"""The ``soak`` command: a short run end to end, in a subprocess, with its JSON checked."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_python

#: Seconds the smoke run may take before the test fails (pytest-timeout is above it).
RUN_TIMEOUT = 50


@pytest.mark.timeout(60)
def test_short_soak_holds_every_invariant(tmp_path: Path) -> None:
    json_path = tmp_path / "soak.json"
    proc = run_python(
        "-m", "zmqchan_green", "soak", "--seconds", "5",
            "--greenlets", "30", "--threads", "2", "--json", str(json_path),
        timeout=RUN_TIMEOUT,
        PYTHONWARNINGS="error",
    )  # fmt: skip
    explain = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, explain
    assert "result:        OK" in proc.stdout, explain
    assert "soak:" in proc.stderr and " delivered " in proc.stderr, explain  # progress lines

    doc: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    assert doc["ok"] is True, explain
    assert all(doc["invariants"].values()), doc["invariants"]
    assert doc["problems"] == [] and doc["problem_count"] == 0, doc["problems"]
    assert doc["config"]["greenlets"] == 30 and doc["config"]["threads"] == 2
    assert 4.5 <= doc["duration"]["soak_seconds"] < 10

    msgs = doc["messages"]
    assert msgs["sent"] > 10_000, msgs
    # Every attempt is accounted for: accepted, not accepted, or killed mid-send.
    assert (
        msgs["sent"]
        == msgs["accepted"] - msgs["maybe_accepted"] + msgs["not_accepted"] + (msgs["maybe"])
    )
    assert 0 < msgs["delivered"] <= msgs["accepted"]
    assert msgs["order_checked"] > 0

    losses = doc["losses"]
    assert losses["lost"] == 0 and losses["echo_lost"] == 0, losses
    # Whatever libzmq dropped was dropped at a fault of a kind that can drop.
    dropping = {"peer_restart", "sender_recycle", "peer_churn", "router_peer_stall"}
    assert set(losses["lost_in_libzmq_by_cause"]) <= dropping
    assert set(losses["echo_lost_in_libzmq_by_cause"]) <= dropping
    if losses["lost_in_libzmq"] or losses["echo_lost_in_libzmq"]:
        assert sum(doc["faults"][kind] for kind in dropping) > 0, doc
    events = losses["libzmq_loss_events"]
    assert sum(e["lost"] for e in events) == losses["lost_in_libzmq"]
    assert sum(e["echoes_lost"] for e in events) == losses["echo_lost_in_libzmq"]
    # accepted = delivered + returned + reported + lost in libzmq (maybe-accepted included)
    assert msgs["accepted"] == (
        msgs["delivered"] + msgs["returned"] + msgs["reported"] + losses["lost_in_libzmq"]
    ), doc

    for key in ("duplicates", "order_violations", "checksum_errors", "phantoms", "misrouted"):
        assert doc[key] == 0, (key, doc[key])
    assert doc["stalls"] == 0 and doc["counter_mismatches"] == 0

    faults = doc["faults"]
    for kind in (
        "sender_kill", "receiver_kill", "receiver_stall", "sender_recycle", "peer_restart",
        "peer_churn", "router_peer_stall", "send_timeout", "recv_timeout",
    ):  # fmt: skip
        assert kind in faults, faults
    assert doc["faults_total"] > 0
    assert doc["peak_rss_kib"] > 0

    rollbacks = doc["rollbacks"]
    assert rollbacks["total"] == sum(rollbacks["by_lane"]) >= 0
    assert doc["parked_high_water"] >= 0
    # Every reply a stalled ROUTER peer's pair accepted is accounted for.
    stalled = doc["router_peer_stall"]
    assert stalled["stalls"] == faults["router_peer_stall"] == sum(stalled["endings"].values())
    assert stalled["replies_lost"] == 0, stalled
    assert stalled["replies_accepted"] == (
        stalled["replies_delivered"] + stalled["replies_reported"]
        + stalled["replies_returned"] + stalled["replies_lost_with_pipe"]
    ), stalled  # fmt: skip
    assert stalled["longest_real_echo_gap_ms"] <= stalled["gap_limit_ms"], stalled


def _ledger() -> tuple[Any, Any, Any, Any]:
    """A ledger with one inproc lane and one sender on it; its payloads."""
    from zmqchan_green.tools.soak.lanes import LANES, Lane
    from zmqchan_green.tools.soak.ledger import Ledger
    from zmqchan_green.tools.soak.messages import Payloads

    lanes = [Lane(i, spec) for i, spec in enumerate(LANES)]
    lane = next(lane for lane in lanes if lane.spec.kind == "pull-order")
    ledger = Ledger(lanes)
    sender = ledger.add_sender(lane, "greenlet")
    return ledger, lane, sender, Payloads(random.Random(1))


def test_ledger_flags_fragments_and_mixed_messages() -> None:
    """A message missing frames, with extra frames, or with frames of two
    messages is a problem (and never counts as delivered); a whole one is not."""
    from zmqchan_green.tools.soak.lanes import PeerGen
    from zmqchan_green.tools.soak.ledger import Worker

    ledger, lane, sender, payloads = _ledger()
    end = PeerGen(99, lane.index)
    worker = Worker("receiver", ordered=True)
    msgs: dict[int, list[Any]] = {}
    while len(msgs) < 6:  # 4 payload frames each, none of them empty
        seq = sender.begin(7)
        msg = payloads.message(sender.sid, 7, seq, (4, 4))
        if all(msg[1:-1]):
            msgs[seq] = msg
    a, b, c, d, e, f = msgs.values()
    broken = [
        a[:-1],  # the last frame missing (a head)
        a[1:],  # the header missing (a tail)
        [b[0], b[1], *b[3:]],  # a frame from the middle missing
        [*c, c[-1]],  # a frame too many
        [d[0], *e[1:-1], d[-1]],  # the payload of another message
        [*d[:3], *e[3:]],  # the head of one message, the tail of another
        [f[0], f[1] + f[2][:1], f[2][1:], *f[3:]],  # a frame boundary moved
    ]
    for n, frames in enumerate(broken, 1):
        assert ledger.deliver(frames, end, worker) is None, frames
        assert ledger.checksum_errors == n
    assert ledger.problem_count == len(broken) and ledger.delivered == 0
    # Whole messages check out, once each.
    for seq, msg in msgs.items():
        assert ledger.deliver(msg, end, worker) == (sender, seq)
    assert ledger.deliver(a, end, worker) is None
    assert ledger.duplicates == 1 and ledger.delivered == len(msgs)


def test_stalled_peer_replies_are_checked_whole_and_in_order() -> None:
    from zmqchan_green.tools.soak.stall import StalledPeer

    ledger, lane, _sender, _payloads = _ledger()
    peer = StalledPeer(ledger, 1, lane, "resume")
    r0, r1, r2 = (peer.next_request() for _ in range(3))
    peer.delivered([r0[0], r1[1]])  # frames of two replies
    peer.delivered(r2[:1])  # a reply missing its payload
    assert ledger.checksum_errors == 2
    peer.delivered(r1)
    peer.delivered(r0)  # out of order
    assert ledger.order_violations == 1
    peer.delivered(r1)  # twice
    assert ledger.duplicates == 1
    assert ledger.problem_count == 4
