"""``ChannelPair``: share one ZeroMQ socket between any number of greenlets."""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

import gevent
import zmq
from gevent.event import AsyncResult
from gevent.monkey import get_original
from gevent.queue import Queue

from ._checks import Message, as_message, check_direction, check_linger, check_timeout
from ._errors import ChannelBroken, ChannelClosed, SendError
from ._pump import Pump
from ._threads import ThreadPort

__all__ = ["ChannelPair"]

T = TypeVar("T")

_get_ident: Callable[[], int] = get_original("_thread", "get_ident")


def _size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0 (0 is a rendezvous), got {value}")
    return int(value)


def _set_option(socket: zmq.Socket[Any], option: int, value: bytes) -> None:
    socket.setsockopt(option, value)


def _topic(topic: object) -> bytes:
    if isinstance(topic, str):
        return topic.encode("utf-8")
    if isinstance(topic, (bytes, bytearray, memoryview)):
        return bytes(topic)
    raise TypeError(f"topic must be bytes or str, not {type(topic).__name__}")


class ChannelPair:
    """One ZeroMQ socket shared by any number of greenlets.

    From the moment the constructor returns, the pair owns ``socket``: one
    pump greenlet, in the thread and hub that created the pair, is the only
    code that touches it. If the constructor raises, the caller still owns
    the socket.

    ``tx_size`` and ``rx_size`` size the outgoing and incoming buffers: ``0`` is
    a rendezvous (like :class:`gevent.queue.Channel`, ``send`` returns once the
    pump has taken the message), ``N > 0`` buffers up to ``N`` messages (like
    :class:`gevent.queue.Queue`). Beyond them, plus one message per direction in
    the pump's hand, nothing queues: back-pressure reaches the caller.

    With ``copy=False`` received frames are :class:`zmq.Frame` objects.

    Guarantees: a message leaves and arrives whole; one sender's messages leave
    in its order; each received message goes to exactly one receiver; for
    every ``send`` that returned, the message was handed to the socket or is
    returned by :meth:`close`.

    At the edges: a message libzmq rolled back because its peer went away
    mid-message goes out again whole (never as a fragment); on a ``ROUTER``
    with ``ROUTER_MANDATORY``, a peer that cannot take a message holds back only
    its own messages (what waits for stalled peers counts against ``tx_size``;
    besides, one message per stalled peer may be held: the one in the pump's
    hand when that peer refused it). A pair belongs to the process that made it: in a child
    after a fork it never touches the socket, uses no CPU, reports
    ``closed``, and every call raises :class:`ChannelBroken` (its cause says it
    was inherited across a fork); make new pairs on a new context there.

    ``Context.term()`` must not be called from the pair's own hub thread while
    the pair is open: it blocks that thread until every socket is closed, and
    the pump that would close this one needs the thread. Close the pairs
    first, or use ``Context.destroy()``; ``term()`` from another thread is fine
    (the pair breaks with ``ETERM`` and closes its socket).
    """

    def __init__(
        self,
        socket: zmq.Socket[Any],
        tx_size: int = 0,
        rx_size: int = 0,
        *,
        copy: bool = True,
    ) -> None:
        if not isinstance(socket, zmq.Socket):
            raise TypeError(f"socket must be a zmq.Socket, not {type(socket).__name__}")
        tx_size = _size("tx_size", tx_size)
        rx_size = _size("rx_size", rx_size)
        self._pump = Pump(socket, gevent.get_hub(), tx_size, rx_size, bool(copy))
        self._thread = _get_ident()
        self._port: ThreadPort | None = None

    # ------------------------------------------------------------- helpers

    def _check_thread(self) -> Pump:
        if _get_ident() != self._thread:
            raise RuntimeError(
                "ChannelPair methods are for greenlets of the thread that created "
                "the pair; native threads use pair.for_threads() or pair.spawn_thread()"
            )
        return self._pump

    # ----------------------------------------------------------- messages

    def send(self, msg: Message, timeout: float | None = None) -> None:
        """Send ``msg`` (a list or tuple of bytes-like frames, or one bytes-like object).

        Blocks only the calling greenlet until the message is accepted (buffer
        room, or on a rendezvous the pump took it). Once it returns, the message
        will be handed to the socket or returned by :meth:`close`.

        Raises ``TypeError``/``ValueError`` for a bad message (nothing queued),
        ``TimeoutError`` after ``timeout`` seconds (the message was *not*
        accepted), :class:`ChannelClosed` if the pair is or gets closed while
        waiting (not accepted either), :class:`ChannelBroken` if the pump died.
        A greenlet killed (or interrupted by a ``gevent.Timeout``) while blocked
        here never leaves part of a message behind: its message was accepted
        whole, or not at all.
        """
        pump = self._check_thread()
        frames = as_message(msg)
        check_direction(pump.socket_type, sending=True)
        pump.send(frames, check_timeout(timeout), True)

    def send_nowait(self, msg: Message) -> None:
        """Accept ``msg`` now or raise :class:`WouldBlock` (nothing queued)."""
        pump = self._check_thread()
        frames = as_message(msg)
        check_direction(pump.socket_type, sending=True)
        pump.send(frames, None, False)

    def recv(self, timeout: float | None = None) -> list[Any]:
        """The next message, as a list of frames (``bytes``, or ``zmq.Frame`` with ``copy=False``).

        Each received message goes to exactly one receiver, waiting receivers
        in arrival order. Raises ``TimeoutError`` after ``timeout`` seconds;
        after :meth:`close`, returns what was already received, then raises
        :class:`ChannelClosed` (:class:`ChannelBroken` if the pump died). A
        message is never lost to a receiver that times out or is killed.
        """
        pump = self._check_thread()
        check_direction(pump.socket_type, sending=False)
        return pump.recv(check_timeout(timeout), True)

    def recv_nowait(self) -> list[Any]:
        """A message that is already here, or :class:`WouldBlock`."""
        pump = self._check_thread()
        check_direction(pump.socket_type, sending=False)
        return pump.recv(None, False)

    def __iter__(self) -> Iterator[list[Any]]:
        """Yield messages until the pair is closed; :class:`ChannelBroken` if the pump died."""
        while True:
            try:
                yield self.recv()
            except ChannelBroken:
                raise
            except ChannelClosed:
                return

    # ------------------------------------------------------------- socket

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(socket, *args, **kwargs)`` inside the pump, between messages.

        Returns its result or raises its exception; the pump goes on either
        way. ``fn`` blocks the pump while it runs, so keep it short. Use this
        for socket options after wrapping.
        """
        pump = self._check_thread()
        return pump.call(fn, args, kwargs)

    def subscribe(self, topic: bytes | str) -> None:
        """``setsockopt(zmq.SUBSCRIBE, topic)`` through the pump (str is UTF-8 encoded)."""
        self.call(_set_option, zmq.SUBSCRIBE, _topic(topic))

    def unsubscribe(self, topic: bytes | str) -> None:
        """``setsockopt(zmq.UNSUBSCRIBE, topic)`` through the pump (str is UTF-8 encoded)."""
        self.call(_set_option, zmq.UNSUBSCRIBE, _topic(topic))

    @property
    def errors(self) -> Queue[SendError]:
        """:class:`SendError`\\ s for failures no caller can be told about.

        Bounded: when full, the oldest is dropped and counted in
        ``stats()["errors_dropped"]``; the pump never blocks on it. A gevent
        queue: for greenlets of the pair's thread only.
        """
        return self._check_thread().errors

    def stats(self) -> dict[str, int]:
        """Counters, readable from any thread.

        ``sent`` (handed to the socket), ``received`` (read from it),
        ``tx_pending`` (accepted, not yet handed), ``rx_pending`` (read, not yet
        delivered), ``tx_waiting``/``rx_waiting`` (blocked callers), ``errors``
        (SendErrors raised by the pump), ``errors_dropped`` (of those, dropped
        from a full ``errors``), ``wakeups`` (times the pump woke from sleep),
        ``parked`` (``ROUTER``: accepted messages waiting for a peer that
        refused them; also counted in ``tx_pending``), ``rollbacks`` (messages
        libzmq dropped part of when a pipe went away mid-message, and that
        were sent again whole or, on ``REQ``, reported on ``errors``).
        """
        return self._pump.stats()

    # ------------------------------------------------------------ threads

    def for_threads(self) -> ThreadPort:
        """The pair's :class:`ThreadPort`, through which native OS threads use it."""
        self._check_thread()
        if self._port is None:
            self._port = ThreadPort(self._pump, owner=self)
        return self._port

    def spawn_thread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> AsyncResult[T]:
        """Run ``fn(port, *args, **kwargs)`` in the hub's ``gevent.threadpool``.

        ``port`` is this pair's :class:`ThreadPort`. Returns the threadpool's
        :class:`gevent.event.AsyncResult`: ``.get(timeout=None)`` gives fn's
        result or raises its exception.
        """
        port = self.for_threads()
        result: AsyncResult[T] = self._pump.hub.threadpool.spawn(fn, port, *args, **kwargs)
        return result

    # -------------------------------------------------------------- close

    @property
    def closed(self) -> bool:
        """``True`` once :meth:`close` was called or the pump stopped (any thread)."""
        return self._pump.closing

    def close(self, linger: float | None = None) -> list[list[Any]]:
        """Close the pair and its socket; idempotent.

        ``linger`` is in seconds (``None``: the socket's ``LINGER`` option;
        negative or ``LINGER=-1``: no limit). From the call on, ``send`` raises
        :class:`ChannelClosed` and blocked senders wake with it (their messages
        were not accepted). Accepted messages are handed to the socket, in
        order, until all are or one deadline for the whole flush passes; the
        socket is then closed with what remains of it. Blocks only the calling
        greenlet; a receiver that never reads does not delay it.

        Returns the accepted messages that never reached the socket, oldest
        first (a later call returns ``[]``).
        """
        pump = self._check_thread()
        linger = check_linger(linger)
        return pump.close(linger)

    def __enter__(self) -> ChannelPair:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        pump: Pump | None = getattr(self, "_pump", None)
        if pump is None or pump.closing:
            return
        try:
            pump.in_hub(pump.request_close, None)
        finally:
            # Last, so the pair is closed even where warnings are errors.
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=1, source=self)

    def __repr__(self) -> str:
        pump = getattr(self, "_pump", None)
        if pump is None:
            return "<ChannelPair (not constructed)>"
        kind = zmq.SocketType(pump.socket_type).name
        state = "closed" if pump.closing else "open"
        return f"<ChannelPair {kind} tx_size={pump.tx_size} rx_size={pump.rx_size} {state}>"
