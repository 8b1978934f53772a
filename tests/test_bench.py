"""The ``bench`` command: a quick smoke run end to end, and the checks that make
a broken benchmark fail loudly instead of reporting a number."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from zmqchan_green.tools.bench import CASES, BenchError, Spec, plan_specs, ratios
from zmqchan_green.tools.bench.harness import Transfer

from .conftest import run_python

#: Seconds the smoke run may take before the test fails (pytest-timeout is above it).
RUN_TIMEOUT = 90


@pytest.mark.timeout(120)
def test_quick_bench_writes_table_and_json(tmp_path: Path) -> None:
    json_path = tmp_path / "bench.json"
    png_path = tmp_path / "bench.png"
    proc = run_python(
        "-m", "zmqchan_green", "bench", "--quick",
        "--cases", "raw_green,pair", "--rounds", "1", "--seconds", "0.1",
        "--json", str(json_path), "--png", str(png_path),
        timeout=RUN_TIMEOUT,
        PYTHONWARNINGS="error",
    )  # fmt: skip
    explain = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, explain
    assert "Throughput, msg/s" in proc.stdout, explain
    assert "Ratios" in proc.stdout, explain
    assert "round 1/1 raw_green tcp 1+64B G=1" in proc.stderr, explain  # progress

    document: dict[str, Any] = json.loads(json_path.read_text(encoding="utf-8"))
    assert set(document) >= {"machine", "rounds", "specs", "runs", "medians", "ratios", "failures"}
    assert document["rounds"] == 1
    assert document["failures"] == 0
    keys = {spec["key"] for spec in document["specs"]}
    # --quick: 1+64 B only; both transports; the pair sweep over tcp.
    assert keys == {
        "raw_green/tcp/64/g1",
        "raw_green/inproc/64/g1",
        "pair/tcp/64/g10",
        "pair/tcp/64/g1000",
        "pair/inproc/64/g10",
        "pair/inproc/64/g1000",
        "pair/tcp/64/g1",
        "pair/tcp/64/g100",
    }
    assert len(document["runs"]) == len(keys)
    for run in document["runs"]:
        assert run["error"] is None, run
        assert run["result"]["messages"] > 0 and run["result"]["rate"] > 0, run
    for key in keys:
        median = document["medians"][key]
        assert median["ok"] == 1 and median["rate_min"] <= median["rate"] <= median["rate_max"]
    checks = {row["name"]: row for row in document["ratios"]}
    assert checks["pair G=10 / raw_green"]["status"] in {"PASS", "MISS"}
    assert checks["pair G=10 / raw_green"]["value"] > 0
    assert checks["threadport 4 thr / plain_threads"]["status"] == "n/a"
    if importlib.util.find_spec("matplotlib") is not None:
        assert png_path.read_bytes().startswith(b"\x89PNG"), explain
    else:
        assert "PNG chart skipped" in proc.stdout, explain


def test_full_plan_covers_every_case_once() -> None:
    specs = plan_specs()
    keys = [spec.key for spec in specs]
    assert len(keys) == len(set(keys))
    assert {spec.case for spec in specs} == set(CASES)
    # 10 throughput rows x 3 sizes x 2 transports, 7 more sweep points,
    # 4 latency, 3 rpc, 3 memory, 1 lag.
    assert len(specs) == 60 + 7 + 4 + 3 + 3 + 1


def test_ratios_mark_pass_miss_and_missing() -> None:
    table = {
        Spec("raw_green").key: {"rate": 50_000.0},
        Spec("pair", greenlets=10).key: {"rate": 160_000.0},
        Spec("pair", greenlets=1000).key: {"rate": 100_000.0},
        "waiters_event": {"bytes_per_waiter": 9000.0},
        "waiters_pair": {"bytes_per_waiter": 9500.0},
    }
    checks = {row["name"]: row for row in ratios(table, [])}
    assert checks["pair G=10 / raw_green"]["status"] == "PASS"
    assert checks["pair G=10 / raw_green"]["value"] == pytest.approx(3.2)
    assert checks["pair G=1000 / pair G=10"]["status"] == "MISS"
    assert checks["recv waiter cost beyond an Event waiter"]["value"] == pytest.approx(500.0)
    assert checks["recv waiter cost beyond an Event waiter"]["status"] == "PASS"
    assert checks["hub lag p99, pair saturated"]["status"] == "n/a"


@pytest.mark.timeout(30)
def test_lost_messages_fail_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("zmqchan_green.tools.bench.harness.OP_TIMEOUT", 0.01)
    delivered = [[b"\x01", b"x" * 64]] * 3

    def recv() -> list[bytes]:
        if delivered:
            return delivered.pop()
        raise TimeoutError("nothing came")

    transfer = Transfer(64, 2, lambda msg: None, recv, lambda: False)
    with pytest.raises(BenchError, match="lost messages: 3 of 5 received"):
        transfer.run(5)


@pytest.mark.timeout(30)
def test_extra_or_malformed_messages_fail_loudly() -> None:
    good = [b"\x01", b"x" * 64]
    extra = Transfer(64, 1, lambda msg: None, lambda: good, lambda: True)
    with pytest.raises(BenchError, match="more messages arrived than the 4 sent"):
        extra.run(4)
    short = Transfer(64, 1, lambda msg: None, lambda: [b"\x01"], lambda: False)
    with pytest.raises(BenchError, match="message 0 is malformed"):
        short.run(4)
