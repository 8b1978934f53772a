"""Edge cases: misuse and rare failures each get a clear answer, and the pair
(and everyone else using it) keeps working."""

from __future__ import annotations

import copy
import gc
import math
import pickle
import sys
import warnings

import gevent
import pytest
import zmq.green as zmq
from gevent.monkey import get_original

import zmqchan_green as zc
from zmqchan_green import _pair

from .conftest import wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def pushpull(connected, make_pair):
    def make(tx_size=0, rx_size=0):
        pull, push = connected(zmq.PULL, zmq.PUSH)
        return make_pair(push, tx_size), make_pair(pull, 0, rx_size)

    return make


# ------------------------------------------------------------ bad messages


@pytest.mark.parametrize(
    ("msg", "error", "names"),
    [
        ("text", TypeError, "str"),
        ([b"ok", "text"], TypeError, "frame 1"),
        ([b"ok", None], TypeError, "frame 1"),
        ([b"ok", b"ok", 3], TypeError, "frame 2"),
        ([[b"nested"]], TypeError, "frame 0"),
        (None, TypeError, "NoneType"),
        (12.5, TypeError, "float"),
        ([], ValueError, "empty"),
        ((), ValueError, "empty"),
    ],
)
def test_bad_messages_are_refused_in_the_caller(pushpull, msg, error, names):
    tx, rx = pushpull(2, 2)
    with pytest.raises(error, match=names):
        tx.send(msg)
    with pytest.raises(error, match=names):
        tx.send_nowait(msg)
    assert tx.stats()["tx_pending"] == 0  # nothing was queued
    tx.send([b"after", b"that"])
    assert rx.recv(timeout=5) == [b"after", b"that"]


def test_buffers_are_snapshotted_and_made_contiguous(pushpull):
    tx, rx = pushpull(4, 4)
    mutable = bytearray(b"before")
    behind_a_view = bytearray(b"hidden")
    strided = memoryview(b"abcdef")[::2]  # read-only, not contiguous
    tx.send([mutable, memoryview(behind_a_view).toreadonly(), strided])
    mutable[:] = b"AFTER!"
    behind_a_view[:] = b"CHANGE"  # the view is read-only, its memory is not
    assert rx.recv(timeout=5) == [b"before", b"hidden", b"ace"]
    assert not tx.closed


def test_views_of_bytes_are_not_copied():
    from zmqchan_green._checks import as_message

    data = b"immutable"
    frame = as_message([memoryview(data)[2:]])[0]
    assert isinstance(frame, memoryview)
    assert frame.obj is data  # no copy: nobody can change the bytes behind it


def test_constructor_failure_leaves_the_socket_with_the_caller(make_socket, make_pair, monkeypatch):
    sock = make_socket(zmq.PAIR)

    def broken_pump(*args, **kwargs):
        raise OSError("no more file descriptors")

    monkeypatch.setattr(_pair, "Pump", broken_pump)
    with pytest.raises(OSError):
        zc.ChannelPair(sock)
    monkeypatch.undo()
    assert not sock.closed
    make_pair(sock).close()  # and it can be wrapped: it was not left claimed


@pytest.mark.parametrize("bad", [math.nan, -1, "1", [1]])
def test_unusable_timeouts_are_refused(pushpull, bad):
    tx, rx = pushpull()
    error = TypeError if isinstance(bad, (str, list)) else ValueError
    with pytest.raises(error):
        rx.recv(timeout=bad)
    with pytest.raises(error):
        tx.send(b"x", timeout=bad)


def test_infinite_timeout_means_no_limit(pushpull):
    tx, rx = pushpull()
    gevent.spawn_later(0.01, tx.send, b"x")
    assert rx.recv(timeout=math.inf) == [b"x"]
    with pytest.raises(ValueError):
        tx.close(linger=math.nan)


def test_send_nowait_on_a_fresh_rendezvous_pair(connected):
    pull, push = connected(zmq.PULL, zmq.PUSH)
    with zc.ChannelPair(push) as tx, zc.ChannelPair(pull) as rx:
        tx.send_nowait(b"at once")  # the socket is writable from the start
        assert rx.recv(timeout=5) == [b"at once"]


def test_errors_queue_refuses_other_threads(pushpull):
    tx, _ = pushpull()
    caught = []

    def other():
        try:
            tx.errors
        except RuntimeError as exc:
            caught.append(exc)

    t = get_original("threading", "Thread")(target=other)
    t.start()
    t.join(5)
    assert len(caught) == 1


# ------------------------------------------------------------ call() misuse


@pytest.mark.parametrize(
    "exc_type", [SystemExit, KeyboardInterrupt, gevent.Timeout, gevent.GreenletExit]
)
def test_call_raising_a_base_exception_reaches_the_caller(pushpull, exc_type):
    tx, rx = pushpull()

    def boom(sock):
        raise exc_type()

    with pytest.raises(exc_type):
        tx.call(boom)
    tx.send(b"pump still running", timeout=5)
    assert rx.recv(timeout=5) == [b"pump still running"]


def test_call_raising_a_base_exception_reaches_a_thread(pushpull):
    tx, _ = pushpull()

    def in_thread(port):
        with pytest.raises(KeyboardInterrupt):
            port.call(lambda sock: (_ for _ in ()).throw(KeyboardInterrupt()))
        return "ok"

    assert tx.spawn_thread(in_thread).get(timeout=10) == "ok"
    assert not tx.closed


def test_blocking_on_the_pair_from_inside_call_is_refused(pushpull):
    tx, rx = pushpull()
    with pytest.raises(RuntimeError, match="block the pump"):
        rx.call(lambda sock: rx.recv())
    with pytest.raises(RuntimeError, match="block the pump"):
        tx.call(lambda sock: [tx.send(b"%d" % i) for i in range(5)])
    # The pumps are fine, and other callers were never stuck.
    tx.send(b"fine", timeout=5)
    assert rx.recv(timeout=5)[0] in (b"0", b"fine")


# ------------------------------------------------------- close and breaking


def test_receivers_wake_at_close_even_while_the_flush_waits(make_socket, make_pair):
    sock = make_socket(zmq.PAIR)
    sock.linger = -1
    pair = make_pair(sock, 2, 2)  # no peer: the flush cannot finish
    pair.send(b"stuck")
    receiver = gevent.spawn(pair.recv)
    wait_for(lambda: pair.stats()["rx_waiting"] == 1)
    closer = gevent.spawn(pair.close)
    receiver.join(timeout=5)
    assert isinstance(receiver.exception, zc.ChannelClosed)
    with pytest.raises(zc.ChannelClosed):
        pair.recv(timeout=5)
    assert not closer.ready()
    # A second close shortens the deadline; the first caller gets what never left.
    unsent = pair.close(linger=0)
    assert closer.get(timeout=5) + unsent == [[b"stuck"]]


def test_context_term_returns_with_infinite_linger_and_queued_output(ctx, connected):
    pull, push = connected(zmq.PULL, zmq.PUSH, sndhwm=5, rcvhwm=5)
    push.linger = -1
    tx, rx = zc.ChannelPair(push, 8), zc.ChannelPair(pull, 0, 1)
    for i in range(8):
        tx.send(b"%d" % i)
    wait_for(lambda: tx.stats()["sent"] >= 5, what="output queued in libzmq")
    gevent.get_hub().threadpool.spawn(ctx.term).get(timeout=10)
    assert tx.closed and rx.closed
    tx.close()
    rx.close()


def test_unclosed_pair_is_closed_on_gc_even_when_warnings_are_errors(make_socket, monkeypatch):
    sock = make_socket(zmq.PAIR)
    pair = zc.ChannelPair(sock)
    gevent.sleep(0)
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: seen.append(info.exc_type))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the ResourceWarning is raised inside __del__
        del pair
        gc.collect()
    assert seen == [ResourceWarning]
    wait_for(lambda: sock.closed, what="the abandoned pair closed its socket")


def test_send_error_pickles_and_copies():
    """A SendError from ``errors`` can be logged through pickle (multiprocessing,
    logging handlers) and copied: message and cause come back."""
    err = zc.SendError([b"a", b"b"], zmq.ZMQError(zmq.EHOSTUNREACH))
    for clone in (pickle.loads(pickle.dumps(err)), copy.copy(err), copy.deepcopy(err)):
        assert clone.message == [b"a", b"b"]
        assert str(clone) == str(err)
        assert isinstance(clone.__cause__, zmq.ZMQError)
        assert clone.__cause__.errno == zmq.EHOSTUNREACH
