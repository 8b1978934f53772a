"""The gate: how native OS threads hand work to a pump.

Theory of operation
===================

ZeroMQ sockets are not thread-safe and neither are gevent's queues, events or
``AsyncResult``\\ s, so a native thread touches none of them. It builds a
:class:`~._ops.ThreadOp` (its own real locks), appends it to the gate's inbox (a
``deque``) and wakes the pump through an inproc PAIR pipe that the pump's hub
watches like any socket. The pump admits the op with the very code that serves
greenlets: the op joins the same queues, so greenlets and threads are served
in one arrival order.

Wake-ups merge: a ``pending`` flag, read and set under the gate's lock, keeps
at most one wake message in the pipe. The pump first empties the pipe, then
clears ``pending``, then empties the inbox: an op appended after the flag was
cleared sends a new wake, so none is ever lost. Because at most one message
is ever in the pipe, its high-water marks are lifted (0): libzmq learns late
that the reader has read, and with a small HWM a writer could see ``EAGAIN``
after the pump already drained and went back to sleep.

The pipe's two sockets are made through the pair's context, so
``Context.destroy()`` and ``term()`` see them. Their class closes them under
the gate's lock: ``destroy()`` (in the hub's thread) can then never close a
socket while a thread is writing to it, and no thread writes to it afterwards.

The pipe's endpoint name is random (128 bits): other code in the process
cannot guess it to connect.
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

import zmq
from gevent.monkey import get_original

__all__ = ["ABANDON", "CALL", "RECV", "SEND", "ThreadGate"]

_allocate_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")

#: What a thread asks of the pump (the kinds name the queues too).
SEND = "send"
RECV = "recv"
CALL = "call"
ABANDON = "abandon"  # (kind, op): its thread stopped waiting; see Pump.abandon


class _PipeSocket(zmq.Socket):  # type: ignore[type-arg]
    """A plain socket of the wake pipe: however it is closed, it is closed
    through its gate, under the gate's lock."""

    _gate: ThreadGate | None = None

    def close(self, linger: int | None = None) -> None:
        gate = self._gate
        if gate is None:
            super().close(linger)
        else:
            gate.shut()


class ThreadGate:
    """The inbox and wake pipe through which native threads reach a pump.

    ``submit`` and ``notify`` may be called from any thread; everything else
    runs in the pump's hub thread.
    """

    def __init__(self, context: zmq.Context[Any], loop: Any, on_signal: Callable[[], None]) -> None:
        self.endpoint = endpoint = f"inproc://zmqchan-green-wake-{secrets.token_hex(16)}"
        self._lock = _allocate_lock()
        self._open = True
        self._pending = False
        self._inbox: deque[tuple[str, Any]] = deque()
        reader: _PipeSocket = context.socket(zmq.PAIR, socket_class=_PipeSocket)
        writer: _PipeSocket = context.socket(zmq.PAIR, socket_class=_PipeSocket)
        self._sockets = (reader, writer)
        for sock in self._sockets:
            sock.linger = 0
            sock.sndhwm = 0
            sock.rcvhwm = 0
            sock._gate = self
        reader.bind(endpoint)
        writer.connect(endpoint)
        self._reader = reader
        self._writer = writer
        # A duplicate descriptor, as for the pump's own socket: the pipe may be
        # closed under us, and libev aborts on a watcher of a closed descriptor.
        self._fd = os.dup(int(reader.get(zmq.FD)))
        self._io = loop.io(self._fd, 1)
        self._io.start(on_signal)

    def submit(self, kind: str, item: Any) -> bool:
        """Hand ``item`` to the pump; ``False`` if the gate is closed (the pump stopped)."""
        with self._lock:
            if not self._open:
                return False
            self._inbox.append((kind, item))
            self._wake_locked()
        return True

    @property
    def pending(self) -> bool:
        """Whether a wake-up is already on its way to the pump (a hint, read unlocked)."""
        return self._pending

    def notify(self) -> None:
        """Wake the pump to look at its state (a thread added to its buffer)."""
        with self._lock:
            if self._open:
                self._wake_locked()

    def _wake_locked(self) -> None:
        if not self._pending:
            self._pending = True
            try:
                self._writer.send(b"", zmq.NOBLOCK)
            except zmq.ZMQError:
                # The context is being torn down: the pump breaks on its own
                # socket and fails what is in the inbox; nothing waits on this.
                pass

    def drain(self) -> list[tuple[str, Any]]:
        """Everything submitted so far (pump only); re-arms the wake-up."""
        if not self._open:
            return []  # shut by Context.destroy(): the pump breaks on its own socket
        while True:
            try:
                self._reader.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        with self._lock:
            self._pending = False
        items = []
        inbox = self._inbox
        while inbox:
            items.append(inbox.popleft())
        return items

    def shut(self) -> None:
        """Refuse further submissions and close the pipe (idempotent)."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            self._io.close()
            os.close(self._fd)
            for sock in self._sockets:
                zmq.Socket.close(sock, 0)

    def close(self) -> list[tuple[str, Any]]:
        """:meth:`shut`, and return what was submitted but never drained."""
        self.shut()
        items = list(self._inbox)
        self._inbox.clear()
        return items

    def inherited(self) -> None:
        """In a child process after a fork: stop watching without touching libzmq.

        The lock is replaced: a thread of the parent may have held it at the
        fork, and no thread of the parent runs here to release it.
        """
        self._lock = _allocate_lock()
        if self._open:
            self._open = False
            self._io.close()
            os.close(self._fd)
        self._inbox.clear()
