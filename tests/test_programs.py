"""Two real programs that share ZeroMQ sockets between greenlets, run unchanged,
without and with the drop-in.

* Locust (2.x), distributed: a master and two workers over locust's own RPC
  (``zmq.green`` ROUTER and DEALER sockets, ``locust/rpc/zmqrpc.py``) load a
  small HTTP server in this process. ``tests/programs/locustfile.py`` makes
  the run deterministic (each user makes a fixed number of requests, then the
  workers quit through a handshake), so every run must count exactly
  ``USERS * REQUESTS`` requests, and the master must log every worker's
  ``quit`` message.
* zerorpc (0.6.3): ``tests/programs/zerorpc_app.py`` runs a server and a
  client (concurrent calls, heartbeats, streams) and events
  (``Publisher``/``Subscriber``, ``Pusher``/``Puller``) in one gevent
  process, checking every answer.

``patched=True`` runs the same programs with ``ZCG_DROPIN=1``: they turn on
``zmqchan_green.patch()`` before any socket is made (and wrap zerorpc's own
socket class, which ``patch()`` does not reach: ``tests/programs/dropin.py``),
and the tests first check that the sockets really come from ``zmqchan_green``.

Every program runs in a subprocess of this interpreter with the checkout first
on ``PYTHONPATH``, on 127.0.0.1 with ports the system picks, under a deadline.
The tests skip when locust or zerorpc is not installed (``tox -e dropin``
installs both).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import pytest

from .conftest import ROOT, repo_env

PROGRAMS = ROOT / "tests" / "programs"
LOCUSTFILE = PROGRAMS / "locustfile.py"

#: Locust users (the master's ``-u``), spread over ``WORKERS`` workers, and
#: the requests each makes before it stops.
USERS = 4
WORKERS = 2
REQUESTS = 25
#: Seconds a whole locust run (start to the last process's exit) may take.
LOCUST_DEADLINE = 60
#: Seconds the zerorpc program may take (failing runs spend most of it on
#: close() deadlines).
ZERORPC_DEADLINE = 150

PATCHED = pytest.mark.parametrize("patched", [False, True], ids=["unpatched", "patched"])


def dropin_env(patched: bool) -> dict[str, str]:
    return repo_env(ZCG_DROPIN="1" if patched else "0")


# -------------------------------------------------------------------- locust


def need_locust() -> None:
    # Not pytest.importorskip: importing locust runs gevent.monkey.patch_all()
    # in this process, which would change every test that runs after it.
    if importlib.util.find_spec("locust") is None:
        pytest.skip("locust is not installed (pip install locust, or tox -e dropin)")


class CountingHandler(BaseHTTPRequestHandler):
    """Answers ``GET /item`` with ``ok`` and counts them on its server."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: CountingServer

    def do_GET(self) -> None:
        ok = self.path == "/item"
        body = b"ok" if ok else b"not found"
        self.send_response(200 if ok else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        with self.server.lock:
            self.server.counts[self.path] = self.server.counts.get(self.path, 0) + 1

    def log_message(self, format: str, *args: Any) -> None:
        pass


class CountingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), CountingHandler)
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}


@contextmanager
def http_target() -> Iterator[CountingServer]:
    """An HTTP server on a free port of 127.0.0.1, in a thread of this process."""
    server = CountingServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class Program:
    """A subprocess whose output (stdout and stderr together) goes to a file."""

    def __init__(self, name: str, args: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.gave_up = ""
        self.log_path = log
        self._log: IO[str] = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=log.parent,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._log.close()

    def describe(self, lines: int = 60) -> str:
        """Exit status and the last lines of output, locust's stats tables left out."""
        kept = [
            line
            for line in self.text().splitlines()
            if not re.match(r"^(Type |-{4}|GET |\s+Aggregated|\s*$|Response time)", line)
        ]
        status = self.proc.poll()
        head = f"--- {self.name}: {'still running' if status is None else f'exit {status}'}"
        if self.gave_up:
            head += f" (stopped early: {self.gave_up})"
        return "\n".join([head, *kept[-lines:]])


def wait_until(
    condition: Callable[[], Any], deadline: float, give_up: Callable[[], str | None]
) -> Any:
    """Poll ``condition()`` until it is truthy (returned); ``None`` at the
    deadline; a string from ``give_up()`` ends the wait early as a failure."""
    while True:
        value = condition()
        if value:
            return value
        reason = give_up()
        if reason:
            raise AssertionError(reason)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.05)


def run_locust(tmp_path: Path, target: CountingServer, patched: bool) -> list[Program]:
    """Start a master, wait for its RPC port, start the workers; wait until all
    have exited, or the deadline passed, or the run cannot end well. Returns
    the programs, all stopped (killed if still running)."""
    env = dropin_env(patched)
    env["ZCG_REQUESTS"] = str(REQUESTS)
    locust = ["-m", "locust", "-f", str(LOCUSTFILE), "--loglevel", "INFO"]
    deadline = time.monotonic() + LOCUST_DEADLINE
    master = Program(
        "master",
        [
            *locust,
            "--headless",
            "--only-summary",
            "--master",
            "--master-bind-host=127.0.0.1",
            "--master-bind-port=0",
            f"--expect-workers={WORKERS}",
            f"--users={USERS}",
            "--spawn-rate=100",
            f"--host=http://127.0.0.1:{target.server_address[1]}",
            f"--csv={tmp_path / 'run'}",
        ],
        tmp_path / "master.log",
        env,
    )
    programs = [master]

    def cannot_end_well() -> str | None:
        for program in programs:
            if program.proc.poll() not in (None, 0):
                return f"the {program.name} failed"
        if master.proc.poll() is not None and len(programs) == 1:
            return "the master exited before its workers started"
        # A worker whose heartbeats stop is marked missing; the master then
        # waits for it for ever instead of ending the run.
        if "went missing" in master.text():
            return "the master marked a worker missing (its quit message never arrived)"
        return None

    try:
        port = wait_until(
            lambda: re.search(r"ZCG master port: (\d+)", master.text()),
            deadline,
            cannot_end_well,
        )
        if port is None:
            master.gave_up = "no RPC port announced before the deadline"
            return programs
        for n in range(WORKERS):
            worker = [*locust, "--worker", "--master-host=127.0.0.1", f"--master-port={port[1]}"]
            programs.append(Program(f"worker {n}", worker, tmp_path / f"worker{n}.log", env))
        if not wait_until(
            lambda: all(p.proc.poll() is not None for p in programs), deadline, cannot_end_well
        ):
            master.gave_up = f"the run took over {LOCUST_DEADLINE} s"
    except AssertionError as exc:
        master.gave_up = str(exc)
    finally:
        for program in programs:
            program.stop()
    return programs


def read_stats(path: Path) -> dict[str, tuple[int, int]]:
    """``{name: (requests, failures)}`` from locust's ``--csv`` stats file."""
    with path.open(newline="") as f:
        return {
            row["Name"]: (int(row["Request Count"]), int(row["Failure Count"]))
            for row in csv.DictReader(f)
        }


@pytest.mark.timeout(LOCUST_DEADLINE + 60)
@PATCHED
def test_locust_distributed(tmp_path: Path, patched: bool) -> None:
    need_locust()
    expected = USERS * REQUESTS
    with http_target() as target:
        programs = run_locust(tmp_path, target, patched)
        served = dict(target.counts)

    logs = {p.name: p.text() for p in programs}
    ready = re.findall(r"(\S+) \(index \d+\) reported as ready", logs["master"])
    quits = re.findall(r"Worker '(\S+)' \(index \d+\) quit\.", logs["master"])
    stats_file = tmp_path / "run_stats.csv"
    stats = read_stats(stats_file) if stats_file.exists() else None
    facts = (
        f"exit: {[p.proc.returncode for p in programs]}; workers ready: {len(ready)}, "
        f"quit messages: {len(quits)}; served: {served}; master counted: {stats}"
    )
    explain = "\n".join([facts, *(p.describe() for p in programs)])
    assert len(programs) == 1 + WORKERS, f"the workers were never started\n{explain}"

    # The programs really ran with the sockets this variant is about.
    want = "zmqchan_green." if patched else "zmq.green.core._Socket"
    for name, log in logs.items():
        found = re.findall(r"ZCG socket class: (\S+)", log)
        assert len(found) == 1, f"{name}: no socket class reported\n{explain}"
        assert found[0].startswith(want), f"{name}: RPC socket {found[0]}, not {want}\n{explain}"

    # The master heard every worker's quit message.
    assert len(ready) == WORKERS, f"workers ready: {ready}\n{explain}"
    assert sorted(quits) == sorted(ready), (
        f"the master got quit from {quits}, workers were {ready}\n{explain}"
    )
    assert "The last worker quit, stopping test." in logs["master"], explain

    # Every process ended by itself, in time, with status 0.
    for program in programs:
        status = program.proc.returncode
        assert status == 0, f"{program.name} exited with {status}\n{explain}"
    assert "Traceback" not in "".join(logs.values()), explain

    # The same counts every time: in the HTTP server and in the master's stats.
    assert served == {"/item": expected}, f"served {served}\n{explain}"
    assert stats == {"/item": (expected, 0), "Aggregated": (expected, 0)}, explain


# ------------------------------------------------------------------- zerorpc


@pytest.mark.timeout(ZERORPC_DEADLINE + 30)
@PATCHED
def test_zerorpc(patched: bool) -> None:
    pytest.importorskip("zerorpc", reason="zerorpc is not installed (tox -e dropin installs it)")
    env = dropin_env(patched)
    env["ZCG_CLOSE_TIMEOUT"] = "2"
    try:
        proc = subprocess.run(
            [sys.executable, str(PROGRAMS / "zerorpc_app.py")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=ZERORPC_DEADLINE,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        pytest.fail(f"zerorpc_app.py still running after {ZERORPC_DEADLINE} s\n{err}")
    lines = proc.stdout.strip().splitlines()
    err = proc.stderr
    if len(err) > 9000:  # the first failures and the end
        err = f"{err[:5000]}\n[...]\n{err[-4000:]}"
    explain = f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{err}"
    assert lines, explain
    summary = json.loads(lines[-1])

    sockets = summary["sockets"]
    want = "zmqchan_green" if patched else "zerorpc.gevent_zmq.Socket"
    wrong = {name: cls for name, cls in sockets.items() if not cls.startswith(want)}
    assert len(sockets) == 6, explain
    assert not wrong, (
        f"zerorpc's sockets are not {want}: {wrong}. zerorpc does not use zmq.green: its "
        "sockets come from its own zmq.Context subclass, zerorpc.gevent_zmq.Context\n" + explain
    )
    failed = {step: result for step, result in summary["results"].items() if result != "ok"}
    assert not failed, f"failed: {json.dumps(failed, indent=1)}\n{explain}"
    assert proc.returncode == 0, explain
