"""``SharedSocket``: a ``zmq.Socket``-like object that any number of greenlets
may use at once, for existing pyzmq code.

Theory of operation: the socket is owned by a :class:`ChannelPair`; this class
only translates. Frame-by-frame use is kept per greenlet: frames a greenlet
sends with ``SNDMORE`` wait in its own list until its last frame, then go out
as one message; a message a greenlet starts reading with ``recv`` keeps its
remaining frames for that greenlet (which is what its ``RCVMORE`` answers).
A ``poll`` that waits for ``POLLIN`` sets the message that arrives aside for
its greenlet, so "you may receive now" holds; if that greenlet ends without
reading it, the message goes back to the head of the stream. Timeouts
(``RCVTIMEO``/``SNDTIMEO``) are kept here and become the pair's timeouts, and
the pair's exceptions become the ``zmq.ZMQError``\\ s pyzmq raises.
"""

from __future__ import annotations

import builtins
import json
import numbers
import pickle
import weakref
from collections import deque
from functools import partial
from types import TracebackType
from typing import Any

import gevent
import zmq

from ._checks import as_message, check_linger
from ._errors import ChannelBroken, ChannelClosed, WouldBlock
from ._ops import DONE
from ._pair import ChannelPair
from ._select import Select, SelectBranch

__all__ = ["SharedSocket"]

#: Outgoing buffer of a SharedSocket unless ``tx_size`` is given: a NOBLOCK
#: send succeeds whenever there is room, as on a plain socket.
DEFAULT_TX_SIZE = 1000

_LOCAL_OPTIONS = frozenset({zmq.RCVTIMEO, zmq.SNDTIMEO})


class _ZmqErrors:
    """Turn the pair's exceptions into the ones pyzmq raises."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            return
        if issubclass(exc_type, (WouldBlock, TimeoutError)):
            raise zmq.Again() from None
        if isinstance(exc, ChannelBroken):
            cause = exc.__cause__
            errno = cause.errno if isinstance(cause, zmq.ZMQError) else zmq.ENOTSOCK
            if errno == zmq.ETERM:
                raise zmq.ContextTerminated() from exc
            raise zmq.ZMQError(errno) from exc
        if isinstance(exc, ChannelClosed):
            raise zmq.ZMQError(zmq.ENOTSOCK) from None


_translated = _ZmqErrors()


def _timeout(ms: int) -> float | None:
    return None if ms < 0 else ms / 1000


class SharedSocket:
    """A drop-in for a ``zmq.Socket`` that many greenlets may share.

    ``socket`` is wrapped in a :class:`ChannelPair` (``pair_options`` go to it;
    ``tx_size`` defaults to 1000). ``send``/``recv`` and their ``_multipart``,
    ``_string``, ``_json`` and ``_pyobj`` forms, options (also as attributes,
    like ``sock.linger``), ``subscribe``, ``poll`` and ``close`` behave as on
    a pyzmq socket, answering for the calling greenlet. ``zmq.NOBLOCK`` and
    ``RCVTIMEO``/``SNDTIMEO`` raise ``zmq.Again``; after ``close`` every call
    raises ``zmq.ZMQError(ENOTSOCK)``. Messages accepted but never sent are
    kept in :attr:`unsent` after ``close``.
    """

    def __init__(self, socket: zmq.Socket[Any], **pair_options: Any) -> None:
        if not isinstance(socket, zmq.Socket):
            raise TypeError(f"socket must be a zmq.Socket, not {type(socket).__name__}")
        if "copy" in pair_options:
            raise TypeError("SharedSocket takes copy= per recv call, not as a pair option")
        pair_options.setdefault("tx_size", DEFAULT_TX_SIZE)
        timeouts: dict[int, int] = {opt: int(socket.getsockopt(opt)) for opt in _LOCAL_OPTIONS}
        self._pair = ChannelPair(socket, **pair_options)
        self._socket = socket
        self._timeouts = timeouts
        self._sending: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
        self._reading: weakref.WeakKeyDictionary[Any, deque[Any]] = weakref.WeakKeyDictionary()
        self._more: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self._set_aside: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
        kind = self._pair._pump.socket_type
        self._can_in = 0 if kind in (zmq.PUSH, zmq.PUB) else int(zmq.POLLIN)
        self._can_out = 0 if kind in (zmq.PULL, zmq.SUB) else int(zmq.POLLOUT)
        self._closed = False
        self.unsent: list[list[Any]] = []

    # ------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise zmq.ZMQError(zmq.ENOTSOCK)

    def _send_message(self, frames: list[Any], flags: int) -> None:
        with _translated:
            if flags & zmq.NOBLOCK:
                self._pair.send_nowait(frames)
            else:
                self._pair.send(frames, _timeout(self._timeouts[zmq.SNDTIMEO]))

    def _next_message(self, flags: int) -> deque[Any]:
        """The calling greenlet's current message: what is left of it, the one
        set aside for it, or the next one from the pair."""
        me = gevent.getcurrent()
        held = self._reading.get(me)
        if held:
            return held
        msg = self._set_aside.pop(me, None)
        if msg is None:
            with _translated:
                if flags & zmq.NOBLOCK:
                    msg = self._pair.recv_nowait()
                else:
                    msg = self._pair.recv(_timeout(self._timeouts[zmq.RCVTIMEO]))
        held = self._reading[me] = deque(msg)
        return held

    def _set_aside_for(self, me: Any, msg: list[Any]) -> None:
        """Keep ``msg`` for greenlet ``me``; back to the stream if it ends unread."""
        self._set_aside[me] = msg
        give_back = partial(self._give_back, weakref.ref(me), msg)
        if isinstance(me, gevent.Greenlet):
            me.rawlink(lambda _g: give_back())
        else:
            weakref.finalize(me, give_back)

    def _give_back(self, me: weakref.ref[Any], msg: list[Any]) -> None:
        owner = me()
        if owner is not None and self._set_aside.get(owner) is not msg:
            return  # read after all
        if owner is not None:
            del self._set_aside[owner]
        if not self._pair._pump.finished:
            self._pair._pump.deliver(msg, front=True)

    # ------------------------------------------------------------ sending

    def send(self, data: Any, flags: int = 0, copy: bool = True, track: bool = False) -> Any:
        """Send one frame; with ``zmq.SNDMORE`` it waits for the rest of its message.

        Frames are copied when accepted, so with ``track=True`` the returned
        ``zmq.MessageTracker`` is already done.
        """
        return self.send_multipart([data], flags, copy, track)

    def send_multipart(
        self, msg_parts: Any, flags: int = 0, copy: bool = True, track: bool = False
    ) -> Any:
        """Send frames as (the end of) one message; ``zmq.SNDMORE`` keeps it open."""
        self._check_open()
        frames = as_message(list(msg_parts))
        me = gevent.getcurrent()
        pending = self._sending.pop(me, [])
        pending.extend(frames)
        if flags & zmq.SNDMORE:
            self._sending[me] = pending
            return zmq.MessageTracker() if track else None
        try:
            self._send_message(pending, flags)
        except zmq.Again:
            # Not sent: keep the frames, so retrying the last one sends it all.
            self._sending[me] = pending[: len(pending) - len(frames)]
            raise
        return zmq.MessageTracker() if track else None

    def send_string(
        self, u: str, flags: int = 0, copy: bool = True, encoding: str = "utf-8"
    ) -> None:
        """Send a ``str`` as one frame in ``encoding``."""
        if not isinstance(u, str):
            raise TypeError("send_string takes a str")
        self.send(u.encode(encoding), flags)

    def send_json(self, obj: Any, flags: int = 0, **kwargs: Any) -> None:
        """Send ``obj`` as one JSON frame."""
        self.send(json.dumps(obj, **kwargs).encode("utf-8"), flags)

    def send_pyobj(self, obj: Any, flags: int = 0, protocol: int = pickle.DEFAULT_PROTOCOL) -> None:
        """Send ``obj`` pickled, as one frame."""
        self.send(pickle.dumps(obj, protocol), flags)

    # ---------------------------------------------------------- receiving

    def recv(self, flags: int = 0, copy: bool = True, track: bool = False) -> Any:
        """The next frame for this greenlet (the rest of its message stays its own).

        With ``copy=False`` the frame is a ``zmq.Frame`` whose ``.more`` is not
        set: ask ``RCVMORE``. Frames left of a message whose greenlet ends
        before reading them all are dropped with that greenlet.
        """
        self._check_open()
        held = self._next_message(flags)
        frame = held.popleft()
        self._more[gevent.getcurrent()] = bool(held)
        return frame if copy else zmq.Frame(frame)

    def recv_multipart(self, flags: int = 0, copy: bool = True, track: bool = False) -> list[Any]:
        """The rest of this greenlet's message, or the next whole message."""
        self._check_open()
        held = self._next_message(flags)
        frames = list(held)
        held.clear()
        self._more[gevent.getcurrent()] = False
        return frames if copy else [zmq.Frame(f) for f in frames]

    def recv_string(self, flags: int = 0, encoding: str = "utf-8") -> str:
        """The next frame decoded from ``encoding``."""
        frame: bytes = self.recv(flags)
        return frame.decode(encoding)

    def recv_json(self, flags: int = 0, **kwargs: Any) -> Any:
        """The next frame parsed as JSON."""
        return json.loads(self.recv(flags), **kwargs)

    def recv_pyobj(self, flags: int = 0) -> Any:
        """The next frame unpickled (only from peers you trust)."""
        return pickle.loads(self.recv(flags))

    # ------------------------------------------------------------ options

    def getsockopt(self, option: int) -> Any:
        """An option's value; ``RCVMORE`` and ``EVENTS`` answer for this greenlet."""
        self._check_open()
        if option == zmq.RCVMORE:
            return int(self._more.get(gevent.getcurrent(), False))
        if option == zmq.EVENTS:
            return self._ready_now(gevent.getcurrent(), zmq.POLLIN | zmq.POLLOUT)
        if option in _LOCAL_OPTIONS:
            return self._timeouts[option]
        with _translated:
            return self._pair.call(lambda s: s.getsockopt(option))

    def setsockopt(self, option: int, value: Any) -> None:
        """Set an option, through the pair's pump."""
        self._check_open()
        if option in _LOCAL_OPTIONS:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"expected int for a timeout option, got {type(value).__name__}")
            self._timeouts[option] = int(value)
            return
        with _translated:
            self._pair.call(lambda s: s.setsockopt(option, value))

    get = getsockopt
    set = setsockopt

    @property
    def hwm(self) -> int:
        """``SNDHWM``, as pyzmq's ``hwm`` reads it; setting it sets both HWMs."""
        value: int = self.getsockopt(zmq.SNDHWM)
        return value

    @hwm.setter
    def hwm(self, value: int) -> None:
        self.setsockopt(zmq.SNDHWM, value)
        self.setsockopt(zmq.RCVHWM, value)

    def _socket_call(self, method: str, *args: Any) -> Any:
        self._check_open()
        with _translated:
            return self._pair.call(lambda s: getattr(s, method)(*args))

    def bind(self, addr: str) -> None:
        """Bind, through the pair's pump."""
        self._socket_call("bind", addr)

    def connect(self, addr: str) -> None:
        """Connect, through the pair's pump."""
        self._socket_call("connect", addr)

    def unbind(self, addr: str) -> None:
        """Unbind, through the pair's pump."""
        self._socket_call("unbind", addr)

    def disconnect(self, addr: str) -> None:
        """Disconnect, through the pair's pump."""
        self._socket_call("disconnect", addr)

    def bind_to_random_port(self, addr: str, *args: Any) -> int:
        """As pyzmq's, through the pair's pump; returns the port."""
        port: int = self._socket_call("bind_to_random_port", addr, *args)
        return port

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_") and name.upper() in zmq.SocketOption.__members__:
            # Only reached for names not defined here (hwm, type... are).
            return self.getsockopt(zmq.SocketOption[name.upper()])
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "hwm":
            object.__setattr__(self, name, value)  # the property
        elif not name.startswith("_") and name.upper() in zmq.SocketOption.__members__:
            self.setsockopt(zmq.SocketOption[name.upper()], value)
        else:
            object.__setattr__(self, name, value)

    @property
    def type(self) -> int:
        """The socket type."""
        return self._pair._pump.socket_type

    @property
    def context(self) -> Any:
        """The socket's context."""
        return self._socket.context

    def subscribe(self, topic: bytes | str) -> None:
        """Subscribe to ``topic`` (str is UTF-8 encoded)."""
        self._check_open()
        with _translated:
            self._pair.subscribe(topic)

    def unsubscribe(self, topic: bytes | str) -> None:
        """Unsubscribe from ``topic``."""
        self._check_open()
        with _translated:
            self._pair.unsubscribe(topic)

    # --------------------------------------------------------------- poll

    def poll(self, timeout: int | None = None, flags: int = zmq.POLLIN) -> int:
        """Which of ``flags`` the calling greenlet could do now, waiting up to
        ``timeout`` ms (``None`` or negative: no limit) for one of them.

        ``POLLIN``: a message this greenlet may receive now (one that arrives
        while it waits is set aside for it). ``POLLOUT``: room to send now.
        As on pyzmq, a send-only socket never reports ``POLLIN`` and a
        receive-only one never ``POLLOUT``.
        """
        self._check_open()
        flags = int(flags) & (self._can_in | self._can_out)
        seconds = None if timeout is None or timeout < 0 else timeout / 1000
        me = gevent.getcurrent()
        with _translated:
            ready = self._ready_now(me, flags)
            if ready or not flags or seconds == 0:
                return ready
            if flags == zmq.POLLOUT:
                return int(zmq.POLLOUT) if self._pair._pump.wait_for_room(seconds) else 0
            return self._wait_for(me, flags, seconds)

    def _ready_now(self, me: Any, flags: int) -> int:
        """Readiness without waiting or taking anything (what ``EVENTS`` says)."""
        events = 0
        pump = self._pair._pump
        if flags & self._can_in and (
            self._reading.get(me) or me in self._set_aside or pump.stats()["rx_pending"]
        ):
            events |= zmq.POLLIN
        if flags & self._can_out and pump.wait_for_room(0):
            events |= zmq.POLLOUT
        return events

    def _wait_for(self, me: Any, flags: int, seconds: float | None) -> int:
        """Wait for a message (and, if asked, room to send), whichever is first."""
        pump = self._pair._pump
        select = Select(2 if flags & zmq.POLLOUT else 1)
        incoming = SelectBranch(select, zmq.POLLIN, False)
        outgoing = SelectBranch(select, zmq.POLLOUT, False)
        pump.add_receiver(incoming)
        if flags & zmq.POLLOUT:
            pump.add_room_waiter(outgoing)
        try:
            done = select.wait(seconds)
        except BaseException:
            if select.state == DONE and select.error is None and select.result[0] == zmq.POLLIN:
                pump.deliver(select.result[1], front=True)
            raise
        finally:
            pump.remove_receiver(incoming)
            pump.remove_room_waiter(outgoing)
        if not done:
            return 0
        if select.error is not None:
            raise select.error
        event, msg = select.result
        if event == zmq.POLLIN:
            self._set_aside_for(me, msg)
            return int(zmq.POLLIN) | self._ready_now(me, flags & zmq.POLLOUT)
        return int(zmq.POLLOUT)

    # -------------------------------------------------------------- close

    @property
    def closed(self) -> bool:
        """``True`` once closed (or its pair stopped)."""
        return self._closed or self._pair.closed

    def close(self, linger: int | None = None) -> None:
        """Close; ``linger`` in milliseconds (``None``: the socket's ``LINGER``).

        Accepted messages that never reached the socket are kept in :attr:`unsent`.
        """
        seconds = check_linger(linger)  # refused before anything changes
        self._closed = True
        self.unsent.extend(self._pair.close(None if seconds is None else seconds / 1000))

    def __enter__(self) -> SharedSocket:
        return self

    def __exit__(
        self,
        exc_type: builtins.type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
