"""Closing a socket with a given linger, whatever its class's ``close()`` does."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from typing import Any

import zmq

__all__ = ["close_socket"]


def _takes_linger(close: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(close).parameters.values()
    except (TypeError, ValueError):
        return True  # no signature to read (a compiled method): pyzmq's own
    return any(
        p.name == "linger" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )


def close_socket(socket: zmq.Socket[Any], linger: int | None) -> None:
    """Close ``socket`` with ``linger`` (ms; ``None``: its own ``LINGER``).

    The socket's own ``close()`` runs once: with ``linger=`` if its signature
    takes it, else after setting ``LINGER``. If it raises, or leaves the socket
    open, pyzmq's own ``close`` frees it, and a ``RuntimeWarning`` names what
    went wrong (the caller's close still completes).
    """
    if socket.closed:
        return  # closed under us already: nothing left to free
    close = socket.close
    try:
        if _takes_linger(close):
            close(linger=linger)
        else:
            if linger is not None:
                zmq.Socket.set(socket, zmq.LINGER, linger)
            close()
    except Exception as exc:
        warnings.warn(
            f"{type(socket).__qualname__}.close() raised {exc!r}; the pair closed the "
            "socket with zmq.Socket.close instead",
            RuntimeWarning,
            stacklevel=2,
        )
    finally:
        if not socket.closed:
            try:
                zmq.Socket.close(socket, linger)
            except zmq.ZMQError:
                pass  # nothing left that could be freed
