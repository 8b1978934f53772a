"""Share one ZeroMQ socket between any number of gevent greenlets.

A :class:`ChannelPair` gives a socket a single owner, a pump greenlet in the
hub's thread, and lets every other greenlet send and receive whole messages
through it.
"""

from ._errors import (
    ChannelBroken,
    ChannelClosed,
    SendError,
    WouldBlock,
    ZmqChanError,
)
from ._pair import ChannelPair
from ._requester import Requester, ThreadRequester
from ._select import recv_any
from ._shared import SharedSocket, patch, unpatch
from ._threads import ThreadPort
from ._version import __version__

__all__ = [
    "ChannelBroken",
    "ChannelClosed",
    "ChannelPair",
    "Requester",
    "SendError",
    "SharedSocket",
    "ThreadPort",
    "ThreadRequester",
    "WouldBlock",
    "ZmqChanError",
    "__version__",
    "patch",
    "recv_any",
    "unpatch",
]
