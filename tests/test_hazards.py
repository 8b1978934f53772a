"""The hazards of sharing a ZeroMQ socket under gevent, each shown handled.

Numbers refer to the hazard list in the project's design notes.
"""

from __future__ import annotations

import hashlib
import random
import threading

import gevent
import pytest
import zmq as plain_zmq
import zmq.green as zmq
from gevent.monkey import get_original

from zmqchan_green import _pump

from .conftest import TRANSPORTS, wait_for

pytestmark = pytest.mark.timeout(60)

Thread = get_original("threading", "Thread")


def _checked(sender: int, seq: int, rng: random.Random) -> list[bytes]:
    body = [rng.randbytes(rng.randrange(0, 2000)) for _ in range(rng.randrange(1, 5))]
    head = b"%d:%d" % (sender, seq)
    digest = hashlib.blake2b(b"".join([head, *body]), digest_size=16).digest()
    return [head, *body, digest]


def _verify(msg: list[bytes]) -> tuple[int, int]:
    head, *body, digest = msg
    assert hashlib.blake2b(b"".join([head, *body]), digest_size=16).digest() == digest, "corrupted"
    sender, seq = head.split(b":")
    return int(sender), int(seq)


# ------------------------------------------------ the problem, and the fix


def test_raw_zmq_green_fails_where_the_pair_succeeds(connected, make_pair):
    """Hazard 2: two greenlets on one zmq.green socket die; through a pair they don't."""
    pull, push = connected(zmq.PULL, zmq.PUSH, sndhwm=1, rcvhwm=1)
    failures = []

    def raw_sender(k):
        try:
            for i in range(100):
                push.send_multipart([b"%d" % k, b"%d" % i])
        except AssertionError as exc:
            failures.append(str(exc))

    gevent.joinall([gevent.spawn(raw_sender, k) for k in range(2)], timeout=1)
    assert failures and "Only one greenlet can be waiting on this event" in failures[0]

    tx, rx = make_pair(push, 0), make_pair(pull, 0, 0)
    while True:  # drain what the raw attempt left behind
        try:
            rx.recv(timeout=0.05)
        except TimeoutError:
            break
    senders = [
        gevent.spawn(lambda k=k: [tx.send([b"%d" % k, b"%d" % i]) for i in range(100)])
        for k in range(2)
    ]
    got = [rx.recv(timeout=5) for _ in range(200)]
    gevent.joinall(senders, raise_error=True)
    for k in range(2):
        assert [m[1] for m in got if m[0] == b"%d" % k] == [b"%d" % i for i in range(100)]


@pytest.mark.parametrize("transport", ["inproc", "tcp"])
def test_stress_many_greenlets_random_multipart(connected, make_pair, transport):
    """Hazards 2 and 3: 100 greenlets, random multipart messages;
    0 lost, 0 corrupted, per-sender order kept."""
    pull, push = connected(zmq.PULL, zmq.PUSH, transport, sndhwm=50, rcvhwm=50)
    tx, rx = make_pair(push, 8), make_pair(pull, 0, 8)
    n_senders, per_sender = 100, 40

    def sender(k):
        rng = random.Random(k)
        for i in range(per_sender):
            tx.send(_checked(k, i, rng))
            if rng.random() < 0.2:
                gevent.sleep(0)

    gs = [gevent.spawn(sender, k) for k in range(n_senders)]
    last = {}
    for _ in range(n_senders * per_sender):
        k, i = _verify(rx.recv(timeout=10))
        assert i == last.get(k, -1) + 1, "per-sender order broken"
        last[k] = i
    gevent.joinall(gs, timeout=10, raise_error=True)
    assert last == {k: per_sender - 1 for k in range(n_senders)}
    with pytest.raises(TimeoutError):
        rx.recv(timeout=0.05)


def test_many_receivers_each_message_once(connected, make_pair):
    pull, push = connected(zmq.PULL, zmq.PUSH)
    tx, rx = make_pair(push, 16), make_pair(pull)
    got = []

    def receiver():
        while True:
            got.append(rx.recv()[0])

    receivers = [gevent.spawn(receiver) for _ in range(50)]
    for i in range(2000):
        tx.send(b"%d" % i)
    wait_for(lambda: len(got) == 2000, what="all received")
    gevent.killall(receivers)
    assert sorted(got) == sorted(b"%d" % i for i in range(2000))


# --------------------------------------- hazard 3: kills and timeouts mid-call


def test_killed_and_timed_out_senders_never_leave_partial_messages(connected, make_pair):
    """Hazard 3: a message is accepted whole or not at all, whatever happens to its sender."""
    pull, push = connected(zmq.PULL, zmq.PUSH, sndhwm=2, rcvhwm=2)
    tx, rx = make_pair(push, 0), make_pair(pull, 0, 0)
    returned, timed_out = set(), set()
    rng = random.Random(7)

    def sender(k):
        r = random.Random(k)
        for i in range(30):
            msg = _checked(k, i, r)
            try:
                tx.send(msg, timeout=r.choice([None, 0, 0.001, 0.01]))
            except TimeoutError:
                timed_out.add((k, i))
            else:
                returned.add((k, i))

    gs = [gevent.spawn(sender, k) for k in range(40)]
    received = []

    def receive():
        while True:
            received.append(_verify(rx.recv()))
            if rng.random() < 0.3:
                gevent.sleep(0.001)

    r = gevent.spawn(receive)
    for _ in range(20):
        gevent.sleep(0.002)
        victim = rng.choice(gs)
        victim.kill(block=False)
    gevent.joinall(gs, timeout=20)
    wait_for(lambda: set(received) >= returned, what="every accepted message delivered")
    wait_for(lambda: tx.stats()["tx_pending"] == 0 and rx.stats()["rx_pending"] == 0)
    r.kill()
    assert len(received) == len(set(received)), "duplicate"
    assert not (set(received) & timed_out), "a timed-out send was delivered"
    assert tx.stats()["tx_waiting"] == 0


def test_send_timeout_race_with_pump_taking_the_message(connected, make_pair, monkeypatch):
    """The pump takes the message in the same loop iteration as the timeout fires:
    send must report success (accepted), never TimeoutError for a delivered message."""
    pull, push = connected(zmq.PULL, zmq.PUSH)
    tx, rx = make_pair(push, 0), make_pair(pull, 0, 64)
    outcomes = {}
    for i in range(300):
        try:
            tx.send(b"%d" % i, timeout=0)
            outcomes[i] = True
        except TimeoutError:
            outcomes[i] = False
    wait_for(lambda: tx.stats()["tx_pending"] == 0)
    received = set()
    while True:
        try:
            received.add(int(rx.recv(timeout=0.1)[0]))
        except TimeoutError:
            break
    assert received == {i for i, ok in outcomes.items() if ok}


def test_killed_receiver_does_not_lose_its_message(connected, make_pair):
    """A receiver killed after a message was assigned to it, before it returned:
    the message goes back to the stream instead of vanishing."""
    pull, push = connected(zmq.PULL, zmq.PUSH)
    rx = make_pair(pull, 0, 0)
    victim = gevent.spawn(rx.recv)
    wait_for(lambda: rx.stats()["rx_waiting"] == 1)
    # The kill is scheduled before the wake-up, so it lands after assignment.
    gevent.get_hub().loop.run_callback(victim.throw, gevent.GreenletExit)
    rx._pump.deliver([b"precious"])
    victim.join(timeout=5)
    assert victim.dead and isinstance(victim.value, gevent.GreenletExit)
    assert rx.recv(timeout=5) == [b"precious"]


# ---------------------------------------------- hazard 1: the edge trigger


def test_idle_pair_does_not_spin(connected, make_pair):
    """Hazard 1: wake-ups with no events go back to sleep."""
    a, b = connected(zmq.PAIR, zmq.PAIR)
    pa, pb = make_pair(a, 4, 4), make_pair(b)
    pa.send(b"x")
    assert pb.recv(timeout=5) == [b"x"]
    before = pa._pump.wakeups + pb._pump.wakeups
    for _ in range(50):
        gevent.sleep(0.001)
    assert pa._pump.wakeups + pb._pump.wakeups - before < 20


def test_message_after_sleep_wakes_the_pump(connected, make_pair):
    """Hazard 1: a message arriving while the pump sleeps is noticed (edge not lost)."""
    a, b = connected(zmq.PAIR, zmq.PAIR)
    pa = make_pair(a, 0, 4)
    for i in range(50):
        wait_for(lambda: pa._pump._sleeper is not None, what="pump asleep")
        b.send_multipart([b"%d" % i, b"tail"])
        assert pa.recv(timeout=5) == [b"%d" % i, b"tail"]


def test_a_burst_after_single_messages_is_read_to_the_end(connected, make_pair):
    """Hazard 1: after one-at-a-time traffic the pump reads one message per
    EVENTS reading (no empty read after each); a burst that follows is still
    read to the end with no new FD edge, and reads go back to batches."""
    a, b = connected(zmq.PAIR, zmq.PAIR)
    pa = make_pair(a, 0, 64)
    for i in range(5):
        wait_for(lambda: pa._pump._sleeper is not None, what="pump asleep")
        b.send(b"single %d" % i)
        assert pa.recv(timeout=5) == [b"single %d" % i]
    assert pa._pump._read_one
    wait_for(lambda: pa._pump._sleeper is not None, what="pump asleep")
    for i in range(300):
        b.send(b"burst %d" % i)
    assert [pa.recv(timeout=5)[0] for _ in range(300)] == [b"burst %d" % i for i in range(300)]
    assert not pa._pump._read_one


def test_router_mandatory_stall_does_not_spin(make_socket, make_pair):
    """EAGAIN while EVENTS still says writable (ROUTER_MANDATORY at a peer's HWM)
    waits for the next FD event instead of retrying in a loop."""
    router = make_socket(zmq.ROUTER, router_mandatory=1, sndhwm=1)
    router.bind("inproc://stall")
    dealer = make_socket(zmq.DEALER, identity=b"peer", rcvhwm=1)
    dealer.connect("inproc://stall")
    tx = make_pair(router, 64)
    wait_for(lambda: tx._pump._writable, what="router writable")
    for i in range(20):
        tx.send([b"peer", b"%d" % i])
    wait_for(lambda: tx.stats()["tx_pending"] < 20, what="some sent")
    before = tx._pump.wakeups
    for _ in range(50):
        gevent.sleep(0.001)
    assert tx._pump.wakeups - before < 20
    received = [dealer.recv_multipart() for _ in range(20)]
    assert received == [[b"%d" % i] for i in range(20)]


# -------------------------------------------- hazard 9: bounded buffering


def test_reads_only_while_there_is_room(connected, make_pair):
    """Hazard 9: a flooding peer is pushed back by ZeroMQ's HWM, not buffered here."""
    pull, push = connected(zmq.PULL, zmq.PUSH, sndhwm=10, rcvhwm=10)
    rx = make_pair(pull, 0, 5)
    tx = make_pair(push, 0)
    sent = 0
    with pytest.raises(TimeoutError):
        while True:
            tx.send(b"%d" % sent, timeout=0.2)
            sent += 1
    assert rx.stats()["rx_pending"] == 5
    assert sent <= 5 + 10 + 10 + 4  # rx buffer + both HWMs + slack for libzmq's batching
    assert [rx.recv(timeout=5)[0] for _ in range(sent)] == [b"%d" % i for i in range(sent)]


# ----------------------------------------------------- hazard 11: fairness


def test_saturated_pump_yields_to_other_greenlets(make_pair):
    """Hazard 11: work per wake is bounded, so a flooded pump lets others run."""
    ctx = plain_zmq.Context()
    try:
        pull = ctx.socket(plain_zmq.PULL)
        pull.linger = 0
        pull.rcvhwm = 0
        pull.bind("inproc://fairness")
        total = 30_000
        ready = threading.Event()

        def flood():
            push = ctx.socket(plain_zmq.PUSH)
            push.linger = 0
            push.sndhwm = 0
            push.connect("inproc://fairness")
            for _ in range(total):
                push.send(b"x")
            ready.set()
            push.close()

        t = Thread(target=flood)
        t.start()
        t.join(30)
        assert ready.is_set()
        rx = make_pair(pull, 0, total)
        ticks = [0]

        def ticker():
            while True:
                ticks[0] += 1
                gevent.sleep(0)

        tk = gevent.spawn(ticker)
        wait_for(lambda: rx.stats()["received"] == total, what="all read")
        tk.kill()
        # At most _BATCH operations per turn: the ticker ran between batches.
        assert ticks[0] >= total // _pump._BATCH // 2
        rx.close()
    finally:
        ctx.destroy(linger=0)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_rx_full_does_not_stop_sends(connected, make_pair, transport):
    """Hazard 7: one direction never blocks the other."""
    a, b = connected(zmq.PAIR, zmq.PAIR, transport)
    pa, pb = make_pair(a, 0, 1), make_pair(b, 4, 0)
    flood = gevent.spawn(lambda: [pb.send(b"in") for _ in range(10**6)])
    wait_for(lambda: pa.stats()["rx_pending"] == 1, what="rx side full")
    for i in range(50):
        pa.send(b"out-%d" % i, timeout=5)
    out = []
    while len(out) < 50:
        m = pb.recv(timeout=5)
        out.append(m)
    assert out == [[b"out-%d" % i] for i in range(50)]
    flood.kill()
