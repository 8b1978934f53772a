"""Native OS threads: :class:`ThreadPort`.

A thread's call becomes a :class:`~._ops.ThreadOp` that enters the pump through
its :class:`~._gate.ThreadGate` and joins the queues greenlets wait in, so both
are served in one arrival order (see ``_gate`` for how the wake-up works). A
sender with room and nobody queued ahead takes the greenlets' fast path: the
message is accepted at once, under the pump's lock, without a round trip.

A thread's timeout cancels its op (under the op's lock, so the pump's
``finish`` and the cancel cannot both win) and has the pump tidy up after it
with the same ``Pump.abandon`` a greenlet uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from gevent.monkey import get_original

from ._checks import Message, as_message, check_direction, check_timeout
from ._gate import ABANDON, CALL, RECV, SEND, ThreadGate
from ._ops import ThreadOp
from ._pump import Pump

__all__ = ["ThreadPort"]

T = TypeVar("T")

_get_ident: Callable[[], int] = get_original("_thread", "get_ident")


class ThreadPort:
    """A pair's door for native OS threads.

    ``gevent.threadpool`` workers (see :meth:`ChannelPair.spawn_thread`),
    threads started with ``gevent.monkey.get_original("_thread",
    "start_new_thread")``, threads started by C code, or plain threads of a
    program that is not monkey-patched may call its methods (under
    ``monkey.patch_all()``, ``threading.Thread``, even the original class
    from ``get_original``, starts greenlets, not threads); each blocks only
    the calling thread while the hub keeps running its greenlets. Calling
    them from the pair's own hub thread raises ``RuntimeError`` (it would
    block the hub): greenlets use the pair itself.

    The promises are those of :class:`ChannelPair`: a ``send`` that returned
    was accepted (sent, or returned by ``close()``), one that raised
    ``TimeoutError``/``ChannelClosed`` was not; greenlets and threads draw
    received messages from one stream, each message to exactly one receiver.
    """

    def __init__(self, pump: Pump, owner: object) -> None:
        self._owner = owner  # keeps the pair alive (unclosed) while the port is
        self._pump = pump
        self._gate = pump.thread_gate()

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
