"""Faults after which libzmq may drop queued messages, and what each may have dropped.

Theory of operation
===================

Some injected faults make libzmq drop what it still holds: ``sender_recycle``
closes a sending pair with a short linger (libzmq drops what it still holds
when the linger ends); ``peer_restart`` closes a lane's receiving pair (and
with it the pipes and kernel buffers feeding it); ``peer_churn`` closes it and
puts in its place, for a moment, a peer that connects and goes away several
times (:mod:`.churn`; each teardown can cost what the pipe held, and a
message whose pipe died mid-message is rolled back by libzmq and sent again
whole by the pump); and a ``router_peer_stall`` that ends with its ROUTER pair
restarted is a ``peer_restart`` too. A :class:`LossEvent` records one such fault, and the
accounting may attribute an accepted but undelivered message to it only if the
fault could have caught that message in libzmq's queues:

* a pipe is FIFO, so a message older than one already delivered from the same
  (sender, sending pair) had left libzmq before the fault (``low``);
* after a receiving pair was replaced, once the new one got its first message
  the sender had reconnected, and every message attempted after that rides
  behind it on a live connection (``high``).

Each teardown may cost at most what libzmq's queues hold (see
:data:`~.lanes.LOSS_CAPACITY`); the accounting checks that too.
"""

from __future__ import annotations

__all__ = ["LossEvent"]


class LossEvent:
    """A fault after which libzmq may drop what it holds: ``peer_restart``,
    ``router_peer_stall`` or ``peer_churn`` (the receiving pair ``old_gen``
    closed, ``new_gen`` bound in its place; a churn tears ``teardowns``
    connections down on the way) or ``sender_recycle`` (the sending pair
    ``old_gen`` closed with a short linger).

    What it can have dropped is bounded below: a pipe is FIFO, so once a
    receiver got message ``n`` of (sender, sending pair), every earlier one had
    left libzmq already. ``peer_restart`` is bounded above too: once the new
    receiving pair got its first message the sender had reconnected, and
    every message attempted after that rides behind it.
    """

    __slots__ = (
        "echo_lost",
        "echo_low",
        "high",
        "kind",
        "lane",
        "lost",
        "low",
        "new_gen",
        "old_gen",
        "teardowns",
    )

    def __init__(
        self,
        kind: str,
        lane: int,
        old_gen: int,
        low: dict[tuple[int, int], int],
        echo_low: dict[tuple[int, int, int], int],
    ) -> None:
        self.kind = kind
        self.lane = lane
        self.old_gen = old_gen
        self.new_gen = 0
        #: (sender id, sending pair) -> highest sequence number delivered before the fault.
        self.low = low
        #: (sender id, DEALER pair, ROUTER pair) -> highest echo delivered before the fault.
        self.echo_low = echo_low
        #: peer_restart: sender id -> attempts made when the new pair got its
        #: first message; ``None`` while the lane is not proven live again.
        self.high: dict[int, int] | None = None
        self.lost = 0
        self.echo_lost = 0
        #: How many times the connection was torn down (and each may cost a full queue).
        self.teardowns = 1

    def covers(self, sid: int, gen: int, seq: int) -> bool:
        """Whether message ``seq`` of ``sid`` through sending pair ``gen`` may be lost here."""
        if self.kind == "sender_recycle" and gen != self.old_gen:
            return False
        if seq <= self.low.get((sid, gen), -1):
            return False
        return self.kind == "sender_recycle" or self.high is None or seq < self.high.get(sid, 0)

    def covers_echo(self, sid: int, tgen: int, rgen: int, seq: int) -> bool:
        """Whether the echo of that message, through ROUTER pair ``rgen``, may be lost here."""
        if (tgen if self.kind == "sender_recycle" else rgen) != self.old_gen:
            return False
        return seq > self.echo_low.get((sid, tgen, rgen), -1)
