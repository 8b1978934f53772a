"""Echo ten two-frame messages between two ChannelPairs over PAIR/tcp.

Modelled on the echo test of Go's zmqchan: two PAIR sockets joined over tcp
(127.0.0.1, a random port), each wrapped in a rendezvous ChannelPair. One side
sends ten two-frame messages from its own greenlet, the other echoes each one
back, and the first checks that all ten come back whole and in order.

With the package installed (or the checkout on PYTHONPATH), run:
    python examples/echo.py
Exits 0 on success, 1 on a mismatch or timeout.
"""

from __future__ import annotations

import sys
from typing import Any

import gevent
import zmq.green as zmq

import zmqchan_green as zc

COUNT = 10
TIMEOUT = 5.0  # seconds for any single send or receive


def echo_side(pair: zc.ChannelPair) -> None:
    """Receive COUNT messages and send each straight back."""
    for _ in range(COUNT):
        msg = pair.recv(timeout=TIMEOUT)
        print(f"  echo side: got {msg}, sending it back")
        pair.send(msg, timeout=TIMEOUT)


def sending_side(pair: zc.ChannelPair) -> None:
    """Send COUNT two-frame messages: ``[b"Hello", b"<n>"]``."""
    for i in range(COUNT):
        pair.send([b"Hello", b"%d" % i], timeout=TIMEOUT)


def main() -> int:
    """Run the exchange; return the exit status."""
    ctx: zmq.Context[Any] = zmq.Context()
    failures: list[str] = []
    try:
        a = ctx.socket(zmq.PAIR)
        b = ctx.socket(zmq.PAIR)
        a.setsockopt(zmq.LINGER, 0)
        b.setsockopt(zmq.LINGER, 0)
        port = a.bind_to_random_port("tcp://127.0.0.1")
        b.connect(f"tcp://127.0.0.1:{port}")
        print(f"PAIR sockets joined over tcp://127.0.0.1:{port}")

        with zc.ChannelPair(a) as echo_pair, zc.ChannelPair(b) as pair:
            echo = gevent.spawn(echo_side, echo_pair)
            sender = gevent.spawn(sending_side, pair)
            for i in range(COUNT):
                expected = [b"Hello", b"%d" % i]
                try:
                    reply = pair.recv(timeout=TIMEOUT)
                except TimeoutError:
                    failures.append(f"no reply {i} within {TIMEOUT} s")
                    break
                if reply == expected:
                    print(f"  first side: reply {i} is {reply}, as sent")
                else:
                    failures.append(f"reply {i} is {reply}, expected {expected}")
            for greenlet in (sender, echo):
                greenlet.join(timeout=TIMEOUT)
                if greenlet.exception is not None:
                    failures.append(f"{greenlet.name} failed: {greenlet.exception!r}")
                if not greenlet.dead:
                    greenlet.kill(timeout=1.0)
                    failures.append(f"{greenlet.name} did not finish")
        # Leaving `with` closed both pairs, and with them both sockets.
    finally:
        # Closes whatever is still open (nothing, unless set-up failed) and
        # terminates the context.
        ctx.destroy(linger=0)

    if failures:
        for failure in failures:
            print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"OK: all {COUNT} two-frame messages echoed back whole and in order")
    return 0


if __name__ == "__main__":
    sys.exit(main())
