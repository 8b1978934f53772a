"""Messages parked for slow ``ROUTER`` peers.

Theory of operation
===================

A ``ROUTER`` routes each message itself and ``EVENTS`` says nothing of the
peer a message is for, so the pump treats it as always writable; with
``ROUTER_MANDATORY`` a peer at its high-water mark answers ``EAGAIN``. That
message is parked for its peer, and so is every later one to the same peer,
while messages to other peers go on: one stalled peer never holds back the
others, and each peer's messages keep their order.

Parked messages are retried on every wake-up of the pump (a send or an
``EVENTS`` reading may have taken the command saying a peer has room again)
and on the back-off timer. A refusal costs a failed send, so one round tries
at most ``REFUSALS`` refusing peers and sends each refusing peer to the back
of the line; many stalled peers cost a bounded number of failed sends per
wake-up, and the others get their turn on the next one.

Every parked message carries the sequence number it was parked with, so what
is never sent can be returned oldest first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import zmq

from ._wire import FATAL, Wire

__all__ = ["Parking"]

#: Refusing peers tried per round.
REFUSALS = 8


class Parking:
    """Parked messages per peer, in order (the hub's thread only; the pump's
    lock guards changes that ``accept`` must see in one step)."""

    def __init__(self, wire: Wire, report: Callable[[list[Any], zmq.ZMQError], None]) -> None:
        #: Parked messages by peer identity, each with its parking number.
        self.peers: dict[bytes, deque[tuple[int, list[Any]]]] = {}
        #: How many messages are parked, all peers together.
        self.count = 0
        #: Whether some peers were left untried by the last round.
        self.retry = False
        #: Parked messages that libzmq took in the end.
        self.sent = 0
        self._seq = 0
        self._wire = wire
        self._report = report

    def park(self, msg: list[Any]) -> None:
        """Park ``msg`` behind what already waits for its peer (``msg[0]``)."""
        self.peers.setdefault(bytes(msg[0]), deque()).append((self._seq, msg))
        self._seq += 1
        self.count += 1

    def retry_peers(self, budget: int) -> int:
        """Retry parked messages, each peer's in order, until its peer refuses
        (see above). Returns how many messages it dealt with: sent (counted in
        ``sent``), or rejected with an error other than ``EAGAIN`` (reported
        and dropped). Fatal errors raise."""
        self.retry = False
        parked = self.peers
        n = refusals = 0
        for peer in list(parked):
            if refusals >= REFUSALS or n >= budget:
                self.retry = True  # the others wait for the next round
                break
            waiting = parked[peer]
            while waiting and n < budget:
                msg = waiting[0][1]
                try:
                    refused = self._wire.write(msg)
                except zmq.ZMQError as exc:
                    if exc.errno in FATAL:
                        raise
                    self._report(msg, exc)  # e.g. EHOSTUNREACH: the peer left
                else:
                    if refused >= 0:
                        refusals += 1
                        del parked[peer]
                        parked[peer] = waiting  # to the back of the line
                        break
                    self.sent += 1
                waiting.popleft()
                self.count -= 1
                n += 1
            if not waiting:
                del parked[peer]
        return n

    def oldest_first(self) -> list[list[Any]]:
        """Every parked message, oldest first."""
        entries = sorted(entry for waiting in self.peers.values() for entry in waiting)
        return [msg for _, msg in entries]

    def clear(self) -> None:
        self.peers.clear()
        self.count = 0
