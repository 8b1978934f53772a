"""SharedSocket: existing pyzmq code keeps working when many greenlets share a socket."""

from __future__ import annotations

import time

import gevent
import gevent.event
import pytest
import zmq as plain_zmq
import zmq.green as zmq
import zmq.green.poll as zmq_green_poll
from gevent.monkey import get_original

import zmqchan_green as zc

from .conftest import bind, run_python, wait_for

pytestmark = pytest.mark.timeout(30)

#: Sleeps without letting the hub run, even under monkey-patching.
_hub_blocking_sleep = get_original("time", "sleep")


@pytest.fixture
def shared(make_socket):
    made = []

    def make(sock, **options):
        s = zc.SharedSocket(sock, **options)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close(0)


@pytest.fixture
def push_pull(connected, shared):
    pull, push = connected(zmq.PULL, zmq.PUSH)
    return shared(push), shared(pull)


def test_many_greenlets_share_a_dealer_like_a_socket(make_socket, shared):
    router = make_socket(zmq.ROUTER)
    endpoint = bind(router, "tcp")
    dealer = make_socket(zmq.DEALER)
    dealer.connect(endpoint)
    client, server = shared(dealer), shared(router)

    def echo():
        while True:
            server.send_multipart(server.recv_multipart())

    srv = gevent.spawn(echo)
    got = []

    def worker(k):
        for i in range(20):
            client.send_multipart([b"w%d" % k, b"%d" % i])
        for _ in range(20):
            got.append(tuple(client.recv_multipart()))

    gevent.joinall([gevent.spawn(worker, k) for k in range(30)], timeout=20, raise_error=True)
    assert sorted(got) == sorted((b"w%d" % k, b"%d" % i) for k in range(30) for i in range(20))
    srv.kill()


def test_sndmore_frames_are_held_per_greenlet(push_pull):
    """Frame-by-frame sends with switches in between never interleave."""
    push, pull = push_pull

    def sender(name):
        for i in range(10):
            push.send(name + b" header", zmq.SNDMORE)
            gevent.sleep(0)
            push.send(b"%d" % i, zmq.SNDMORE)
            gevent.sleep(0)
            push.send(name + b" body")

    gevent.joinall([gevent.spawn(sender, n) for n in (b"A", b"B", b"C")], raise_error=True)
    for _ in range(30):
        head, seq, body = pull.recv_multipart()
        assert head.split()[0] == body.split()[0]


def test_rcvmore_answers_per_greenlet(push_pull):
    push, pull = push_pull
    push.send_multipart([b"a1", b"a2", b"a3"])
    push.send_multipart([b"b1", b"b2"])
    seen = {}

    def reader(name, started, go_on):
        seen[name] = [pull.recv()]
        started.set()
        go_on.wait()
        while pull.getsockopt(zmq.RCVMORE):
            seen[name].append(pull.recv())

    a_started, b_started, go_on = gevent.event.Event(), gevent.event.Event(), gevent.event.Event()
    a = gevent.spawn(reader, "a", a_started, go_on)
    a_started.wait(5)
    b = gevent.spawn(reader, "b", b_started, go_on)
    b_started.wait(5)
    go_on.set()
    gevent.joinall([a, b], raise_error=True)
    assert seen == {"a": [b"a1", b"a2", b"a3"], "b": [b"b1", b"b2"]}
    assert pull.rcvmore == 0


def test_recv_multipart_returns_the_rest_after_recv(push_pull):
    push, pull = push_pull
    push.send_multipart([b"1", b"2", b"3"])
    assert pull.recv() == b"1"
    assert pull.rcvmore == 1
    assert pull.recv_multipart() == [b"2", b"3"]


def test_noblock_raises_again(push_pull, make_socket, shared):
    push, pull = push_pull
    with pytest.raises(zmq.Again):
        pull.recv(zmq.NOBLOCK)
    # Default buffering: a NOBLOCK send succeeds whenever there is room, even with no peer.
    lonely = shared(make_socket(zmq.PUSH), tx_size=2)
    lonely.send(b"1", zmq.NOBLOCK)
    lonely.send(b"2", zmq.NOBLOCK)
    with pytest.raises(zmq.Again):
        lonely.send(b"3", zmq.NOBLOCK)
    push.send(b"x", zmq.NOBLOCK)
    assert pull.recv() == b"x"


def test_failed_noblock_send_keeps_earlier_frames(make_socket, shared):
    lonely = shared(make_socket(zmq.PUSH), tx_size=1)
    lonely.send(b"fill")
    lonely.send(b"head", zmq.SNDMORE)
    with pytest.raises(zmq.Again):
        lonely.send(b"tail", zmq.NOBLOCK)
    lonely.close(0)
    assert lonely.unsent == [[b"fill"]]


def test_rcvtimeo_and_sndtimeo_are_honoured(make_socket, shared):
    pull = shared(make_socket(zmq.PULL))
    pull.rcvtimeo = 20
    assert pull.rcvtimeo == 20
    with pytest.raises(zmq.Again):
        pull.recv()
    push = shared(make_socket(zmq.PUSH), tx_size=1)
    push.setsockopt(zmq.SNDTIMEO, 20)
    push.send(b"fills the buffer")
    with pytest.raises(zmq.Again):
        push.send(b"no room")


def test_string_json_pyobj(push_pull):
    push, pull = push_pull
    push.send_string("héllo")
    push.send_json({"a": [1, 2]})
    push.send_pyobj({"set": {1, 2}})
    assert pull.recv_string() == "héllo"
    assert pull.recv_json() == {"a": [1, 2]}
    assert pull.recv_pyobj() == {"set": {1, 2}}
    with pytest.raises(TypeError):
        push.send("text")  # as pyzmq: str needs send_string


def test_options_as_attributes_go_through_the_pump(push_pull):
    push, _ = push_pull
    push.linger = 0
    assert push.getsockopt(zmq.LINGER) == 0
    push.sndhwm = 123
    assert push.sndhwm == 123
    assert push.type == zmq.PUSH
    with pytest.raises(AttributeError):
        push.no_such_option


def test_subscribe(connected, shared):
    pub, sub = connected(zmq.PUB, zmq.SUB)
    tx, rx = shared(pub), shared(sub)
    rx.subscribe("news")

    def publish():
        while True:
            tx.send_multipart([b"noise", b"x"])
            tx.send_multipart([b"news", b"y"])
            gevent.sleep(0.002)

    g = gevent.spawn(publish)
    try:
        assert rx.recv_multipart() == [b"news", b"y"]
    finally:
        g.kill()
    rx.unsubscribe("news")


def test_poll_answers_for_the_calling_greenlet(push_pull):
    push, pull = push_pull
    assert pull.poll(0) == 0
    assert pull.poll(10) == 0
    assert push.poll(0, zmq.POLLOUT) == zmq.POLLOUT
    gevent.spawn_later(0.01, push.send, b"late")
    assert pull.poll(5000) == zmq.POLLIN
    assert pull.getsockopt(zmq.EVENTS) & zmq.POLLIN
    assert pull.recv(zmq.NOBLOCK) == b"late"  # as promised: a recv now returns it


def test_after_close_every_call_raises_enotsock(push_pull):
    push, pull = push_pull
    pull.close(linger=0)
    assert pull.closed
    for call in (
        lambda: pull.recv(),
        lambda: pull.send(b"x"),
        lambda: pull.getsockopt(zmq.LINGER),
        lambda: pull.events,
        lambda: pull.fileno(),
    ):
        with pytest.raises(zmq.ZMQError) as info:
            call()
        assert info.value.errno == zmq.ENOTSOCK
    with pytest.raises(zmq.ZMQError) as info:  # pyzmq's own poll says ENOTSUP
        pull.poll(0)
    assert info.value.errno == zmq.ENOTSUP
    pull.close()  # idempotent


def test_context_manager_and_termination(ctx, make_socket):
    sock = make_socket(zmq.PULL)
    with zc.SharedSocket(sock) as shared_sock:
        waiter = gevent.spawn(shared_sock.recv)
        wait_for(lambda: shared_sock._shared.pump.stats()["rx_waiting"] == 1)
        gevent.get_hub().threadpool.spawn(ctx.term).get(timeout=10)
        waiter.join(5)
        assert isinstance(waiter.exception, zmq.ContextTerminated)
    assert shared_sock.closed


def test_events_peeks_without_taking(push_pull):
    push, pull = push_pull
    push.send(b"one")
    wait_for(lambda: pull.events & zmq.POLLIN, what="EVENTS shows POLLIN")
    assert gevent.spawn(pull.recv).get(timeout=5) == b"one"  # another greenlet may take it
    assert not pull.events & zmq.POLLIN


def test_poll_never_takes_the_message(push_pull):
    """As on pyzmq, ``poll`` only looks: a poller that leaves takes nothing."""
    push, pull = push_pull
    poller = gevent.spawn(pull.poll, 5000)
    gevent.sleep(0)  # the poller waits
    push.send(b"not lost")
    assert poller.get(timeout=5) == zmq.POLLIN
    assert pull.recv(zmq.NOBLOCK) == b"not lost"


def test_poll_on_one_way_sockets(push_pull):
    push, pull = push_pull
    assert push.poll(0, zmq.POLLIN | zmq.POLLOUT) == zmq.POLLOUT
    assert push.events == zmq.POLLOUT
    assert pull.poll(0, zmq.POLLOUT) == 0


def test_poll_for_both_returns_whichever_comes_first(make_socket, shared):
    router = make_socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    router.unbind(f"tcp://127.0.0.1:{port}")  # nobody listens there for now
    dealer = make_socket(zmq.DEALER, immediate=1)  # not writable until connected
    dealer.connect(f"tcp://127.0.0.1:{port}")
    sock = shared(dealer, tx_size=1)
    sock.send(b"fills the buffer")
    assert sock.poll(10, zmq.POLLIN | zmq.POLLOUT) == 0
    gevent.spawn_later(0.01, router.bind, f"tcp://127.0.0.1:{port}")  # now it can drain
    assert sock.poll(10_000, zmq.POLLIN | zmq.POLLOUT) == zmq.POLLOUT


def test_pyzmq_extras(make_socket, shared):
    with pytest.raises(TypeError):
        zc.SharedSocket(make_socket(zmq.PULL), copy=False)
    pull = shared(make_socket(zmq.PULL))
    endpoint = "inproc://shared-extras"
    pull.bind(endpoint)
    push = shared(make_socket(zmq.PUSH))
    push.connect(endpoint)
    push.hwm = 7
    assert push.sndhwm == 7 and push.rcvhwm == 7 and push.hwm == 7
    assert push.send(b"copied", track=True) is None  # as pyzmq: a copy, nothing to track
    assert pull.recv() == b"copied"
    tracker = push.send(b"tracked", copy=False, track=True)
    assert tracker.done  # below copy_threshold: copied after all, as pyzmq
    assert pull.recv() == b"tracked"
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    assert isinstance(port, int)


def test_close_wakes_every_blocked_greenlet(make_socket, shared):
    """Greenlets blocked in recv, send and poll when the socket closes wake with
    ENOTSOCK, and close itself never waits for them."""
    pull = shared(make_socket(zmq.PULL))
    pull.bind(f"inproc://close-wakes-{id(pull)}")
    push = shared(make_socket(zmq.PUSH, sndhwm=1))  # no peer: a send blocks
    blocked = [
        gevent.spawn(pull.recv),
        gevent.spawn(pull.poll, 10000),
        gevent.spawn(pull.recv_multipart),
        gevent.spawn(push.send, b"never"),
    ]
    gevent.sleep(0)  # each runs until it blocks
    assert not any(g.ready() for g in blocked)
    with gevent.Timeout(5, AssertionError("close() blocked")):
        pull.close()
        push.close()
    gevent.joinall(blocked, timeout=5)
    for g in blocked:
        assert isinstance(g.exception, zmq.ZMQError), g
        assert g.exception.errno == zmq.ENOTSOCK


def test_pollin_means_a_noblock_recv_succeeds_while_another_greenlet_waits(make_socket, shared):
    """Whoever finds a message may read it: POLLIN from poll, EVENTS or a
    zmq.Poller is never followed by Again because a blocked reader is queued."""
    pull = shared(make_socket(zmq.PULL))
    endpoint = f"inproc://pollin-{id(pull)}"
    pull.bind(endpoint)
    push = make_socket(zmq.PUSH)
    push.connect(endpoint)
    blocked = gevent.spawn(pull.recv)
    gevent.sleep(0)  # it waits in recv
    for check in (
        lambda: pull.poll(5000),
        lambda: wait_for(lambda: pull.getsockopt(zmq.EVENTS) & zmq.POLLIN, what="POLLIN"),
        lambda: _plain_poll(pull),
    ):
        push.send(b"m")
        check()
        assert pull.recv(zmq.NOBLOCK) == b"m"
    push.send(b"last")
    assert blocked.get(timeout=5) == b"last"


def _plain_poll(sock):
    poller = plain_zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    deadline = gevent.get_hub().loop.now() + 5
    while not poller.poll(0):
        assert gevent.get_hub().loop.now() < deadline, "zmq.Poller never saw POLLIN"
        gevent.sleep(0.001)


@pytest.mark.parametrize("direction", ["POLLOUT", "POLLIN"])
def test_a_poller_hears_a_change_it_saw_coming_after_a_direct_call(make_socket, shared, direction):
    """A zmq.Poller looks at libzmq itself, so it can see a state the pump never
    read: a greenlet's send fills the pipe (or its recv takes the last
    message), the poller finds nothing and waits, then the peer reads (or
    sends) before the pump looks again. The pump then reads what it read
    last time; the descriptor must pulse all the same, well before pyzmq's
    own 1.33 s fallback poll."""
    sending = direction == "POLLOUT"
    ours = shared(make_socket(zmq.PUSH if sending else zmq.PULL, sndhwm=1, rcvhwm=1))
    peer = make_socket(zmq.PULL if sending else zmq.PUSH, sndhwm=1, rcvhwm=1)
    endpoint = f"inproc://poller-unseen-{direction}-{id(ours)}"
    peer.bind(endpoint)
    ours.connect(endpoint)
    ours.getsockopt(zmq.FD)  # a poller is in use
    flag = zmq.POLLOUT if sending else zmq.POLLIN
    if sending:  # fill the pipe, then make room for exactly one message
        wait_for(lambda: ours.getsockopt(zmq.EVENTS) & zmq.POLLOUT, what="connected")
        while True:
            try:
                ours.send(b"fill", zmq.NOBLOCK)
            except zmq.Again:
                break
        peer.recv()
    else:
        peer.send(b"first")
    wait_for(lambda: ours.getsockopt(zmq.EVENTS) & flag, what=direction)
    pump = ours._shared.pump
    wait_for(lambda: pump._sleeper is not None, what="the pump asleep")
    go = gevent.event.Event()
    polled = []

    def direct():  # takes the state away without the pump reading EVENTS
        go.wait()
        if sending:
            ours.send(b"fills it", zmq.NOBLOCK)
        else:
            assert ours.recv(zmq.NOBLOCK) == b"first"

    def poll():  # then finds nothing and waits
        go.wait()
        polled.append(_green_poll(ours, flag, 1000))

    def peer_acts():  # then the state comes back, before the pump looks
        go.wait()
        if sending:
            peer.recv(zmq.NOBLOCK)
        else:
            peer.send(b"second")

    greenlets = [gevent.spawn(direct), gevent.spawn(poll), gevent.spawn(peer_acts)]
    gevent.sleep(0)  # each waits for go: set it, and all three run in one pass
    go.set()
    gevent.joinall(greenlets, timeout=10, raise_error=True)
    assert polled == [[(ours, flag)]]


def test_a_poller_hears_a_change_back_that_another_poller_saw_first(make_socket, shared):
    """Another poller's zmq_poll takes libzmq's news that the only peer left
    (POLLOUT gone) before the pump reads it; a zmq.Poller then waits for
    POLLOUT, and a new peer connects. The pump reads POLLOUT as it did before
    the peer left: the descriptor must pulse all the same."""
    ours = shared(make_socket(zmq.DEALER))
    endpoint = f"inproc://poller-other-saw-{id(ours)}"
    ours.bind(endpoint)
    first = make_socket(zmq.DEALER)
    first.connect(endpoint)
    ours.getsockopt(zmq.FD)  # a poller is in use
    wait_for(lambda: ours.getsockopt(zmq.EVENTS) & zmq.POLLOUT, what="connected")
    pump = ours._shared.pump
    wait_for(lambda: pump._sleeper is not None, what="the pump asleep")
    other = plain_zmq.Poller()  # looks at libzmq without letting the pump run
    other.register(ours, zmq.POLLOUT)
    first.close(0)
    deadline = time.monotonic() + 10
    while other.poll(0):
        assert time.monotonic() < deadline, "the peer never went"
        _hub_blocking_sleep(0.001)  # the hub (and so the pump) does not run
    polled = gevent.spawn(lambda: _green_poll(ours, zmq.POLLOUT, 1000))
    gevent.sleep(0)  # it polls, finds nothing and waits
    wait_for(lambda: pump._sleeper is not None, what="the pump asleep")
    make_socket(zmq.DEALER).connect(endpoint)
    assert polled.get(timeout=10) == [(ours, zmq.POLLOUT)]


def _green_poll(sock, flag, timeout_ms):
    poller = zmq.Poller()
    poller.register(sock, flag)
    return poller.poll(timeout_ms)


def test_a_waiting_poller_wakes_about_once_per_pulse_and_never_spins(
    make_socket, shared, monkeypatch
):
    """Peers coming and going make libzmq signal without a change a poller
    waits for. Each signal may pulse the descriptor, but a poller that wakes
    and finds nothing must sleep again: the descriptor is never readable
    while greenlets run (gevent's select would return at once, again and
    again, until the loop polled)."""
    router = shared(make_socket(zmq.ROUTER))
    endpoint = f"inproc://poller-no-spin-{id(router)}"
    router.bind(endpoint)
    selects = []
    real_select = zmq_green_poll.select.select

    class CountingSelect:
        @staticmethod
        def select(*args, **kwargs):
            selects.append(1)
            return real_select(*args, **kwargs)

    monkeypatch.setattr(zmq_green_poll, "select", CountingSelect)
    stop = gevent.event.Event()

    def poll():
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        while not stop.is_set():
            assert poller.poll(100) == []  # nobody ever sends

    poller = gevent.spawn(poll)
    peers = 50
    for _ in range(peers):
        peer = make_socket(zmq.DEALER)
        peer.connect(endpoint)
        gevent.sleep(0.001)
        peer.close(0)
        gevent.sleep(0.001)
    stop.set()
    poller.get(timeout=10)
    # About two signals per peer, each one wake at most; a spinning poller
    # selects hundreds of times per signal.
    assert len(selects) < 20 * peers, len(selects)


def test_an_unclosed_shared_socket_with_a_descriptor_exits_quietly():
    """A SharedSocket dropped unclosed after its FD was asked for is closed at
    exit with a ResourceWarning, without touching its closed descriptor."""
    script = (
        "import zmq.green as zmq, zmqchan_green as zc\n"
        "s = zc.SharedSocket(zmq.Context.instance().socket(zmq.PULL))\n"
        "s.bind('inproc://unclosed-with-fd')\n"
        "s.getsockopt(zmq.FD)\n"
    )
    done = run_python("-c", script)
    assert done.returncode == 0, done.stderr
    assert "Error" not in done.stderr, done.stderr


def test_a_send_interrupted_while_it_waits_sent_nothing(make_socket, shared):
    """A timeout thrown into a blocked send means the message was not sent, as
    on pyzmq: senders that retry after a timeout never duplicate a message."""
    pull = make_socket(zmq.PULL, rcvhwm=1)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push = shared(make_socket(zmq.PUSH, sndhwm=1))
    push.connect(f"tcp://127.0.0.1:{port}")
    timeouts = [0]

    def sender(i):
        for j in range(50):
            while True:
                try:
                    with gevent.Timeout(0.0005 * (1 + (i + j) % 4)):
                        push.send_multipart([b"%d" % i, b"%d" % j])
                    break
                except gevent.Timeout:
                    timeouts[0] += 1

    senders = [gevent.spawn(sender, i) for i in range(20)]
    got = []
    while len(got) < 1000:
        assert pull.poll(10000), f"stalled after {len(got)} messages"
        got.append(tuple(pull.recv_multipart()))
    gevent.joinall(senders, timeout=10, raise_error=True)
    assert len(set(got)) == 1000, f"{1000 - len(set(got))} duplicates"
    assert not pull.poll(50)  # and nothing more


def test_many_blocked_senders_all_get_through(make_socket, shared):
    pull = make_socket(zmq.PULL, rcvhwm=1)
    port = pull.bind_to_random_port("tcp://127.0.0.1")
    push = shared(make_socket(zmq.PUSH, sndhwm=1))
    push.connect(f"tcp://127.0.0.1:{port}")
    senders = [
        gevent.spawn(lambda i=i: [push.send_multipart([b"%d" % i, b"%d" % j]) for j in range(40)])
        for i in range(50)
    ]
    got = [pull.recv_multipart() for _ in range(2000)]
    gevent.joinall(senders, timeout=10, raise_error=True)
    for i in range(50):
        mine = [int(m[1]) for m in got if m[0] == b"%d" % i]
        assert mine == list(range(40))  # each sender's order kept


def test_a_req_turn_held_by_a_raw_greenlet_is_given_up_when_it_ends(make_socket, shared):
    rep = make_socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    req = shared(make_socket(zmq.REQ))
    req.connect(f"tcp://127.0.0.1:{port}")
    server = gevent.spawn(lambda: [rep.send(b"re:" + rep.recv()) for _ in range(2)])
    leave = gevent.event.Event()

    def orphan():
        req.send(b"orphan")
        leave.wait()  # ends without reading its reply, while another waits its turn

    holder = gevent.spawn_raw(orphan)
    waiting = gevent.spawn(lambda: (req.send(b"mine"), req.recv())[1])
    gevent.sleep(0)
    assert not holder.dead and not waiting.ready()
    leave.set()
    assert waiting.get(timeout=10) == b"re:mine"  # never the orphan's reply
    server.join(5)


def test_context_destroy_wakes_pollers_and_turn_waiters():
    """However the socket ends (here ``Context.destroy()``), a greenlet in
    ``poll()`` or waiting for the REQ turn wakes with ENOTSOCK."""
    ctx = zmq.Context()
    try:
        server = ctx.socket(zmq.ROUTER)  # never answers
        server.bind(f"inproc://destroy-waiters-{id(ctx)}")
        # Wrapped: destroy() closes the wrapped sockets, under the SharedSockets.
        req = zc.SharedSocket(ctx.socket(zmq.REQ))
        req.connect(f"inproc://destroy-waiters-{id(ctx)}")
        pull = zc.SharedSocket(ctx.socket(zmq.PULL))
        pull.bind(f"inproc://destroy-poll-{id(ctx)}")
        req.send(b"holds the turn")
        waiters = [gevent.spawn(req.send, b"waits its turn"), gevent.spawn(pull.poll, 10000)]
        gevent.sleep(0)
        assert not any(g.ready() for g in waiters)
    finally:
        ctx.destroy(linger=0)
    gevent.joinall(waiters, timeout=5)
    for g in waiters:
        assert isinstance(g.exception, zmq.ZMQError), g
        assert g.exception.errno == zmq.ENOTSOCK


@pytest.mark.timeout(15)
def test_router_mandatory_senders_keep_up_with_a_reading_peer(make_socket, shared):
    """Messages to a ROUTER peer that reads keep flowing while it is briefly at
    its high-water mark, with five greenlets sending: a refusal is retried as
    soon as the peer has room. (With a back-off per refusal, 8,000 messages
    took about 30 s; now well under one. The timeout bounds it generously.)"""
    senders = 5
    router = shared(make_socket(zmq.ROUTER, router_mandatory=1, sndhwm=2))
    endpoint = bind(router, "tcp")
    peer = make_socket(zmq.DEALER, routing_id=b"peer", rcvhwm=2)
    peer.connect(endpoint)
    peer.send(b"hello")
    assert router.recv_multipart() == [b"peer", b"hello"]
    per_sender = 8000 // senders
    workers = [
        gevent.spawn(
            lambda k=k: [router.send_multipart([b"peer", b"%d" % k]) for _ in range(per_sender)]
        )
        for k in range(senders)
    ]
    got = [peer.recv() for _ in range(per_sender * senders)]
    gevent.joinall(workers, timeout=10, raise_error=True)
    assert sorted(set(got)) == [b"%d" % k for k in range(senders)]


def test_a_wrapped_socket_dropped_unclosed_is_closed_with_a_warning(make_socket):
    """As pyzmq closes a socket it collects, and as an unclosed pair does: the
    socket a dropped SharedSocket wrapped is closed, with a ResourceWarning."""
    import gc

    sock = make_socket(zmq.PUSH)
    shared_sock = zc.SharedSocket(sock)
    shared_sock.connect(f"inproc://dropped-{id(sock)}")
    with pytest.warns(ResourceWarning, match="unclosed <zmqchan_green.SharedSocket"):
        del shared_sock
        gc.collect()
    assert sock.closed
    fresh = make_socket(zmq.PUSH)
    zc.SharedSocket(fresh).close()  # and nothing says "already owned"
