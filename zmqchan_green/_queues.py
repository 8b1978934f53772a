"""A pair's queues, and the callers' side of them.

Theory of operation
===================

State. Everything below lives in the hub's thread and is changed by its
greenlets (the pump among them); the one exception is ``_tx``, which native
threads append to as well, so appends that depend on its room happen under
``_lock``.

* ``_tx``: accepted messages not yet handed to the socket, oldest first. Its
  room is ``tx_size``; a rendezvous pair (``tx_size == 0``) has room for one
  message, the pump's hand, and only while the socket was writable when the
  pump last looked. The pump sends the message at the head and removes it
  only once libzmq took it whole, so the head is "in hand" while it is being
  sent and nobody can slip a second message into a rendezvous.
* ``_tx_wait``: senders blocked for room (:class:`~._ops.Op`, FIFO).
* ``_parked`` (``ROUTER`` only): accepted messages for peers that answered
  ``EAGAIN`` (``ROUTER_MANDATORY`` and the peer at its high-water mark), per
  peer, in order. They count against ``tx_size`` like ``_tx``, so senders
  wait once the buffer is full of them; besides, the pump's hand takes one
  message at a time for a peer that is not stalled, which parks if that peer
  refuses it too. So at most ``tx_size`` plus one per stalled peer are held.
* ``_rx`` / ``_rx_wait``: received messages not yet delivered, and receivers
  blocked for one. The pump gives a message to the first waiting receiver, or
  buffers it; it reads the socket only while there is a waiting receiver or
  room in ``_rx`` (``max(rx_size, 1)``), so ZeroMQ's high-water mark pushes
  back on the peer instead of memory growing here.
* ``_calls``: ``call()`` requests, run between messages.
* ``_gate``: created on first use of ``for_threads()``; native threads queue
  their ops there and the pump admits them into the queues above with the
  same code that serves greenlets (see ``_gate``).

Fast paths. A sender with room and nobody queued ahead appends to ``_tx``
itself; a receiver takes from ``_rx`` itself. Neither switches greenlets. Only
when it must wait does a caller queue an op and sleep on it.

Waiting. A caller that must wait queues an :class:`~._ops.Op` and sleeps on
it; the pump finishes it (a result or an error), or the caller gives up
(timeout, kill) and :meth:`Queues.abandon` tidies up, so a message handed to
a receiver that died is put back at the head of the stream.

Closing. :meth:`Queues.request_close` refuses new sends and fails every
waiting caller with ``ChannelClosed``; the pump (:class:`~._pump.Pump`)
does the rest and sets ``_done``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import gevent
import zmq
from gevent.event import Event
from gevent.hub import Hub
from gevent.monkey import get_original

from ._errors import ChannelBroken, ChannelClosed, PairTimeout, WouldBlock
from ._gate import CALL, RECV, SEND
from ._ops import CANCELLED, DONE, GreenletOp, Op

if TYPE_CHECKING:
    from greenlet import greenlet

    from ._parking import Parking

__all__ = ["Queues", "discard"]

T = TypeVar("T")

_allocate_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")


class Queues:
    """The buffers and waiting callers of one pair (see above).

    Public methods are for greenlets of the hub's thread (``accept`` and
    ``closed_error`` for any thread). :class:`~._pump.Pump` sets the
    attributes declared here without a value, and provides :meth:`wake`.
    """

    socket: zmq.Socket[Any]
    greenlet: greenlet
    _parking: Parking
    _parked: dict[bytes, Any]
    _writable: bool

    def __init__(self, hub: Hub, tx_size: int, rx_size: int) -> None:
        self.hub = hub
        self.tx_size = tx_size
        self.rx_size = rx_size
        self._rx_limit = max(rx_size, 1)
        self._tx: deque[list[Any]] = deque()
        # Guards appends to _tx that depend on its room: threads append too.
        self._lock = _allocate_lock()
        self._tx_wait: deque[Op] = deque()
        self._rx: deque[list[Any]] = deque()
        self._rx_wait: deque[Op] = deque()
        self._calls: deque[Op] = deque()
        self._queues = {SEND: self._tx_wait, RECV: self._rx_wait, CALL: self._calls}
        self._send_stalled = False
        self._rx_starved = False
        self.closing = False
        self.finished = False
        self.broken: BaseException | None = None
        self._deadline: float | None = None
        self._unsent: list[list[Any]] | None = None
        self._done = Event()

    def wake(self) -> None:
        """Make the pump look at the state again."""
        raise NotImplementedError

    def closed_error(self) -> ChannelClosed:
        """The exception for a caller that finds the pair closed or broken."""
        if self.broken is not None:
            err: ChannelClosed = ChannelBroken(f"the pair's pump stopped: {self.broken!r}")
            err.__cause__ = self.broken
            return err
        return ChannelClosed("the pair is closed")

    def _tx_has_room(self, frames: list[Any] | None = None) -> bool:
        """Whether a message (``frames``, if known) can be accepted now."""
        if self.tx_size:
            return len(self._tx) + self._parking.count < self.tx_size
        if self._tx or not self._writable or self._send_stalled:
            return False
        # A rendezvous with parked messages takes a message into the pump's hand
        # only if its peer is not one of the stalled ones (see "Slow peers").
        if not self._parked:
            return True
        return frames is not None and bytes(frames[0]) not in self._parked

    def accept(self, frames: list[Any], op: Op | None = None) -> bool:
        """Take ``frames`` into ``_tx`` if there is room and nobody waits ahead.

        Safe from any thread: the lock makes the room check and the append one
        step, for greenlets and threads alike. Without ``op``, returns whether
        the message was taken. With ``op`` (pump only), the op is finished as
        its message is taken, or queued to wait. ``ChannelClosed`` once closing.
        """
        with self._lock:
            if self.closing:
                raise self.closed_error()
            if self._tx_wait or not self._tx_has_room(frames):
                if op is None:
                    return False
                self._tx_wait.append(op)
            elif op is None or op.finish():
                self._tx.append(frames)
            return True

    def take_buffered(self) -> list[Any] | None:
        """The oldest buffered message, ``None`` if none (``ChannelClosed`` once closing)."""
        if self._rx:
            msg = self._rx.popleft()
            if self._rx_starved:
                self._rx_starved = False
                self.wake()
            return msg
        if self.closing:
            raise self.closed_error()
        return None

    def _refuse_pump(self, what: str) -> None:
        if gevent.getcurrent() is self.greenlet:
            raise RuntimeError(
                f"{what} would block the pump itself: inside call(), use the socket directly"
            )

    def send(self, frames: list[Any], timeout: float | None, block: bool) -> None:
        """Accept ``frames`` (already checked) or raise; see ``ChannelPair.send``."""
        if self.accept(frames):
            self.wake()
            return
        if not block:
            raise WouldBlock("no room to accept the message now")
        self._refuse_pump("send()")
        op = GreenletOp(frames, self.hub)
        self._tx_wait.append(op)
        self.wake()
        self._block(SEND, op, timeout)

    def recv(self, timeout: float | None, block: bool) -> list[Any]:
        """The next received message, or raise; see ``ChannelPair.recv``."""
        msg = self.take_buffered()
        if msg is not None:
            return msg
        if not block:
            raise WouldBlock("no message to receive now")
        self._refuse_pump("recv()")
        op = GreenletOp(None, self.hub)
        self._rx_wait.append(op)
        self.wake()
        result: list[Any] = self._block(RECV, op, timeout)
        return result

    def add_receiver(self, op: Op) -> None:
        """Queue a waiting receiver (for ``recv_any``)."""
        self._rx_wait.append(op)
        self.wake()

    def remove_receiver(self, op: Op) -> None:
        """Drop a receiver that stopped waiting."""
        discard(self._rx_wait, op)

    def call(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        """Run ``fn(socket, *args, **kwargs)`` in the pump; see ``ChannelPair.call``."""
        if gevent.getcurrent() is self.greenlet:
            return fn(self.socket, *args, **kwargs)
        if self.closing:
            raise self.closed_error()
        op = GreenletOp((fn, args, kwargs), self.hub)
        self._calls.append(op)
        self.wake()
        result: T = self._block(CALL, op, None)
        return result

    def _block(self, kind: str, op: GreenletOp, timeout: float | None) -> Any:
        try:
            done = op.wait(timeout)
        except BaseException:
            self.abandon(kind, op)
            raise
        if not done:
            self.abandon(kind, op)
            raise PairTimeout(f"{kind} timed out after {timeout} s")
        if op.error is not None:
            raise op.error
        return op.result

    def abandon(self, kind: str, op: Op) -> None:
        """Tidy up after a caller that stopped waiting (timeout, kill, interrupt).

        A cancelled op leaves its queue. A receive op that was already given a
        message it never returned gives it back to the head of the stream: no
        message is lost to a receiver that died. Greenlets call this directly;
        threads have the pump call it for them.
        """
        if op.state == CANCELLED:
            discard(self._queues[kind], op)
        elif kind == RECV and op.state == DONE and op.error is None:
            self.deliver(op.result, front=True)

    def _admit(self, kind: str, op: Op) -> None:
        """Serve or queue an op that a native thread submitted (pump only)."""
        try:
            if kind == SEND:
                self.accept(op.payload, op)
            elif kind == RECV:
                msg = self.take_buffered()
                if msg is None:
                    self._rx_wait.append(op)
                elif not op.finish(msg):
                    self.deliver(msg, front=True)
            elif kind == CALL:
                if self.closing:
                    raise self.closed_error()
                self._calls.append(op)
        except ChannelClosed as exc:
            op.finish(error=exc)

    def after_finish(self) -> list[Any]:
        """A buffered message for a thread once the pump has stopped (any thread),
        else the closed error: ``deque.popleft`` is atomic, so no pump is needed.
        (In a child after a fork the buffer was emptied: it is the parent's.)"""
        try:
            return self._rx.popleft()
        except IndexError:
            pass
        raise self.closed_error()  # outside the handler: keep its __cause__

    def deliver(self, msg: list[Any], front: bool = False) -> None:
        """Give ``msg`` to the first waiting receiver, else buffer it.

        ``front`` puts it back at the head of the stream: for a message that was
        assigned to a receiver which died before returning it.
        """
        while self._rx_wait:
            if self._rx_wait.popleft().finish(msg):
                return
        if front:
            self._rx.appendleft(msg)
        else:
            self._rx.append(msg)

    def close(self, linger: float | None) -> list[list[Any]]:
        """Start (or join) the close and wait for it; see ``ChannelPair.close``."""
        if gevent.getcurrent() is self.greenlet:
            raise RuntimeError("close() cannot be called from inside call()")
        self.request_close(linger)
        self._done.wait()
        unsent, self._unsent = self._unsent, []
        return unsent or []

    def request_close(self, linger: float | None) -> None:
        """Begin closing without waiting; a ``linger`` can only shorten the deadline."""
        if linger is not None:
            deadline = time.monotonic() + linger if linger >= 0 else float("inf")
            if self._deadline is None or deadline < self._deadline:
                self._deadline = deadline
        if self.closing:
            self.wake()
            return
        with self._lock:
            self.closing = True
        self._fail_all(self._tx_wait)
        self._fail_all(self._calls)
        self._fail_all(self._rx_wait)
        self.wake()

    def _fail_all(self, queue: deque[Op]) -> None:
        while queue:
            queue.popleft().finish(error=self.closed_error())


def discard(queue: deque[Op], op: Op) -> None:
    """Remove ``op`` from ``queue`` if it is there."""
    try:
        queue.remove(op)
    except ValueError:
        pass
