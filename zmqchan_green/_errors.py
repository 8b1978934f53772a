"""The library's exceptions: one meaning each."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ChannelBroken",
    "ChannelClosed",
    "SendError",
    "WouldBlock",
    "ZmqChanError",
]


class ZmqChanError(Exception):
    """Base class of the errors this library raises."""

    __module__ = "zmqchan_green"  # as tracebacks and reprs should name it


class ChannelClosed(ZmqChanError):
    """The pair was closed: no more sends, and no more receives once drained."""

    __module__ = "zmqchan_green"


class ChannelBroken(ChannelClosed):
    """The pump stopped on a fatal error, which is held in ``__cause__``.

    A subclass of :class:`ChannelClosed`, so code that only cares whether it
    can go on treats both alike.
    """

    __module__ = "zmqchan_green"


class WouldBlock(ZmqChanError):
    """A ``*_nowait`` call could not complete at once."""

    __module__ = "zmqchan_green"


class SendError(ZmqChanError):
    """A message the pump could not hand to the socket after its ``send`` returned.

    Put on :attr:`ChannelPair.errors` rather than raised, because no caller is
    waiting for it any more. ``message`` holds the frames; ``__cause__`` the
    :class:`zmq.ZMQError`.
    """

    __module__ = "zmqchan_green"

    def __init__(self, message: Sequence[object], cause: BaseException) -> None:
        super().__init__(f"message of {len(message)} frame(s) not sent: {cause}")
        self.message = list(message)
        self.__cause__ = cause


class PairTimeout(TimeoutError):
    """A timeout of the pair's own (not exported): a ``TimeoutError``, told apart
    from one thrown into a call from elsewhere."""
