"""Native OS threads through ThreadPort and spawn_thread, next to greenlets."""

from __future__ import annotations

import textwrap

import gevent
import pytest
import zmq.green as zmq
from gevent.monkey import get_original

import zmqchan_green as zc

from .conftest import run_python, wait_for

pytestmark = pytest.mark.timeout(60)

Thread = get_original("threading", "Thread")


def start_thread(fn, *args):
    t = Thread(target=fn, args=args, daemon=True)
    t.start()
    return t


def join_all(threads, timeout=30.0):
    """Wait for native threads without blocking the hub."""
    wait_for(lambda: not any(t.is_alive() for t in threads), timeout, "threads to finish")


@pytest.fixture
def pushpull(connected, make_pair):
    def make(tx_size=0, rx_size=0, transport="inproc"):
        pull, push = connected(zmq.PULL, zmq.PUSH, transport)
        return make_pair(push, tx_size), make_pair(pull, 0, rx_size)

    return make


def test_spawn_thread_returns_result_and_raises(pushpull):
    tx, rx = pushpull()

    def work(port, n, suffix=b""):
        for i in range(n):
            port.send([b"%d" % i, suffix])
        return "done"

    assert tx.spawn_thread(work, 5, suffix=b"!").get(timeout=10) == "done"
    assert [rx.recv(timeout=5) for _ in range(5)] == [[b"%d" % i, b"!"] for i in range(5)]

    def fail(port):
        raise LookupError("from the thread")

    with pytest.raises(LookupError, match="from the thread"):
        tx.spawn_thread(fail).get(timeout=10)


def test_for_threads_returns_a_port(pushpull):
    tx, _ = pushpull()
    port = tx.for_threads()
    assert isinstance(port, zc.ThreadPort)
    assert tx.for_threads() is port
    assert not port.closed


@pytest.mark.parametrize("tx_size", [0, 16])
def test_threads_and_greenlets_send_at_once(pushpull, tx_size):
    tx, rx = pushpull(tx_size, 16)
    port = tx.for_threads()
    per = 500

    def thread_sender(k):
        for i in range(per):
            port.send([b"t%d" % k, b"%d" % i])

    def greenlet_sender(k):
        for i in range(per):
            tx.send([b"g%d" % k, b"%d" % i])

    threads = [start_thread(thread_sender, k) for k in range(4)]
    greenlets = [gevent.spawn(greenlet_sender, k) for k in range(4)]
    got = [rx.recv(timeout=10) for _ in range(8 * per)]
    join_all(threads)
    gevent.joinall(greenlets, raise_error=True)
    for who in [b"t0", b"t1", b"t2", b"t3", b"g0", b"g1", b"g2", b"g3"]:
        assert [m[1] for m in got if m[0] == who] == [b"%d" % i for i in range(per)]


def test_threads_and_greenlets_receive_from_one_stream(pushpull):
    tx, rx = pushpull(16, 0)
    port = rx.for_threads()
    total = 2000
    by_thread, by_greenlet = [], []

    def thread_receiver():
        try:
            while True:
                by_thread.append(port.recv()[0])
        except zc.ChannelClosed:
            pass

    def greenlet_receiver():
        try:
            while True:
                by_greenlet.append(rx.recv()[0])
                gevent.sleep(0)
        except zc.ChannelClosed:
            pass

    threads = [start_thread(thread_receiver) for _ in range(2)]
    greenlets = [gevent.spawn(greenlet_receiver) for _ in range(2)]
    for i in range(total):
        tx.send(b"%d" % i)
    wait_for(lambda: len(by_thread) + len(by_greenlet) == total, what="all received")
    rx.close()
    join_all(threads)
    gevent.joinall(greenlets, raise_error=True)
    everything = by_thread + by_greenlet
    assert sorted(everything) == sorted(b"%d" % i for i in range(total))  # each once
    assert by_thread and by_greenlet  # neither kind starves


def test_hub_keeps_running_while_threads_work(pushpull, make_socket, make_pair):
    """Threads hammering the pair and a thread blocked in recv never stall the hub."""
    tx, rx = pushpull(0, 0)
    idle = make_pair(make_socket(zmq.PULL))  # nothing ever arrives here
    ticks = [0]

    def heartbeat():
        while True:
            ticks[0] += 1
            gevent.sleep(0.001)

    hb = gevent.spawn(heartbeat)
    assert tx.spawn_thread(lambda port: port.call(lambda s: s.type)).get(timeout=10) == zmq.PUSH

    def wait_forever(port):
        with pytest.raises(zc.ChannelClosed):
            port.recv()
        return "woken"

    blocked = idle.spawn_thread(wait_forever)
    wait_for(lambda: idle.stats()["rx_waiting"] == 1, what="a thread blocked in recv")
    start = ticks[0]
    senders = [
        tx.spawn_thread(lambda port, k=k: [port.send(b"%d" % k) for _ in range(300)])
        for k in range(3)
    ]
    got = [rx.recv(timeout=10) for _ in range(900)]
    assert sorted(got) == sorted([b"%d" % k] for k in range(3) for _ in range(300))
    # The hub ran the heartbeat all along (it would stop dead if a thread blocked it).
    wait_for(lambda: ticks[0] - start >= 20, what="heartbeat ticking")
    for s in senders:
        s.get(timeout=10)
    idle.close()
    assert blocked.get(timeout=10) == "woken"
    hb.kill()


def test_thread_send_timeout_means_not_accepted(make_socket, make_pair):
    push = make_socket(zmq.PUSH)  # no peer: never writable
    tx = make_pair(push, 0)

    def try_send(port):
        with pytest.raises(TimeoutError):
            port.send(b"never", timeout=0.05)
        with pytest.raises(TimeoutError):
            port.send(b"never", timeout=0)
        return True

    assert tx.spawn_thread(try_send).get(timeout=10)
    wait_for(lambda: tx.stats()["tx_waiting"] == 0, what="cancelled ops forgotten")
    assert tx.close() == []


def test_thread_recv_timeout_and_forgotten(pushpull):
    _, rx = pushpull()

    def poll(port):
        for _ in range(50):
            with pytest.raises(TimeoutError):
                port.recv(timeout=0.001)

    rx.spawn_thread(poll).get(timeout=10)
    wait_for(lambda: rx.stats()["rx_waiting"] == 0, what="timed-out receivers dropped")


def test_close_wakes_blocked_threads(make_socket, make_pair):
    tx = make_pair(make_socket(zmq.PUSH), 1)
    rx = make_pair(make_socket(zmq.PULL))
    tx.send(b"accepted")
    outcomes = []

    def blocked_send(port):
        try:
            port.send(b"blocked")
        except zc.ChannelClosed as exc:
            outcomes.append(type(exc))

    def blocked_recv(port):
        try:
            port.recv()
        except zc.ChannelClosed as exc:
            outcomes.append(type(exc))

    results = [tx.spawn_thread(blocked_send) for _ in range(3)] + [
        rx.spawn_thread(blocked_recv) for _ in range(3)
    ]
    wait_for(lambda: tx.stats()["tx_waiting"] == 3 and rx.stats()["rx_waiting"] == 3)
    assert tx.close(linger=0) == [[b"accepted"]]
    rx.close()
    for r in results:
        r.get(timeout=10)
    assert outcomes == [zc.ChannelClosed] * 6
    assert tx.for_threads().closed


def test_thread_gets_buffered_messages_after_close(pushpull):
    tx, rx = pushpull(0, 4)
    port = rx.for_threads()
    for i in range(3):
        tx.send(b"%d" % i)
    wait_for(lambda: rx.stats()["rx_pending"] == 3)
    rx.close()

    def drain(port):
        got = [port.recv(timeout=5) for _ in range(3)]
        with pytest.raises(zc.ChannelClosed):
            port.recv(timeout=5)
        with pytest.raises(zc.ChannelClosed):
            port.call(lambda s: None)
        return got

    result = gevent.get_hub().threadpool.spawn(drain, port)
    assert result.get(timeout=10) == [[b"0"], [b"1"], [b"2"]]


def test_thread_port_refuses_hub_thread(pushpull):
    tx, _ = pushpull()
    port = tx.for_threads()
    for call in (lambda: port.send(b"x"), lambda: port.recv(timeout=0), lambda: port.call(len)):
        with pytest.raises(RuntimeError, match="hub thread"):
            call()


def test_thread_bad_input_is_refused_in_the_thread(pushpull):
    tx, rx = pushpull()

    def bad(port):
        errors = []
        for msg in ["text", None, 3, [[b"nested"]], []]:
            try:
                port.send(msg)
            except (TypeError, ValueError) as exc:
                errors.append(type(exc))
        try:
            port.send(b"x", timeout=-1)
        except ValueError as exc:
            errors.append(type(exc))
        port.send(b"fine")
        return errors

    assert tx.spawn_thread(bad).get(timeout=10) == [TypeError] * 4 + [ValueError] * 2
    assert rx.recv(timeout=5) == [b"fine"]


def test_many_threads_never_lose_a_wakeup(pushpull):
    """Hazard 4: wake-ups merge but are never lost, however the threads race."""
    tx, rx = pushpull(0, 0)
    port = tx.for_threads()
    n_threads, per = 6, 1500

    def sender(k):
        for i in range(per):
            port.send([b"%d" % k, b"%d" % i])

    threads = [start_thread(sender, k) for k in range(n_threads)]
    last = {}
    for _ in range(n_threads * per):
        k, i = rx.recv(timeout=10)
        assert int(i) == last.get(k, -1) + 1
        last[k] = int(i)
    join_all(threads)


def test_wake_pipe_name_is_unguessable(pushpull):
    tx, rx = pushpull()
    a = tx._pump.thread_gate()
    b = rx._pump.thread_gate()
    assert a.endpoint != b.endpoint
    assert len(a.endpoint.rsplit("-", 1)[1]) >= 32


def test_pair_breaking_fails_thread_waiters(ctx, make_socket):
    rx = zc.ChannelPair(make_socket(zmq.PULL))
    waiting = rx.spawn_thread(lambda port: port.recv())
    wait_for(lambda: rx.stats()["rx_waiting"] == 1)
    gevent.get_hub().threadpool.spawn(ctx.term).get(timeout=10)
    with pytest.raises(zc.ChannelBroken):
        waiting.get(timeout=10)
    rx.close()


SCENARIO = textwrap.dedent(
    """
    {patch}
    import threading
    import gevent
    import zmq.green as zmq
    import zmqchan_green as zc
    from gevent.monkey import get_original

    ctx = zmq.Context()
    pull, push = ctx.socket(zmq.PULL), ctx.socket(zmq.PUSH)
    for s in (pull, push):
        s.linger = 0
    port_no = pull.bind_to_random_port("tcp://127.0.0.1")
    push.connect("tcp://127.0.0.1:%d" % port_no)
    tx, rx = zc.ChannelPair(push, 8), zc.ChannelPair(pull, 0, 8)
    tport = tx.for_threads()

    def sender(k):
        for i in range(300):
            tport.send([b"%d" % k, b"%d" % i])

    # Under patch_all, threading.Thread starts greenlets: start real threads.
    start_new_thread = get_original("_thread", "start_new_thread")
    finished = []
    for k in range(3):
        start_new_thread(lambda k=k: (sender(k), finished.append(k)), ())
    pooled = tx.spawn_thread(lambda port: [port.send([b"pool", b"%d" % i]) for i in range(300)])
    greenlet = gevent.spawn(lambda: [tx.send([b"green", b"%d" % i]) for i in range(300)])
    got = [rx.recv(timeout=20) for _ in range(1500)]
    pooled.get(timeout=20)
    greenlet.get(timeout=20)
    while len(finished) < 3:
        gevent.sleep(0.01)
    for who in [b"0", b"1", b"2", b"pool", b"green"]:
        assert [m[1] for m in got if m[0] == who] == [b"%d" % i for i in range(300)], who
    assert tx.close() == [] and rx.close() == []
    ctx.term()
    print("OK", threading.current_thread() is not None)
    """
)


@pytest.mark.parametrize("patched", [True, False], ids=["patch_all", "unpatched"])
def test_whole_scenario_with_and_without_monkey_patching(patched):
    patch = "from gevent import monkey; monkey.patch_all()" if patched else ""
    proc = run_python("-c", SCENARIO.format(patch=patch))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK")
