"""A threadpool worker and a greenlet sharing one DEALER socket.

A native thread (a ``gevent.threadpool`` worker started with
``pair.spawn_thread``) does blocking work, here hashing with ``hashlib``, which
releases the GIL, and sends each result through the pair's ``ThreadPort``,
while a greenlet of the hub sends its own messages through the same pair. A
ROUTER echo server (itself a pair) sends everything back, and a receiver
greenlet checks that every message from both returns, each sender's in order.

With the package installed (or the checkout on PYTHONPATH), run:
    python examples/threads.py
Exits 0 on success, 1 on a mismatch or timeout.
"""

from __future__ import annotations

import hashlib
import sys

import gevent
import zmq.green as zmq

import zmqchan_green as zc

COUNT = 200
TIMEOUT = 10.0  # seconds for any single send or receive


def thread_worker(port: zc.ThreadPort, count: int) -> str:
    """Runs in a native thread: blocking work, then a send that blocks only this thread."""
    identity = port.call(lambda sock: sock.getsockopt(zmq.TYPE))
    for i in range(count):
        digest = hashlib.sha256(b"block %d" % i).hexdigest().encode()
        port.send([b"", b"thread", b"%d" % i, digest], timeout=TIMEOUT)
    return f"thread sent {count} messages through a {zmq.SocketType(identity).name} socket"


def greenlet_worker(pair: zc.ChannelPair, count: int) -> None:
    for i in range(count):
        pair.send([b"", b"greenlet", b"%d" % i, b"tick"], timeout=TIMEOUT)
        gevent.sleep(0)


def echo(server: zc.ChannelPair) -> None:
    for msg in server:
        server.send(msg)


def main() -> int:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    dealer = ctx.socket(zmq.DEALER)
    for sock in (router, dealer):
        sock.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    server = zc.ChannelPair(router, 16, 16)
    client = zc.ChannelPair(dealer, 16, 16)
    ok = True
    try:
        gevent.spawn(echo, server)
        job = client.spawn_thread(thread_worker, COUNT)
        gevent.spawn(greenlet_worker, client, COUNT)
        seen: dict[bytes, int] = {b"thread": 0, b"greenlet": 0}
        for _ in range(2 * COUNT):
            _, source, seq, payload = client.recv(timeout=TIMEOUT)
            if int(seq) != seen[source]:
                print(f"out of order from {source!r}: {int(seq)} after {seen[source] - 1}")
                ok = False
            if (
                source == b"thread"
                and payload != hashlib.sha256(b"block " + seq).hexdigest().encode()
            ):
                print(f"bad digest for thread message {int(seq)}")
                ok = False
            seen[source] += 1
        print(job.get(timeout=TIMEOUT))
        print(
            f"received back: {seen[b'thread']} from the thread, "
            f"{seen[b'greenlet']} from the greenlet"
        )
    except (TimeoutError, zc.ChannelClosed) as exc:
        print(f"failed: {exc!r}")
        ok = False
    finally:
        client.close(linger=0)
        server.close(linger=0)
        ctx.term()
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
