"""The pump in direct use: the owner of a ``SharedSocket``'s socket.

Theory of operation
===================

A :class:`DirectPump` never reads ahead and keeps nothing that libzmq could
hold. Greenlets of the hub's thread read and write the socket themselves
with non-blocking calls (they never yield in between, so the pump never sees
a half-done operation), and come to the pump only to wait:

* A reader that must wait queues in ``_rx_wait``; on ``POLLIN`` the pump
  gives one of them at a time its turn (``READ_NOW``), which then reads for
  itself, so libzmq's own state (``EVENTS``, ``zmq_poll``) stays truthful.
  A reader whose turn found nothing keeps its place at the head.
* A sender that must wait (``tx_size == 0``: there is no hidden send buffer)
  queues its message in ``_tx_wait``; when the socket is writable the pump
  gives every waiting sender its turn (``WRITE_NOW``), oldest first, and each
  writes for itself, so a sender interrupted while it waits has sent nothing.
  On a ``ROUTER``, senders whose peer refused lately wait for the next event
  instead, so one stalled peer holds back only its own senders. With
  ``tx_size > 0`` sends are buffered and sent by the pump as for a pair.
* Whoever finds the socket ready uses it at once, as with pyzmq: a direct
  call does not wait behind blocked callers. A direct call may eat a
  ``ZMQ_FD`` edge, so afterwards the caller wakes the pump if anyone waits.
* An ``observer`` (for pollers) is told whenever ``EVENTS`` may have changed:
  on a reading that differs from the last one it was told of, and on the
  first reading after a direct send or receive or after libzmq's ``ZMQ_FD``
  signalled. A poller that looks at libzmq itself (``zmq_poll``) may have
  seen a state the pump never read (the one a direct call left, or one that
  its own ``zmq_poll`` took from libzmq's commands first), so the pump's next
  reading can equal its last one and still be news to that poller: as with
  libzmq's own ``ZMQ_FD``, every signal the pump gets is passed on.
  ``on_finish`` is called once the pump has finished, however it ended.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
import zmq
from gevent.hub import Hub

from ._close import close_socket
from ._gate import RECV, SEND
from ._ops import DONE, PENDING, GreenletOp, Op
from ._pump import Pump
from ._wire import EVENTS, NOBLOCK, POLLOUT, get_option, recv, req_lost, write

__all__ = ["READ_NOW", "WRITE_NOW", "DirectPump"]

#: What ``wait_readable``'s op is finished with: the caller may read now.
READ_NOW = "read now"
#: What ``send_through``'s op is finished with: the caller may write now.
WRITE_NOW = "write now"

_UNSET: Any = object()


class DirectPump(Pump):
    """A pump whose greenlets use the socket themselves (see above).

    Public methods are for greenlets of the hub's thread.
    """

    def __init__(self, socket: zmq.Socket[Any], hub: Hub, tx_size: int) -> None:
        self._through = tx_size == 0
        self._reader_signalled = False
        self._stalled_peers: set[bytes] = set()
        self._close_linger: Any = _UNSET  # close_now()'s linger, for the socket
        #: Called whenever ``EVENTS`` may have changed (pollers; see above).
        self.observer: Callable[[], None] | None = None
        self._observed = -1  # the reading the observer was last told of
        # Since that reading: a direct send or receive, or a ZMQ_FD signal.
        self._unobserved = False
        #: Called once the pump has finished, however it ended.
        self.on_finish: Callable[[], None] | None = None
        super().__init__(socket, hub, tx_size, 0, False)

    # ------------------------------------------------------------ the callers

    def _check_open(self) -> None:
        if self.finished or self.closing:
            raise self.closed_error()

    def write_now(self, msg: list[Any]) -> bool:
        """Hand ``msg`` to the socket now if libzmq takes it whole; ``False``
        if not taken. Errors other than ``EAGAIN`` raise, as from pyzmq."""
        self._check_open()
        if self._tx or self._parked:
            return False  # a tx_size buffer keeps its order
        taken = self._write_direct(msg)
        self.after_direct()
        return taken

    def _write_direct(self, msg: list[Any]) -> bool:
        self._unobserved = True
        refused = self._wire.write(msg)
        if refused < 0:
            self.sent += 1
            self._backoff.reset()
            return True
        if refused > 0 and not self._wire.recover(msg, refused):
            raise req_lost()
        return False

    def send_through(self, msg: list[Any], timeout: float | None) -> None:
        """Wait (the calling greenlet) for the socket to take ``msg``: on its
        turn (``WRITE_NOW``) the caller writes for itself. So a sender that a
        timeout or ``kill()`` interrupts has sent nothing, as on pyzmq."""
        self._check_open()
        self._refuse_pump("send()")
        deadline = None if timeout is None else time.monotonic() + timeout
        front = False
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            op = GreenletOp(msg, self.hub)
            if front:  # it was its turn, and the socket refused: keep its place
                self._tx_wait.appendleft(op)
            else:
                self._tx_wait.append(op)
            self.wake()
            self._block(SEND, op, remaining)
            self._check_open()
            if self._write_direct(msg):
                self.after_direct()
                return
            if self._routes:
                self._stalled_peers.add(bytes(msg[0]))  # its peer refused: others go on
                self._backoff.arm()
            elif get_option(self._plain, EVENTS) & POLLOUT:
                self._stall()  # writable, yet refused twice (a pipe going away): back off
            # Else the write ate the edge that will announce POLLOUT; the pump,
            # woken below, reads EVENTS again and hears the next one.
            front = True

    def read_frame(self, signalled: bool = False) -> zmq.Frame | None:
        """The next frame, read by the caller now, or ``None`` if libzmq has
        none (``signalled``: the pump gave the caller its turn). ``POLLIN``
        always means a read would succeed."""
        self._check_open()
        if signalled:
            self._reader_signalled = False
        self._unobserved = True
        try:
            frame: zmq.Frame | None = recv(self._plain, NOBLOCK, False)
        except zmq.Again:
            frame = None
        else:
            if not frame.more:  # type: ignore[union-attr]
                self.received += 1
        self.after_direct()
        return frame

    def wait_readable(self, timeout: float | None, front: bool = False) -> None:
        """Wait (the calling greenlet) for its turn to read (``front``: it had
        the turn and found nothing, so it keeps its place)."""
        self._check_open()
        self._refuse_pump("recv()")
        op = GreenletOp(None, self.hub)
        if front:
            self._rx_wait.appendleft(op)
        else:
            self._rx_wait.append(op)
        self.wake()
        self._block(RECV, op, timeout)

    def events_now(self) -> int:
        """libzmq's ``EVENTS``, read now."""
        self._check_open()
        events = self._read_events()
        self.after_direct()
        return events

    def after_direct(self) -> None:
        """A direct call may have eaten a ``ZMQ_FD`` edge: whoever waits must
        not miss what it announced, so the pump looks again."""
        if self._rx_wait or self._tx_wait or self.observer is not None:
            self.wake()

    def abandon(self, kind: str, op: Op) -> None:
        """As :meth:`Pump.abandon`; a turn that was given and never taken
        passes to the next caller in line."""
        if (
            op.state == DONE
            and op.error is None
            and (op.result is READ_NOW or op.result is WRITE_NOW)
        ):
            if op.result is READ_NOW:
                self._reader_signalled = False
            self.wake()
        else:
            super().abandon(kind, op)

    def close_now(self, linger: int | None) -> list[list[Any]]:
        """Close at once, never waiting: what libzmq takes now goes out, the
        rest is returned; the socket is closed with ``linger`` (ms, ``None``:
        its own ``LINGER``), so libzmq's linger governs the rest."""
        if self.finished:
            unsent, self._unsent = self._unsent, []
            return unsent or []
        self.request_close(0)
        self._close_linger = linger
        try:
            if not self._forked and not self.broken and not self.socket.closed:
                while self._tx and write(self._plain, self._tx[0]) < 0:
                    self._tx.popleft()
                    self.sent += 1
        except zmq.ZMQError:
            pass  # the socket is going: what is left is returned
        finally:
            self._pump_finish()
            gevent.kill(self.greenlet)
        unsent, self._unsent = self._unsent, []
        return unsent or []

    # --------------------------------------------------------------- the pump

    def _on_fd(self) -> None:
        self._unobserved = True
        super()._on_fd()

    def _on_event(self) -> None:
        self._stalled_peers.clear()
        super()._on_event()

    def _nothing_pending(self) -> bool:
        return False  # pollers learn of every change: the round ends on a reading

    def _read_events(self) -> int:
        events = super()._read_events()
        if self.observer is not None and (events != self._observed or self._unobserved):
            self._observed = events
            self._unobserved = False
            self.observer()
        return events

    def _on_writable(self, budget: int) -> int:
        if not self._through:
            return super()._on_writable(budget)
        # Give waiting senders their turn: all of them, oldest first, but
        # those whose ROUTER peer refused lately.
        waiting = self._tx_wait
        stalled = self._stalled_peers
        keep: deque[Op] = deque()
        while waiting:
            op = waiting.popleft()
            if op.state != PENDING:
                continue
            if stalled and self._routes and bytes(op.payload[0]) in stalled:
                keep.append(op)
            else:
                op.finish(WRITE_NOW)
        waiting.extend(keep)
        return 0

    def _on_readable(self, budget: int) -> int:
        # Give the first waiting reader its turn to read (one at a time).
        if not self._reader_signalled:
            while self._rx_wait:
                if self._rx_wait.popleft().finish(READ_NOW):
                    self._reader_signalled = True
                    break
        return 0

    def _close_socket(self) -> None:
        if self._close_linger is not _UNSET and self.broken is None:
            close_socket(self.socket, self._close_linger)
        else:
            super()._close_socket()

    def _pump_finish(self) -> None:
        if self.finished:
            return
        try:
            super()._pump_finish()
        finally:
            if self.on_finish is not None:
                self.on_finish()
