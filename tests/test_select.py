"""recv_any: Go's select over pairs and events."""

from __future__ import annotations

import gevent
import pytest
import zmq.green as zmq
from gevent.event import Event

import zmqchan_green as zc

from .conftest import wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def lanes(connected, make_pair):
    """Three (sender pair, receiver pair) lanes over PUSH/PULL."""

    def make(n=3, rx_size=0):
        out = []
        for _ in range(n):
            pull, push = connected(zmq.PULL, zmq.PUSH)
            out.append((make_pair(push, 8), make_pair(pull, 0, rx_size)))
        return out

    return make


def test_first_ready_pair_wins(lanes):
    (tx0, rx0), (tx1, rx1), (_, rx2) = lanes()
    tx1.send(b"from one")
    source, msg = zc.recv_any([rx0, rx1, rx2], timeout=5)
    assert source is rx1 and msg == [b"from one"]
    tx0.send(b"from zero")
    assert zc.recv_any([rx0, rx1, rx2], timeout=5) == (rx0, [b"from zero"])


def test_earliest_source_wins_when_several_are_ready(lanes):
    (tx0, rx0), (tx1, rx1) = lanes(2, rx_size=4)
    tx0.send(b"a")
    tx1.send(b"b")
    wait_for(lambda: rx0.stats()["rx_pending"] == 1 and rx1.stats()["rx_pending"] == 1)
    assert zc.recv_any([rx1, rx0], timeout=5) == (rx1, [b"b"])
    assert zc.recv_any([rx1, rx0], timeout=5) == (rx0, [b"a"])


def test_event_set_first(lanes):
    ((_, rx0),) = lanes(1)
    stop = Event()
    gevent.spawn_later(0.01, stop.set)
    assert zc.recv_any([rx0, stop], timeout=5) == (stop, None)
    assert zc.recv_any([stop, rx0], timeout=5) == (stop, None)  # already set


def test_timeout(lanes):
    (_, rx0), (_, rx1) = lanes(2)
    with pytest.raises(TimeoutError):
        zc.recv_any([rx0, rx1, Event()], timeout=0.02)
    assert rx0.stats()["rx_waiting"] == 0 and rx1.stats()["rx_waiting"] == 0


def test_message_taken_by_select_goes_to_no_one_else(lanes):
    (tx0, rx0), (tx1, rx1) = lanes(2)
    total = 600
    got = []

    def selector():
        while True:
            source, msg = zc.recv_any([rx0, rx1])
            got.append(msg[0])

    def direct(rx):
        while True:
            got.append(rx.recv()[0])

    workers = [gevent.spawn(selector) for _ in range(5)]
    workers += [gevent.spawn(direct, rx0), gevent.spawn(direct, rx1)]
    for i in range(total // 2):
        tx0.send(b"a%d" % i)
        tx1.send(b"b%d" % i)
    wait_for(lambda: len(got) == total, what="all messages received")
    gevent.killall(workers)
    assert sorted(got) == sorted(
        [b"a%d" % i for i in range(total // 2)] + [b"b%d" % i for i in range(total // 2)]
    )


def test_closed_pairs_are_skipped_once_drained(lanes):
    (tx0, rx0), (tx1, rx1) = lanes(2, rx_size=4)
    tx0.send(b"left over")
    wait_for(lambda: rx0.stats()["rx_pending"] == 1)
    rx0.close()
    assert zc.recv_any([rx0, rx1], timeout=5) == (rx0, [b"left over"])
    waiter = gevent.spawn(zc.recv_any, [rx0, rx1], 5)
    wait_for(lambda: rx1.stats()["rx_waiting"] == 1, what="the select waiting on rx1")
    tx1.send(b"still open")
    assert waiter.get(timeout=5) == (rx1, [b"still open"])


def test_every_pair_closed_raises(lanes):
    (_, rx0), (_, rx1) = lanes(2)
    waiter = gevent.spawn(zc.recv_any, [rx0, rx1])
    wait_for(lambda: rx0.stats()["rx_waiting"] == 1)
    rx0.close()
    gevent.sleep(0.01)
    assert not waiter.ready()  # rx1 is still open
    rx1.close()
    with pytest.raises(zc.ChannelClosed):
        waiter.get(timeout=5)
    with pytest.raises(zc.ChannelClosed):
        zc.recv_any([rx0, rx1])
    # With an event, closed pairs do not end the wait.
    ev = Event()
    gevent.spawn_later(0.01, ev.set)
    assert zc.recv_any([rx0, ev], timeout=5) == (ev, None)


def test_killed_selector_gives_its_message_back(lanes):
    (_, rx0), (_, rx1) = lanes(2)
    victim = gevent.spawn(zc.recv_any, [rx0, rx1])
    wait_for(lambda: rx1.stats()["rx_waiting"] == 1)
    gevent.get_hub().loop.run_callback(victim.throw, gevent.GreenletExit)
    rx1._pump.deliver([b"precious"])
    victim.join(timeout=5)
    assert isinstance(victim.value, gevent.GreenletExit)
    assert rx1.recv(timeout=5) == [b"precious"]


def test_bad_sources(lanes):
    ((tx0, rx0),) = lanes(1)
    with pytest.raises(ValueError):
        zc.recv_any([])
    with pytest.raises(TypeError):
        zc.recv_any([rx0, "not a source"])  # type: ignore[list-item]
    with pytest.raises(zmq.ZMQError):
        zc.recv_any([tx0])  # a PUSH pair cannot receive
    with pytest.raises(ValueError):
        zc.recv_any([rx0], timeout=-1)


def test_broken_pair_found_before_waiting_is_reported(ctx, make_socket, lanes):
    from zmqchan_green import _pump  # noqa: F401

    ((_, rx_open),) = lanes(1)
    broken = zc.ChannelPair(make_socket(zmq.PULL))
    gevent.kill(broken._pump.greenlet)
    wait_for(lambda: broken.closed)
    waiter = gevent.spawn(zc.recv_any, [broken, rx_open])
    wait_for(lambda: rx_open.stats()["rx_waiting"] == 1)
    rx_open.close()
    with pytest.raises(zc.ChannelBroken):
        waiter.get(timeout=5)
    broken.close()
