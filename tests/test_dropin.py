"""SharedSocket as a drop-in for a ``zmq.green`` socket (API.md, DESIGN.md hazard 18).

Most tests run twice: ``plain`` uses a ``zmq.green`` socket, so it checks that the
test describes pyzmq's own behaviour (it must pass whatever the library does);
``shared`` makes the same socket with ``ctx.socket(kind, socket_class=SharedSocket)``
(``shared_wrap``: ``SharedSocket(ctx.socket(kind))``) and must behave the same.
``zmq.green`` ignores ``SNDTIMEO``/``RCVTIMEO`` (and warns), so the reference for
timeouts is pyzmq's blocking socket (``plain_blocking``). Tests that use one socket
from many greenlets at once have no pyzmq reference and run on ``shared`` only.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
import warnings

import gevent
import gevent.event
import pytest
import zmq as pyzmq
import zmq.green as zmq
from zmq.utils.monitor import recv_monitor_message

import zmqchan_green as zc

from .conftest import bind, wait_for

pytestmark = pytest.mark.timeout(30)

BOTH = ["plain", "shared"]
SHARED_ONLY = pytest.mark.parametrize("make", ["shared"], indirect=True)
WITH_WRAP = pytest.mark.parametrize("make", ["plain", "shared", "shared_wrap"], indirect=True)
WITH_TIMEOUTS = pytest.mark.parametrize("make", ["plain_blocking", "shared"], indirect=True)


class Boom(Exception):
    pass


@pytest.fixture(params=BOTH)
def make(request, ctx):
    """``make(kind, **options)``: a socket of the variant under test, ``linger=0``."""
    made = []
    blocking = []

    def socket(kind, **options):
        how = request.param
        if how == "plain":
            sock = ctx.socket(kind)
        elif how == "shared":
            sock = ctx.socket(kind, socket_class=zc.SharedSocket)
        elif how == "shared_wrap":
            sock = zc.SharedSocket(ctx.socket(kind))
        else:  # plain_blocking
            if not blocking:
                blocking.append(pyzmq.Context())
            sock = blocking[0].socket(kind)
        made.append(sock)
        sock.linger = 0
        for name, value in options.items():
            setattr(sock, name, value)
        return sock

    yield socket
    for sock in made:
        with contextlib.suppress(Exception):  # close is tested by the tests themselves
            sock.close(linger=0)
    for context in blocking:
        context.destroy(linger=0)


def inproc():
    return f"inproc://dropin-{uuid.uuid4().hex[:16]}"


def spin_until(condition, timeout=5.0):
    """Busy-wait without ever yielding to the hub: no other greenlet runs meanwhile."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"


def push_pull(make, make_socket, factory_side="pull", transport="inproc"):
    """A connected PUSH/PULL; the ``factory_side`` is made by ``make``, the other plain."""
    pull = (make if factory_side == "pull" else make_socket)(zmq.PULL)
    push = (make if factory_side == "push" else make_socket)(zmq.PUSH)
    push.connect(bind(pull, transport))
    return push, pull


# ------------------------------------------------------------- 1. back-pressure


@pytest.mark.parametrize("kind", [zmq.PUSH, zmq.DEALER], ids=["push", "dealer"])
def test_noblock_send_without_peer_raises_again(make, kind):
    sock = make(kind)
    with pytest.raises(zmq.Again):
        sock.send(b"x", zmq.NOBLOCK)


@pytest.mark.parametrize("transport", ["inproc", "tcp"])
def test_noblock_send_at_hwm_raises_again(make, make_socket, transport):
    pull = make_socket(zmq.PULL, rcvhwm=1)  # never reads
    push = make(zmq.PUSH, sndhwm=1)
    push.connect(bind(pull, transport))
    push.send(b"first")  # blocking: waits for the connection
    # inproc holds SNDHWM + RCVHWM messages, no more (a hidden send buffer would show
    # here); tcp adds the kernel's buffers, which 10000 * 64 KiB far exceeds.
    limit, payload = (10, b"x") if transport == "inproc" else (10000, b"x" * 65536)
    with pytest.raises(zmq.Again):
        for _ in range(limit):
            push.send(payload, zmq.NOBLOCK)


@WITH_TIMEOUTS
def test_sndtimeo_makes_a_blocking_send_raise_again(make):
    push = make(zmq.PUSH, sndtimeo=50)
    assert push.sndtimeo == 50
    with pytest.raises(zmq.Again), gevent.Timeout(5, AssertionError("SNDTIMEO ignored")):
        push.send(b"x")


@WITH_TIMEOUTS
def test_rcvtimeo_makes_recv_raise_again(make):
    pull = make(zmq.PULL)
    pull.setsockopt(zmq.RCVTIMEO, 50)
    assert pull.getsockopt(zmq.RCVTIMEO) == 50
    with pytest.raises(zmq.Again), gevent.Timeout(5, AssertionError("RCVTIMEO ignored")):
        pull.recv()


# ------------------------------------------------------------- 2. REQ/REP


def assert_efsm(call):
    with pytest.raises(zmq.ZMQError) as info, gevent.Timeout(5, AssertionError("blocked")):
        call()
    assert info.value.errno == zmq.EFSM


def test_req_recv_before_send_is_efsm(make):
    req = make(zmq.REQ)
    assert_efsm(req.recv)


def test_req_send_twice_is_efsm(make, make_socket):
    rep = make_socket(zmq.REP)
    req = make(zmq.REQ)
    req.connect(bind(rep, "inproc"))
    req.send(b"one")
    assert_efsm(lambda: req.send(b"two"))


def test_rep_send_before_recv_is_efsm(make):
    rep = make(zmq.REP)
    assert_efsm(lambda: rep.send(b"reply"))


def echo_server(rep, release=None):
    """Reply ``b"re:" + request``; with ``release``, hold the first reply until it is set."""
    first = True
    while True:
        request = rep.recv()
        if first and release is not None:
            release.wait()
        first = False
        rep.send(b"re:" + request)


@SHARED_ONLY
def test_shared_req_gives_each_greenlet_its_own_reply(make, make_socket):
    rep = make_socket(zmq.REP)
    req = make(zmq.REQ)
    req.connect(bind(rep, "inproc"))
    server = gevent.spawn(echo_server, rep)

    def client(k):
        replies = []
        for i in range(3):
            req.send(b"%d-%d" % (k, i))
            replies.append(req.recv())
        return replies

    try:
        clients = [gevent.spawn(client, k) for k in range(10)]
        gevent.joinall(clients, timeout=20, raise_error=True)
        for k, g in enumerate(clients):
            assert g.value == [b"re:%d-%d" % (k, i) for i in range(3)]
    finally:
        server.kill()


@SHARED_ONLY
@pytest.mark.parametrize("a_gives_up", ["rcvtimeo", "killed"])
def test_shared_req_late_reply_never_reaches_another_greenlet(make, make_socket, a_gives_up):
    # On plain pyzmq a REQ whose recv timed out still waits for that reply: the next
    # send raises EFSM and the next recv returns the late reply. Shared, API.md says
    # another greenlet's send waits its turn and a greenlet that times out or dies
    # never causes another to receive its reply. So B's send must not raise EFSM (it
    # may wait until A's late reply has come and been dropped, or go at once), and B
    # must get exactly its own reply.
    rep = make_socket(zmq.REP)
    req = make(zmq.REQ, rcvtimeo=100 if a_gives_up == "rcvtimeo" else -1)
    req.connect(bind(rep, "inproc"))
    release = gevent.event.Event()
    server = gevent.spawn(echo_server, rep, release)

    def a():
        req.send(b"A")
        try:
            req.recv()
        except zmq.Again as exc:
            return exc
        return None

    def b():
        req.send(b"B")
        return req.recv()

    try:
        ga = gevent.spawn(a)
        if a_gives_up == "rcvtimeo":
            assert isinstance(ga.get(timeout=10), zmq.Again)
        else:
            gevent.idle()  # A sends and blocks in recv
            ga.kill(timeout=5)
            assert ga.dead
        req.rcvtimeo = -1
        gb = gevent.spawn(b)
        gevent.idle()  # B starts and reaches its send (running, or waiting its turn)
        release.set()  # only now does the server answer A, late
        assert gb.get(timeout=10) == b"re:B"
    finally:
        server.kill()


# ------------------------------------------------------------- 3. multipart


def test_recv_frame_by_frame_with_rcvmore(make, make_socket):
    push, pull = push_pull(make, make_socket)
    push.send_multipart([b"1", b"2", b"3"])
    got = [pull.recv()]
    while pull.getsockopt(zmq.RCVMORE):
        got.append(pull.recv())
    assert got == [b"1", b"2", b"3"]
    assert pull.rcvmore == 0


def test_send_frame_by_frame_with_sndmore(make, make_socket):
    push, pull = push_pull(make, make_socket, factory_side="push")
    push.send(b"1", zmq.SNDMORE)
    push.send(b"2", zmq.SNDMORE)
    push.send(b"3")
    assert pull.recv_multipart() == [b"1", b"2", b"3"]


@SHARED_ONLY
def test_shared_sndmore_frames_of_two_greenlets_never_mix(make, make_socket):
    push, pull = push_pull(make, make_socket, factory_side="push")

    def sender(name):
        for i in range(3):
            push.send(name + b"%d" % i, zmq.SNDMORE if i < 2 else 0)
            gevent.sleep(0)

    gevent.joinall([gevent.spawn(sender, n) for n in (b"A", b"B")], timeout=10, raise_error=True)
    got = sorted([pull.recv_multipart(), pull.recv_multipart()])
    assert got == [[b"A0", b"A1", b"A2"], [b"B0", b"B1", b"B2"]]


@SHARED_ONLY
def test_shared_rest_of_a_message_stays_with_its_reader(make, make_socket):
    push, pull = push_pull(make, make_socket)
    push.send_multipart([b"a1", b"a2", b"a3"])
    push.send_multipart([b"b1", b"b2", b"b3"])
    started = gevent.event.Event()

    def reader_a():
        got = [pull.recv()]
        started.set()
        gb.join()  # B takes a whole message while A is in the middle of one
        while pull.getsockopt(zmq.RCVMORE):
            got.append(pull.recv())
        return got

    def reader_b():
        started.wait()
        message = pull.recv_multipart()
        return message, pull.getsockopt(zmq.RCVMORE)

    ga = gevent.spawn(reader_a)
    gb = gevent.spawn(reader_b)
    gevent.joinall([ga, gb], timeout=10, raise_error=True)
    assert ga.value == [b"a1", b"a2", b"a3"]
    assert gb.value == ([b"b1", b"b2", b"b3"], 0)


# ------------------------------------------------------------- 4. frames


@pytest.mark.parametrize("call", ["recv", "recv_multipart"])
def test_copy_false_gives_frames_with_more(make, make_socket, call):
    push, pull = push_pull(make, make_socket)
    push.send_multipart([b"1", b"2", b"3"])
    if call == "recv":
        frames = [pull.recv(copy=False) for _ in range(3)]
    else:
        frames = pull.recv_multipart(copy=False)
    assert all(isinstance(f, zmq.Frame) for f in frames)
    assert [f.bytes for f in frames] == [b"1", b"2", b"3"]
    assert [f.more for f in frames] == [True, True, False]


def test_frame_metadata_peer_address(make):
    router = make(zmq.ROUTER)
    dealer = make(zmq.DEALER)
    dealer.connect(bind(router, "tcp"))
    dealer.send(b"hello")
    identity, body = router.recv_multipart(copy=False)
    assert identity.more and not body.more
    assert body.bytes == b"hello"
    assert body.get("Peer-Address") == "127.0.0.1"
    router.send_multipart([identity.bytes, b"back"])
    reply = dealer.recv(copy=False)
    assert reply.bytes == b"back"
    assert reply.get("Peer-Address") == "127.0.0.1"


# ------------------------------------------------------------- 5. polling


def test_green_poller_with_sockets_and_a_pipe(make, make_socket):
    push, pull = push_pull(make, make_socket)
    other_push, other_pull = push_pull(make_socket, make_socket)
    r, w = os.pipe()
    try:
        poller = zmq.Poller()
        poller.register(pull, zmq.POLLIN)
        poller.register(other_pull, zmq.POLLIN)
        poller.register(r, zmq.POLLIN)
        assert poller.poll(0) == []
        gevent.spawn(push.send, b"x")
        assert dict(poller.poll(5000)) == {pull: zmq.POLLIN}
        other_push.send(b"y")
        os.write(w, b"!")
        wait_for(lambda: len(poller.poll(0)) == 3, what="all three ready")
        assert dict(poller.poll(0)) == {pull: zmq.POLLIN, other_pull: zmq.POLLIN, r: zmq.POLLIN}
        assert pull.recv() == b"x"
        assert other_pull.recv() == b"y"
        assert dict(poller.poll(0)) == {r: zmq.POLLIN}
    finally:
        os.close(r)
        os.close(w)


def test_green_select(make, make_socket):
    push, pull = push_pull(make, make_socket)
    # zmq.green.select is pyzmq's zmq.select: it blocks the thread, so poll with 0.
    assert zmq.select([pull], [], [], 0) == ([], [], [])
    push.send(b"x")
    wait_for(lambda: zmq.select([pull], [], [], 0)[0], what="select sees the message")
    assert zmq.select([pull], [], [], 0) == ([pull], [], [])
    assert pull.recv() == b"x"


def test_socket_poll_wakes_when_a_message_arrives(make, make_socket):
    push, pull = push_pull(make, make_socket)
    assert pull.poll(0, zmq.POLLIN) == 0
    gevent.spawn(push.send, b"late")
    assert pull.poll(5000, zmq.POLLIN) == zmq.POLLIN
    assert pull.recv(zmq.NOBLOCK) == b"late"


def test_pollers_see_a_message_no_greenlet_has_read(make, make_socket):
    push, pull = push_pull(make, make_socket, transport="tcp")
    push.send(b"first")
    assert pull.recv() == b"first"  # now connected both ways
    push.send(b"second")  # a connected green socket sends without switching
    spin_until(lambda: pull.getsockopt(zmq.EVENTS) & zmq.POLLIN)
    assert pull.poll(0) == zmq.POLLIN
    green_poller, poller = zmq.Poller(), pyzmq.Poller()
    for p in (green_poller, poller):
        p.register(pull, zmq.POLLIN)
        assert dict(p.poll(0)) == {pull: zmq.POLLIN}
    assert pull.recv(zmq.NOBLOCK) == b"second"
    assert not pull.getsockopt(zmq.EVENTS) & zmq.POLLIN


def test_pollout_on_a_connected_push(make, make_socket):
    push, _ = push_pull(make, make_socket, factory_side="push")
    assert push.poll(5000, zmq.POLLOUT) == zmq.POLLOUT
    assert push.getsockopt(zmq.EVENTS) & zmq.POLLOUT
    poller = zmq.Poller()
    poller.register(push, zmq.POLLOUT)
    assert dict(poller.poll(5000)) == {push: zmq.POLLOUT}


# ------------------------------------------------------------- 6. FD


def test_fd_with_a_gevent_io_watcher(make, make_socket):
    push, pull = push_pull(make, make_socket)
    fd = pull.getsockopt(zmq.FD)
    assert fd == pull.FD
    assert pull.fileno() == fd
    hub = gevent.get_hub()
    watcher = hub.loop.io(fd, 1)
    try:
        for i in range(3):
            gevent.spawn(push.send, b"%d" % i)
            # Edge-triggered: re-check EVENTS after every wake, wait only while it is clear.
            with gevent.Timeout(10, AssertionError("FD never signalled POLLIN")):
                while not pull.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    hub.wait(watcher)
            assert pull.recv(zmq.NOBLOCK) == b"%d" % i
    finally:
        watcher.close()


# ------------------------------------------------------------- 7. close


@WITH_WRAP
def test_after_close_calls_raise_enotsock(make):
    sock = make(zmq.PULL)
    assert not sock.closed
    sock.close()
    assert sock.closed
    for call in (
        lambda: sock.send(b"x"),
        lambda: sock.recv(),
        lambda: sock.recv(zmq.NOBLOCK),
        lambda: sock.getsockopt(zmq.LINGER),
        lambda: sock.linger,
    ):  # (pyzmq's own poll() after close raises ENOTSUP, so it is left out)
        with pytest.raises(zmq.ZMQError) as info:
            call()
        assert info.value.errno == zmq.ENOTSOCK
    sock.close()  # closing twice is fine


def test_close_linger_0_with_a_pending_message_never_blocks(make, make_socket):
    probe = make_socket(zmq.PULL)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close()  # nobody listens there any more
    push = make(zmq.PUSH)
    push.linger = -1  # the socket's own LINGER says wait forever; close(linger=0) wins
    push.connect(f"tcp://127.0.0.1:{port}")
    push.send(b"pending")
    with gevent.Timeout(5, AssertionError("close(linger=0) blocked")):
        push.close(linger=0)
    assert push.closed


@WITH_WRAP
def test_socket_as_context_manager(make):
    sock = make(zmq.PUSH)
    with sock as entered:
        assert entered is sock
        assert not sock.closed
    assert sock.closed


# ------------------------------------------------------------- 8. exceptions


def test_gevent_timeout_passes_through_a_blocked_recv(make, make_socket):
    push, pull = push_pull(make, make_socket)
    timeout = gevent.Timeout(0.05)
    timeout.start()
    try:
        with pytest.raises(gevent.Timeout) as info:
            pull.recv()
    finally:
        timeout.close()
    assert info.value is timeout
    push.send_multipart([b"still", b"works"])
    assert pull.recv_multipart() == [b"still", b"works"]


def test_kill_passes_through_a_blocked_recv(make, make_socket):
    push, pull = push_pull(make, make_socket)

    def reader():
        try:
            pull.recv()
        except Boom as exc:
            return exc
        return None

    g = gevent.spawn(reader)
    gevent.idle()  # let it block in recv
    g.kill(Boom, block=True, timeout=5)
    assert isinstance(g.value, Boom)
    push.send_multipart([b"still", b"works"])
    assert pull.recv_multipart() == [b"still", b"works"]


# ------------------------------------------------------------- 9. names


@WITH_WRAP
def test_type_and_socket_type(make):
    sock = make(zmq.PUSH)
    assert sock.type == zmq.PUSH
    assert isinstance(sock.type, zmq.SocketType)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pyzmq deprecates socket_type
        socket_type = sock.socket_type
    assert socket_type == zmq.PUSH
    assert isinstance(socket_type, zmq.SocketType)


@WITH_WRAP
def test_options_by_name(make):
    sock = make(zmq.DEALER)
    sock.setsockopt_string(zmq.ROUTING_ID, "me")
    assert sock.getsockopt_string(zmq.ROUTING_ID) == "me"
    assert sock.routing_id == b"me"
    sock.set(zmq.SNDHWM, 3)
    assert sock.get(zmq.SNDHWM) == 3
    sock.set_hwm(7)
    assert (sock.sndhwm, sock.rcvhwm, sock.get_hwm(), sock.hwm) == (7, 7, 7, 7)
    sock.hwm = 9
    assert sock.get_hwm() == 9
    with pytest.raises(AttributeError):
        sock.no_such_option
    sub = make(zmq.SUB)
    sub.setsockopt_string(zmq.SUBSCRIBE, "topic")


def test_send_recv_serialized(make):
    pull = make(zmq.PULL)
    push = make(zmq.PUSH)
    push.connect(bind(pull, "inproc"))
    push.send_serialized({"a": [1, 2]}, lambda obj: [json.dumps(obj).encode()])
    assert pull.recv_serialized(lambda frames: json.loads(frames[0])) == {"a": [1, 2]}


@pytest.mark.skipif(not hasattr(pyzmq.Socket, "recv_into"), reason="pyzmq < 26 has no recv_into")
def test_recv_into(make):
    pull = make(zmq.PULL)
    push = make(zmq.PUSH)
    push.connect(bind(pull, "inproc"))
    push.send(b"abc")
    buffer = bytearray(8)
    assert pull.recv_into(buffer) == 3
    assert buffer[:3] == b"abc"


@WITH_WRAP
def test_bind_to_random_port_and_bind_as_context_manager(make, make_socket):
    sock = make(zmq.PULL)
    port = sock.bind_to_random_port(
        "tcp://127.0.0.1", min_port=41000, max_port=42000, max_tries=200
    )
    assert isinstance(port, int)
    assert 41000 <= port < 42000
    endpoint = inproc()
    with sock.bind(endpoint) as bound:
        assert bound is sock
    make_socket(zmq.PULL).bind(endpoint)  # unbound on exit: the name is free again


@WITH_WRAP
def test_monitor_socket(make):
    sock = make(zmq.PULL)
    monitor = sock.get_monitor_socket()
    try:
        endpoint = bind(sock, "tcp")
        event = recv_monitor_message(monitor)
        assert event["event"] == zmq.EVENT_LISTENING
        assert event["endpoint"] == endpoint.encode()
        sock.disable_monitor()
        assert recv_monitor_message(monitor)["event"] == zmq.EVENT_MONITOR_STOPPED
    finally:
        monitor.close(linger=0)


@WITH_WRAP
def test_monitor_to_an_address(make, make_socket):
    sock = make(zmq.PULL)
    address = inproc()
    sock.monitor(address, zmq.EVENT_LISTENING)
    monitor = make_socket(zmq.PAIR)
    monitor.connect(address)
    bind(sock, "tcp")
    assert recv_monitor_message(monitor)["event"] == zmq.EVENT_LISTENING
    sock.disable_monitor()


def test_subscribe_with_str_and_bytes(make, make_socket):
    xpub = make_socket(zmq.XPUB)
    sub = make(zmq.SUB)
    sub.connect(bind(xpub, "inproc"))
    sub.subscribe("a")
    sub.subscribe(b"b")
    # XPUB hands over the subscriptions: once both are seen, no message can be lost.
    assert sorted([xpub.recv(), xpub.recv()]) == [b"\x01a", b"\x01b"]
    for topic in (b"a1", b"c1", b"b1", b"a2"):
        xpub.send(topic)
    assert [sub.recv(), sub.recv(), sub.recv()] == [b"a1", b"b1", b"a2"]
    sub.unsubscribe("a")
    assert xpub.recv() == b"\x00a"


# ------------------------------------------------------------- 10. patch()


def test_patch_makes_green_sockets_shared(ctx):
    # ctx was made before patch(): patch() covers sockets every zmq.green.Context
    # makes from then on. patch() is idempotent: twice is once, one unpatch() undoes it.
    sockets = []

    def socket():
        sockets.append(ctx.socket(zmq.PUSH))
        sockets[-1].linger = 0
        return sockets[-1]

    try:
        zc.patch()
        assert isinstance(socket(), zc.SharedSocket)
        fresh = zmq.Context()  # a context made after patch() too
        try:
            made = fresh.socket(zmq.PUSH)
            assert isinstance(made, zc.SharedSocket)
            made.close(linger=0)
        finally:
            fresh.destroy(linger=0)
        zc.patch()
        assert isinstance(socket(), zc.SharedSocket)
        zc.unpatch()
        plain = socket()
        assert type(plain) is zmq.Socket
    finally:
        getattr(zc, "unpatch", lambda: None)()
        for sock in sockets:
            with contextlib.suppress(Exception):
                sock.close(linger=0)
