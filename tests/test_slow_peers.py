"""Slow ROUTER peers (DESIGN.md hazard 14).

With ``ROUTER_MANDATORY``, a peer at its high-water mark answers ``EAGAIN`` for
its own messages only. The pair parks those, in order, and goes on with every
other peer's; what waits for a stalled peer counts against ``tx_size``.

The stalled peer is a DEALER on inproc that never reads, with both high-water
marks at 1, so its pipe is full after a few messages.
"""

from __future__ import annotations

import gevent
import pytest
import zmq.green as zmq

import zmqchan_green as zc

from .conftest import bind, wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def router(make_socket, make_pair):
    """``router(tx_size)`` -> (pair, stalled peer, idle peer): a ROUTER_MANDATORY
    pair and two DEALERs (ids ``b"slow"`` and ``b"idle"``) it knows."""

    def make(tx_size):
        sock = make_socket(zmq.ROUTER, router_mandatory=1, sndhwm=1)
        endpoint = bind(sock, "inproc")
        peers = []
        for name in (b"slow", b"idle"):
            peer = make_socket(zmq.DEALER, routing_id=name, rcvhwm=1)
            peer.connect(endpoint)
            peer.send(b"hello")  # so the ROUTER knows the peer
            peers.append(peer)
        pair = make_pair(sock, tx_size, 4)
        for _ in peers:
            pair.recv(timeout=5)
        return pair, peers[0], peers[1]

    return make


def _all_parked_or_sent(pair):
    stats = pair.stats()
    return stats["tx_pending"] == stats["parked"]


def _fill(pair, n):
    """Send to the stalled peer until one of its messages is parked; returns
    how many were sent (numbered from ``n``)."""
    sent = 0
    while pair.stats()["parked"] == 0:
        pair.send([b"slow", b"%d" % (n + sent)], timeout=5)
        sent += 1
        wait_for(lambda: _all_parked_or_sent(pair), what="the pump's turn")
        assert sent < 100, "the peer never filled up"
    return sent


@pytest.mark.parametrize("tx_size", [0, 4, 16])
def test_stalled_peer_does_not_hold_back_another(router, tx_size):
    pair, slow, idle = router(tx_size)
    slow_sender = gevent.spawn(lambda: [pair.send([b"slow", b"%d" % i]) for i in range(10)])
    gevent.sleep(0.05)  # the slow peer's pipe fills; its sender may have to wait
    for i in range(20):
        pair.send([b"idle", b"%d" % i], timeout=5)
        assert idle.poll(5000), "a message to the idle peer was held back"
        assert idle.recv_multipart() == [b"%d" % i]
    # The stalled peer, reading at last, gets everything in order.
    got = [slow.recv_multipart()[0] for _ in range(10)]
    assert got == [b"%d" % i for i in range(10)]
    slow_sender.get(timeout=5)


def test_parked_messages_count_against_tx_size(router):
    pair, slow, _idle = router(4)
    sent = _fill(pair, 0)
    # Further messages to the stalled peer are accepted until tx_size is full...
    while pair.stats()["tx_pending"] < 4:
        pair.send([b"slow", b"%d" % sent], timeout=5)
        sent += 1
    # ... and then no more: memory stays bounded.
    with pytest.raises(zc.WouldBlock):
        pair.send_nowait([b"slow", b"more"])
    with pytest.raises(TimeoutError):
        pair.send([b"slow", b"more"], timeout=0.2)
    assert pair.stats()["tx_pending"] == 4
    got = []
    while len(got) < sent:
        got.append(slow.recv_multipart()[0])
    assert got == [b"%d" % i for i in range(sent)]


def test_rendezvous_sender_to_a_stalled_peer_waits_alone(router):
    pair, slow, idle = router(0)
    sent = _fill(pair, 0)
    # One message is in the pump's hand for the stalled peer; the next one to
    # that peer is not accepted...
    blocked = gevent.spawn(pair.send, [b"slow", b"%d" % sent])
    gevent.sleep(0.05)
    assert not blocked.ready()
    # ... while another peer's go on at once.
    pair.send([b"idle", b"go"], timeout=5)
    assert idle.recv_multipart() == [b"go"]
    got = [slow.recv_multipart()[0] for _ in range(sent + 1)]
    assert got == [b"%d" % i for i in range(sent + 1)]
    blocked.get(timeout=5)


def test_close_returns_parked_messages_in_order(router):
    pair, _slow, idle = router(8)
    sent = _fill(pair, 0)
    for i in range(3):  # parked behind the first
        pair.send([b"slow", b"%d" % (sent + i)], timeout=5)
    sent += 3
    pair.send([b"idle", b"last"], timeout=5)
    assert idle.recv_multipart() == [b"last"]
    parked = pair.stats()["parked"]
    assert parked >= 4
    unsent = pair.close(linger=0.1)
    assert unsent == [[b"slow", b"%d" % i] for i in range(sent - parked, sent)]


def test_parked_peer_that_leaves_is_reported(router):
    pair, slow, _idle = router(4)
    _fill(pair, 0)
    slow.close(linger=0)
    # Its parked messages cannot go anywhere now: each is reported.
    error = pair.errors.get(timeout=5)
    assert isinstance(error, zc.SendError)
    assert error.message[0] == b"slow"
    assert error.__cause__.errno == zmq.EHOSTUNREACH
    wait_for(lambda: pair.stats()["parked"] == 0, what="parked messages reported")


def test_rendezvous_accepts_at_once_for_a_peer_that_is_not_stalled(router):
    pair, slow, idle = router(0)
    _fill(pair, 0)
    wait_for(lambda: pair.stats()["tx_pending"] == pair.stats()["parked"], what="the hand to empty")
    pair.send_nowait([b"idle", b"now"])  # another peer's message: accepted now
    assert idle.poll(5000)
    assert idle.recv_multipart() == [b"now"]
    with pytest.raises(zc.WouldBlock):
        pair.send_nowait([b"slow", b"later"])  # the stalled peer's: not accepted


def test_held_messages_stay_within_tx_size_plus_one_per_stalled_peer(make_socket, make_pair):
    tx_size = 3
    sock = make_socket(zmq.ROUTER, router_mandatory=1, sndhwm=1)
    endpoint = bind(sock, "inproc")
    names = [b"p%d" % i for i in range(12)]
    for name in names:
        peer = make_socket(zmq.DEALER, routing_id=name, rcvhwm=1)
        peer.connect(endpoint)
        peer.send(b"hello")
    pair = make_pair(sock, tx_size, 16)
    for _ in names:
        pair.recv(timeout=5)
    senders = [
        gevent.spawn(lambda name=name: [pair.send([name, b"%d" % i]) for i in range(20)])
        for name in names
    ]
    # Every peer stalls; the senders block; what the pair holds stays bounded.
    wait_for(lambda: pair.stats()["tx_waiting"] == len(names), what="every sender to wait")
    assert pair.stats()["tx_pending"] <= tx_size + len(names)
    gevent.killall(senders)
