"""Close, linger, and the pump breaking: nothing accepted is lost silently,
nobody is left blocked, and nothing hangs."""

from __future__ import annotations

import gevent
import pytest
import zmq.green as zmq

import zmqchan_green as zc

from .conftest import run_python, wait_for

pytestmark = pytest.mark.timeout(30)


def test_close_after_everything_went_returns_empty(connected, make_pair):
    pull, push = connected(zmq.PULL, zmq.PUSH)
    tx, rx = make_pair(push, 8), make_pair(pull, 0, 8)
    for i in range(5):
        tx.send(b"%d" % i)
    assert tx.close() == []
    assert [rx.recv(timeout=5) for _ in range(5)] == [[b"%d" % i] for i in range(5)]
    assert tx.closed


def test_close_returns_unsent_in_order_and_is_idempotent(make_socket, make_pair):
    push = make_socket(zmq.PUSH)  # no peer: nothing can leave
    tx = make_pair(push, 5)
    msgs = [[b"m", b"%d" % i] for i in range(5)]
    for m in msgs:
        tx.send(m)
    assert tx.close(linger=0.05) == msgs
    assert tx.close() == []
    assert push.closed


def test_close_linger_none_uses_socket_linger(make_socket, make_pair):
    push = make_socket(zmq.PUSH)  # LINGER=0
    tx = make_pair(push, 3)
    tx.send(b"a")
    tx.send(b"b")
    assert tx.close() == [[b"a"], [b"b"]]


def test_send_after_close_fails_fast(make_socket, make_pair):
    tx = make_pair(make_socket(zmq.PUSH), 3)
    tx.close()
    with pytest.raises(zc.ChannelClosed):
        tx.send(b"x")
    with pytest.raises(zc.ChannelClosed):
        tx.send_nowait(b"x")
    with pytest.raises(zc.ChannelClosed):
        tx.call(lambda s: None)
    # Bad input still gets its own error first.
    with pytest.raises(TypeError):
        tx.send("text")


def test_blocked_senders_wake_with_closed_and_were_not_accepted(make_socket, make_pair):
    tx = make_pair(make_socket(zmq.PUSH), 1)
    tx.send(b"accepted")
    outcomes = []

    def blocked(i):
        try:
            tx.send(b"blocked-%d" % i)
            outcomes.append("sent")
        except zc.ChannelClosed as exc:
            outcomes.append(type(exc))

    gs = [gevent.spawn(blocked, i) for i in range(5)]
    wait_for(lambda: tx.stats()["tx_waiting"] == 5, what="five blocked senders")
    assert tx.close(linger=0) == [[b"accepted"]]
    gevent.joinall(gs, timeout=5, raise_error=True)
    assert outcomes == [zc.ChannelClosed] * 5


def test_blocked_receivers_wake_and_buffered_still_delivered(connected, make_pair):
    pull, push = connected(zmq.PULL, zmq.PUSH)
    tx, rx = make_pair(push), make_pair(pull, 0, 4)
    for i in range(3):
        tx.send(b"%d" % i)
    wait_for(lambda: rx.stats()["rx_pending"] == 3, what="three buffered")
    rx.close()
    assert rx.closed
    assert [rx.recv(timeout=5) for _ in range(3)] == [[b"0"], [b"1"], [b"2"]]
    with pytest.raises(zc.ChannelClosed):
        rx.recv(timeout=5)
    with pytest.raises(zc.ChannelClosed):
        rx.recv_nowait()


def test_waiting_receivers_woken_by_close(make_socket, make_pair):
    rx = make_pair(make_socket(zmq.PULL))
    results = []

    def waiter():
        try:
            rx.recv()
        except zc.ChannelClosed as exc:
            results.append(type(exc))

    gs = [gevent.spawn(waiter) for _ in range(4)]
    wait_for(lambda: rx.stats()["rx_waiting"] == 4, what="four receivers waiting")
    rx.close()
    gevent.joinall(gs, timeout=5, raise_error=True)
    assert results == [zc.ChannelClosed] * 4


def test_receiver_that_never_reads_does_not_delay_close(connected, make_pair):
    """Hazard 7: a full rx side never stops sends or close()."""
    a, b = connected(zmq.PAIR, zmq.PAIR)
    a.linger = -1
    pa, pb = make_pair(a, 4, 1), make_pair(b, 64)
    flood = gevent.spawn(lambda: [pb.send(b"flood") for _ in range(100_000)])
    wait_for(lambda: pa.stats()["rx_pending"] >= 1, what="rx full")
    for i in range(20):
        pa.send(b"out-%d" % i, timeout=5)
    # LINGER=-1 and nobody reads pa: close still flushes and returns.
    assert pa.close() == []
    flood.kill()
    got = []
    while len(got) < 20:
        msg = pb.recv(timeout=5)
        if msg != [b"flood"]:
            got.append(msg)
    assert got == [[b"out-%d" % i] for i in range(20)]


def test_infinite_linger_with_dead_peer_blocks_only_the_closer(make_socket, make_pair, ctx):
    """Hazard 8: LINGER=-1 and no peer: close() waits, other greenlets keep running."""
    push = make_socket(zmq.PUSH)
    push.linger = -1
    endpoint = "inproc://dead-peer-infinite-linger"
    push.bind(endpoint)
    tx = make_pair(push, 4)
    tx.send(b"pending")
    closer = gevent.spawn(tx.close)
    ticks = [0]

    def ticker():
        while True:
            ticks[0] += 1
            gevent.sleep(0.001)

    t = gevent.spawn(ticker)
    wait_for(lambda: ticks[0] >= 20, what="other greenlets running during close")
    assert not closer.ready()
    with pytest.raises(zc.ChannelClosed):
        tx.send(b"late")
    # A peer turns up: the flush completes and close() returns nothing unsent.
    pull = make_socket(zmq.PULL)
    pull.connect(endpoint)
    assert closer.get(timeout=10) == []
    t.kill()
    assert pull.recv() == b"pending"


def test_one_deadline_for_the_whole_flush(make_socket, make_pair):
    """Linger is one deadline for everything, not per message: close returns."""
    push = make_socket(zmq.PUSH, sndhwm=1)
    endpoint = "inproc://one-deadline"
    push.bind(endpoint)
    tx = make_pair(push, 50)
    for i in range(50):
        tx.send(b"%d" % i)
    with gevent.Timeout(10, AssertionError("close overran its linger")):
        unsent = tx.close(linger=0.1)
    assert unsent == [[b"%d" % i] for i in range(50 - len(unsent), 50)]
    assert len(unsent) == 50 - tx.stats()["sent"]


def test_killed_closer_leaves_unsent_for_next_close(make_socket, make_pair):
    push = make_socket(zmq.PUSH)
    push.linger = -1
    tx = make_pair(push, 3)
    tx.send(b"a")
    closer = gevent.spawn(tx.close)
    wait_for(lambda: tx.closed, what="close started")
    closer.kill()
    # A later close joins the flush, shortens its deadline, and gets what never left.
    assert tx.close(linger=0) == [[b"a"]]
    assert tx.close() == []


def test_close_from_inside_call_is_refused(make_socket, make_pair):
    tx = make_pair(make_socket(zmq.PUSH))
    with pytest.raises(RuntimeError):
        tx.call(lambda s: tx.close())
    assert not tx.closed


def test_accepted_equals_sent_plus_returned(connected, make_pair):
    """For every send that returned: handed to the socket, or returned by close()."""
    pull, push = connected(zmq.PULL, zmq.PUSH, sndhwm=5, rcvhwm=5)
    tx = make_pair(push, 10)
    accepted = []

    def sender(k):
        for i in range(200):
            msg = [b"%d" % k, b"%d" % i]
            try:
                tx.send(msg)
            except zc.ChannelClosed:
                return
            accepted.append(msg)

    gs = [gevent.spawn(sender, k) for k in range(10)]
    received = [pull.recv_multipart() for _ in range(30)]
    unsent = tx.close(linger=0)
    gevent.joinall(gs, timeout=5, raise_error=True)
    sent = tx.stats()["sent"]
    assert sent + len(unsent) == len(accepted)
    assert len(received) <= sent
    # Whatever reached the peer is a prefix of what was handed over, in per-sender order.
    for k in range(10):
        mine = [m for m in received if m[0] == b"%d" % k]
        assert mine == [m for m in accepted if m[0] == b"%d" % k][: len(mine)]
    # unsent are the newest accepted messages of each sender.
    for k in range(10):
        mine = [m for m in accepted if m[0] == b"%d" % k]
        theirs = [m for m in unsent if m[0] == b"%d" % k]
        assert theirs == mine[len(mine) - len(theirs) :]


# ----------------------------------------------------------- breaking


def test_context_term_breaks_pairs_and_returns(ctx, make_socket):
    """Context.term() (off the hub) returns; callers get ChannelBroken caused by ETERM."""
    push = make_socket(zmq.PUSH)
    pull = make_socket(zmq.PULL)
    tx, rx = zc.ChannelPair(push, 2), zc.ChannelPair(pull)
    tx.send(b"a")
    tx.send(b"b")
    blocked = gevent.spawn(tx.send, b"blocked")
    receiver = gevent.spawn(rx.recv)
    wait_for(lambda: tx.stats()["tx_waiting"] == 1 and rx.stats()["rx_waiting"] == 1)
    term = gevent.get_hub().threadpool.spawn(ctx.term)
    term.get(timeout=10)
    for g in (blocked, receiver):
        g.join(timeout=5)
        assert isinstance(g.exception, zc.ChannelBroken)
        assert isinstance(g.exception.__cause__, zmq.ZMQError)
        assert g.exception.__cause__.errno == zmq.ETERM
    assert tx.closed and rx.closed
    with pytest.raises(zc.ChannelBroken):
        tx.send(b"x")
    with pytest.raises(zc.ChannelBroken):
        list(rx)
    assert tx.close() == [[b"a"], [b"b"]]
    assert rx.close() == []


def test_socket_closed_under_the_pump_breaks_it(make_socket):
    sock = make_socket(zmq.PULL)
    rx = zc.ChannelPair(sock)
    receiver = gevent.spawn(rx.recv)
    wait_for(lambda: rx.stats()["rx_waiting"] == 1)
    sock.close()  # misuse: the pair owns it
    receiver.join(timeout=10)
    assert isinstance(receiver.exception, zc.ChannelBroken)
    assert rx.closed
    assert rx.close() == []


def test_killed_pump_breaks_the_pair(make_socket):
    tx = zc.ChannelPair(make_socket(zmq.PUSH), 2)
    tx.send(b"kept")
    gevent.sleep(0)
    gevent.kill(tx._pump.greenlet)
    wait_for(lambda: tx.closed, what="pump stopped")
    with pytest.raises(zc.ChannelBroken):
        tx.send(b"x")
    assert tx.close() == [[b"kept"]]


CLOSE_UNDER = """
import gevent, zmq.green as zmq, zmqchan_green as zc
ctx = zmq.Context()
for i in range(150):
    s = ctx.socket(zmq.PAIR)
    s.linger = 0
    p = zc.ChannelPair(s)
    gevent.sleep(0)
    s.close()  # misuse: closed under the pump
    churn = [ctx.socket(zmq.PAIR) for _ in range(3)]  # new sockets reuse the descriptors
    for c in churn:
        c.linger = 0
        c.bind("inproc://churn-%d-%d" % (i, id(c)))
    gevent.sleep(0.001)
    try:
        p.send(b"x", timeout=5)
    except zc.ChannelBroken:
        pass
    p.close(linger=0)
    for c in churn:
        c.close()
ctx.term()
print("survived")
"""


@pytest.mark.timeout(60)
def test_socket_closed_under_the_pump_never_crashes_the_process():
    """A watcher left on a descriptor libzmq closed makes libev abort(); the pump
    watches its own duplicate and checks the socket before touching it."""
    proc = run_python("-c", CLOSE_UNDER)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "survived" in proc.stdout
