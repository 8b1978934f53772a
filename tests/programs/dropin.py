"""How the programs under ``tests/programs`` turn the drop-in on.

``apply()`` calls ``zmqchan_green.patch()`` when the package has it. Until it
does, it installs :func:`_temporary_shim` instead, so the harness can run
today.

TEMPORARY SHIM (delete it once ``zmqchan_green.patch()`` exists): every socket
that a ``zmq.green.Context`` creates is returned wrapped in a
``SharedSocket``. zerorpc does not use ``zmq.green``: it has its own
``zmq.Context`` subclass, ``zerorpc.gevent_zmq.Context``, whose ``socket()``
makes a ``zerorpc.gevent_zmq.Socket`` (a plain ``zmq.Socket`` subclass that
waits on ``ZMQ_FD`` itself). The shim wraps that context's sockets as well,
since a drop-in that only replaced ``zmq.green`` would leave zerorpc's
sockets untouched.
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
    """Turn the drop-in on; returns what was used (``"patch()"`` or ``"shim"``)."""
    import zmqchan_green

    patch = getattr(zmqchan_green, "patch", None)
    if patch is not None:
        patch()
        return "patch()"
    _temporary_shim()
    return "shim"


def apply_if_requested() -> str | None:
    """:func:`apply` when :data:`ENV` is ``1``; ``None`` otherwise."""
    return apply() if requested() else None


def _wrapping(original: Any) -> Any:
    from zmqchan_green import SharedSocket

    def socket(self: Any, socket_type: int, *args: Any, **kwargs: Any) -> Any:
        return SharedSocket(original(self, socket_type, *args, **kwargs))

    socket.__wrapped__ = original  # type: ignore[attr-defined]
    return socket


def _temporary_shim() -> None:
    """TEMPORARY: stand-in for ``zmqchan_green.patch()`` (see the module text)."""
    import zmq.green

    if not hasattr(zmq.green.Context.socket, "__wrapped__"):
        zmq.green.Context.socket = _wrapping(zmq.green.Context.socket)
    try:
        import zerorpc.gevent_zmq
    except ImportError:
        return
    if not hasattr(zerorpc.gevent_zmq.Context.socket, "__wrapped__"):
        zerorpc.gevent_zmq.Context.socket = _wrapping(zerorpc.gevent_zmq.Context.socket)
