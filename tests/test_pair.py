"""ChannelPair basics: construction, send/recv in both channel modes, nowait,
timeouts, iteration, call/subscribe, stats, errors, warnings, wrong thread."""

from __future__ import annotations

import gc
import re

import gevent
import pytest
import zmq as plain_zmq
import zmq.green as zmq
from gevent.monkey import get_original

import zmqchan_green as zc

from .conftest import wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pushpull(connected, make_pair):
    def make(tx_size=0, rx_size=0, **kw):
        pull, push = connected(zmq.PULL, zmq.PUSH, **kw)
        return make_pair(push, tx_size, 0), make_pair(pull, 0, rx_size)

    return make


# ----------------------------------------------------------- construction


def test_public_names():
    for name in [
        "ChannelPair",
        "ZmqChanError",
        "ChannelClosed",
        "ChannelBroken",
        "WouldBlock",
        "SendError",
    ]:
        assert name in zc.__all__
    assert issubclass(zc.ChannelClosed, zc.ZmqChanError)
    assert issubclass(zc.ChannelBroken, zc.ChannelClosed)
    assert issubclass(zc.WouldBlock, zc.ZmqChanError)
    assert issubclass(zc.SendError, zc.ZmqChanError)
    assert re.fullmatch(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?", zc.__version__)


@pytest.mark.parametrize("size", [-1, -100])
@pytest.mark.parametrize("which", ["tx_size", "rx_size"])
def test_negative_sizes_rejected_and_socket_still_usable(make_socket, make_pair, which, size):
    sock = make_socket(zmq.PAIR)
    with pytest.raises(ValueError, match=which):
        zc.ChannelPair(sock, **{which: size})
    # The caller still owns the socket: it can be wrapped now.
    make_pair(sock)


@pytest.mark.parametrize("size", [1.5, "3", None])
def test_non_int_sizes_rejected(make_socket, size):
    with pytest.raises(TypeError):
        zc.ChannelPair(make_socket(zmq.PAIR), tx_size=size)


def test_not_a_socket_rejected():
    with pytest.raises(TypeError):
        zc.ChannelPair(object())  # type: ignore[arg-type]


def test_closed_socket_rejected(make_socket):
    sock = make_socket(zmq.PAIR)
    sock.close()
    with pytest.raises(ValueError, match="closed"):
        zc.ChannelPair(sock)


def test_socket_owned_by_open_pair_rejected(make_socket, make_pair):
    sock = make_socket(zmq.PAIR)
    pair = make_pair(sock)
    with pytest.raises(ValueError, match="already owned"):
        zc.ChannelPair(sock)
    # Another Python object for the same libzmq socket is refused too. (A
    # plain shadow: a zmq.green shadow would close the socket when collected.)
    with pytest.raises(ValueError, match="already owned"):
        zc.ChannelPair(plain_zmq.Socket.shadow(sock.underlying))
    # The first pair is unharmed.
    assert not pair.closed
    pair.close()
    # Once closed, the socket is closed too, so it cannot be wrapped again.
    with pytest.raises(ValueError):
        zc.ChannelPair(sock)


def test_plain_pyzmq_socket_accepted(make_pair):
    ctx = plain_zmq.Context()
    try:
        a, b = ctx.socket(plain_zmq.PAIR), ctx.socket(plain_zmq.PAIR)
        a.linger = b.linger = 0
        a.bind("inproc://plain-accepted")
        b.connect("inproc://plain-accepted")
        pa, pb = make_pair(a), make_pair(b)
        pa.send([b"x", b"y"])
        assert pb.recv(timeout=5) == [b"x", b"y"]
        pa.close()
        pb.close()
    finally:
        ctx.destroy(linger=0)


def test_green_watcher_stopped_while_owned(make_socket, make_pair):
    """Hazard 12: the zmq.green socket's own FD watcher is stopped; the pump's is the only one."""
    sock = make_socket(zmq.PAIR)
    assert sock._state_event.active
    make_pair(sock)
    assert not sock._state_event.active


# ------------------------------------------------------ send and receive


@pytest.mark.parametrize("sizes", [(0, 0), (1, 1), (16, 16)])
def test_roundtrip_and_types(pushpull, sizes):
    tx, rx = pushpull(*sizes)
    tx.send([b"a", bytearray(b"b"), memoryview(b"c"), zmq.Frame(b"d")])
    tx.send((b"t", b"u"))
    tx.send(b"single")
    assert rx.recv(timeout=5) == [b"a", b"b", b"c", b"d"]
    assert rx.recv(timeout=5) == [b"t", b"u"]
    assert rx.recv(timeout=5) == [b"single"]


def test_copy_false_gives_frames(connected, make_pair):
    pull, push = connected(zmq.PULL, zmq.PUSH)
    tx, rx = make_pair(push), make_pair(pull, copy=False)
    tx.send([b"x", b"y"])
    msg = rx.recv(timeout=5)
    assert all(isinstance(f, zmq.Frame) for f in msg)
    assert [f.bytes for f in msg] == [b"x", b"y"]


def test_rendezvous_send_returns_once_taken(pushpull):
    tx, rx = pushpull(0, 0)
    tx.send(b"one", timeout=5)
    assert tx.stats()["tx_pending"] <= 1
    wait_for(lambda: tx.stats()["sent"] == 1, what="message handed to socket")
    assert tx.stats()["tx_pending"] == 0
    assert rx.recv(timeout=5) == [b"one"]


def test_buffered_send_does_not_wait_for_the_pump(connected, make_pair):
    """With tx_size=N, N sends return at once even before the pump ran."""
    pull, push = connected(zmq.PULL, zmq.PUSH)
    tx = make_pair(push, 5)
    for i in range(5):
        tx.send_nowait([b"%d" % i])
    assert tx.stats()["tx_pending"] == 5
    with pytest.raises(zc.WouldBlock):
        tx.send_nowait(b"six")
    rx = make_pair(pull)
    assert [rx.recv(timeout=5) for _ in range(5)] == [[b"%d" % i] for i in range(5)]


def test_back_pressure_reaches_sender(connected, make_pair):
    """Beyond tx_size, the pump's hand and the HWMs, send blocks (times out)."""
    pull, push = connected(zmq.PULL, zmq.PUSH, sndhwm=1, rcvhwm=1)
    tx = make_pair(push, 2)
    accepted = 0
    with pytest.raises(TimeoutError):
        for i in range(10_000):
            tx.send([b"%d" % i], timeout=0.2)
            accepted += 1
    assert accepted < 100
    rx = make_pair(pull)
    for i in range(accepted):
        assert rx.recv(timeout=5) == [b"%d" % i]
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0.05)


def test_recv_nowait(pushpull):
    tx, rx = pushpull(0, 4)
    with pytest.raises(zc.WouldBlock):
        rx.recv_nowait()
    tx.send(b"x")
    wait_for(lambda: rx.stats()["rx_pending"] == 1, what="message buffered")
    assert rx.recv_nowait() == [b"x"]
    with pytest.raises(zc.WouldBlock):
        rx.recv_nowait()


def test_rendezvous_recv_holds_one_message_in_hand(pushpull):
    tx, rx = pushpull(4, 0)
    for i in range(4):
        tx.send(b"%d" % i)
    wait_for(lambda: rx.stats()["rx_pending"] == 1, what="one message in hand")
    assert rx.recv_nowait() == [b"0"]


def test_send_nowait_on_rendezvous(pushpull):
    tx, rx = pushpull(0, 0)
    # Once the pump has seen the socket writable, it can take one message now.
    wait_for(lambda: _try_send_nowait(tx), what="send_nowait accepted")
    assert rx.recv(timeout=5) == [b"now"]


def _try_send_nowait(pair):
    try:
        pair.send_nowait(b"now")
    except zc.WouldBlock:
        return False
    return True


def test_send_nowait_wouldblock_on_unwritable(make_socket, make_pair):
    push = make_socket(zmq.PUSH)  # no peer: never writable
    tx = make_pair(push, 0)
    wait_for(lambda: tx._pump._sleeper is not None, what="the pump looked and went to sleep")
    with pytest.raises(zc.WouldBlock):
        tx.send_nowait(b"x")
    assert tx.close() == []


@pytest.mark.parametrize("kind", [zmq.PUSH, zmq.DEALER], ids=["PUSH", "DEALER"])
def test_rendezvous_takes_no_message_once_the_pipe_is_full(make_socket, make_pair, kind):
    """A rendezvous has room only while the socket was writable when the pump
    last looked: after the send that filled the pipe, it looks again, so
    nothing more is taken into its hand (a DEALER whose receive side is full
    too, a PUSH that cannot receive)."""
    sock = make_socket(kind, sndhwm=1, rcvhwm=1)
    peer = make_socket(zmq.PULL if kind == zmq.PUSH else zmq.DEALER, sndhwm=1, rcvhwm=1)
    endpoint = f"inproc://rendezvous-full-{kind}"
    peer.bind(endpoint)
    sock.connect(endpoint)
    tx = make_pair(sock, 0, 0)
    if kind == zmq.DEALER:
        for _ in range(5):  # fill the pair's receive side: nobody receives
            try:
                peer.send(b"in", zmq.NOBLOCK)
            except zmq.Again:
                break
        wait_for(lambda: tx.stats()["rx_pending"] == 1, what="the receive side full")
    accepted = 0
    for i in range(10):  # nobody ever reads the peer
        wait_for(lambda: tx._pump._sleeper is not None, what="the pump asleep")
        try:
            tx.send_nowait(b"%d" % i)
            accepted += 1
        except zc.WouldBlock:
            pass
    wait_for(lambda: tx._pump._sleeper is not None, what="the pump asleep")
    assert accepted >= 1
    assert tx.stats()["tx_pending"] == 0
    assert tx.stats()["sent"] == accepted
    assert tx.close(linger=0) == []


def test_rendezvous_req_accepts_no_second_request_before_the_reply(make_socket, make_pair):
    """A REQ that sent its request cannot send again until the reply: a
    second sender waiting at that moment is not accepted (its send times
    out), and nothing is left in the pump's hand."""
    rep = make_socket(zmq.REP)
    endpoint = f"inproc://req-no-second-{id(rep)}"
    rep.bind(endpoint)
    req = make_socket(zmq.REQ)
    req.connect(endpoint)
    tx = make_pair(req, 0, 0)
    results = {}

    def send(name):
        try:
            tx.send(name, timeout=0.5)
            results[name] = "accepted"
        except TimeoutError:
            results[name] = "timed out"

    senders = [gevent.spawn(send, b"first"), gevent.spawn(send, b"second")]
    gevent.joinall(senders, timeout=10, raise_error=True)
    assert results == {b"first": "accepted", b"second": "timed out"}
    assert rep.recv() == b"first"  # nobody replies
    assert tx.stats()["tx_pending"] == 0
    assert tx.close(linger=0) == []


def test_send_timeout_means_not_accepted(make_socket, make_pair):
    push = make_socket(zmq.PUSH)
    endpoint = "inproc://send-timeout-not-accepted"
    push.bind(endpoint)
    tx = make_pair(push, 0)
    with pytest.raises(TimeoutError):
        tx.send(b"never", timeout=0.05)
    assert tx.stats()["tx_pending"] == 0
    assert tx.stats()["tx_waiting"] == 0
    assert tx.close() == []


def test_recv_timeout(pushpull):
    _, rx = pushpull()
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0.01)
    assert rx.stats()["rx_waiting"] == 0


@pytest.mark.parametrize("timeout", [-1, -0.5])
def test_negative_timeout_rejected(pushpull, timeout):
    tx, rx = pushpull()
    with pytest.raises(ValueError):
        tx.send(b"x", timeout=timeout)
    with pytest.raises(ValueError):
        rx.recv(timeout=timeout)
    with pytest.raises(TypeError):
        rx.recv(timeout="1")


def test_send_on_receive_only_socket_is_refused(pushpull):
    tx, rx = pushpull()
    with pytest.raises(zmq.ZMQError):
        rx.send(b"x")
    with pytest.raises(zmq.ZMQError):
        tx.recv(timeout=0)
    tx.send(b"still fine", timeout=5)
    assert rx.recv(timeout=5) == [b"still fine"]


def test_iteration_stops_at_close(pushpull):
    tx, rx = pushpull(0, 8)
    for i in range(3):
        tx.send(b"%d" % i)
    wait_for(lambda: rx.stats()["received"] == 3, what="three received")
    got = []

    def consume():
        for msg in rx:
            got.append(msg)

    g = gevent.spawn(consume)
    wait_for(lambda: len(got) == 3, what="three consumed")
    rx.close()
    g.get(timeout=5)
    assert got == [[b"0"], [b"1"], [b"2"]]


# ------------------------------------------------------------ call/options


def test_call_runs_in_pump_and_returns(pushpull):
    tx, _ = pushpull()
    assert tx.call(lambda s, opt: s.getsockopt(opt), zmq.TYPE) == zmq.PUSH
    assert tx.call(lambda s, *a, **k: (a, k), 1, 2, x=3) == ((1, 2), {"x": 3})


def test_call_exception_propagates_and_pump_goes_on(pushpull):
    tx, rx = pushpull()

    def boom(sock):
        raise KeyError("boom")

    with pytest.raises(KeyError):
        tx.call(boom)
    with pytest.raises(zmq.ZMQError):
        tx.call(lambda s: s.setsockopt(zmq.SUBSCRIBE, b"x"))  # not a SUB socket
    tx.send(b"alive")
    assert rx.recv(timeout=5) == [b"alive"]


def test_setsockopt_after_wrapping_goes_through_call(pushpull):
    """Hazard 6: options after wrapping are set by the pump."""
    tx, _ = pushpull()
    tx.call(lambda s: setattr(s, "sndhwm", 7))
    assert tx.call(lambda s: s.sndhwm) == 7


def test_subscribe_after_wrapping(connected, make_pair):
    sub, pub = connected(zmq.SUB, zmq.PUB)
    rx, tx = make_pair(sub, 0, 64), make_pair(pub, 16)
    rx.subscribe("wanted")
    rx.subscribe(b"also")
    with pytest.raises(TypeError):
        rx.subscribe(42)  # type: ignore[arg-type]

    def publish_until_received():
        while True:
            tx.send([b"other", b"x"])
            tx.send([b"wanted", b"y"])
            gevent.sleep(0.005)

    g = gevent.spawn(publish_until_received)
    try:
        assert rx.recv(timeout=5) == [b"wanted", b"y"]
        rx.unsubscribe("wanted")
    finally:
        g.kill()


# ------------------------------------------------------------ stats, errors


def test_stats_counts(pushpull):
    tx, rx = pushpull(0, 8)
    for i in range(5):
        tx.send(b"%d" % i)
    for _ in range(5):
        rx.recv(timeout=5)
    wait_for(lambda: tx.stats()["sent"] == 5)
    s = rx.stats()
    assert s["received"] == 5 and s["rx_pending"] == 0
    for key in ["sent", "received", "tx_pending", "rx_pending", "errors", "errors_dropped"]:
        assert key in s


def test_stats_and_closed_readable_from_another_thread(pushpull):
    tx, _ = pushpull()
    result = {}

    def read():
        result["stats"] = tx.stats()
        result["closed"] = tx.closed

    t = get_original("threading", "Thread")(target=read)
    t.start()
    t.join(5)
    assert result == {"stats": tx.stats(), "closed": False}


def test_unreachable_router_peer_goes_to_errors(make_socket, make_pair):
    """A per-message failure after send returned is reported on errors; the pump goes on."""
    router = make_socket(zmq.ROUTER, router_mandatory=1)
    router.bind("inproc://errors-router")
    dealer = make_socket(zmq.DEALER, identity=b"known")
    dealer.connect("inproc://errors-router")
    tx, rx = make_pair(router, 4), make_pair(dealer)
    rx.send(b"hello")  # make the router learn b"known"
    wait_for(lambda: tx.stats()["received"] == 1, what="router saw the dealer")
    tx.send([b"nobody", b"lost"])
    tx.send([b"known", b"ok"])
    err = tx.errors.get(timeout=5)
    assert isinstance(err, zc.SendError)
    assert err.message == [b"nobody", b"lost"]
    assert isinstance(err.__cause__, zmq.ZMQError)
    assert err.__cause__.errno == zmq.EHOSTUNREACH
    assert rx.recv(timeout=5) == [b"ok"]
    assert tx.stats()["errors"] == 1


def test_errors_queue_is_bounded_and_counts_drops(make_socket, make_pair, monkeypatch):
    from zmqchan_green import _pump

    monkeypatch.setattr(_pump, "ERRORS_MAXSIZE", 3)
    router = make_socket(zmq.ROUTER, router_mandatory=1)
    router.bind("inproc://errors-bounded")
    # With ROUTER_MANDATORY the socket is writable only once it has a peer.
    make_socket(zmq.DEALER).connect("inproc://errors-bounded")
    tx = make_pair(router, 16)
    for i in range(10):
        tx.send([b"nobody", b"%d" % i])
    wait_for(lambda: tx.stats()["errors"] == 10, what="ten errors")
    assert tx.stats()["errors_dropped"] == 7
    assert [tx.errors.get_nowait().message[1] for _ in range(3)] == [b"7", b"8", b"9"]


# ------------------------------------------------------- lifetime, threads


def test_unclosed_pair_warns_on_gc(make_socket):
    sock = make_socket(zmq.PAIR)
    pair = zc.ChannelPair(sock)
    gevent.sleep(0)
    with pytest.warns(ResourceWarning, match="unclosed"):
        del pair
        gc.collect()
    wait_for(lambda: sock.closed, what="abandoned pair closed its socket")


def test_context_manager_closes(make_socket):
    sock = make_socket(zmq.PAIR)
    with zc.ChannelPair(sock) as pair:
        assert not pair.closed
    assert pair.closed
    assert sock.closed


def test_greenlet_methods_refuse_other_threads(pushpull):
    tx, _ = pushpull()
    errors = []

    def use():
        for call in (lambda: tx.send(b"x"), lambda: tx.recv(timeout=0), tx.close):
            try:
                call()
            except RuntimeError as exc:
                errors.append(str(exc))

    t = get_original("threading", "Thread")(target=use)
    t.start()
    t.join(5)
    assert len(errors) == 3
    assert all("for_threads()" in e for e in errors)
    assert not tx.closed


def test_many_pairs_in_one_hub(connected, make_pair):
    pairs = []
    for _ in range(50):
        a, b = connected(zmq.PAIR, zmq.PAIR)
        pairs.append((make_pair(a, 2, 2), make_pair(b, 2, 2)))
    for i, (a, _) in enumerate(pairs):
        a.send(b"%d" % i)
    for i, (_, b) in enumerate(pairs):
        assert b.recv(timeout=5) == [b"%d" % i]


def test_router_mandatory_without_peers_reports_unroutable(make_socket, make_pair):
    """EVENTS never says writable for a peerless ROUTER_MANDATORY socket; the
    pump still tries, so the message fails with EHOSTUNREACH instead of waiting forever."""
    router = make_socket(zmq.ROUTER, router_mandatory=1)
    router.linger = -1
    router.bind("inproc://peerless-router")
    tx = make_pair(router, 0)
    tx.send([b"nobody", b"hi"], timeout=5)
    err = tx.errors.get(timeout=5)
    assert err.__cause__.errno == zmq.EHOSTUNREACH
    assert tx.close() == []
