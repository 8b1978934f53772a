"""How the programs under ``tests/programs`` turn the drop-in on.

``apply()`` calls ``zmqchan_green.patch()``, which makes every socket a
``zmq.green.Context`` creates a ``SharedSocket``. zerorpc does not use
``zmq.green``: it has its own ``zmq.Context`` subclass,
``zerorpc.gevent_zmq.Context``, whose ``socket()`` makes a
``zerorpc.gevent_zmq.Socket`` (a plain ``zmq.Socket`` subclass that waits on
``ZMQ_FD`` itself), so ``patch()`` does not reach it. ``apply()`` also wraps
that context's sockets in ``SharedSocket``, the way the README shows for any
library with a socket class of its own.
"""

from __future__ import annotations

import os
from typing import Any

#: Environment variable the tests set to ask the programs for the drop-in.
ENV = "ZCG_DROPIN"


def requested() -> bool:
    """Whether this process was asked to run with the drop-in."""
    return os.environ.get(ENV) == "1"


def apply() -> str:
    """Turn the drop-in on; returns what was used."""
    import zmqchan_green

    zmqchan_green.patch()
    try:
        import zerorpc.gevent_zmq
    except ImportError:
        return "patch()"
    if not hasattr(zerorpc.gevent_zmq.Context.socket, "__wrapped__"):
        zerorpc.gevent_zmq.Context.socket = _wrapping(zerorpc.gevent_zmq.Context.socket)
    return "patch() and zerorpc's sockets wrapped"


def apply_if_requested() -> str | None:
    """:func:`apply` when :data:`ENV` is ``1``; ``None`` otherwise."""
    return apply() if requested() else None


def _wrapping(original: Any) -> Any:
    from zmqchan_green import SharedSocket

    def socket(self: Any, socket_type: int, *args: Any, **kwargs: Any) -> Any:
        return SharedSocket(original(self, socket_type, *args, **kwargs))

    socket.__wrapped__ = original  # type: ignore[attr-defined]
    return socket
