"""Argument checks made in the caller, before anything is queued."""

from __future__ import annotations

import math
import numbers

import zmq
from gevent.monkey import get_original

__all__ = [
    "FOREVER",
    "Frame",
    "Message",
    "as_message",
    "check_direction",
    "check_linger",
    "check_timeout",
]

#: One frame as the pair accepts it.
Frame = bytes | bytearray | memoryview | zmq.Frame
#: A message as the pair accepts it: frames, or one bytes-like object.
Message = Frame | list[Frame] | tuple[Frame, ...]

_IMMUTABLE = (bytes, zmq.Frame)

#: The longest wait a lock can hold (``threading.TIMEOUT_MAX``, about 292
#: years); a timeout or linger at least this long means "no limit".
FOREVER: float = get_original("_thread", "TIMEOUT_MAX")


def _frame(obj: object, index: int) -> bytes | zmq.Frame | memoryview:
    if isinstance(obj, _IMMUTABLE):
        return obj
    if isinstance(obj, str):
        raise TypeError(
            f"frame {index} is a str ({obj[:20]!r}); frames are bytes-like: "
            "encode text first, e.g. s.encode()"
        )
    try:
        view = memoryview(obj)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"frame {index} is {type(obj).__name__}, not bytes-like "
            "(bytes, bytearray, memoryview or zmq.Frame)"
        ) from None
    # Memory that anyone can still change (a bytearray, even behind a read-only
    # view) could change between send() and the wire, and libzmq needs
    # contiguous memory: keep the view only over contiguous bytes.
    return view if type(view.obj) is bytes and view.contiguous else view.tobytes()


def as_message(msg: object) -> list[bytes | zmq.Frame | memoryview]:
    """Return ``msg`` as a list of frames, or raise ``TypeError``/``ValueError``.

    Accepts a list or tuple of bytes-like frames, or one bytes-like object as a
    one-frame message. Buffers over mutable memory are copied, so changing them
    after ``send`` returns does not change the message.
    """
    if type(msg) is list or type(msg) is tuple:
        frames = list(msg)
        for frame in frames:
            if type(frame) is not bytes:
                break
        else:
            if frames:
                return frames  # the common case: all bytes, nothing to convert
    if isinstance(msg, (list, tuple)):
        if not msg:
            raise ValueError("empty message: a message needs at least one frame")
        return [_frame(f, i) for i, f in enumerate(msg)]
    if isinstance(msg, str):
        return [_frame(msg, 0)]  # raises, with the hint to encode
    try:
        return [_frame(msg, 0)]
    except TypeError:
        raise TypeError(
            f"message is {type(msg).__name__}; send a list or tuple of "
            "bytes-like frames, or one bytes-like object"
        ) from None


_SEND_ONLY = frozenset({zmq.PUSH, zmq.PUB})
_RECV_ONLY = frozenset({zmq.PULL, zmq.SUB})


def check_direction(socket_type: int, sending: bool) -> None:
    """Refuse, as pyzmq does (``ENOTSUP``), to send on a receive-only socket or vice versa."""
    if socket_type in (_RECV_ONLY if sending else _SEND_ONLY):
        what = "send" if sending else "recv"
        name = zmq.SocketType(socket_type).name
        raise zmq.ZMQError(zmq.ENOTSUP, f"cannot {what} on a {name} socket")


def check_linger(linger: object) -> float | None:
    """``close()``'s ``linger`` as seconds (``-1.0``: no limit, also for any
    negative value and for anything at least :data:`FOREVER`), or ``None``."""
    if linger is None:
        return None
    if isinstance(linger, bool) or not isinstance(linger, numbers.Real):
        raise TypeError(f"linger must be seconds or None, not {type(linger).__name__}")
    if math.isnan(linger):
        raise ValueError("linger must be a number of seconds, not NaN")
    seconds = float(linger)
    return -1.0 if seconds < 0 or seconds >= FOREVER else seconds


def check_timeout(timeout: object) -> float | None:
    """``timeout`` as seconds, or ``None`` (no limit: also for anything at least
    :data:`FOREVER`, which no lock or timer could hold); ``TypeError`` or
    ``ValueError`` if it is not a usable number of seconds."""
    if timeout is None:
        return None
    if type(timeout) is not float and type(timeout) is not int:
        if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
            raise TypeError(
                f"timeout must be a number of seconds or None, not {type(timeout).__name__}"
            )
        timeout = float(timeout)
    if not timeout >= 0:  # also catches NaN
        raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
    return None if timeout >= FOREVER else float(timeout)
