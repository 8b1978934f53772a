"""A backend worker pool: N greenlets share one ROUTER socket through one pair.

Each worker takes the next request from the pair, does some simulated work
(a short ``gevent.sleep`` standing in for I/O, then a SHA-256 of the request
body standing in for computation) and sends the reply back with the request's
envelope echoed, the way a ``REP`` socket would. So any REQ client, a DEALER
``Requester``, or a ROUTER/DEALER proxy in between gets each reply back to the
request it belongs to.

A request is ``[envelope..., b"", body...]``; the reply is
``[envelope..., b"", body..., sha256(b"".join(body)).hexdigest()]``.

Workers wait with ``recv_any([stop, pair])``, Go's ``select`` over the socket
and a stop signal: on SIGTERM or SIGINT every worker finishes the request in
hand, sends its reply, and returns; then the pair and the context are closed.

CURVE: ``--curve-secret FILE`` makes the socket a CURVE server with the secret
certificate ``FILE`` (as written by ``zmq.auth.create_certificates``), and
``--curve-clients DIR`` admits only the clients whose public certificates
(``*.key``) are in ``DIR``, through a ZAP handler that is itself a greenlet on
a pair. Without ``--curve-clients`` any client that knows the server's public
key may connect (the traffic is encrypted all the same). To make keys:

    mkdir keys clients
    python -c "import zmq.auth; zmq.auth.create_certificates('keys', 'server')"
    python -c "import zmq.auth; zmq.auth.create_certificates('clients', 'gateway')"

(the backend takes ``keys/server.key_secret`` and ``--curve-clients clients``,
the gateway ``keys/server.key`` and ``clients/gateway.key_secret``).

With the package installed (or the checkout on PYTHONPATH), run:
    python examples/backend.py --bind 'tcp://127.0.0.1:*'
The first line on stdout is ``backend listening on ENDPOINT`` (with the port
chosen when the endpoint ends in ``:*`` or ``:0``); the last, after SIGTERM or
SIGINT, ``backend stopped: N requests answered``. Exits 0 after a clean stop.
Options may also come from the environment: ``ZCG_BACKEND_BIND``,
``ZCG_CURVE_SECRET``, ``ZCG_CURVE_CLIENTS``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import gevent
import zmq.green as zmq
from gevent.event import Event
from zmq.auth import load_certificate, load_certificates
from zmq.utils import z85

import zmqchan_green as zc

#: The endpoint ZeroMQ's ZAP handler must be bound to (RFC 27).
ZAP_ENDPOINT = "inproc://zeromq.zap.01"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="backend.py", description="A worker pool of greenlets behind one ROUTER socket."
    )
    parser.add_argument(
        "--bind",
        default=env.get("ZCG_BACKEND_BIND", "tcp://127.0.0.1:5555"),
        help="endpoint to bind; a port of * or 0 picks a free one (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=50, help="worker greenlets (default: %(default)s)"
    )
    parser.add_argument(
        "--work-ms",
        type=float,
        default=1.0,
        help="simulated I/O per request, in milliseconds (default: %(default)s)",
    )
    parser.add_argument(
        "--curve-secret",
        metavar="FILE",
        default=env.get("ZCG_CURVE_SECRET"),
        help="be a CURVE server with this secret certificate",
    )
    parser.add_argument(
        "--curve-clients",
        metavar="DIR",
        default=env.get("ZCG_CURVE_CLIENTS"),
        help="with --curve-secret: admit only the clients whose public certificates are here",
    )
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.work_ms < 0:
        parser.error("--work-ms must not be negative")
    if args.curve_clients and not args.curve_secret:
        parser.error("--curve-clients needs --curve-secret")
    if args.bind.endswith(":0"):
        args.bind = args.bind[:-1] + "*"
    return args


def worker(pair: zc.ChannelPair, stop: Event, work: float, counts: dict[str, int]) -> None:
    """Answer requests until ``stop`` is set; the request in hand is always answered."""
    while True:
        # ``stop`` first: when both are ready, the earliest source wins.
        source, msg = zc.recv_any([stop, pair])
        if source is stop:
            return
        try:
            split = msg.index(b"") + 1
        except ValueError:
            counts["malformed"] += 1
            continue
        envelope, body = msg[:split], msg[split:]
        gevent.sleep(work)
        digest = hashlib.sha256(b"".join(body)).hexdigest().encode()
        try:
            pair.send([*envelope, *body, digest])
        except zc.ChannelClosed:
            return
        counts["answered"] += 1


def zap_handler(pair: zc.ChannelPair, allowed: set[bytes]) -> None:
    """Admit CURVE clients whose public key is in ``allowed`` (z85), refuse the rest."""
    for msg in pair:
        split = msg.index(b"") + 1
        envelope, request = msg[:split], msg[split:]
        version, request_id, _domain, _address, _identity, mechanism, *credentials = request
        key = z85.encode(credentials[0]) if credentials else b""
        if version == b"1.0" and mechanism == b"CURVE" and key in allowed:
            reply = [b"200", b"OK", key]
        else:
            reply = [b"400", b"unknown client key", b""]
        pair.send([*envelope, b"1.0", request_id, *reply, b""])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    ctx: zmq.Context[Any] = zmq.Context()
    stop = Event()
    counts = {"answered": 0, "malformed": 0}
    pairs: list[zc.ChannelPair] = []
    try:
        router = ctx.socket(zmq.ROUTER)
        router.linger = 0
        if args.curve_secret:
            try:
                public, secret = load_certificate(args.curve_secret)
                allowed = set(load_certificates(args.curve_clients)) if args.curve_clients else None
            except OSError as exc:
                print(f"backend.py: {exc}", file=sys.stderr)
                return 2
            if secret is None:
                print(f"backend.py: {args.curve_secret} holds no secret key", file=sys.stderr)
                return 2
            if allowed is not None:
                # The ZAP handler must be bound before the server socket is.
                zap = ctx.socket(zmq.ROUTER)
                zap.linger = 0
                zap.bind(ZAP_ENDPOINT)
                pairs.append(zc.ChannelPair(zap))
                gevent.spawn(zap_handler, pairs[-1], allowed)
            router.curve_server = True
            router.curve_publickey = public
            router.curve_secretkey = secret
        router.bind(args.bind)
        endpoint = router.last_endpoint.decode()
        # Replies are buffered so that a worker never waits for the socket.
        pair = zc.ChannelPair(router, tx_size=args.workers, rx_size=0)
        pairs.insert(0, pair)
        workers = [
            gevent.spawn(worker, pair, stop, args.work_ms / 1000, counts)
            for _ in range(args.workers)
        ]
        for signum in (signal.SIGTERM, signal.SIGINT):
            gevent.signal_handler(signum, stop.set)
        print(f"backend listening on {endpoint}", flush=True)
        stop.wait()
        gevent.joinall(workers, timeout=5.0)
        for g in workers:
            if g.exception is not None:
                print(f"a worker failed: {g.exception!r}", file=sys.stderr)
        gevent.killall(workers, timeout=1.0)
    finally:
        for p in pairs:
            p.close(linger=1.0)
        # Closes whatever is still open (nothing, unless set-up failed) and
        # terminates the context.
        ctx.destroy(linger=0)
    print(f"backend stopped: {counts['answered']} requests answered", flush=True)
    if counts["malformed"]:
        print(f"{counts['malformed']} malformed requests dropped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
