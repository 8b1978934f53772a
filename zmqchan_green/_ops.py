"""Blocked calls: what a caller leaves with the pump while it waits.

An :class:`Op` is one waiting ``send`` (its payload is the message), ``recv``
(its result will be one) or ``call`` (its payload is the function). The pump
*finishes* an op exactly once, with a result or an error; the caller may
*cancel* it instead (timeout, kill). Whichever happens first wins, and the
loser sees it: a timed-out ``send`` whose op the pump finished in the same
instant reports success, because its message was accepted.

Ops of greenlets and ops of native threads sit in the same queues, so both are
served in one arrival order; they differ only in how they sleep and wake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from gevent.hub import Hub, Waiter
from gevent.monkey import get_original

__all__ = ["CANCELLED", "DONE", "PENDING", "GreenletOp", "Op", "ThreadOp"]

_allocate_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")

PENDING = 0
DONE = 1
CANCELLED = 2


class Op:
    """A call waiting for the pump. Its state is only changed in the hub's thread
    (subclasses that wait in other threads guard it with a lock)."""

    __slots__ = ("error", "payload", "result", "state")

    #: Whether the caller waits in the hub's thread (``False``: a native thread).
    in_hub_thread: ClassVar[bool] = True

    def __init__(self, payload: Any) -> None:
        self.payload = payload
        self.result: Any = None
        self.error: BaseException | None = None
        self.state = PENDING

    def finish(self, result: Any = None, error: BaseException | None = None) -> bool:
        """Complete the op and wake its caller; ``False`` if it was already
        finished or cancelled."""
        if self.state != PENDING:
            return False
        self.result = result
        self.error = error
        self.state = DONE
        self._notify()
        return True

    def _notify(self) -> None:
        raise NotImplementedError


class GreenletOp(Op):
    """An op whose caller is a greenlet of the pump's hub."""

    __slots__ = ("_hub", "_waiter")

    def __init__(self, payload: Any, hub: Hub) -> None:
        super().__init__(payload)
        self._hub = hub
        self._waiter: Waiter[None] = Waiter(hub)

    def _notify(self) -> None:
        # The pump is a greenlet, and Waiter.switch is for the hub only.
        self._hub.loop.run_callback(self._waiter.switch, None)

    def wait(self, timeout: float | None) -> bool:
        """Sleep until finished (``True``) or ``timeout`` passes (``False``).

        On timeout, and when the greenlet is killed while waiting, an op that is
        still pending becomes cancelled: the pump will skip it.
        """
        timer = None
        if timeout is not None:
            timer = self._hub.loop.timer(timeout)
            timer.start(self._waiter.switch, None)
        try:
            self._waiter.get()
        finally:
            if timer is not None:
                timer.close()
            if self.state == PENDING:
                self.state = CANCELLED
        return self.state == DONE


class ThreadOp(Op):
    """An op whose caller is a native thread, blocked on a real lock."""

    __slots__ = ("_done", "_mutex")

    in_hub_thread = False

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

        ``timeout`` must be ``None`` or at most ``threading.TIMEOUT_MAX`` (the
        callers' checks make it so). If the wait ends by timeout or by an
        exception (e.g. ``KeyboardInterrupt``), a still-pending op is cancelled.
        """
        try:
            if self._done.acquire(True, -1 if timeout is None else timeout):
                return True
        finally:
            with self._mutex:
                if self.state == PENDING:
                    self.state = CANCELLED
        return self.state == DONE
