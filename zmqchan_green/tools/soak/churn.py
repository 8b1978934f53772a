"""A peer that reconnects mid-message: the ``peer_churn`` fault.

Theory of operation
===================

libzmq rolls back a message whose pipe is torn down after its first frames
were written, and drops the frames that follow up to its last one (DESIGN.md
hazard 13); the pump must end that dropping and send the message again
whole. To test that, a pipe must die *while the pump writes*: its end must
reach the sending socket between two frames of one message. libzmq looks at
its commands (a pipe's end among them) whenever ``EVENTS`` is read, which the
pump does between batches, and while sending, at most once a millisecond. A
receiving pair closed in the hub's thread reaches the sending socket before
its pump runs again, so at a message boundary: nothing is rolled back. So the
churning peer is a plain socket in a native thread, which goes away at
moments the hub does not choose, and messages on inproc lanes have up to 18
frames (:data:`~.lanes.LANES`), so that a pump writing a batch writes for
more than a millisecond.

The fault: the lane's receiving pair is closed (a first teardown), and a
native thread binds a plain socket (PULL, or ROUTER on an echo lane) on the
lane's endpoint, has the sending pair connect to it (through its
:class:`~zmqchan_green.ThreadPort`'s ``call``: inproc does not reconnect by
itself), reads for 1 to 6 ms, handing every message to the ledger, and
closes with linger 0 (what its pipe held is dropped); 3 to 8 times. Then a
new receiving pair is bound in its place and the sender reconnected, as for
``peer_restart``. Each connection is a :class:`~.lanes.PeerGen` with a
generation of its own: the peer's view of each (sender, sending pair) is
checked for order per connection. On an echo lane the peer echoes nothing:
its messages are recorded as never echoed.

What the torn-down pipes held is a loss of a kind that drops: one
:class:`~.losses.LossEvent` for the whole churn, allowed what libzmq's queues
hold once per teardown. Every message the churning peer receives is checked
like any other (:mod:`.ledger`): a fragment, a message of two, or a
duplicate is a problem.
"""

from __future__ import annotations

import random
import time
from typing import Any

import zmq

from ..common import RealThread
from .lanes import ECHO, HWM, Lane, PeerGen, Topology
from .ledger import Ledger, Worker

__all__ = ["CONNECTIONS", "ChurningPeer"]

#: How many times the peer connects and goes away (uniform).
CONNECTIONS = (3, 8)
#: How long each connection lasts (seconds, uniform).
_READ_FOR = (0.001, 0.006)
#: How long binding may wait for the endpoint's previous owner to let go.
_BIND_WITHIN = 5.0


class ChurningPeer:
    """The peer of one ``peer_churn``: start ``thread``; ``done`` once it ended
    (``error`` says why, if it failed). See the module docstring."""

    def __init__(
        self,
        ledger: Ledger,
        topology: Topology,
        lane: Lane,
        connections: int,
        rng: random.Random,
    ) -> None:
        self.ledger = ledger
        self.topology = topology
        self.lane = lane
        self.conns = [PeerGen(topology.gen_id(), lane.index) for _ in range(connections)]
        self.read_for = [rng.uniform(*_READ_FOR) for _ in range(connections)]
        self.worker = Worker(f"churning peer {lane.index}", ordered=True)
        self.done = False
        self.error: BaseException | None = None
        self.thread: Any = RealThread(
            target=self._run, name=f"soak-churn-{lane.index}", daemon=True
        )

    def _run(self) -> None:
        lane = self.lane
        echo = lane.spec.kind == ECHO
        context: zmq.Context[Any] = zmq.Context.shadow(self.topology.ctx.underlying)
        try:
            for conn, read_for in zip(self.conns, self.read_for, strict=True):
                sock: zmq.Socket[Any] = context.socket(zmq.ROUTER if echo else zmq.PULL)
                try:
                    sock.setsockopt(zmq.LINGER, 0)
                    sock.setsockopt(zmq.RCVHWM, HWM)
                    self._bind(sock)
                    self.topology.reconnect_from_thread(lane)
                    self._read(sock, conn, read_for, echo)
                finally:
                    sock.close(linger=0)  # now, whatever the sending pump is doing
        except BaseException as exc:
            self.error = exc
        finally:
            self.done = True

    def _bind(self, sock: zmq.Socket[Any]) -> None:
        deadline = time.monotonic() + _BIND_WITHIN
        while True:
            try:
                sock.bind(self.lane.endpoint)
                return
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > deadline:
                    raise
            time.sleep(0.001)

    def _read(self, sock: zmq.Socket[Any], conn: PeerGen, read_for: float, echo: bool) -> None:
        """Hand what arrives to the ledger until ``read_for`` seconds have passed."""
        ledger, worker = self.ledger, self.worker
        until = time.monotonic() + read_for
        while (left := until - time.monotonic()) > 0:
            if not sock.poll(max(1, round(left * 1000)), zmq.POLLIN):
                continue
            while time.monotonic() < until:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                got = ledger.deliver(frames, conn, worker)
                if echo and got is not None:
                    ledger.echo_outcome(*got, conn, accepted=False)
