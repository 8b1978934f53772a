"""The backend and gateway examples as real processes, under concurrent HTTP load.

``examples/backend.py`` and ``examples/gateway.py`` (and gunicorn, when it is
installed) run as subprocesses of the current interpreter on 127.0.0.1 with
ports they pick themselves, each announcing its address on its first line of
output. The test is the HTTP client: many greenlets, each with a keep-alive
connection of its own (``http.client`` over gevent's cooperative sockets, so
no extra dependency), each request with a unique id and nonce. Every response
must be the one for its own request, with the backend's hash of it: any
cross-talk between concurrent requests shows up as a mismatch. Every process
must then stop on SIGTERM with exit status 0 and no traceback.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gevent
import gevent.socket
import pytest
import zmq.auth

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

#: Seconds a process may take to start, or to stop after SIGTERM.
START_TIMEOUT = 20
STOP_TIMEOUT = 20


class Process:
    """A server subprocess that announces its address on one line of output.

    ``ready`` is a regex whose group 1 is the address; with ``then=(regex,
    count)`` the process is ready only once ``count`` more lines match too.
    """

    def __init__(
        self,
        args: list[str],
        ready: str,
        stream: str = "stdout",
        then: tuple[str, int] | None = None,
        **env: str,
    ) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ZCG_")}
        environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(ROOT), environ.get("PYTHONPATH")])
        )
        environ["PYTHONWARNINGS"] = "error"
        environ.update(env)
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stream = stream
        self.output = self.log = ""
        self.head: list[str] = []
        self.address = self._read_until(ready, 1)
        if then is not None:
            self._read_until(*then)

    def _read_until(self, pattern: str, count: int) -> str:
        """Read lines until ``count`` match ``pattern``; group 1 of the last match."""
        pipe = self.proc.stdout if self.stream == "stdout" else self.proc.stderr
        assert pipe is not None
        # pytest-timeout bounds this wait if the process hangs without a word.
        for line in pipe:
            self.head.append(line)
            match = re.search(pattern, line)
            if match:
                count -= 1
                if count == 0:
                    return match.group(1)
        self.proc.wait(timeout=STOP_TIMEOUT)
        out, err = self.proc.communicate()
        raise AssertionError(
            f"{self.args} exited with {self.proc.returncode} before it was ready\n"
            f"--- output\n{''.join(self.head)}{out}\n--- stderr\n{err}"
        )

    def stop(self) -> None:
        """SIGTERM; the process must exit 0 with no traceback (its output is kept in ``output``)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, err = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            out, err = self.kill()
            raise AssertionError(
                f"{self.args} did not stop within {STOP_TIMEOUT} s of SIGTERM\n"
                f"--- stdout\n{''.join(self.head)}{out}\n--- stderr\n{err}"
            ) from None
        head = "".join(self.head)
        explain = (
            f"{self.args}: exit {self.proc.returncode}\n"
            f"--- head\n{head}--- stdout\n{out}\n--- stderr\n{err}"
        )
        assert self.proc.returncode == 0, explain
        assert "Traceback" not in head + out + err, explain
        self.output = head + out if self.stream == "stdout" else out
        self.log = head + err if self.stream == "stderr" else err

    def kill(self) -> tuple[str, str]:
        """Kill the process (if still running); returns the rest of its (stdout, stderr)."""
        if self.proc.poll() is None:
            self.proc.kill()
        return self.proc.communicate()


@contextmanager
def running(args: list[str], ready: str, **options: Any) -> Iterator[Process]:
    """Start a server process; stop it cleanly after the block (kill it if the block failed)."""
    process = Process(args, ready, **options)
    try:
        yield process
    except BaseException:
        process.kill()
        raise
    process.stop()


def backend(*options: str) -> Any:
    return running(
        [str(EXAMPLES / "backend.py"), "--bind", "tcp://127.0.0.1:*", *options],
        r"^backend listening on (tcp://\S+)$",
    )


def gateway(endpoint: str, mode: str = "shared", *options: str) -> Any:
    return running(
        [
            str(EXAMPLES / "gateway.py"),
            "--backend",
            endpoint,
            "--listen",
            "127.0.0.1:0",
            "--mode",
            mode,
            *options,
        ],
        r"^gateway \(\S+\) listening on http://127\.0\.0\.1:(\d+)$",
    )


class GreenHTTPConnection(http.client.HTTPConnection):
    """``http.client`` over a gevent socket: many clients in one thread, no monkey-patching."""

    def connect(self) -> None:
        self.sock = gevent.socket.create_connection((self.host, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def expected_body(target: str) -> bytes:
    """What the gateway answers for ``target``: the target and the backend's hash of it."""
    return f"{target} {hashlib.sha256(target.encode()).hexdigest()}\n".encode()


def hammer(port: int, clients: int, per_client: int) -> list[str]:
    """``clients`` concurrent keep-alive clients, ``per_client`` requests each.

    Returns what went wrong: one line per response that is not the one for
    its own request.
    """
    failures: list[str] = []

    def client(number: int) -> None:
        conn = GreenHTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for i in range(per_client):
                target = f"/echo?id={number}-{i}&nonce={secrets.token_hex(8)}"
                conn.request("GET", target)
                response = conn.getresponse()
                body = response.read()
                if response.status != 200 or body != expected_body(target):
                    failures.append(f"{target}: {response.status} {body!r}")
        finally:
            conn.close()

    gevent.joinall([gevent.spawn(client, n) for n in range(clients)], raise_error=True)
    return failures


def get_stats(port: int) -> dict[str, Any]:
    conn = GreenHTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/stats")
        response = conn.getresponse()
        assert response.status == 200
        stats: dict[str, Any] = json.loads(response.read())
        return stats
    finally:
        conn.close()


def assert_all_ok(stats: dict[str, Any], requests: int) -> None:
    assert stats["requests"] == requests, stats
    assert stats["ok"] == requests, stats
    assert stats["mismatches"] == stats["timeouts"] == stats["errors"] == 0, stats


@pytest.fixture(scope="module")
def curve_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A server certificate, one authorized client and one stranger."""
    root = tmp_path_factory.mktemp("curve")
    for name in ("server", "clients", "strangers"):
        (root / name).mkdir()
    zmq.auth.create_certificates(root / "server", "server")
    zmq.auth.create_certificates(root / "clients", "gateway")
    zmq.auth.create_certificates(root / "strangers", "stranger")
    return {
        "server_secret": root / "server" / "server.key_secret",
        "server_public": root / "server" / "server.key",
        "clients": root / "clients",
        "client_secret": root / "clients" / "gateway.key_secret",
        "stranger_secret": root / "strangers" / "stranger.key_secret",
    }


@pytest.mark.timeout(50)
def test_shared_gateway_under_load() -> None:
    clients, per_client = 100, 50
    with backend() as be:
        with gateway(be.address) as gw:
            port = int(gw.address)
            failures = hammer(port, clients, per_client)
            assert failures == [], f"{len(failures)} wrong responses, e.g. {failures[:5]}"
            stats = get_stats(port)
        assert_all_ok(stats, clients * per_client)
        assert stats["backend"]["late_replies"] == 0, stats
        assert stats["backend"]["outstanding"] == 0, stats
        # Requests really did share the DEALER: several were waiting for replies at once.
        assert stats["peak_in_flight"] > 1, stats
    assert f"{clients * per_client} requests, {clients * per_client} ok" in gw.output, gw.output
    assert f"backend stopped: {clients * per_client} requests answered" in be.output, be.output
    assert gw.log == be.log == "", (gw.log, be.log)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["socket-per-request", "lock", "no-backend"])
def test_baseline_gateways(mode: str) -> None:
    clients, per_client = 20, 15
    with backend() as be, gateway(be.address, mode) as gw:
        port = int(gw.address)
        failures = hammer(port, clients, per_client)
        assert failures == [], f"{len(failures)} wrong responses, e.g. {failures[:5]}"
        assert_all_ok(get_stats(port), clients * per_client)
    answered = 0 if mode == "no-backend" else clients * per_client
    assert f"backend stopped: {answered} requests answered" in be.output, be.output


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["shared", "socket-per-request", "lock"])
def test_curve_with_an_authorized_client_key(curve_keys: dict[str, Path], mode: str) -> None:
    clients, per_client = 10, 10
    server = ["--curve-secret", str(curve_keys["server_secret"])]
    client = [
        "--curve-server-key",
        str(curve_keys["server_public"]),
        "--curve-client-key",
        str(curve_keys["client_secret"]),
    ]
    allowed = ["--curve-clients", str(curve_keys["clients"])]
    with backend(*server, *allowed) as be, gateway(be.address, mode, *client) as gw:
        port = int(gw.address)
        failures = hammer(port, clients, per_client)
        assert failures == [], f"{len(failures)} wrong responses, e.g. {failures[:5]}"
        assert_all_ok(get_stats(port), clients * per_client)
    assert f"backend stopped: {clients * per_client} requests answered" in be.output, be.output


@pytest.mark.timeout(30)
def test_curve_refuses_other_clients(curve_keys: dict[str, Path]) -> None:
    server = ["--curve-secret", str(curve_keys["server_secret"])]
    stranger = [
        "--curve-server-key",
        str(curve_keys["server_public"]),
        "--curve-client-key",
        str(curve_keys["stranger_secret"]),
    ]
    allowed = ["--curve-clients", str(curve_keys["clients"])]
    # A client key the backend does not know, and no CURVE at all.
    with (
        backend(*server, *allowed) as be,
        gateway(be.address, "shared", "--timeout", "0.3", *stranger) as stranger_gw,
        gateway(be.address, "shared", "--timeout", "0.3") as plain_gw,
    ):
        for gw in (stranger_gw, plain_gw):
            port = int(gw.address)
            failures = hammer(port, 3, 2)
            assert len(failures) == 6, failures
            assert all(" 504 b'backend timeout" in f for f in failures), failures
            stats = get_stats(port)
            assert stats["timeouts"] == 6 and stats["ok"] == 0, stats
    assert "backend stopped: 0 requests answered" in be.output, be.output


@pytest.mark.timeout(40)
def test_gateway_under_gunicorn() -> None:
    if importlib.util.find_spec("gunicorn") is None:
        pytest.skip("gunicorn is not installed (pip install gunicorn to run this test)")
    try:
        importlib.import_module("gunicorn.workers.ggevent")
    except RuntimeError as exc:  # e.g. a gunicorn newer than the installed gevent
        pytest.skip(f"gunicorn's gevent worker cannot run here: {exc}")
    clients, per_client = 50, 6
    with backend() as be:
        server = running(
            ["-m", "gunicorn", "-k", "gevent", "-c", str(EXAMPLES / "gunicorn.conf.py")],
            r"Listening at: http://127\.0\.0\.1:(\d+)",
            stream="stderr",
            # Every worker must have booted: gunicorn workers ignore a SIGTERM
            # that comes before they have set up their signal handlers.
            then=(r"(gateway \(shared\) connected)", 2),
            ZCG_BACKEND=be.address,
            ZCG_LISTEN="127.0.0.1:0",
            ZCG_WORKERS="2",
        )
        with server as gw:
            failures = hammer(int(gw.address), clients, per_client)
            assert failures == [], f"{len(failures)} wrong responses, e.g. {failures[:5]}"
    assert gw.log.count("Worker exiting") == 2, gw.log
    assert f"backend stopped: {clients * per_client} requests answered" in be.output, be.output


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "args, message",
    [
        (["gateway.py", "--mode", "bogus"], "--mode"),
        (["gateway.py", "--listen", "8000"], "--listen"),
        (["backend.py", "--workers", "0"], "--workers"),
        (["backend.py", "--curve-secret", "/nonexistent/server.key_secret"], "nonexistent"),
        (["gateway.py", "--curve-server-key", "/nonexistent/server.key"], "nonexistent"),
    ],
)
def test_examples_reject_bad_arguments(args: list[str], message: str) -> None:
    script, *options = args
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *options],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "error"},
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 2, proc
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
