"""``SharedSocket``: a ``zmq.Socket`` that any number of greenlets may use at once.

Theory of operation
===================

A ``SharedSocket`` *is* a ``zmq.Socket`` (a subclass, on the same libzmq
handle), so every name pyzmq has is there and behaves as pyzmq's: options,
``bind``/``connect`` and their context managers, monitors, the ``_string``,
``_json``, ``_pyobj`` and ``_serialized`` forms, copies. Only what could wait
or could mix two greenlets' frames is done differently, and all of it in
:class:`_Shared`, the state every view of one libzmq socket shares:

* A :class:`~._direct.DirectPump` owns the socket: it is the only code
  that *waits* on it. Greenlets of the hub's thread send and receive with
  non-blocking calls themselves (nothing can run in between), and queue at
  the pump only when they must wait: waiting senders are given their turn to
  write when ``POLLOUT`` comes, a waiting reader its turn to read when
  ``POLLIN`` comes, and each then does it itself. So a call interrupted while
  it waits has done nothing (as on pyzmq), whoever finds the socket ready
  may use it at once, and the pump never reads ahead: libzmq's own state
  (``EVENTS``, ``zmq_poll`` on the handle) stays true.
* Frames a greenlet sends with ``SNDMORE`` wait in its own list until its last
  frame; then the message goes out whole. A greenlet that ``recv``\\ s one frame
  of a message is its ``reader``: the rest stays in libzmq for it (``RCVMORE``
  answers for it). When another greenlet wants to read meanwhile, the rest of
  that message (all there already: libzmq delivers messages whole) is first
  moved into the reader's own ``held`` frames; if the reader has ended, it is
  dropped (counted in ``dropped_frames``), never handed to someone else.
* ``REQ``/``REP``: the greenlet that sent a request (``REQ``) or received one
  (``REP``) holds the socket's turn until its reply; another greenlet's
  ``send`` (``REQ``) or ``recv`` (``REP``) waits for the turn, and out-of-turn
  calls raise ``EFSM``. A ``REQ`` turn whose greenlet ends is given up with
  ``REQ_RELAXED`` and ``REQ_CORRELATE`` set, so its late reply is dropped by
  libzmq instead of reaching the next greenlet. (A ``gevent.Greenlet`` is
  watched with ``rawlink``; a raw greenlet is held weakly and its turn given
  up when it is collected.) A ``REP`` greenlet that ends without replying
  leaves the socket waiting for that reply, as on pyzmq: the next ``recv``
  raises ``EFSM``.
* Polling: ``EVENTS`` and :meth:`SharedSocket.poll` answer for the calling
  greenlet. ``FD`` is an ``eventfd`` of ours that pulses (readable for the
  loop's next poll only: see :class:`_Pulse`) whenever ``EVENTS`` may have
  changed: the pump tells us when one of its readings may be news to a
  poller (see :class:`~._direct.DirectPump`), and turns given back pulse it
  too. (libzmq's own ``ZMQ_FD`` cannot serve: the pump consumes its edges.)
* Errors are pyzmq's: the pump's timeouts become ``zmq.Again``, a closed socket
  ``ENOTSOCK``; exceptions thrown in from elsewhere pass through.
"""

from __future__ import annotations

import os
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

import gevent
import zmq
from gevent.event import Event
from gevent.hub import get_hub

from ._checks import check_timeout
from ._direct import DirectPump
from ._errors import ChannelBroken, ChannelClosed, PairTimeout, WouldBlock

__all__ = ["SharedSocket", "patch", "unpatch"]

_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_POLLIN = int(zmq.POLLIN)
_POLLOUT = int(zmq.POLLOUT)
_EVENTS = int(zmq.EVENTS)
_RCVMORE = int(zmq.RCVMORE)
_FD = int(zmq.FD)
#: How often a greenlet waiting for a REQ/REP turn held by a raw greenlet
#: (which has no exit notification) checks whether the holder ended (seconds).
_RAW_HOLDER_CHECK = 0.1

#: Every live :class:`_Shared` by the address of its libzmq socket (copies and
#: shadows of a SharedSocket share it).
_by_address: weakref.WeakValueDictionary[int, _Shared] = weakref.WeakValueDictionary()


class _Translated:
    """Turn the pump's exceptions into the ones pyzmq raises."""

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
        if issubclass(exc_type, (WouldBlock, PairTimeout)):
            raise zmq.Again() from None
        if isinstance(exc, ChannelBroken):
            cause = exc.__cause__
            errno = cause.errno if isinstance(cause, zmq.ZMQError) else zmq.ENOTSOCK
            if errno == zmq.ETERM:
                raise zmq.ContextTerminated() from exc
            raise zmq.ZMQError(errno) from exc
        if isinstance(exc, ChannelClosed):
            raise zmq.ZMQError(zmq.ENOTSOCK) from None


_translated = _Translated()


def _nothing() -> None:
    return None


def _weakly(method: Callable[..., None]) -> Callable[..., None]:
    """``method``, called only while its object lives."""
    ref = weakref.WeakMethod(method)

    def call(*args: Any) -> None:
        target = ref()
        if target is not None:
            target(*args)

    return call


def _abandoned(pump: DirectPump, name: str) -> None:
    """No SharedSocket uses a socket that was never closed (a wrapped one:
    pyzmq's own ``__del__`` closes the others): close it without waiting, as
    pyzmq's ``__del__`` does, and say so."""
    if pump.closing:
        return
    try:
        pump.in_hub(pump.close_now, None)
    finally:
        warnings.warn(f"unclosed {name}", ResourceWarning, stacklevel=1)


class _Pulse:
    """A descriptor that becomes readable after :meth:`fire`, an edge like
    ``ZMQ_FD``: readable from just before the loop's next poll until that
    poll reports it.

    libev reports a descriptor to all its watchers in one poll, so every
    watcher waiting then is woken. Lighting it only after the loop has run
    its callbacks, and dimming it as the poll reports it, means no greenlet
    ever runs while it is readable: one that looks again after a wake finds
    it quiet and sleeps. (gevent's ``select`` tries a non-blocking ``select``
    first, so a descriptor left readable while greenlets run makes pollers
    spin until the loop polls again.)
    """

    def __init__(self, loop: Any) -> None:
        if hasattr(os, "eventfd"):
            self.fd = self._write_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        else:  # pragma: no cover - platforms without eventfd
            self.fd, self._write_fd = os.pipe()
            os.set_blocking(self.fd, False)
            os.set_blocking(self._write_fd, False)
        self._closed = False
        # Active while fired and not lit yet; it runs after gevent's callbacks,
        # which run in a prepare watcher of priority 0.
        self._before_poll = loop.prepare(ref=False, priority=loop.MINPRI)
        # A prepare started while callbacks run waits for the next iteration:
        # this makes the loop go round instead of sleeping in the poll first.
        self._go_round = loop.timer(0.0, ref=False)
        # Active while lit and not reported yet.
        self._reported = loop.io(self.fd, 1, ref=False)

    def fire(self) -> None:
        if not self._closed and not self._before_poll.active:
            self._before_poll.start(self._light)
            self._go_round.start(_nothing)

    def _light(self) -> None:
        self._before_poll.stop()
        if not self._closed and not self._reported.active:
            os.write(self._write_fd, b"\1\0\0\0\0\0\0\0")
            self._reported.start(self._dim)

    def _dim(self) -> None:
        self._reported.stop()
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Release the descriptor (when nothing can watch it any more); later
        :meth:`fire` calls do nothing."""
        if self._closed:
            return
        self._closed = True
        for watcher in (self._before_poll, self._go_round, self._reported):
            watcher.close()
        os.close(self.fd)
        if self._write_fd != self.fd:
            os.close(self._write_fd)


class _Shared:
    """What every view of one libzmq socket shares: its pump and who holds
    which turn (see the module's theory of operation)."""

    def __init__(self, pump: DirectPump, plain: zmq.Socket[Any]) -> None:
        self.pump = pump
        self.plain = plain  # a plain view of the handle, for options set here
        kind = pump.socket_type
        self.req = kind == zmq.REQ
        self.rep = kind == zmq.REP
        self.sending: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
        self.more: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()
        self.held: weakref.WeakKeyDictionary[Any, deque[zmq.Frame]] = weakref.WeakKeyDictionary()
        self.reader: Any = None
        self._turn: Any = None  # the holder, or a weak reference to a raw greenlet
        self._turn_watch: Callable[[], None] | None = None
        self.turn_free = Event()
        self.turn_free.set()
        self.dropped_frames = 0
        self.unsent: list[list[Any]] = []
        self._pulse: _Pulse | None = None
        # Weakly: once no SharedSocket uses this state, it goes (see _abandoned).
        pump.on_finish = _weakly(self._finished)

    @property
    def turn(self) -> Any:
        """The greenlet holding the REQ/REP turn, or ``None``."""
        turn = self._turn
        return turn() if isinstance(turn, weakref.ref) else turn

    # ------------------------------------------------------------- closing

    @property
    def closed(self) -> bool:
        return self.pump.closing

    def close(self, linger: int | None) -> list[list[Any]]:
        unsent = self.pump.close_now(linger)
        self.unsent.extend(unsent)
        return unsent

    def _finished(self) -> None:
        """The pump ended (``close``, ``Context.destroy()``, a fatal error): wake
        whoever waits here. The descriptor stays open while this state lives:
        a watcher may still be on it this iteration."""
        self.turn_free.set()
        self._changed()

    # ------------------------------------------------------------- polling

    def notify_fd(self) -> int:
        if self._pulse is None:
            if self.pump.closing:
                raise zmq.ZMQError(zmq.ENOTSOCK)
            self._pulse = _Pulse(self.pump.hub.loop)
            weakref.finalize(self, self._pulse.close)
            self.pump.observer = _weakly(self._changed)
        return self._pulse.fd

    def _changed(self) -> None:
        if self._pulse is not None:
            self._pulse.fire()

    def events(self, me: Any) -> int:
        """``EVENTS`` as the greenlet ``me`` sees it."""
        if self.reader is not None and self.reader is not me:
            self._detach_reader()
        with _translated:
            events = self.pump.events_now()
        if self.reader is me or self.held.get(me):
            events |= _POLLIN  # the rest of its message
        turn = self.turn
        if (self.req or self.rep) and turn is not None and turn is not me:
            events &= ~(_POLLIN | _POLLOUT)
        return events

    def wait_change(self, timeout: float | None) -> bool:
        """Wait until ``EVENTS`` may have changed (``False``: ``timeout`` passed)."""
        fd = self.notify_fd()
        watcher = self.pump.hub.loop.io(fd, 1)
        try:
            with gevent.Timeout(timeout, False):  # type: ignore[arg-type]
                get_hub().wait(watcher)
                return True
            return False
        finally:
            watcher.close()

    # ------------------------------------------------------------- sending

    def send(self, me: Any, frames: list[Any], flags: int) -> None:
        """Send ``frames`` as (the end of) ``me``'s message; ``SNDMORE`` holds them."""
        held = self.sending.pop(me, None)
        if held:
            frames = held + frames
            new = len(frames) - len(held)
        else:
            new = len(frames)
        if flags & _SNDMORE:
            self.sending[me] = frames
            return
        try:
            self._send_message(me, frames, flags)
        except BaseException:
            if len(frames) > new:
                self.sending[me] = frames[:-new]  # the frames held before stay held
            raise

    def _send_message(self, me: Any, frames: list[Any], flags: int) -> None:
        pump = self.pump
        claimed = False
        if self.req:
            claimed = self._take_turn(me, flags, zmq.SNDTIMEO)
        elif self.rep and self.turn is not me and self.turn is not None:
            raise zmq.ZMQError(zmq.EFSM)
        try:
            with _translated:
                if pump.tx_size:
                    if flags & _NOBLOCK:
                        pump.send(frames, None, False)
                    else:
                        pump.send(frames, self._timeout(zmq.SNDTIMEO), True)
                elif not pump.write_now(frames):
                    if flags & _NOBLOCK:
                        raise zmq.Again()
                    pump.send_through(frames, self._timeout(zmq.SNDTIMEO))
        except BaseException:
            if claimed:
                self._give_turn()
            raise
        if self.req:
            self._hold_turn(me)
        elif self.rep and self.turn is me:
            self._give_turn()

    def _timeout(self, option: int) -> float | None:
        ms: int = self.plain.get(option)  # type: ignore[assignment]
        return None if ms < 0 else ms / 1000

    # ----------------------------------------------------------- receiving

    def recv_frame(self, me: Any, flags: int) -> zmq.Frame:
        """The next frame for ``me``: the rest of its message, or a new one."""
        rest = self.held.get(me)
        if rest:
            frame = rest.popleft()
            if not rest:
                del self.held[me]
            return self._account(me, frame, held=True)
        if self.reader is me:
            return self._account(me, self._read_rest())
        claimed = False
        if self.req and self.turn is not me:
            if self.turn is not None and not self.turn.dead:
                raise zmq.ZMQError(zmq.EFSM)  # the reply being waited for is another's
        elif self.rep:
            claimed = self._take_turn(me, flags, zmq.RCVTIMEO)
        try:
            frame = self._wait_frame(flags)
        except BaseException:
            if claimed:
                self._give_turn()
            raise
        return self._account(me, frame)

    def recv_message(self, me: Any, flags: int) -> list[zmq.Frame]:
        """The rest of ``me``'s message, or the next whole one."""
        frame = self.recv_frame(me, flags)
        frames = [frame]
        while frame.more:
            frame = self.recv_frame(me, flags)
            frames.append(frame)
        return frames

    def _wait_frame(self, flags: int) -> zmq.Frame:
        pump = self.pump
        timeout = None if flags & _NOBLOCK else self._timeout(zmq.RCVTIMEO)
        signalled = False
        while True:
            if self.reader is not None:
                self._detach_reader()
            with _translated:
                frame = pump.read_frame(signalled)
            if frame is not None:
                return frame
            if flags & _NOBLOCK:
                raise zmq.Again()
            with _translated:
                # (a timeout counts from each wait)
                pump.wait_readable(timeout, front=signalled)
            signalled = True

    def _read_rest(self) -> zmq.Frame:
        with _translated:
            frame = self.pump.read_frame()
        if frame is None:  # pragma: no cover - libzmq delivers messages whole
            raise zmq.Again()
        return frame

    def _account(self, me: Any, frame: zmq.Frame, held: bool = False) -> zmq.Frame:
        """Keep track of where ``me`` is in its message (``held``: the frame came
        from its held frames, not from libzmq), and of the turns."""
        if frame.more:
            if not held:
                self.reader = me  # the rest is in libzmq, for ``me``
            self.more[me] = True
            return frame
        if self.reader is me:
            self.reader = None
        if self.more.get(me):
            self.more[me] = False
        if self.req and self.turn is me:
            self._give_turn()  # the reply to its request: the turn is over
        elif self.rep and self.turn is me:
            self._hold_turn(me)  # a whole request: its greenlet replies
        return frame

    def _detach_reader(self) -> None:
        """Another greenlet reads: move the rest of the reader's message (all in
        libzmq already) into its own ``held`` frames, or drop it if it ended."""
        reader, self.reader = self.reader, None
        frames: deque[zmq.Frame] = deque()
        try:
            while True:
                frame = self._read_rest()
                frames.append(frame)
                if not frame.more:
                    break
        finally:
            if reader.dead:
                self.dropped_frames += len(frames)
            else:
                self.held[reader] = frames

    # --------------------------------------------------------------- turns

    def _take_turn(self, me: Any, flags: int, option: int) -> bool:
        """Wait for the REQ/REP turn and claim it; ``False`` if ``me`` held it."""
        if self.turn is me:
            return False
        timeout = None if flags & _NOBLOCK else self._timeout(option)
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.turn is not None:
            if self.turn.dead:
                self._orphaned(self._turn)
                break
            if flags & _NOBLOCK:
                raise zmq.Again()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise zmq.Again()
            if not isinstance(self._turn, gevent.Greenlet):
                # A raw greenlet cannot tell us when it ends: look again now and then.
                remaining = (
                    _RAW_HOLDER_CHECK if remaining is None else min(remaining, _RAW_HOLDER_CHECK)
                )
            self.turn_free.wait(remaining)
            if self.pump.closing:
                raise zmq.ZMQError(zmq.ENOTSOCK)
        self._turn = me
        self.turn_free.clear()
        return True

    def _hold_turn(self, me: Any) -> None:
        """``me`` holds the turn until its reply (REQ) or its reply is sent (REP)."""
        if self._turn_watch is not None and self.turn is me:
            return
        token: Any
        if isinstance(me, gevent.Greenlet):
            token = me

            def on_exit(_g: Any) -> None:
                self._orphaned(token)

            me.rawlink(on_exit)
            self._turn_watch = lambda: me.unlink(on_exit)
        else:
            token = weakref.ref(me, self._orphaned)
            self._turn_watch = _nothing
        self._turn = token
        self.turn_free.clear()

    def _give_turn(self) -> None:
        watch, self._turn_watch = self._turn_watch, None
        self._turn = None
        if watch is not None:
            watch()
        self.turn_free.set()
        self._changed()

    def _orphaned(self, token: Any) -> None:
        """The turn's holder (``token``) ended before its turn was over."""
        if self._turn is not token:
            return  # its turn was over already
        if self.req and not self.pump.closing:
            # Its request is orphaned: let the next one go, and have libzmq
            # drop the late reply instead of giving it to the next greenlet.
            try:
                self.plain.set(zmq.REQ_RELAXED, 1)
                self.plain.set(zmq.REQ_CORRELATE, 1)
            except zmq.ZMQError:
                pass  # the socket is going
        self._give_turn()


def _frame(data: Any, copy: bool, track: bool, threshold: int, index: int | None) -> Any:
    """``data`` as the pump may hold it, checked as pyzmq checks it: a
    snapshot for ``copy=True`` (the caller may change its buffer once ``send``
    returns), else a zero-copy ``zmq.Frame`` (tracked with ``track=True``)
    unless it is smaller than ``copy_threshold``."""
    if isinstance(data, zmq.Frame):
        if track and not data.tracker:
            raise ValueError("Not a tracked message")
        return data
    if isinstance(data, str) and index is None:
        raise TypeError("unicode not allowed, use send_string")
    try:
        view = memoryview(data)
    except TypeError:
        if index is None:
            raise TypeError(
                f"{type(data).__name__} does not support the buffer interface"
            ) from None
        raise TypeError(
            f"Frame {index} ({data!r:.32}) does not support the buffer interface."
        ) from None
    if copy or (threshold and view.nbytes < threshold):
        return data if type(data) is bytes else view.tobytes()
    return zmq.Frame(data, track=track, copy=False)


def _tracker(frame: Any, copy: bool, track: bool) -> Any:
    """What pyzmq's ``send`` returns for ``frame``."""
    if isinstance(frame, zmq.Frame):
        return frame.tracker
    return None if copy else zmq._FINISHED_TRACKER


class SharedSocket(zmq.Socket):  # type: ignore[type-arg]
    """A ``zmq.Socket`` that any number of greenlets of one hub may use at once.

    ``SharedSocket(socket, tx_size=0)`` wraps an open socket (any
    ``zmq.Socket``, green or plain, or a subclass) and takes it over: use the
    ``SharedSocket`` from then on. ``ctx.socket(type, socket_class=SharedSocket)``
    makes one directly, and :func:`patch` makes every ``zmq.green.Context``
    do so.

    Everything behaves as pyzmq's socket does for the calling greenlet, see
    the module's theory of operation. ``tx_size=N`` lets up to ``N`` sends be
    accepted ahead of the socket (a send buffer, which pyzmq does not have);
    what is still buffered at ``close`` is kept in :attr:`unsent`.
    """

    _shared: _Shared | None = None
    _over = "zmq.Socket"

    def __init__(
        self,
        ctx_or_socket: Any = None,
        socket_type: int = 0,
        *,
        shadow: Any = 0,
        copy_threshold: int | None = None,
        tx_size: int = 0,
        rx_size: int = 0,
    ) -> None:
        if isinstance(tx_size, bool) or not isinstance(tx_size, int) or tx_size < 0:
            raise ValueError(f"tx_size must be an int >= 0, got {tx_size!r}")
        if rx_size != 0:
            raise ValueError("a SharedSocket never reads ahead of its readers: rx_size must be 0")
        wrapped: zmq.Socket[Any] | None = None
        if ctx_or_socket is not None and not isinstance(ctx_or_socket, (zmq.Socket, zmq.Context)):
            what = type(ctx_or_socket).__name__
            raise TypeError(f"SharedSocket takes a zmq.Socket or a zmq.Context, not {what}")
        over = "zmq.Socket"
        if isinstance(ctx_or_socket, zmq.Socket):
            wrapped, ctx_or_socket = ctx_or_socket, None
            if wrapped.closed:
                raise ValueError("cannot wrap a closed socket")
            shadow = wrapped.underlying
            over = type(wrapped).__dict__.get("_repr_cls") or _qualified(type(wrapped))
            if copy_threshold is None:
                copy_threshold = wrapped.copy_threshold
        elif isinstance(ctx_or_socket, zmq.Context):
            over = _qualified(type(ctx_or_socket)).replace("Context", "Socket")
        super().__init__(  # type: ignore[call-overload]
            ctx_or_socket, socket_type, shadow=shadow, copy_threshold=copy_threshold
        )
        self._over = over
        if wrapped is not None:
            self.context = wrapped.context
        shared = _by_address.get(self.underlying) if wrapped is None and shadow else None
        if shared is None or shared.closed:
            plain = zmq.Socket(shadow=self.underlying)
            owner = wrapped if wrapped is not None else plain
            pump = DirectPump(owner, get_hub(), tx_size)
            shared = _Shared(pump, plain)
            _by_address[self.underlying] = shared
            weakref.finalize(shared, _abandoned, pump, repr(self))
        self._shared = shared

    # ------------------------------------------------------------- helpers

    def _live(self) -> _Shared:
        shared = self._shared
        if self._closed or shared is None:
            raise zmq.ZMQError(zmq.ENOTSOCK)
        if shared.closed:
            self._mark_closed()
            if shared.pump.broken is not None:
                with _translated:
                    raise shared.pump.closed_error()
            raise zmq.ZMQError(zmq.ENOTSOCK)
        return shared

    def _mark_closed(self) -> None:
        self._closed = True

    # ------------------------------------------------------------- sending

    def send(
        self,
        data: Any,
        flags: int = 0,
        copy: bool = True,
        track: bool = False,
        routing_id: int | None = None,
        group: str | None = None,
    ) -> Any:
        """Send one frame, as pyzmq; with ``zmq.SNDMORE`` it is held for this
        greenlet until the last frame of its message. ``copy``, ``track`` and
        ``copy_threshold`` mean what they mean to pyzmq."""
        shared = self._live()
        if routing_id is not None or group is not None:
            data = zmq.Frame(data, track=track, copy=copy or None)
            if routing_id is not None:
                data.routing_id = routing_id
            if group is not None:
                data.group = group
        frame = _frame(data, copy, track, self.copy_threshold, None)
        shared.send(gevent.getcurrent(), [frame], flags)
        return _tracker(frame, copy, track)

    def send_multipart(
        self, msg_parts: Any, flags: int = 0, copy: bool = True, track: bool = False, **kwargs: Any
    ) -> Any:
        """Send a whole multipart message at once, as pyzmq."""
        shared = self._live()
        threshold = self.copy_threshold
        frames = [_frame(part, copy, track, threshold, i) for i, part in enumerate(msg_parts)]
        if not frames:
            raise ValueError("empty message: a message needs at least one frame")
        shared.send(gevent.getcurrent(), frames, flags)
        return _tracker(frames[-1], copy, track)

    # ----------------------------------------------------------- receiving

    def recv(self, flags: int = 0, copy: bool = True, track: bool = False) -> Any:
        """The next frame for this greenlet (the rest of a message it began
        stays its own), as pyzmq: ``bytes``, or the ``zmq.Frame`` with
        ``copy=False``."""
        frame = self._live().recv_frame(gevent.getcurrent(), flags)
        return frame.bytes if copy else frame

    def recv_multipart(self, flags: int = 0, copy: bool = True, track: bool = False) -> list[Any]:
        """The rest of this greenlet's message, or the next whole one, as pyzmq."""
        frames = self._live().recv_message(gevent.getcurrent(), flags)
        return [frame.bytes for frame in frames] if copy else frames

    def recv_into(self, buffer: Any, /, *, nbytes: int = 0, flags: int = 0) -> int:
        """Receive a frame into ``buffer`` (truncated to ``nbytes`` or the
        buffer's size); returns the frame's full size, as pyzmq."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be >= 0, got {nbytes}")
        view = memoryview(buffer)
        if view.readonly:
            raise BufferError("Cannot recv_into a read-only buffer")
        if not view.c_contiguous:
            raise BufferError("Can only recv_into contiguous buffers")
        view = view.cast("B")
        if nbytes > len(view):
            raise ValueError(f"nbytes={nbytes} is more than the buffer holds ({len(view)})")
        frame = self.recv(flags, copy=False)
        data = frame.buffer
        n = min(nbytes or len(view), len(view), len(data))
        view[:n] = data[:n]
        return len(data)

    # ------------------------------------------------------------- options

    def get(self, option: int) -> Any:
        """An option, as pyzmq; ``RCVMORE`` and ``EVENTS`` answer for this
        greenlet, and ``FD`` is a descriptor that becomes readable whenever
        ``EVENTS`` may have changed."""
        option = int(option)
        if option == _RCVMORE:
            return int(self._live().more.get(gevent.getcurrent(), False))
        if option == _EVENTS:
            return self._live().events(gevent.getcurrent())
        if option == _FD:
            return self._live().notify_fd()
        return super().get(option)

    getsockopt = get

    # ---------------------------------------------------------------- poll

    def poll(self, timeout: int | None = None, flags: int = zmq.POLLIN) -> int:
        """Which of ``flags`` this greenlet could do now, waiting up to
        ``timeout`` ms (``None``: no limit) for one, as pyzmq."""
        if self._closed:
            raise zmq.ZMQError(zmq.ENOTSUP)
        shared = self._live()
        me = gevent.getcurrent()
        flags = int(flags)
        seconds = check_timeout(None if timeout is None or timeout < 0 else timeout / 1000)
        deadline = None if seconds is None else get_hub().loop.now() + seconds
        while True:
            ready = shared.events(me) & flags
            if ready or seconds == 0:
                return ready
            remaining = None if deadline is None else deadline - get_hub().loop.now()
            if remaining is not None and remaining <= 0:
                return 0
            shared.wait_change(remaining)
            if shared.closed:
                raise zmq.ZMQError(zmq.ENOTSOCK)

    # --------------------------------------------------------------- close

    @property
    def closed(self) -> bool:
        """``True`` once closed (or its socket ended under it)."""
        shared = self._shared
        return bool(self._closed or shared is None or shared.closed)

    @property
    def unsent(self) -> list[list[Any]]:
        """Messages accepted into a ``tx_size`` buffer that never reached libzmq."""
        return self._shared.unsent if self._shared is not None else []

    @property
    def dropped_frames(self) -> int:
        """Frames dropped because the greenlet reading their message ended first."""
        return self._shared.dropped_frames if self._shared is not None else 0

    def close(self, linger: int | None = None) -> None:
        """Close, as pyzmq: never blocks; libzmq's ``LINGER`` (or ``linger``,
        ms) governs what it still holds. Every later call raises ``ENOTSOCK``."""
        shared = self._shared
        if self._closed or shared is None:
            return
        if linger is not None and (isinstance(linger, bool) or not isinstance(linger, int)):
            raise TypeError(f"linger must be an int of milliseconds, not {type(linger).__name__}")
        if self.context is not None:
            self.context._rm_socket(self)
        if not shared.closed:
            shared.close(linger)
        self._closed = True

    def __repr__(self) -> str:
        closed = " closed" if self.closed else ""
        return (
            f"<zmqchan_green.SharedSocket over {self._over}(zmq.{self._type_name}) "
            f"at {hex(id(self))}{closed}>"
        )


def _qualified(cls: type) -> str:
    """pyzmq's name for a class: ``zmq.green.Context`` rather than its module path."""
    name = cls.__dict__.get("_repr_cls")
    if isinstance(name, str):
        return name
    module = cls.__module__
    if module.startswith("zmq.green"):
        module = "zmq.green"
    elif module.startswith("zmq."):
        module = "zmq"
    return f"{module}.{cls.__name__}"


_patched: dict[str, Any] = {}


def patch() -> None:
    """Make every socket that any ``zmq.green.Context`` creates from now on a
    :class:`SharedSocket` (idempotent; :func:`unpatch` undoes it)."""
    import zmq.green

    context: Any = zmq.green.Context
    if "socket_class" not in _patched:
        _patched["socket_class"] = context._socket_class
        context._socket_class = SharedSocket


def unpatch() -> None:
    """Undo :func:`patch`: ``zmq.green`` contexts make ``zmq.green`` sockets again."""
    import zmq.green

    context: Any = zmq.green.Context
    if "socket_class" in _patched:
        context._socket_class = _patched.pop("socket_class")
