"""Load benchmark: four ways for a gevent.pywsgi gateway to call a ZeroMQ backend, under wrk.

Starts ``examples/backend.py`` and four ``examples/gateway.py`` processes on
127.0.0.1 (``--mode shared``, ``socket-per-request``, ``lock`` and
``no-backend``, the ceiling), then drives each with ``wrk`` at 100 keep-alive
connections, alternating the gateways over several rounds so that all four are
measured side by side under the same conditions; once over plain tcp and once
with CURVE between gateways and backend (with a ZAP handler admitting the
gateways' key, as a secured production backend would). Every request asks for
``/echo?id=<wrk thread>-<n>``; the gateway checks that each reply is the one
for its own request and counts mismatches, which this script reads from
``/stats`` before and after every run.

Prints requests/s, p50 and p99 latency (medians over the rounds) and the
ratios against the project's targets (see BENCHMARKS.md), and writes everything as JSON.

Needs ``wrk`` (Debian: ``apt-get install -y wrk``). Run from the checkout:
    python benchmarks/gateway_load.py [--duration 10] [--rounds 3] [--json out.json]
Exits 0 when it ran (whether or not the targets were met), 2 on a set-up error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import gevent
import zmq
import zmq.auth

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
MODES = ("shared", "socket-per-request", "lock", "no-backend")

#: Each wrk thread numbers its own requests, so that every request is distinct.
WRK_SCRIPT = """\
counter = 0
local made = 0

function setup(thread)
  thread:set("thread_no", made)
  made = made + 1
end

function request()
  counter = counter + 1
  return wrk.format("GET", "/echo?id=" .. thread_no .. "-" .. counter)
end
"""

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def parse_wrk(output: str) -> dict[str, float]:
    """Requests/s, latency percentiles (ms) and error counts from ``wrk --latency`` output."""

    def latency(percentile: str) -> float:
        match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
        if match is None:
            raise ValueError(f"no {percentile}% latency in wrk's output:\n{output}")
        return float(match.group(1)) * _UNITS[match.group(2)]

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if rps is None or total is None:
        raise ValueError(f"no requests/s in wrk's output:\n{output}")
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {
        "requests_per_s": float(rps.group(1)),
        "requests": int(total.group(1)),
        "p50_ms": latency("50"),
        "p75_ms": latency("75"),
        "p90_ms": latency("90"),
        "p99_ms": latency("99"),
        "socket_errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


class Server:
    """An example server in a subprocess; its first line of output gives its address."""

    def __init__(self, args: list[str], ready: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZCG_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(ready, line)
        if match is None:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise RuntimeError(f"{args} did not start: {line!r}\n{err}")
        self.address = match.group(1)

    def stop(self) -> str | None:
        """SIGTERM; returns a complaint, or None when it stopped cleanly."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()
            return f"{self.args[0]} did not stop within 20 s"
        if self.proc.returncode != 0 or "Traceback" in err:
            return f"{self.args[0]} exited {self.proc.returncode}: {err[-2000:]}"
        return None


def get_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/stats", timeout=10) as response:
        stats: dict[str, Any] = json.loads(response.read())
        return stats


def settle(url: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait until the gateway has finished every request wrk left behind; its stats."""
    deadline = time.monotonic() + timeout
    while True:
        stats = get_stats(url)
        done = stats["ok"] + stats["mismatches"] + stats["timeouts"] + stats["errors"]
        if done >= stats["requests"] or time.monotonic() > deadline:
            return stats
        time.sleep(0.05)


def run_wrk(args: argparse.Namespace, url: str, script: Path, duration: float) -> str:
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{duration:g}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(script),
        url + "/echo",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True)
    return proc.stdout


def measure(
    args: argparse.Namespace, keys: dict[str, Path] | None, script: Path, work_ms: float
) -> tuple[list[dict[str, Any]], list[str]]:
    """All rounds for one backend set-up; returns the runs and any complaints."""
    backend_args = [str(EXAMPLES / "backend.py"), "--bind", "tcp://127.0.0.1:*"]
    backend_args += ["--workers", str(args.workers), "--work-ms", f"{work_ms:g}"]
    client_args: list[str] = []
    if keys is not None:
        backend_args += ["--curve-secret", str(keys["server_secret"])]
        backend_args += ["--curve-clients", str(keys["clients"])]
        client_args = ["--curve-server-key", str(keys["server_public"])]
        client_args += ["--curve-client-key", str(keys["client_secret"])]
    transport = "tcp" if keys is None else "curve"
    servers: list[Server] = []
    runs: list[dict[str, Any]] = []
    complaints: list[str] = []
    try:
        backend = Server(backend_args, r"^backend listening on (tcp://\S+)$")
        servers.append(backend)
        gateways: dict[str, str] = {}
        for mode in MODES:
            gw = Server(
                [
                    str(EXAMPLES / "gateway.py"),
                    "--backend",
                    backend.address,
                    "--listen",
                    "127.0.0.1:0",
                    "--mode",
                    mode,
                    *client_args,
                ],
                r"listening on (http://\S+)$",
            )
            servers.append(gw)
            gateways[mode] = gw.address
        for mode in MODES:
            run_wrk(args, gateways[mode], script, args.warmup)
            settle(gateways[mode])
        for round_no in range(args.rounds):
            order = MODES[round_no % len(MODES) :] + MODES[: round_no % len(MODES)]
            for mode in order:
                url = gateways[mode]
                before = settle(url)
                result = parse_wrk(run_wrk(args, url, script, args.duration))
                after = settle(url)
                for key in ("mismatches", "timeouts", "errors"):
                    result[key] = after[key] - before[key]
                result["late_replies"] = after["backend"].get("late_replies", 0) - before[
                    "backend"
                ].get("late_replies", 0)
                run = {
                    "work_ms": work_ms,
                    "transport": transport,
                    "mode": mode,
                    "round": round_no,
                    **result,
                }
                runs.append(run)
                print(
                    f"  work {work_ms:g} ms, {transport:5} round {round_no + 1}: {mode:18} "
                    f"{result['requests_per_s']:8.0f} req/s  p50 {result['p50_ms']:7.2f} ms  "
                    f"p99 {result['p99_ms']:7.2f} ms  mismatches {result['mismatches']}",
                    flush=True,
                )
    finally:
        for server in reversed(servers):
            complaint = server.stop()
            if complaint:
                complaints.append(complaint)
    return runs, complaints


def summarize(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per (work, transport, mode): medians over the rounds, and error totals."""
    summary: dict[str, dict[str, Any]] = {}
    for run in runs:
        key = f"{run['work_ms']:g}ms/{run['transport']}/{run['mode']}"
        summary.setdefault(key, {"runs": []})["runs"].append(run)
    for entry in summary.values():
        group = entry.pop("runs")
        rps = [r["requests_per_s"] for r in group]
        entry.update(
            work_ms=group[0]["work_ms"],
            transport=group[0]["transport"],
            mode=group[0]["mode"],
            requests_per_s=statistics.median(rps),
            requests_per_s_min=min(rps),
            requests_per_s_max=max(rps),
            p50_ms=statistics.median(r["p50_ms"] for r in group),
            p99_ms=statistics.median(r["p99_ms"] for r in group),
            requests=sum(r["requests"] for r in group),
            mismatches=sum(r["mismatches"] for r in group),
            non_2xx=sum(r["non_2xx"] for r in group),
            socket_errors=sum(r["socket_errors"] for r in group),
            timeouts=sum(r["timeouts"] for r in group),
        )
    return summary


def check_targets(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The project's gateway targets, for every work setting and transport measured."""
    checks: list[dict[str, Any]] = []
    settings = sorted({(e["work_ms"], e["transport"]) for e in summary.values()})
    for work_ms, transport in settings:
        at = {
            e["mode"]: e
            for e in summary.values()
            if e["work_ms"] == work_ms and e["transport"] == transport
        }
        shared = at["shared"]
        where = f"{work_ms:g} ms {transport}"
        # The per-request and lock targets are stated for CURVE; on tcp they are shown only.
        binding = transport == "curve"

        for name, other, target, is_binding in (
            ("shared / no-backend ceiling", "no-backend", 0.85, True),
            ("shared / socket-per-request", "socket-per-request", 2.0, binding),
            ("shared / lock-around-REQ", "lock", 5.0, binding),
        ):
            value = shared["requests_per_s"] / at[other]["requests_per_s"]
            checks.append(
                {
                    "where": where,
                    "check": name,
                    "value": round(value, 2),
                    "target": f">= {target:g}x",
                    "met": value >= target,
                    "binding": is_binding,
                }
            )
        others = min(at["socket-per-request"]["p99_ms"], at["lock"]["p99_ms"])
        checks.append(
            {
                "where": where,
                "check": "shared p99 lowest of the three",
                "value": f"{shared['p99_ms']:.1f} vs {others:.1f} ms",
                "target": "lowest",
                "met": shared["p99_ms"] < others,
                "binding": binding,
            }
        )
        bad = sum(e["mismatches"] for e in at.values())
        checks.append(
            {
                "where": where,
                "check": "mismatched replies (all gateways)",
                "value": bad,
                "target": "0",
                "met": bad == 0,
                "binding": True,
            }
        )
    return checks


def print_report(summary: dict[str, dict[str, Any]], checks: list[dict[str, Any]]) -> None:
    print()
    header = (
        f"{'work':>5} {'transport':9} {'gateway':18} {'req/s':>8} {'(min-max)':>13} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'mismatch':>8} {'non-2xx':>7} {'sockerr':>7}"
    )
    print(header)
    print("-" * len(header))
    for e in summary.values():
        spread = f"{e['requests_per_s_min']:.0f}-{e['requests_per_s_max']:.0f}"
        print(
            f"{e['work_ms']:>3g}ms {e['transport']:9} {e['mode']:18} "
            f"{e['requests_per_s']:8.0f} {spread:>13} {e['p50_ms']:8.2f} {e['p99_ms']:8.2f} "
            f"{e['mismatches']:8d} {e['non_2xx']:7d} {e['socket_errors']:7d}"
        )
    print()
    for c in checks:
        verdict = "met" if c["met"] else "NOT met"
        if not c["binding"]:
            verdict += " (target is for CURVE; shown for comparison)"
        print(
            f"{c['where']:>12}  {c['check']:34} {c['value']!s:>22}  "
            f"target {c['target']:7}  {verdict}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway_load.py", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per gateway")
    parser.add_argument("--rounds", type=int, default=3, help="runs per gateway, alternated")
    parser.add_argument("--connections", type=int, default=100, help="wrk -c (default 100)")
    parser.add_argument("--threads", type=int, default=2, help="wrk -t (default 2)")
    parser.add_argument("--workers", type=int, default=50, help="backend worker greenlets")
    parser.add_argument(
        "--work-ms",
        type=float,
        nargs="+",
        default=[1.0],
        help="backend simulated work per request, in ms; several values run one after another",
    )
    parser.add_argument(
        "--transports", nargs="+", choices=["tcp", "curve"], default=["tcp", "curve"]
    )
    parser.add_argument("--json", default="gateway_load.json", help="where to write the results")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="gateway-load-") as tmp:
        script = Path(tmp) / "ids.lua"
        script.write_text(WRK_SCRIPT)
        keys = {
            "server_secret": Path(tmp, "server", "server.key_secret"),
            "server_public": Path(tmp, "server", "server.key"),
            "clients": Path(tmp, "clients"),
            "client_secret": Path(tmp, "clients", "gateway.key_secret"),
        }
        for name in ("server", "clients"):
            Path(tmp, name).mkdir()
        zmq.auth.create_certificates(Path(tmp, "server"), "server")
        zmq.auth.create_certificates(Path(tmp, "clients"), "gateway")

        runs: list[dict[str, Any]] = []
        complaints: list[str] = []
        started = time.time()
        for work_ms in args.work_ms:
            for transport in args.transports:
                got, bad = measure(args, keys if transport == "curve" else None, script, work_ms)
                runs += got
                complaints += bad

    summary = summarize(runs)
    checks = check_targets(summary)
    print_report(summary, checks)
    for complaint in complaints:
        print(f"WARNING: {complaint}", file=sys.stderr)
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    result = {
        "benchmark": "gateway_load",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "config": {k: v for k, v in vars(args).items() if k != "json"},
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pyzmq": zmq.pyzmq_version(),
            "libzmq": zmq.zmq_version(),
            "gevent": gevent.__version__,
            "wrk": (wrk_version.stdout + wrk_version.stderr).split("\n")[0].strip(),
        },
        "summary": list(summary.values()),
        "targets": checks,
        "runs": runs,
        "shutdown_complaints": complaints,
    }
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
