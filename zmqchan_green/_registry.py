"""Which pump owns which socket, and what a fork does to the pumps.

Theory of operation
===================

Ownership. Open pumps are registered by the address of their libzmq socket.
libzmq reuses an address as soon as a socket is freed, so an entry whose
socket was closed (by ``Context.destroy()``, or by closing the pair's socket
object) no longer counts: wrapping the new socket takes the address over and
wakes the old pump to break. Closing the handle through *another* Python object
(a shadow) cannot be seen from the pair's object once the address is reused:
then the new socket is refused as "already owned" (never driven by two pumps).

Fork. libzmq must not be used in a child process, and reading ``EVENTS`` there
answers ``EINTR``, which pyzmq retries forever. A hook registered with
``os.register_at_fork`` (which ``os.fork``, ``gevent.fork`` and
``multiprocessing`` all run) makes every live pump an inherited, broken one in
the child (:meth:`~._pump.Pump.inherited`). A pump leaves the live set before
its duplicate of ``ZMQ_FD`` is closed, so the hook never touches a descriptor
number that may have been reused.
"""

from __future__ import annotations

import os
import weakref
from typing import TYPE_CHECKING, Any

import zmq

if TYPE_CHECKING:
    from ._pump import Pump

__all__ = ["claim", "forget", "release", "track"]

#: Open pumps by the address of their libzmq socket.
_owned: dict[int, Pump] = {}
#: Every pump not yet finished, for the fork hook.
_live: weakref.WeakSet[Pump] = weakref.WeakSet()


def claim(socket: zmq.Socket[Any], pump: Pump) -> int:
    """Record that ``pump`` owns ``socket`` and return its address;
    ``ValueError`` if the socket is closed or owned by an open pump."""
    if socket.closed:
        raise ValueError("cannot wrap a closed socket")
    address = int(socket.underlying)
    owner = _owned.get(address)
    if owner is not None:
        if not owner.socket.closed:
            raise ValueError("this socket is already owned by an open ChannelPair")
        owner.socket_lost()  # a freed socket's address, reused: the old pump breaks
    _owned[address] = pump
    return address


def release(address: int, pump: Pump) -> None:
    """``pump`` no longer owns the socket at ``address``."""
    if _owned.get(address) is pump:
        del _owned[address]


def track(pump: Pump) -> None:
    """Let the fork hook find ``pump`` until :func:`forget`."""
    _live.add(pump)


def forget(pump: Pump) -> None:
    _live.discard(pump)


def _after_fork_in_child() -> None:
    for pump in list(_live):
        pump.inherited()
    _owned.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
