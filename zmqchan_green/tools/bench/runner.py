"""The driver's runner: every spec once per round, each in a fresh child process.

Theory of operation
===================

Each run of a spec is a fresh interpreter (``python -m zmqchan_green bench
--run-case JSON``), so that no case inherits another's heap, sockets, threads
or CPU caches. Rounds alternate the order, forward then backward, so that slow
drift of the machine does not always favour the same cases. A child that
overruns ``--case-timeout`` is killed; one that fails or prints no JSON line
is recorded as an :class:`Outcome` with an ``error``, and the driver goes on.

While each child runs, a :class:`CpuMeter` measures how much of the machine
*other* processes used, so that the report can warn about figures taken on a
busy machine.

Why not pyperf. pyperf also runs each benchmark in fresh worker processes and
calibrates loops, but it runs one benchmark's workers back to back and
compares runs made at different times (``pyperf compare_to``). The targets
here are ratios between cases, and on a shared 2-core machine the speed
drifts by tens of percent within minutes; only cases interleaved in the same
rounds give stable ratios. The runner therefore stays this small loop, and
the medians it reports come from rounds that alternate every case.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .plan import Plan, Spec

__all__ = ["BUSY", "CASE_TIMEOUT", "CpuMeter", "Outcome", "run_all"]

#: Default seconds before the driver kills a child.
CASE_TIMEOUT = 120.0
#: Progress lines and the report warn about runs during which other processes
#: used more than this share of the machine.
BUSY = 0.1
#: Runs shorter than this (seconds) are not metered: CPU time comes in 10 ms ticks.
_METER_MIN = 0.5
#: The directory that holds the ``zmqchan_green`` package (this file is
#: ``zmqchan_green/tools/bench/runner.py``): children import the package from there.
_PACKAGE_PARENT = Path(__file__).resolve().parents[3]


@dataclass
class Outcome:
    """One child's run of one spec: its result, or why it failed."""

    spec: Spec
    round: int
    wall: float
    foreign: float | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


def _child_env() -> dict[str, str]:
    """The environment for children: this checkout's package comes first on the path."""
    env = dict(os.environ)
    root = str(_PACKAGE_PARENT)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


class CpuMeter:
    """How much of the machine other processes used while one child ran.

    The machine's busy CPU time (``/proc/stat``) minus what this process and
    its children used (``getrusage``), as a share of all CPUs over the wall
    time: ``0.0`` on a quiet machine; ``None`` where ``/proc/stat`` is missing,
    or when the run was too short for the clock ticks these count in.

    Our own CPU time comes from the standard library,
    :func:`resource.getrusage` for ``RUSAGE_SELF`` and ``RUSAGE_CHILDREN``
    (microsecond resolution, where :func:`os.times` counts in clock ticks).
    The standard library has no call for the CPU time of the *whole machine*;
    ``psutil.cpu_times()`` has, but it would be a dependency for one warning,
    so that one figure is read from ``/proc/stat`` (Linux), and the meter says
    ``None`` elsewhere.
    """

    def __init__(self) -> None:
        self._busy = self._machine_busy()
        self._ours = self._our_cpu()
        self._started = time.monotonic()

    @staticmethod
    def _machine_busy() -> float | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                fields = stat.readline().split()
        except OSError:
            return None
        # user nice system idle iowait irq softirq steal: all but idle and iowait.
        ticks = [int(f) for f in fields[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _our_cpu() -> float:
        total = 0.0
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
            usage = resource.getrusage(who)
            total += usage.ru_utime + usage.ru_stime
        return total

    def stop(self) -> tuple[float, float | None]:
        """``(wall seconds, share of the machine used by others)`` since creation."""
        wall = time.monotonic() - self._started
        busy = self._machine_busy()
        if busy is None or self._busy is None or wall < _METER_MIN:
            return wall, None
        others = (busy - self._busy) - (self._our_cpu() - self._ours)
        return wall, max(0.0, others / (wall * (os.cpu_count() or 1)))


def _run_child(spec: Spec, round_: int, timeout: float) -> Outcome:
    """Run ``spec`` in a fresh interpreter; kill it after ``timeout`` seconds."""
    command = [
        sys.executable, "-m", "zmqchan_green", "bench",
        "--run-case", json.dumps(dataclasses.asdict(spec)),
    ]  # fmt: skip
    meter = CpuMeter()
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=_child_env(), check=False
        )
    except subprocess.TimeoutExpired:
        wall, foreign = meter.stop()
        return Outcome(spec, round_, wall, foreign, error=f"killed after {timeout} s")
    wall, foreign = meter.stop()
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
        return Outcome(spec, round_, wall, foreign, error=f"exit {proc.returncode}: {tail}")
    try:
        answer = json.loads(lines[-1])
    except json.JSONDecodeError:
        return Outcome(spec, round_, wall, foreign, error=f"no JSON result: {lines[-1][:200]!r}")
    return Outcome(spec, round_, wall, foreign, result=answer["result"])


def run_all(plan: Plan, err: TextIO) -> list[Outcome]:
    """Every spec once per round, in alternating order, with progress on ``err``."""
    outcomes: list[Outcome] = []
    total = len(plan.specs) * plan.rounds
    width = len(str(total))
    for round_ in range(plan.rounds):
        order = plan.specs if round_ % 2 == 0 else plan.specs[::-1]
        for spec in order:
            done = len(outcomes) + 1
            print(
                f"[{done:>{width}}/{total}] round {round_ + 1}/{plan.rounds} {spec.label} ...",
                end="",
                file=err,
                flush=True,
            )
            outcome = _run_child(spec, round_ + 1, plan.case_timeout)
            outcomes.append(outcome)
            busy = ""
            if outcome.foreign is not None and outcome.foreign > BUSY:
                busy = f", other processes used {outcome.foreign:.0%} of the machine"
            print(f" {_headline(outcome)} ({outcome.wall:.1f} s{busy})", file=err, flush=True)
            if outcome.error:
                print(f"    FAILED {spec.key}: {outcome.error}", file=err, flush=True)
    return outcomes


def _headline(outcome: Outcome) -> str:
    """The one figure the progress line shows for a finished run."""
    result = outcome.result
    if result is None:
        return "FAILED"
    group = outcome.spec.group
    if group == "throughput":
        return f"{result['rate']:,.0f} msg/s"
    if group == "latency":
        return f"p50 {result['p50_us']:.0f} us, p99 {result['p99_us']:.0f} us"
    if group == "rpc":
        return f"{result['rate']:,.0f} calls/s, p50 {result['p50_us']:.0f} us"
    if outcome.spec.case == "rss_growth":
        return f"+{result['growth_mib']:.2f} MiB"
    if group == "memory":
        return f"{result['bytes_per_waiter']:,.0f} B/waiter"
    return f"p99 lag {result['p99_ms']:.2f} ms"
