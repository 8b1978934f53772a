"""Every socket type, over inproc, ipc and tcp, with pairs on both ends."""

from __future__ import annotations

import gevent
import pytest
import zmq.green as zmq

from .conftest import TRANSPORTS

pytestmark = [pytest.mark.timeout(30), pytest.mark.parametrize("transport", TRANSPORTS)]


def test_pair_both_directions(connected, make_pair, transport):
    a, b = connected(zmq.PAIR, zmq.PAIR, transport)
    pa, pb = make_pair(a, 4, 4), make_pair(b)
    for i in range(10):
        pa.send([b"ping", b"%d" % i])
        assert pb.recv(timeout=5) == [b"ping", b"%d" % i]
        pb.send([b"pong", b"%d" % i])
        assert pa.recv(timeout=5) == [b"pong", b"%d" % i]


def test_push_pull(connected, make_pair, transport):
    pull, push = connected(zmq.PULL, zmq.PUSH, transport)
    tx, rx = make_pair(push), make_pair(pull, 0, 8)
    gs = [
        gevent.spawn(lambda k=k: [tx.send([b"%d" % k, b"%d" % i]) for i in range(20)])
        for k in range(10)
    ]
    got = [rx.recv(timeout=5) for _ in range(200)]
    gevent.joinall(gs, raise_error=True)
    for k in range(10):
        assert [m[1] for m in got if m[0] == b"%d" % k] == [b"%d" % i for i in range(20)]


def test_pub_sub_subscribe_after_wrapping(connected, make_pair, transport):
    pub, sub = connected(zmq.PUB, zmq.SUB, transport)
    tx, rx = make_pair(pub, 8), make_pair(sub, 0, 8)
    rx.subscribe(b"a")
    stop = gevent.event.Event()

    def publish():
        i = 0
        while not stop.is_set():
            tx.send([b"b", b"%d" % i])
            tx.send([b"a", b"%d" % i])
            i += 1
            gevent.sleep(0.001)

    g = gevent.spawn(publish)
    try:
        msgs = [rx.recv(timeout=5) for _ in range(5)]
    finally:
        stop.set()
        g.join(timeout=5)
    assert all(m[0] == b"a" for m in msgs)
    numbers = [int(m[1]) for m in msgs]
    assert numbers == sorted(numbers)


def test_xpub_xsub(connected, make_pair, transport):
    xpub, xsub = connected(zmq.XPUB, zmq.XSUB, transport)
    tx, rx = make_pair(xpub, 8), make_pair(xsub, 8, 8)
    rx.send(b"\x01topic")  # XSUB subscribes by sending a message
    assert tx.recv(timeout=5) == [b"\x01topic"]
    tx.send([b"other", b"no"])
    tx.send([b"topic", b"yes"])
    assert rx.recv(timeout=5) == [b"topic", b"yes"]


def test_req_rep_shared_by_many_greenlets(connected, make_pair, transport):
    """Hazard 10: REQ lockstep; sends gated on POLLOUT, never EFSM."""
    rep, req = connected(zmq.REP, zmq.REQ, transport)
    server, client = make_pair(rep), make_pair(req)

    def serve():
        for msg in server:
            server.send([b"re"] + msg)

    srv = gevent.spawn(serve)
    replies = []

    def ask(k):
        for i in range(5):
            client.send([b"%d" % k, b"%d" % i])
            replies.append(client.recv(timeout=10))

    gevent.joinall([gevent.spawn(ask, k) for k in range(20)], timeout=20, raise_error=True)
    # Replies go to whichever greenlet receives first; all must come back once.
    assert sorted(replies) == sorted(
        [b"re", b"%d" % k, b"%d" % i] for k in range(20) for i in range(5)
    )
    assert client.stats()["errors"] == 0
    server.close()
    srv.join(timeout=5)


def test_dealer_router(connected, make_pair, transport):
    router, dealer = connected(zmq.ROUTER, zmq.DEALER, transport)
    server, client = make_pair(router, 16, 16), make_pair(dealer, 0, 0)

    def echo():
        for msg in server:
            server.send(msg)

    srv = gevent.spawn(echo)
    for i in range(20):
        client.send([b"", b"%d" % i, b"x" * i])
    got = [client.recv(timeout=5) for _ in range(20)]
    assert got == [[b"", b"%d" % i, b"x" * i] for i in range(20)]
    server.close()
    srv.join(timeout=5)
