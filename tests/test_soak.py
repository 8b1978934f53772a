"""The ``soak`` command: a short run end to end, in a subprocess, with its JSON checked."""

from __future__ import annotations

import json
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
    assert set(losses["lost_in_libzmq_by_cause"]) <= {"peer_restart", "sender_recycle"}
    assert set(losses["echo_lost_in_libzmq_by_cause"]) <= {"peer_restart", "sender_recycle"}
    if losses["lost_in_libzmq"] or losses["echo_lost_in_libzmq"]:
        assert doc["faults"]["peer_restart"] + doc["faults"]["sender_recycle"] > 0, doc
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
    for kind in ("sender_kill", "receiver_kill", "receiver_stall", "send_timeout", "recv_timeout"):
        assert kind in faults, faults
    assert doc["faults_total"] > 0
    assert doc["peak_rss_kib"] > 0
