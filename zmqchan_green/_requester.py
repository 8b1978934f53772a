"""``Requester``: many callers, one DEALER socket, each reply to its own request.

Theory of operation: every request goes out as ``[request_id, b"", *frames]``.
To a ``REP`` socket, a ``ROUTER`` that echoes the envelope, or a
ROUTER/DEALER proxy in between, ``request_id`` is just one more address frame
of the REQ/REP envelope, so it comes back at the head of the reply. One reader
greenlet receives every reply and hands it to the op registered under that id;
a reply whose caller already gave up (or that nobody asked for) is counted and
dropped. Greenlets and native threads register the same kind of op and wait
on it their own way, so both share one path.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import gevent
import zmq

from ._checks import Message, as_message, check_linger, check_timeout
from ._errors import ChannelBroken, ChannelClosed
from ._ops import GreenletOp, Op, ThreadOp
from ._pair import ChannelPair
from ._pump import Pump

__all__ = ["Requester", "ThreadRequester"]


class _Replies:
    """What the reader greenlet shares with the callers: outstanding ops and counts.

    Kept apart from :class:`Requester` so the reader does not keep the
    requester (and its pair) alive: an abandoned one is still collected.
    """

    def __init__(self) -> None:
        self.pending: dict[bytes, Op] = {}
        self.late = 0
        self.closed_error: ChannelClosed | None = None

    def read(self, pump: Pump) -> None:
        """Dispatch replies until the pair closes (runs in its own greenlet).

        However it ends, every outstanding request is failed: none waits for
        a reader that is gone.
        """
        try:
            while True:
                msg = pump.recv(None, True)
                # bytes(): frames are zmq.Frame objects on a copy=False pair.
                op = None
                if len(msg) >= 2 and not len(msg[1]):
                    op = self.pending.pop(bytes(msg[0]), None)
                if op is None or not op.finish(msg[2:]):
                    self.late += 1
        except ChannelClosed as exc:
            self.fail_all(exc)
        except BaseException as exc:
            broken = ChannelBroken(f"the requester's reader stopped: {exc!r}")
            broken.__cause__ = exc
            self.fail_all(broken)
            raise

    def fail_all(self, error: ChannelClosed) -> None:
        if self.closed_error is None:
            self.closed_error = error
        while self.pending:
            _, op = self.pending.popitem()
            op.finish(error=_fresh(error))


def _fresh(error: ChannelClosed) -> ChannelClosed:
    """A new exception like ``error`` (one instance must not be raised in many callers)."""
    copy = type(error)(*error.args)
    copy.__cause__ = error.__cause__
    return copy


class Requester:
    """Request/reply for any number of greenlets (and threads) over one DEALER.

    ``pair`` must wrap a ``DEALER`` socket; the requester becomes its only
    receiver. Each :meth:`request` returns the reply to *that* request, however
    many callers are in flight; it works against an unmodified ``REP`` server,
    through a ROUTER/DEALER proxy, and against a ROUTER that echoes the
    envelope.
    """

    def __init__(self, pair: ChannelPair) -> None:
        if not isinstance(pair, ChannelPair):
            raise TypeError(f"Requester needs a ChannelPair, not {type(pair).__name__}")
        pump = pair._check_thread()
        if pump.socket_type != zmq.DEALER:
            kind = zmq.SocketType(pump.socket_type).name
            raise ValueError(f"Requester needs a pair wrapping a DEALER socket, not {kind}")
        if pair.closed:
            raise ValueError("the pair is closed")
        self._pair = pair
        self._replies = _Replies()
        # A random prefix keeps ids apart where several requesters reach one
        # server under the same identity (e.g. DEALERs given one IDENTITY).
        self._prefix = secrets.token_bytes(4)
        self._ids = itertools.count()
        self._reader = gevent.spawn(self._replies.read, pump)
        self._threads: ThreadRequester | None = None

    def _request(
        self,
        frames: Message,
        timeout: float | None,
        op: GreenletOp | ThreadOp,
        send: Callable[[list[Any], float | None], None],
    ) -> list[Any]:
        msg = as_message(frames)
        timeout = check_timeout(timeout)
        if self._replies.closed_error is not None:
            raise _fresh(self._replies.closed_error)
        deadline = None if timeout is None else time.monotonic() + timeout
        request_id = self._prefix + next(self._ids).to_bytes(8, "big")
        self._replies.pending[request_id] = op
        try:
            send([request_id, b"", *msg], timeout)
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not op.wait(remaining):
                raise TimeoutError(f"no reply within {timeout} s")
        finally:
            self._replies.pending.pop(request_id, None)
        if op.error is not None:
            raise op.error
        result: list[Any] = op.result
        return result

    def request(self, frames: Message, timeout: float | None = None) -> list[Any]:
        """Send ``frames`` as one request and return the reply's frames.

        ``TimeoutError`` after ``timeout`` seconds in all (sending and
        waiting); a reply that comes later is dropped and counted in
        ``stats()["late_replies"]``. :class:`ChannelClosed` once closed.
        """
        pump = self._pair._check_thread()
        return self._request(frames, timeout, GreenletOp(None, pump.hub), self._pair.send)

    def for_threads(self) -> ThreadRequester:
        """An object whose :meth:`~ThreadRequester.request` native threads may call."""
        if self._threads is None:
            self._threads = ThreadRequester(self)
        return self._threads

    def stats(self) -> dict[str, int]:
        """The pair's counters plus ``late_replies`` and ``outstanding`` requests."""
        stats = self._pair.stats()
        stats["late_replies"] = self._replies.late
        stats["outstanding"] = len(self._replies.pending)
        return stats

    @property
    def closed(self) -> bool:
        """``True`` once closed or the pair stopped."""
        return self._pair.closed

    def close(self, linger: float | None = None) -> None:
        """Fail outstanding requests with :class:`ChannelClosed`, then close the pair."""
        self._pair._check_thread()
        linger = check_linger(linger)  # refused before anything is failed
        self._replies.fail_all(ChannelClosed("the requester is closed"))
        self._pair.close(linger)
        self._reader.join()

    def __enter__(self) -> Requester:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class ThreadRequester:
    """:meth:`Requester.request` for native OS threads (from ``Requester.for_threads()``)."""

    def __init__(self, requester: Requester) -> None:
        self._requester = requester
        self._port = requester._pair.for_threads()

    def request(self, frames: Message, timeout: float | None = None) -> list[Any]:
        """As :meth:`Requester.request`, blocking only the calling thread."""
        self._port._check_thread()
        return self._requester._request(frames, timeout, ThreadOp(None), self._port.send)
