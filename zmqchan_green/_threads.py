"""Native OS threads: :class:`ThreadPort`, and the gate it enters the pump by.

Theory of operation
===================

ZeroMQ sockets are not thread-safe and neither are gevent's queues, events or
``AsyncResult``\\ s, so a native thread touches none of them. It builds a
:class:`ThreadOp` (its own real locks, from ``gevent.monkey.get_original``, so
the thread blocks for real whether or not the program is monkey-patched),
appends it to the gate's inbox (a ``deque``) and wakes the pump through an
inproc PAIR pipe that the pump's hub watches like any socket. The pump admits
the op with the very code that serves greenlets: the op joins the same
queues, so greenlets and threads are served in one arrival order.

Wake-ups merge: a ``pending`` flag, read and set under the gate's lock, keeps
at most one wake message in the pipe. The pump first empties the pipe, then
clears ``pending``, then empties the inbox: an op appended after the flag was
cleared sends a new wake, so none is ever lost. Because at most one message
is ever in the pipe, its high-water marks are lifted (0): libzmq learns late
that the reader has read, and with a small HWM a writer could see ``EAGAIN``
after the pump already drained and went back to sleep.

A thread's timeout cancels its op (under the op's lock, so the pump's
``finish`` and the cancel cannot both win) and has the pump tidy up after it
with the same ``Pump.abandon`` a greenlet uses.
The pipe's endpoint name is random (128 bits): other code in the process
cannot guess it to connect.
"""

from __future__ import annotations

import os
import secrets
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import zmq
from gevent.monkey import get_original

from ._checks import Message, as_message, check_direction, check_timeout
from ._ops import CANCELLED, DONE, PENDING, Op

if TYPE_CHECKING:
    from ._pair import ChannelPair

__all__ = ["ABANDON", "CALL", "RECV", "SEND", "ThreadGate", "ThreadOp", "ThreadPort"]

T = TypeVar("T")

_allocate_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")
_get_ident: Callable[[], int] = get_original("_thread", "get_ident")

#: What a thread asks of the pump (the kinds name the queues too).
SEND = "send"
RECV = "recv"
CALL = "call"
ABANDON = "abandon"  # (kind, op): its thread stopped waiting; see Pump.abandon


class ThreadOp(Op):
    """An op whose caller is a native thread, blocked on a real lock."""

    __slots__ = ("_done", "_mutex")

    def __init__(self, payload: Any) -> None:
        super().__init__(payload)
        self._mutex = _allocate_lock()
        self._done = _allocate_lock()
        self._done.acquire()

    def finish(self, result: Any = None, error: BaseException | None = None) -> bool:
        with self._mutex:  # against a cancel from the waiting thread
            return super().finish(result, error)

    def _notify(self) -> None:
        self._done.release()

    def wait(self, timeout: float | None) -> bool:
        """Block this thread until finished (``True``) or ``timeout`` passes (``False``).

        If the wait ends by timeout or by an exception (e.g.
        ``KeyboardInterrupt``), a still-pending op is cancelled.
        """
        try:
            if self._done.acquire(True, -1 if timeout is None else timeout):
                return True
        finally:
            with self._mutex:
                if self.state == PENDING:
                    self.state = CANCELLED
        return self.state == DONE


class ThreadGate:
    """The inbox and wake pipe through which native threads reach a pump.

    ``submit`` may be called from any thread; everything else runs in the
    pump's hub thread.
    """

    def __init__(self, context: zmq.Context[Any], loop: Any, on_signal: Callable[[], None]) -> None:
        self.endpoint = endpoint = f"inproc://zmqchan-green-wake-{secrets.token_hex(16)}"
        # Made through the context, so Context.destroy() and term() see them;
        # used only through plain (not green) views.
        self._sockets = [context.socket(zmq.PAIR), context.socket(zmq.PAIR)]
        for sock in self._sockets:
            sock.linger = 0
            sock.sndhwm = 0
            sock.rcvhwm = 0
            green_watcher = getattr(sock, "_state_event", None)
            if green_watcher is not None:
                green_watcher.stop()
        self._sockets[0].bind(endpoint)
        self._sockets[1].connect(endpoint)
        self._reader: zmq.Socket[Any] = zmq.Socket.shadow(self._sockets[0].underlying)
        self._writer: zmq.Socket[Any] = zmq.Socket.shadow(self._sockets[1].underlying)
        self._inbox: deque[tuple[str, Any]] = deque()
        self._lock = _allocate_lock()
        self._pending = False
        self._open = True
        # A duplicate descriptor, as for the pump's own socket: Context.destroy()
        # may close the pipe under us, and libev aborts on a closed descriptor.
        self._fd = os.dup(int(self._reader.getsockopt(zmq.FD)))
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
        """Wake the pump to look at its state (a thread added to ``_tx``)."""
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

    def close(self) -> list[tuple[str, Any]]:
        """Refuse further submissions, close the pipe, and return what is left."""
        with self._lock:
            self._open = False
            self._io.close()
            os.close(self._fd)
            for sock in self._sockets:
                sock.close(linger=0)
        return list(self._inbox)


class ThreadPort:
    """A pair's door for native OS threads.

    ``gevent.threadpool`` workers, threads from
    ``gevent.monkey.get_original("threading", "Thread")``, threads started by
    C code, or plain threads of a program that is not monkey-patched may call
    its methods; each blocks only the calling thread while the hub keeps
    running its greenlets. Calling them from the pair's own hub thread raises
    ``RuntimeError`` (it would block the hub): greenlets use the pair itself.

    The promises are those of :class:`ChannelPair`: a ``send`` that returned
    was accepted (sent, or returned by ``close()``), one that raised
    ``TimeoutError``/``ChannelClosed`` was not; greenlets and threads draw
    received messages from one stream, each message to exactly one receiver.
    """

    def __init__(self, pair: ChannelPair) -> None:
        self._pair = pair  # keeps the pair (and its pump) alive while the port is
        self._pump = pair._pump
        self._gate = self._pump.thread_gate()

    def _check_thread(self) -> None:
        if _get_ident() == self._pump.thread_ident:
            raise RuntimeError(
                "ThreadPort methods block the calling thread; in the pair's own "
                "hub thread use the ChannelPair's methods instead"
            )

    def send(self, msg: Message, timeout: float | None = None) -> None:
        """As :meth:`ChannelPair.send`, blocking only the calling OS thread."""
        self._check_thread()
        frames = as_message(msg)
        check_direction(self._pump.socket_type, sending=True)
        timeout = check_timeout(timeout)
        gate = self._gate
        if gate is not None and self._pump.accept(frames):
            # Taken at once, as a greenlet's would be: no round trip. A wake
            # already pending will do: the pump clears the flag before it
            # looks at _tx, and we appended before reading it.
            if not gate.pending:
                gate.notify()
            return
        self._run(SEND, ThreadOp(frames), timeout)

    def recv(self, timeout: float | None = None) -> list[Any]:
        """As :meth:`ChannelPair.recv`, blocking only the calling OS thread."""
        self._check_thread()
        check_direction(self._pump.socket_type, sending=False)
        result: list[Any] = self._run(RECV, ThreadOp(None), check_timeout(timeout))
        return result

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """As :meth:`ChannelPair.call`: run ``fn(socket, ...)`` inside the pump."""
        self._check_thread()
        result: T = self._run(CALL, ThreadOp((fn, args, kwargs)), None)
        return result

    @property
    def closed(self) -> bool:
        """``True`` once the pair was closed or its pump stopped."""
        return self._pump.closing

    def _run(self, kind: str, op: ThreadOp, timeout: float | None) -> Any:
        gate = self._gate
        if gate is None or not gate.submit(kind, op):
            if kind == RECV:
                return self._pump.after_finish()
            raise self._pump.closed_error()
        try:
            done = op.wait(timeout)
        except BaseException:
            self._abandon(gate, kind, op)
            raise
        if not done:
            self._abandon(gate, kind, op)
            raise TimeoutError(f"{kind} timed out after {timeout} s")
        if op.error is not None:
            raise op.error
        return op.result

    def _abandon(self, gate: ThreadGate, kind: str, op: ThreadOp) -> None:
        if not gate.submit(ABANDON, (kind, op)):
            # The pump has stopped and emptied its queues: what is left to do
            # (giving a message back to the buffer) is safe from here.
            self._pump.abandon(kind, op)
