"""Fan-in: 200 greenlets share one PUSH socket through one ChannelPair.

Every sender greenlet pushes its messages, ``[sender id, sequence number,
payload]``, through the same ChannelPair; a collector greenlet reads them from
a PULL socket (tcp, 127.0.0.1, a random port) and checks that every message
arrives whole, exactly once, and in each sender's order. Without the pair,
greenlets sending on one ``zmq.green`` socket fail with ``AssertionError: Only
one greenlet can be waiting on this event`` as soon as two of them have to wait
for the socket at once (when the peer falls behind and the high-water mark is
reached).

With the package installed (or the checkout on PYTHONPATH), run:
    python examples/fan_in.py
Exits 0 on success, 1 on a mismatch or timeout.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import gevent
import zmq.green as zmq

import zmqchan_green as zc

SENDERS = 200
MESSAGES = 50  # per sender
TIMEOUT = 10.0  # seconds for any single send or receive
DEADLINE = 60.0  # seconds for the whole run


def sender(pair: zc.ChannelPair, sender_id: int) -> None:
    """Push MESSAGES messages, numbered from 0, through the shared pair."""
    sid = b"%d" % sender_id
    for seq in range(MESSAGES):
        pair.send([sid, b"%d" % seq, b"payload %d/%d" % (sender_id, seq)], timeout=TIMEOUT)


def collect(pair: zc.ChannelPair, failures: list[str]) -> int:
    """Receive SENDERS * MESSAGES messages; check each; return how many were right."""
    next_seq = [0] * SENDERS
    good = 0
    for _ in range(SENDERS * MESSAGES):
        try:
            msg = pair.recv(timeout=TIMEOUT)
        except TimeoutError:
            failures.append(f"nothing received for {TIMEOUT} s after {good} good messages")
            break
        try:
            sid_b, seq_b, payload = msg
            sender_id, seq = int(sid_b), int(seq_b)
        except ValueError:
            failures.append(f"malformed message {msg!r}")
            continue
        if payload != b"payload %d/%d" % (sender_id, seq):
            failures.append(f"frames mixed up: {msg!r}")
        elif seq != next_seq[sender_id]:
            failures.append(
                f"sender {sender_id}: got message {seq}, expected {next_seq[sender_id]}"
            )
        else:
            good += 1
        next_seq[sender_id] = seq + 1
    return good


def main() -> int:
    """Run the fan-in; return the exit status."""
    ctx: zmq.Context[Any] = zmq.Context()
    failures: list[str] = []
    try:
        pull = ctx.socket(zmq.PULL)
        push = ctx.socket(zmq.PUSH)
        pull.setsockopt(zmq.LINGER, 0)
        push.setsockopt(zmq.LINGER, 0)
        port = pull.bind_to_random_port("tcp://127.0.0.1")
        push.connect(f"tcp://127.0.0.1:{port}")

        # The senders share one PUSH socket through one pair, with room for
        # 64 messages; the collector reads through a pair of its own, for
        # recv() with a timeout.
        with zc.ChannelPair(push, tx_size=64) as out, zc.ChannelPair(pull, rx_size=64) as inbox:
            started = time.monotonic()
            collector = gevent.spawn(collect, inbox, failures)
            senders = [gevent.spawn(sender, out, i) for i in range(SENDERS)]
            gevent.joinall(senders, timeout=DEADLINE)
            for g in senders:
                if g.exception is not None:
                    failures.append(f"a sender failed: {g.exception!r}")
                elif not g.dead:
                    g.kill(timeout=1.0)
                    failures.append("a sender did not finish")
            collector.join(timeout=TIMEOUT + 1.0)  # it gives up after TIMEOUT idle
            if not collector.dead:
                collector.kill(timeout=1.0)
                failures.append("the collector did not finish")
            elif collector.exception is not None:
                failures.append(f"the collector failed: {collector.exception!r}")
            good = collector.value or 0
            elapsed = time.monotonic() - started
            unsent = out.close(linger=1.0)
            if unsent:
                failures.append(f"{len(unsent)} accepted messages were never sent")
        handed = out.stats()["sent"]
        if handed != SENDERS * MESSAGES:
            failures.append(f"the PUSH pair handed {handed} messages to its socket")
    finally:
        # Closes whatever is still open (nothing, unless set-up failed) and
        # terminates the context.
        ctx.destroy(linger=0)

    total = SENDERS * MESSAGES
    print(
        f"{SENDERS} greenlets x {MESSAGES} messages through one PUSH socket (tcp://127.0.0.1:{port})"
    )
    print(f"the shared pair handed {handed} messages to its socket")
    print(f"the collector received {good} of {total} intact and in order, in {elapsed:.2f} s")
    if failures:
        for failure in failures[:10]:
            print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print(f"OK: all {total} messages arrived exactly once, in each sender's order")
    return 0


if __name__ == "__main__":
    sys.exit(main())
