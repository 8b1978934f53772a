"""Requester: many callers over one DEALER, each getting its own reply."""

from __future__ import annotations

import gevent
import pytest
import zmq as plain_zmq
import zmq.green as zmq
from gevent.monkey import get_original

import zmqchan_green as zc

from .conftest import bind, wait_for

pytestmark = pytest.mark.timeout(60)


def rep_server(pair: zc.ChannelPair, delay: float = 0.0) -> None:
    """An unmodified REP server behind a pair: reply = request + b"!"."""
    for msg in pair:
        if delay:
            gevent.sleep(delay)
        pair.send([*msg, b"!"])


def router_echo(pair: zc.ChannelPair) -> None:
    """A ROUTER server that echoes the whole envelope back."""
    for identity, *envelope_and_body in pair:
        pair.send([identity, *envelope_and_body, b"!"])


@pytest.fixture
def client(make_socket, make_pair):
    def make(endpoint: str) -> zc.Requester:
        dealer = make_socket(zmq.DEALER)
        dealer.connect(endpoint)
        return zc.Requester(make_pair(dealer, 16, 16))

    return make


@pytest.fixture
def rep_endpoint(make_socket, make_pair):
    rep = make_socket(zmq.REP)
    endpoint = bind(rep, "tcp")
    server = gevent.spawn(rep_server, make_pair(rep))
    yield endpoint
    server.kill()


def _ask_many(requester: zc.Requester, callers: int = 50, each: int = 10) -> None:
    def caller(k: int) -> None:
        for i in range(each):
            body = [b"caller %d" % k, b"request %d" % i]
            assert requester.request(body, timeout=20) == [*body, b"!"]

    gevent.joinall([gevent.spawn(caller, k) for k in range(callers)], raise_error=True)


def test_requires_a_dealer_pair(make_socket, make_pair):
    with pytest.raises(ValueError, match="DEALER"):
        zc.Requester(make_pair(make_socket(zmq.ROUTER)))
    with pytest.raises(TypeError):
        zc.Requester(make_socket(zmq.DEALER))  # type: ignore[arg-type]


def test_many_callers_against_unmodified_rep(client, rep_endpoint):
    requester = client(rep_endpoint)
    _ask_many(requester)
    assert requester.stats()["late_replies"] == 0
    assert requester.stats()["outstanding"] == 0


def test_many_callers_against_router_echoing_the_envelope(client, make_socket, make_pair):
    router = make_socket(zmq.ROUTER)
    endpoint = bind(router, "tcp")
    server = gevent.spawn(router_echo, make_pair(router, 64, 64))
    _ask_many(client(endpoint), callers=100)
    server.kill()


def test_through_a_router_dealer_proxy(client, make_pair):
    """zmq.proxy in a native thread, REP workers behind it."""
    ctx = plain_zmq.Context()
    frontend, backend = ctx.socket(plain_zmq.ROUTER), ctx.socket(plain_zmq.DEALER)
    for s in (frontend, backend):
        s.linger = 0
    front_port = frontend.bind_to_random_port("tcp://127.0.0.1")
    back_port = backend.bind_to_random_port("tcp://127.0.0.1")

    def run_proxy() -> None:
        try:
            plain_zmq.proxy(frontend, backend)
        except plain_zmq.ContextTerminated:
            pass
        finally:
            frontend.close()
            backend.close()

    proxy = get_original("threading", "Thread")(target=run_proxy, daemon=True)
    proxy.start()
    green_ctx = zmq.Context()
    workers = []
    try:
        for _ in range(3):
            rep = green_ctx.socket(zmq.REP)
            rep.linger = 0
            rep.connect(f"tcp://127.0.0.1:{back_port}")
            workers.append((make_pair(rep), None))
        servers = [gevent.spawn(rep_server, pair) for pair, _ in workers]
        _ask_many(client(f"tcp://127.0.0.1:{front_port}"), callers=30)
        gevent.killall(servers)
        for pair, _ in workers:
            pair.close()
    finally:
        gevent.get_hub().threadpool.spawn(ctx.term).get(timeout=10)
        green_ctx.destroy(linger=0)
        proxy.join(5)


def test_timeout_and_late_reply_counted(client, make_socket, make_pair):
    rep = make_socket(zmq.REP)
    endpoint = bind(rep, "tcp")
    server = gevent.spawn(rep_server, make_pair(rep), 0.2)
    requester = client(endpoint)
    with pytest.raises(TimeoutError):
        requester.request([b"slow"], timeout=0.05)
    wait_for(lambda: requester.stats()["late_replies"] == 1, what="late reply counted")
    assert requester.request([b"next"], timeout=10) == [b"next", b"!"]
    assert requester.stats()["outstanding"] == 0
    server.kill()


def test_unknown_and_malformed_replies_are_dropped(client, make_socket, make_pair):
    router = make_socket(zmq.ROUTER)
    endpoint = bind(router, "tcp")
    server_pair = make_pair(router, 16, 16)
    requester = client(endpoint)
    caller = gevent.spawn(requester.request, [b"hello"], 10)
    identity, request_id, empty, body = server_pair.recv(timeout=5)
    server_pair.send([identity, b"no such id", b"", b"bogus"])
    server_pair.send([identity, b"no delimiter"])
    server_pair.send([identity, request_id, empty, b"the answer"])
    assert caller.get(timeout=5) == [b"the answer"]
    wait_for(lambda: requester.stats()["late_replies"] == 2)


def test_close_fails_outstanding_requests(client, make_socket, make_pair):
    router = make_socket(zmq.ROUTER)
    endpoint = bind(router, "tcp")
    server_pair = make_pair(router, 0, 8)  # never answers
    requester = client(endpoint)
    callers = [gevent.spawn(requester.request, [b"%d" % i]) for i in range(5)]
    wait_for(lambda: requester.stats()["outstanding"] == 5 and server_pair.stats()["received"] == 5)
    requester.close()
    for c in callers:
        with pytest.raises(zc.ChannelClosed):
            c.get(timeout=5)
    assert requester.closed
    with pytest.raises(zc.ChannelClosed):
        requester.request([b"after"])


def test_threads_and_greenlets_request_at_once(client, rep_endpoint):
    requester = client(rep_endpoint)
    from_threads = requester.for_threads()
    assert requester.for_threads() is from_threads

    def thread_caller(port: zc.ThreadRequester, k: int) -> int:
        for i in range(20):
            body = [b"thread %d" % k, b"%d" % i]
            assert port.request(body, timeout=20) == [*body, b"!"]
        return k

    pool = gevent.get_hub().threadpool
    results = [pool.spawn(thread_caller, from_threads, k) for k in range(4)]
    _ask_many(requester, callers=20, each=5)
    assert sorted(r.get(timeout=30) for r in results) == [0, 1, 2, 3]
    with pytest.raises(RuntimeError):
        from_threads.request([b"from the hub"])


def test_requester_on_a_copy_false_pair(make_socket, make_pair, rep_endpoint):
    dealer = make_socket(zmq.DEALER)
    dealer.connect(rep_endpoint)
    requester = zc.Requester(make_pair(dealer, 4, 4, copy=False))
    reply = requester.request([b"frames"], timeout=10)
    assert [bytes(f) for f in reply] == [b"frames", b"!"]
    assert requester.stats()["late_replies"] == 0


def test_reader_dying_fails_outstanding_requests(client, make_socket, make_pair):
    router = make_socket(zmq.ROUTER)
    endpoint = bind(router, "tcp")
    make_pair(router, 0, 8)  # never answers
    requester = client(endpoint)
    caller = gevent.spawn(requester.request, [b"waits"])
    wait_for(lambda: requester.stats()["outstanding"] == 1)
    requester._reader.kill()
    with pytest.raises(zc.ChannelBroken):
        caller.get(timeout=5)
    with pytest.raises(zc.ChannelBroken):
        requester.request([b"after"], timeout=5)
