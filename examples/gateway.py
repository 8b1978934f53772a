"""An HTTP gateway: a monkey-patched ``gevent.pywsgi`` app in front of a ZeroMQ backend.

Every HTTP request runs in its own greenlet, and every one of them asks the
backend (``examples/backend.py``) through one shared :class:`zmqchan_green.Requester`
over one DEALER socket: any number of requests in flight on one connection,
each reply matched to its request by the id in the REQ/REP envelope.

``GET /echo?id=123`` sends the backend ``b"/echo?id=123"`` and answers
``/echo?id=123 <sha256 of it, computed by the backend>``; a reply that is not
for this request counts as a mismatch (HTTP 502), a timeout is HTTP 504.
``GET /stats`` answers the gateway's counters as JSON (with the most requests
that were ever waiting for the backend at once, ``peak_in_flight``).

The same app runs with four ways of calling the backend (``--mode``), to
compare them side by side (``benchmarks/gateway_load.py``):

``shared``
    one DEALER shared by every request greenlet through a ``Requester`` (this
    library's way);
``socket-per-request``
    a new REQ socket per HTTP request: connect, send, wait, close (with CURVE,
    every request pays a new handshake);
``lock``
    one REQ socket behind a ``gevent.lock.BoundedSemaphore``: one request in
    flight at a time;
``no-backend``
    the app computes the reply itself: the ceiling for a pywsgi gateway.

CURVE: ``--curve-server-key FILE`` (the backend's public certificate) encrypts
the connection to a backend started with ``--curve-secret``;
``--curve-client-key FILE`` (this gateway's secret certificate) is the key the
backend's ``--curve-clients`` must admit (without it, a fresh key pair).

With the package installed (or the checkout on PYTHONPATH), run:
    python examples/gateway.py --backend tcp://127.0.0.1:5555 --listen 127.0.0.1:8000
The first line on stdout is ``gateway (MODE) listening on http://HOST:PORT``
(with the port chosen when ``--listen`` ends in ``:0``). SIGTERM or SIGINT
stops it cleanly (exit 0). Every option may also come from the environment
(``ZCG_BACKEND``, ``ZCG_LISTEN``, ``ZCG_MODE``, ``ZCG_TIMEOUT``,
``ZCG_CURVE_SERVER_KEY``, ``ZCG_CURVE_CLIENT_KEY``): that is how the gunicorn
configuration, ``examples/gunicorn.conf.py``, sets up the module-level
:data:`app` in each worker.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

# The imports follow patch_all() on purpose: everything must see patched modules.
# ruff: noqa: E402
import argparse
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gevent
import zmq.green as zmq
from gevent.event import Event
from gevent.lock import BoundedSemaphore
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer
from zmq.auth import load_certificate

import zmqchan_green as zc

MODES = ("shared", "socket-per-request", "lock", "no-backend")

StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class Settings:
    backend: str = "tcp://127.0.0.1:5555"
    listen: str = "127.0.0.1:8000"
    mode: str = "shared"
    timeout: float = 5.0
    curve_server_key: str | None = None
    curve_client_key: str | None = None


def parse_args(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """Settings from ``argv``, with defaults from ``env`` (``os.environ``)."""
    env = dict(os.environ) if env is None else env
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="gateway.py", description="A gevent.pywsgi gateway in front of a ZeroMQ backend."
    )
    parser.add_argument(
        "--backend",
        default=env.get("ZCG_BACKEND", defaults.backend),
        help="the backend's endpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--listen",
        default=env.get("ZCG_LISTEN", defaults.listen),
        help="HOST:PORT to serve HTTP on; port 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=env.get("ZCG_MODE", defaults.mode),
        help="how request greenlets call the backend (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(env.get("ZCG_TIMEOUT", defaults.timeout)),
        help="seconds to wait for the backend per request (default: %(default)s)",
    )
    parser.add_argument(
        "--curve-server-key",
        metavar="FILE",
        default=env.get("ZCG_CURVE_SERVER_KEY"),
        help="encrypt with CURVE; the backend's public certificate",
    )
    parser.add_argument(
        "--curve-client-key",
        metavar="FILE",
        default=env.get("ZCG_CURVE_CLIENT_KEY"),
        help="with --curve-server-key: this gateway's secret certificate",
    )
    args = parser.parse_args(argv)
    if args.mode not in MODES:
        parser.error(f"--mode must be one of {', '.join(MODES)}")
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    if args.curve_client_key and not args.curve_server_key:
        parser.error("--curve-client-key needs --curve-server-key")
    if args.listen.rpartition(":")[0] == "" or not args.listen.rpartition(":")[2].isdigit():
        parser.error("--listen must be HOST:PORT")
    return Settings(
        args.backend,
        args.listen,
        args.mode,
        args.timeout,
        args.curve_server_key,
        args.curve_client_key,
    )


# ------------------------------------------------------------- backends


class Backend(Protocol):
    """A way to call the backend: ``call`` returns the reply frames (envelope stripped)."""

    def call(self, frames: list[bytes], timeout: float) -> list[bytes]: ...

    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...


class _Connector:
    """Makes sockets connected to the backend, with the CURVE keys if any."""

    def __init__(self, ctx: zmq.Context[Any], settings: Settings) -> None:
        self.ctx = ctx
        self.endpoint = settings.backend
        self.curve: tuple[bytes, bytes, bytes] | None = None
        if settings.curve_server_key:
            server_public, _ = load_certificate(settings.curve_server_key)
            if settings.curve_client_key:
                public, secret = load_certificate(settings.curve_client_key)
                if secret is None:
                    raise ValueError(f"{settings.curve_client_key} holds no secret key")
            else:
                public, secret = zmq.curve_keypair()
            self.curve = (server_public, public, secret)

    def socket(self, kind: int) -> zmq.Socket[Any]:
        sock: zmq.Socket[Any] = self.ctx.socket(kind)
        try:
            sock.linger = 0
            if self.curve is not None:
                sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = self.curve
            sock.connect(self.endpoint)
        except BaseException:
            sock.close(linger=0)
            raise
        return sock


class SharedRequester:
    """Every request greenlet shares one DEALER through one ``Requester``."""

    def __init__(self, connector: _Connector) -> None:
        sock = connector.socket(zmq.DEALER)
        try:
            pair = zc.ChannelPair(sock, tx_size=64, rx_size=64)
        except BaseException:
            sock.close(linger=0)  # the pair never took it over
            raise
        self.requester = zc.Requester(pair)

    def call(self, frames: list[bytes], timeout: float) -> list[bytes]:
        return self.requester.request(frames, timeout=timeout)

    def stats(self) -> dict[str, int]:
        return self.requester.stats()

    def close(self) -> None:
        self.requester.close(linger=0)


def _ask(sock: zmq.Socket[Any], frames: list[bytes], timeout: float) -> list[bytes]:
    """One REQ round trip on ``sock``; ``TimeoutError`` leaves the socket unusable."""
    sock.send_multipart(frames)
    if not sock.poll(max(0, int(timeout * 1000)), zmq.POLLIN):
        raise TimeoutError(f"no reply within {timeout} s")
    reply: list[bytes] = sock.recv_multipart()
    return reply


class SocketPerRequest:
    """Baseline: a new REQ socket for every HTTP request."""

    def __init__(self, connector: _Connector) -> None:
        self.connector = connector

    def call(self, frames: list[bytes], timeout: float) -> list[bytes]:
        sock = self.connector.socket(zmq.REQ)
        try:
            return _ask(sock, frames, timeout)
        finally:
            sock.close(linger=0)

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


class LockedReq:
    """Baseline: one REQ socket behind a lock, so one request in flight at a time.

    After a timeout (or a kill) the REQ socket still waits for its reply, so
    it is thrown away and the next call connects a new one (the "lazy
    pirate" pattern).
    """

    def __init__(self, connector: _Connector) -> None:
        self.connector = connector
        self.lock = BoundedSemaphore(1)
        self.sock: zmq.Socket[Any] | None = None
        self.reconnects = 0

    def call(self, frames: list[bytes], timeout: float) -> list[bytes]:
        deadline = time.monotonic() + timeout
        if not self.lock.acquire(timeout=timeout):
            raise TimeoutError(f"the socket stayed busy for {timeout} s")
        try:
            if self.sock is None:
                self.sock = self.connector.socket(zmq.REQ)
            try:
                return _ask(self.sock, frames, deadline - time.monotonic())
            except BaseException:
                self.sock.close(linger=0)
                self.sock = None
                self.reconnects += 1
                raise
        finally:
            self.lock.release()

    def stats(self) -> dict[str, int]:
        return {"reconnects": self.reconnects}

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None


class NoBackend:
    """The ceiling: the app computes what the backend would answer, without asking it."""

    def call(self, frames: list[bytes], timeout: float) -> list[bytes]:
        return [*frames, hashlib.sha256(b"".join(frames)).hexdigest().encode()]

    def stats(self) -> dict[str, int]:
        return {}

    def close(self) -> None:
        pass


# ------------------------------------------------------------------- app


def _respond(
    start_response: StartResponse, status: str, body: bytes, content_type: str = "text/plain"
) -> Iterable[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


class Gateway:
    """The WSGI app, the same whichever way it calls the backend.

    It has no backend until :meth:`start`, which must run in the process (and
    hub) that serves it: after the fork, in a gunicorn worker. Until then it
    answers 503.
    """

    def __init__(self) -> None:
        self.mode = "unstarted"
        self.timeout = 0.0
        self.backend: Backend | None = None
        self.ctx: zmq.Context[Any] | None = None
        self.counts = {"requests": 0, "ok": 0, "mismatches": 0, "timeouts": 0, "errors": 0}
        self.in_flight = 0
        self.peak_in_flight = 0

    def start(self, settings: Settings) -> None:
        if self.backend is not None:
            raise RuntimeError("the gateway is already started")
        self.mode = settings.mode
        self.timeout = settings.timeout
        if settings.mode == "no-backend":
            self.backend = NoBackend()
            return
        ctx: zmq.Context[Any] = zmq.Context()
        try:
            connector = _Connector(ctx, settings)
            if settings.mode == "shared":
                self.backend = SharedRequester(connector)
            elif settings.mode == "socket-per-request":
                self.backend = SocketPerRequest(connector)
            else:
                self.backend = LockedReq(connector)
        except BaseException:
            ctx.term()
            raise
        self.ctx = ctx

    def stop(self) -> None:
        """Close the backend connection (requests still waiting fail) and the context."""
        if self.backend is not None:
            self.backend.close()
        if self.ctx is not None:
            self.ctx.term()
            self.ctx = None

    def stats(self) -> dict[str, Any]:
        backend = self.backend.stats() if self.backend is not None else {}
        return {
            "mode": self.mode,
            "pid": os.getpid(),
            **self.counts,
            "peak_in_flight": self.peak_in_flight,
            "backend": backend,
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/stats":
            body = json.dumps(self.stats()).encode()
            return _respond(start_response, "200 OK", body, "application/json")
        if path != "/echo":
            return _respond(start_response, "404 Not Found", b"try /echo?id=1 or /stats\n")
        if self.backend is None:
            return _respond(start_response, "503 Service Unavailable", b"not started\n")
        self.counts["requests"] += 1
        # WSGI hands the path and query over as latin-1 strings.
        payload = f"{path}?{environ.get('QUERY_STRING', '')}".encode("latin-1")
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            reply = self.backend.call([payload], self.timeout)
        except TimeoutError:
            self.counts["timeouts"] += 1
            return _respond(start_response, "504 Gateway Timeout", b"backend timeout\n")
        except zc.ChannelClosed:
            self.counts["errors"] += 1
            return _respond(start_response, "503 Service Unavailable", b"shutting down\n")
        finally:
            self.in_flight -= 1
        if len(reply) != 2 or reply[0] != payload:
            self.counts["mismatches"] += 1
            return _respond(start_response, "502 Bad Gateway", b"reply for another request\n")
        self.counts["ok"] += 1
        return _respond(start_response, "200 OK", payload + b" " + reply[1] + b"\n")


#: The WSGI app for gunicorn (``examples/gunicorn.conf.py`` starts it in each worker).
app = Gateway()


def settings_from_env() -> Settings:
    """The settings the environment gives (``ZCG_*``), as for a command line without options."""
    return parse_args([])


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    host, _, port = settings.listen.rpartition(":")
    try:
        app.start(settings)
    except (OSError, ValueError) as exc:  # a missing or broken key file
        print(f"gateway.py: {exc}", file=sys.stderr)
        return 2
    # With a pool, stop() kills the request greenlets still running after its
    # timeout (without one it leaves them be), so that they have let go of
    # their sockets before the context is terminated.
    server = WSGIServer((host, int(port)), app, log=None, spawn=Pool(None))
    try:
        server.start()
        stop = Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, stop.set)
        print(
            f"gateway ({settings.mode}) listening on http://{host}:{server.server_port}", flush=True
        )
        stop.wait()
    finally:
        # Requests in progress get a second to finish, then their greenlets are killed.
        server.stop(timeout=1.0)
        app.stop()
    counts = app.counts
    print(
        f"gateway stopped: {counts['requests']} requests, {counts['ok']} ok, "
        f"{counts['mismatches']} mismatched, {counts['timeouts']} timed out",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
