"""Smoke tests: the ``demo`` command and the examples run and succeed.

Each runs in a subprocess of the current interpreter, with the repository
root first on ``PYTHONPATH`` so the checkout's package is the one imported.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import zmq

from .conftest import ROOT, run_python

EXAMPLES = ROOT / "examples"

#: Seconds a subprocess may take before the test fails (pytest-timeout is above it).
RUN_TIMEOUT = 45


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``python *args`` from the repository root; fail the test if it hangs."""
    # Warnings in the child are as strict as in this test run.
    return run_python(*args, timeout=RUN_TIMEOUT, PYTHONWARNINGS="error")


def explain(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("endpoint", ["tcp", "ipc", "inproc"])
def test_demo(endpoint: str) -> None:
    if endpoint == "ipc" and not zmq.has("ipc"):
        pytest.skip(f"this libzmq has no {endpoint} transport")
    proc = run(
        "-m",
        "zmqchan_green",
        "demo",
        "--greenlets",
        "20",
        "--messages",
        "20",
        "--endpoint",
        endpoint,
        "--timeout",
        "30",
    )
    assert proc.returncode == 0, explain(proc)
    out = proc.stdout
    assert re.search(r"^greenlets:\s+20$", out, re.MULTILINE), explain(proc)
    assert re.search(r"^messages:\s+400 sent, 400 echoed back and verified$", out, re.MULTILINE), (
        explain(proc)
    )
    assert re.search(r"^errors:\s+0$", out, re.MULTILINE), explain(proc)
    assert re.search(r"^elapsed:\s+[\d.]+ s$", out, re.MULTILINE), explain(proc)
    assert re.search(r"^throughput:\s+[\d,]+ msg/s", out, re.MULTILINE), explain(proc)
    assert out.rstrip().endswith("OK"), explain(proc)
    assert proc.stderr == "", explain(proc)


@pytest.mark.timeout(60)
def test_demo_fails_cleanly_on_timeout() -> None:
    # Far more messages than fit in a tenth of a second: every wait must give up.
    proc = run(
        "-m",
        "zmqchan_green",
        "demo",
        "--greenlets",
        "200",
        "--messages",
        "5000",
        "--timeout",
        "0.1",
    )
    assert proc.returncode == 1, explain(proc)
    assert "FAILED" in proc.stderr, explain(proc)
    assert "timed out" in proc.stderr, explain(proc)
    assert "Traceback" not in proc.stderr, explain(proc)


@pytest.mark.timeout(30)
def test_no_command_prints_help() -> None:
    proc = run("-m", "zmqchan_green")
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.startswith("usage: python -m zmqchan_green"), explain(proc)
    assert "demo" in proc.stdout, explain(proc)


@pytest.mark.timeout(30)
def test_demo_rejects_bad_arguments() -> None:
    proc = run("-m", "zmqchan_green", "demo", "--greenlets", "0")
    assert proc.returncode == 2, explain(proc)
    assert "--greenlets" in proc.stderr, explain(proc)


@pytest.mark.timeout(60)
def test_echo_example() -> None:
    proc = run(str(EXAMPLES / "echo.py"))
    assert proc.returncode == 0, explain(proc)
    assert proc.stdout.count("as sent") == 10, explain(proc)
    assert "OK: all 10 two-frame messages echoed back" in proc.stdout, explain(proc)
    assert proc.stderr == "", explain(proc)


@pytest.mark.timeout(60)
def test_fan_in_example() -> None:
    proc = run(str(EXAMPLES / "fan_in.py"))
    assert proc.returncode == 0, explain(proc)
    assert "the collector received 10000 of 10000" in proc.stdout, explain(proc)
    assert "OK: all 10000 messages arrived exactly once" in proc.stdout, explain(proc)
    assert proc.stderr == "", explain(proc)


@pytest.mark.timeout(60)
def test_threads_example() -> None:
    proc = run(str(EXAMPLES / "threads.py"))
    assert proc.returncode == 0, explain(proc)
    assert "thread sent 200 messages through a DEALER socket" in proc.stdout, explain(proc)
    assert "received back: 200 from the thread, 200 from the greenlet" in proc.stdout, explain(proc)
    assert proc.stdout.rstrip().endswith("OK"), explain(proc)
    assert proc.stderr == "", explain(proc)
