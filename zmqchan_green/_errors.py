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


class ChannelClosed(ZmqChanError):
    """The pair was closed: no more sends, and no more receives once drained."""


class ChannelBroken(ChannelClosed):
    """The pump stopped on a fatal error, which is held in ``__cause__``.

    A subclass of :class:`ChannelClosed`, so code that only cares whether it
    can go on treats both alike.
    """


class WouldBlock(ZmqChanError):
    """A ``*_nowait`` call could not complete at once."""


class SendError(ZmqChanError):
    """A message the pump could not hand to the socket after its ``send`` returned.

    Put on :attr:`ChannelPair.errors` rather than raised, because no caller is
    waiting for it any more. ``message`` holds the frames; ``__cause__`` the
    :class:`zmq.ZMQError`.
    """

    def __init__(self, message: Sequence[object], cause: BaseException) -> None:
        super().__init__(f"message of {len(message)} frame(s) not sent: {cause}")
        self.message = list(message)
        self.__cause__ = cause

    def __reduce__(self) -> tuple[type[SendError], tuple[list[object], BaseException | None]]:
        # The constructor takes (message, cause), not the formatted text in args.
        return (SendError, (self.message, self.__cause__))


class PairTimeout(TimeoutError):
    """A timeout of the pair's own (not exported): a ``TimeoutError``, told apart
    from one thrown into a call from elsewhere."""
