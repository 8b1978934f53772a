"""Handing whole messages to libzmq without blocking, and what a refusal means.

Theory of operation
===================

Compiled calls. The pump calls pyzmq's compiled ``send``/``recv``/``get``
directly: pyzmq's Python layer above them only adds argument handling the
pump does not need, and costs more than the send itself. Flags are plain
ints: the ``IntFlag`` operators cost about a microsecond a call.

Refusal at the first frame. ``EAGAIN`` on frame 0 means libzmq took nothing.
A send processes libzmq's pending commands (such as "this peer's pipe has
room again") only now and then, while reading ``EVENTS`` always does; so a
message refused at once while ``EVENTS`` then says ``POLLOUT`` is tried once
more. On a ``ROUTER``, whose ``EVENTS`` always says ``POLLOUT``, that is the
only way to hear of a peer that has room again.

Rollback. ``EAGAIN`` on a frame after the first means libzmq tore down the
pipe it was writing to and dropped the frames it already took; its load
balancer (``PUSH``, ``DEALER``, ``REQ``) then also drops the frames that
follow, up to the end of the message, if the refused frame had ``SNDMORE``.
Nobody may resume at the refused frame (that would send a fragment):
:meth:`Wire.recover` ends libzmq's dropping with an empty last frame, which
libzmq swallows, and the message can be sent again whole. On ``REQ`` the
envelope state is lost with the pipe: the request is ended with an empty
last frame (at once, or as soon as a pipe takes it) and cannot be sent again.

Back-off. A send refused while nothing changed is not retried in a loop: a
:class:`Backoff` timer (1 ms, doubling up to 100 ms, back to 1 ms after a
send goes through) wakes the pump to try again, unless an ``FD`` event does
first. Many refusals never postpone a retry already due sooner.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

import zmq
import zmq.backend

__all__ = ["FATAL", "Backoff", "Wire", "req_lost", "write"]

#: Errors after which the socket cannot be used any more.
FATAL = frozenset({zmq.ETERM, zmq.ENOTSOCK, errno.EBADF, errno.EFAULT, errno.EINVAL})
#: Socket types whose sends go through libzmq's load balancer, which drops the
#: rest of a message after a rollback (see "Rollback").
_LOAD_BALANCED = frozenset({zmq.PUSH, zmq.DEALER, zmq.REQ})

send = zmq.backend.Socket.send
recv = zmq.backend.Socket.recv
get_option: Callable[[zmq.Socket[Any], int], int] = zmq.backend.Socket.get  # type: ignore[assignment]
POLLIN = int(zmq.POLLIN)
POLLOUT = int(zmq.POLLOUT)
NOBLOCK = int(zmq.NOBLOCK)
_NOBLOCK_MORE = int(zmq.NOBLOCK | zmq.SNDMORE)
EVENTS = int(zmq.EVENTS)

#: Back-off bounds for retrying a send that stalled (seconds).
STALL_MIN = 0.001
STALL_MAX = 0.1


def write(sock: zmq.Socket[Any], msg: list[Any]) -> int:
    """Hand ``msg`` to ``sock`` without blocking: ``-1`` if libzmq took it whole,
    else the index of the frame it refused with ``EAGAIN``. Other errors raise."""
    last = len(msg) - 1
    i = 0
    try:
        while i < last:
            send(sock, msg[i], _NOBLOCK_MORE)
            i += 1
        send(sock, msg[last], NOBLOCK)
    except zmq.Again:
        return i
    return -1


def req_lost() -> zmq.ZMQError:
    """The error for a ``REQ`` request that a rollback lost."""
    return zmq.ZMQError(zmq.EAGAIN, "REQ peer went away mid-request")


class Wire:
    """Whole-message writes to one plain (not green) socket, with the rollback
    rules above. Used by one thread (the hub's) only."""

    def __init__(self, plain: zmq.Socket[Any], socket_type: int) -> None:
        self.plain = plain
        self.socket_type = socket_type
        self._load_balanced = socket_type in _LOAD_BALANCED
        #: Messages libzmq dropped part of when a pipe went away mid-message.
        self.rollbacks = 0
        #: ``REQ``: a rolled-back request still to be ended.
        self.req_open = False

    def write(self, msg: list[Any]) -> int:
        """:func:`write`, and once more if refused at once while ``EVENTS``
        says the socket may take it (see "Refusal at the first frame")."""
        plain = self.plain
        refused = write(plain, msg)
        if refused == 0 and (get_option(plain, EVENTS) & POLLOUT):
            refused = write(plain, msg)
        return refused

    def recover(self, msg: list[Any], refused: int) -> bool:
        """Get libzmq out of a rollback of ``msg`` at frame ``refused``;
        ``False`` if the message cannot be sent again (``REQ``)."""
        self.rollbacks += 1
        if self.socket_type == zmq.REQ:
            # REQ lost the request's envelope with the pipe and still counts the
            # request as begun: an empty last frame ends it (libzmq drops it, or
            # a REP discards it as malformed), so the next request starts clean.
            # The REQ now waits for a reply that will not come, as pyzmq's
            # would (REQ_RELAXED lets the next request go).
            self.req_open = True
            self.end_request()
            return False
        if self._load_balanced and refused < len(msg) - 1:
            # The refused frame had SNDMORE, so libzmq now drops frames until a
            # last one: give it an empty last frame to drop.
            send(self.plain, b"", NOBLOCK)
        return True

    def end_request(self) -> bool:
        """End a ``REQ`` request that a rollback left open; ``False`` if libzmq
        has no pipe to take the empty frame yet."""
        try:
            send(self.plain, b"", NOBLOCK)
        except zmq.Again:
            return False
        self.req_open = False
        return True


class Backoff:
    """A retry timer whose delay doubles with each refusal (see "Back-off")."""

    def __init__(self, loop: Any, callback: Callable[[], None]) -> None:
        self._loop = loop
        self._callback = callback
        self._delay = STALL_MIN
        self._timer: Any = loop.timer(STALL_MIN)
        self._due = 0.0

    @property
    def active(self) -> bool:
        return bool(self._timer.active)

    def arm(self) -> None:
        """Retry after the current delay (which then doubles), unless a retry
        is due sooner already."""
        due = self._loop.now() + self._delay
        if self._timer.active and self._due <= due:
            return
        self._timer.close()
        self._timer = self._loop.timer(self._delay)
        self._timer.start(self._callback)
        self._due = due
        self._delay = min(self._delay * 2, STALL_MAX)

    def reset(self) -> None:
        """Something went through: the next refusal starts from the shortest delay."""
        self._delay = STALL_MIN

    def close(self) -> None:
        self._timer.close()
