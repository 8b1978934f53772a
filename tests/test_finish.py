"""The end of a pair, whatever ends it (DESIGN.md hazards 16 and 17).

``close()`` always returns, every waiter wakes and the socket is released:
whatever the socket's class does in its own ``close()``, however large the
``linger``. And once a socket is gone, its libzmq address (which libzmq reuses
at once) no longer counts as owned.
"""

from __future__ import annotations

import time

import gevent
import pytest
import zmq as plain_zmq
import zmq.green as zmq
from gevent.monkey import get_original

import zmqchan_green as zc

from .conftest import wait_for

pytestmark = pytest.mark.timeout(30)

Thread = get_original("threading", "Thread")


class NoLingerSocket(zmq.Socket):
    """Like zerorpc's socket class: ``close()`` takes no ``linger``."""

    closes = 0

    def close(self):  # type: ignore[override]
        type(self).closes += 1
        super().close()


class FailingCloseSocket(zmq.Socket):
    """A class whose own ``close()`` raises before closing anything (while open)."""

    def close(self, linger=None):
        if not self.closed:
            raise RuntimeError("this close() is broken")


@pytest.mark.parametrize("socket_class", [NoLingerSocket, FailingCloseSocket])
def test_close_completes_whatever_the_socket_class(ctx, socket_class):
    sock = ctx.socket(zmq.PUSH, socket_class=socket_class)
    sock.linger = 0
    pair = zc.ChannelPair(sock, 2)
    pair.send(b"never sent")  # no peer
    receiver_sock = ctx.socket(zmq.PULL)
    receiver_sock.linger = 0
    with gevent.Timeout(10, AssertionError("close() hung")):
        assert pair.close(linger=0.05) == [[b"never sent"]]
    assert sock.closed
    assert pair.close() == []
    receiver_sock.close()
    if socket_class is NoLingerSocket:
        assert NoLingerSocket.closes == 1  # its own close() ran


@pytest.mark.parametrize("linger", [30 * 86400, 10**12, 1e300, float("inf")])
def test_huge_linger_means_no_limit(connected, linger):
    pull, push = connected(zmq.PULL, zmq.PUSH)
    tx = zc.ChannelPair(push, 4)
    rx = zc.ChannelPair(pull, 0, 8)
    for i in range(4):
        tx.send(b"%d" % i)
    with gevent.Timeout(10, AssertionError("close() hung")):
        assert tx.close(linger=linger) == []  # everything went out: no wait at all
    assert [rx.recv(timeout=5) for _ in range(4)] == [[b"%d" % i] for i in range(4)]
    rx.close(linger=linger)


def test_huge_linger_option_on_the_socket(make_socket):
    sock = make_socket(zmq.PUSH)
    sock.linger = 2**31 - 1  # the largest LINGER libzmq takes: about 24.8 days
    pair = zc.ChannelPair(sock, 2)
    pair.send(b"waiting")
    closer = gevent.spawn(pair.close)  # no peer: waits, as a LINGER this long says
    gevent.sleep(0.05)
    assert not closer.ready()
    assert pair.close(linger=0) == []  # a second close shortens it...
    assert closer.get(timeout=5) == [[b"waiting"]]  # ... and the first gets the message


def test_wrapping_after_context_destroy_never_says_already_owned():
    for _ in range(30):
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PAIR)
        pair = zc.ChannelPair(sock)
        ctx.destroy(linger=0)
        ctx = zmq.Context()
        _wrap_fresh_and_check_the_old_pair_broke(ctx, pair)
        ctx.destroy(linger=0)


def _wrap_fresh_and_check_the_old_pair_broke(ctx, pair):
    """Wrap a new socket (libzmq tends to give it the freed address at once)
    without "already owned"; ``pair``, whose socket is gone, breaks."""
    fresh = ctx.socket(zmq.PAIR)
    fresh.linger = 0
    with zc.ChannelPair(fresh) as other:
        other.call(lambda s: None)
    wait_for(lambda: pair.closed, what="the old pair noticed its socket is gone")
    with pytest.raises(zc.ChannelBroken):
        pair.send(b"x")
    assert pair.close() == []


def test_wrapping_after_a_pair_broke_never_says_already_owned(make_socket):
    for _ in range(10):
        sock = make_socket(zmq.PAIR)
        pair = zc.ChannelPair(sock)
        gevent.kill(pair._pump.greenlet)  # a pump that ends without close()
        wait_for(lambda p=pair: p.closed, what="pump stopped")
        fresh = make_socket(zmq.PAIR)
        zc.ChannelPair(fresh).close()
        pair.close()


def test_same_socket_still_refused_while_owned(make_socket, make_pair):
    sock = make_socket(zmq.PAIR)
    make_pair(sock)
    with pytest.raises(ValueError, match="already owned"):
        zc.ChannelPair(plain_zmq.Socket.shadow(sock.underlying))


def test_context_destroy_waits_for_a_thread_writing_to_the_wake_pipe(ctx, make_socket):
    """Context.destroy() closes the threads' wake pipe under the gate's lock,
    never while a thread is writing to it (a use-after-free in libzmq)."""
    pair = zc.ChannelPair(make_socket(zmq.PUSH), 2)
    pair.for_threads()
    gate = pair._pump._gate
    holding = get_original("threading", "Event")()
    seen = []

    def writer() -> None:
        with gate._lock:  # what a thread holds while it writes to the pipe
            holding.set()
            time.sleep(0.2)
            seen.append(gate._sockets[1].closed)

    thread = Thread(target=writer)
    thread.start()
    holding.wait(5)
    ctx.destroy(linger=0)
    wait_for(lambda: not thread.is_alive(), what="the writer")
    assert seen == [False]
    wait_for(lambda: pair.closed, what="the pair to notice")
    assert pair.close() == []


@pytest.mark.parametrize("attempt", range(5))
def test_thread_receiver_gets_every_buffered_message_at_close(connected, attempt):
    pull, push = connected(zmq.PULL, zmq.PUSH, "inproc", sndhwm=0, rcvhwm=0)
    total = 3000
    tx = zc.ChannelPair(push, total)
    rx = zc.ChannelPair(pull, 0, total)
    for i in range(total):
        tx.send(b"%d" % i)
    wait_for(lambda: rx.stats()["rx_pending"] == total, what="everything buffered")
    got: list[bytes] = []
    ended: list[BaseException] = []
    port = rx.for_threads()

    def consume() -> None:
        try:
            while True:
                got.append(port.recv(timeout=10)[0])
        except BaseException as exc:
            ended.append(exc)

    thread = Thread(target=consume)
    thread.start()
    gevent.sleep(0.001 * attempt)  # close at various points of the drain
    rx.close()
    wait_for(lambda: not thread.is_alive(), what="the consumer to finish")
    assert isinstance(ended[0], zc.ChannelClosed) and not isinstance(ended[0], zc.ChannelBroken)
    assert got == [b"%d" % i for i in range(total)]
    tx.close()


def test_thread_and_greenlet_receivers_share_the_buffer_at_close(connected):
    pull, push = connected(zmq.PULL, zmq.PUSH, "inproc", sndhwm=0, rcvhwm=0)
    total = 2000
    tx = zc.ChannelPair(push, total)
    rx = zc.ChannelPair(pull, 0, total)
    for i in range(total):
        tx.send(b"%d" % i)
    wait_for(lambda: rx.stats()["rx_pending"] == total, what="everything buffered")
    got: list[bytes] = []
    port = rx.for_threads()

    def consume() -> None:
        try:
            while True:
                got.append(port.recv(timeout=10)[0])
        except zc.ChannelClosed:
            pass

    def green_consume() -> None:
        for msg in rx:
            got.append(msg[0])

    threads = [Thread(target=consume) for _ in range(2)]
    for t in threads:
        t.start()
    greenlets = [gevent.spawn(green_consume) for _ in range(2)]
    rx.close()
    wait_for(lambda: not any(t.is_alive() for t in threads), what="consumers to finish")
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert sorted(got, key=int) == [b"%d" % i for i in range(total)]
    tx.close()


def test_thread_recv_with_a_timeout_beyond_what_a_lock_holds(connected, make_pair):
    pull, push = connected(zmq.PULL, zmq.PUSH)
    tx, rx = make_pair(push), make_pair(pull)
    port = rx.for_threads()
    result = gevent.get_hub().threadpool.spawn(port.recv, timeout=1e10)
    wait_for(lambda: rx.stats()["rx_waiting"] == 1, what="the thread to wait")
    tx.send(b"eventually")
    assert result.get(timeout=10) == [b"eventually"]
    gevent.spawn_later(0.01, tx.send, b"again")
    assert rx.recv(timeout=1e10) == [b"again"]


def test_rendezvous_holds_one_message_while_the_pump_writes(connected, monkeypatch):
    """While the pump writes the message in its hand, a thread's send finds no
    room: a rendezvous never has two accepted messages that did not go out."""
    from zmqchan_green import _wire

    entered = get_original("threading", "Event")()
    release = get_original("threading", "Event")()

    def stuck_send(sock, frame, flags):
        entered.set()
        release.wait(5)  # holds the hub's thread: the thread below runs meanwhile
        raise zmq.Again()

    pull, push = connected(zmq.PULL, zmq.PUSH)  # writable: a rendezvous has room
    tx = zc.ChannelPair(push)
    port = tx.for_threads()
    outcome = []

    def thread_send() -> None:
        entered.wait(5)
        try:
            port.send(b"B", timeout=0.2)
            outcome.append("accepted")
        except TimeoutError:
            outcome.append("not accepted")
        finally:
            release.set()

    thread = Thread(target=thread_send)
    thread.start()
    monkeypatch.setattr(_wire, "send", stuck_send)
    tx.send(b"A")  # accepted: the pump's hand
    wait_for(lambda: not thread.is_alive(), what="the thread's send")
    unsent = tx.close(linger=0)
    assert outcome == ["not accepted"]
    assert unsent == [[b"A"]]


def test_wrapping_a_reused_address_wakes_the_old_pump_from_the_hub(ctx):
    """The old pump is asleep when its socket goes and its address is reused:
    wrapping the new socket wakes it through the hub (a greenlet may not switch
    into a sleeping waiter), and the old pair breaks."""
    for _ in range(10):
        sock = ctx.socket(zmq.PAIR)
        pair = zc.ChannelPair(sock)
        pair.call(lambda s: None)
        wait_for(lambda p=pair: p._pump._sleeper is not None, what="the pump to sleep")
        sock.close(linger=0)  # other code closes the pair's socket object
        _wrap_fresh_and_check_the_old_pair_broke(ctx, pair)


def test_thread_receiver_after_the_pump_broke_sees_the_cause(make_socket):
    sock = make_socket(zmq.PAIR)
    pair = zc.ChannelPair(sock)
    port = pair.for_threads()
    gevent.kill(pair._pump.greenlet, RuntimeError("pump died"))
    wait_for(lambda: pair.closed, what="the pump to stop")
    result = gevent.get_hub().threadpool.spawn(port.recv, timeout=5)
    with pytest.raises(zc.ChannelBroken) as info:
        result.get(timeout=10)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert str(info.value.__cause__) == "pump died"
    pair.close()


class RaisingCloseSocket(zmq.Socket):
    """A class whose ``close()`` fails even as it closes (counted)."""

    closes = 0

    def close(self, linger=None):
        if self.closed:
            return
        type(self).closes += 1
        super().close(linger=linger)
        raise TypeError("this close() fails after closing")


def test_a_failing_close_runs_once_and_is_reported(ctx):
    sock = ctx.socket(zmq.PUSH, socket_class=RaisingCloseSocket)
    pair = zc.ChannelPair(sock)
    with pytest.warns(RuntimeWarning, match="RaisingCloseSocket.close.. raised TypeError"):
        assert pair.close(linger=0) == []
    assert RaisingCloseSocket.closes == 1
    assert sock.closed
