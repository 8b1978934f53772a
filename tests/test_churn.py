"""Peer churn: peers that go away and come back mid-message (DESIGN.md hazard 13).

libzmq rolls back a message whose pipe is torn down after its first frames were
written: it answers ``EAGAIN`` on a later frame and drops what it took (and, on
a load-balancing socket, the frames after it up to the end of the message). A
pump that resumed at the refused frame sent the tail of a message on its own;
the pair sends the message again whole instead. The peer here is a plain pyzmq
socket in a native thread that disconnects and reconnects every few
milliseconds, so pipes are torn down while the pump writes.

The floor: when more than one pipe is attached at once (several such peers, or
one peer over tcp or ipc, whose old connection may still be shutting down when
the next one attaches), libzmq 4.3.5 itself may split a message between two of
them, with plain pyzmq too (RELIABILITY.md). So these tests use one inproc peer
at a time, where libzmq keeps messages whole.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import gevent
import pytest
import zmq as plain_zmq
import zmq.green as zmq
from gevent.monkey import get_original

from .conftest import bind

pytestmark = pytest.mark.timeout(60)

_start_thread = get_original("_thread", "start_new_thread")

FRAMES = 40
SECONDS = 3.0


def _message(n: int) -> list[bytes]:
    return [b"%d:%d" % (n, k) for k in range(FRAMES)]


def _churning_peer(
    context: Any, kind: int, endpoint: str, stop: list[bool], out: dict[str, Any]
) -> None:
    """In a native thread: connect, read for ~2 ms, disconnect, again, until told to stop."""
    whole: Counter[int] = Counter()
    broken: list[list[bytes]] = []
    try:
        while not stop:
            sock = context.socket(kind)
            sock.linger = 0
            sock.rcvhwm = 1000
            sock.connect(endpoint)
            until = time.monotonic() + 0.002
            while time.monotonic() < until:
                if not sock.poll(1):
                    continue
                msg = sock.recv_multipart()
                ids = {frame.split(b":")[0] for frame in msg}
                if len(msg) == FRAMES and len(ids) == 1 and msg == _message(int(ids.pop())):
                    whole[int(msg[0].split(b":")[0])] += 1
                else:
                    broken.append(msg[:3])
            sock.close()
    finally:
        out["whole"] = whole
        out["broken"] = broken


@pytest.mark.parametrize(
    ("kind", "peer_kind"),
    [(zmq.PUSH, zmq.PULL), (zmq.DEALER, zmq.DEALER), (zmq.PAIR, zmq.PAIR)],
    ids=["push", "dealer", "pair"],
)
def test_reconnecting_peer_never_receives_part_of_a_message(
    ctx, make_socket, make_pair, kind, peer_kind
):
    sock = make_socket(kind, sndhwm=1000)
    endpoint = bind(sock, "inproc")
    pair = make_pair(sock, 100)
    peer_context = plain_zmq.Context.shadow(ctx.underlying)
    stop: list[bool] = []
    out: dict[str, Any] = {}
    accepted = 0

    def send_all() -> None:
        nonlocal accepted
        while not stop:
            pair.send(_message(accepted))
            accepted += 1

    _start_thread(_churning_peer, (peer_context, peer_kind, endpoint, stop, out))
    sender = gevent.spawn(send_all)
    gevent.sleep(SECONDS)
    stop.append(True)
    sender.join(timeout=10)
    with gevent.Timeout(10, AssertionError("the peer thread did not stop")):
        while "broken" not in out:
            gevent.sleep(0.01)
    unsent = pair.close(linger=0)
    stats = pair.stats()

    assert out["broken"] == [], "a peer received part of a message"
    assert out["whole"], "nothing was delivered at all"
    assert max(out["whole"].values()) == 1, "a message was delivered twice"
    # Every accepted message was handed over whole or returned by close().
    assert stats["sent"] + len(unsent) == accepted
    returned = [int(msg[0].split(b":")[0]) for msg in unsent]
    assert returned == list(range(accepted - len(unsent), accepted))
    assert set(out["whole"]) <= set(range(stats["sent"]))
