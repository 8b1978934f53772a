"""``recv_any``: wait on several pairs and events at once, like Go's ``select``.

Theory of operation: one :class:`Select` op stands for the whole call. Each
pair gets a :class:`SelectBranch` in its queue of waiting receivers; finishing a
branch finishes the select (tagged with its pair), and since an op finishes
only once, the first pair to deliver wins and every other pump finds its
branch spent and gives its message to the next receiver instead. Events are
linked the same way. So a message is taken atomically: no other receiver
gets it, and no message is lost to a select that another source already won.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import gevent
from gevent.event import Event

from ._checks import check_direction, check_timeout
from ._errors import ChannelBroken, ChannelClosed
from ._ops import DONE, PENDING, GreenletOp, Op
from ._pair import ChannelPair

__all__ = ["Select", "SelectBranch", "recv_any"]

Source = ChannelPair | Event


class Select(GreenletOp):
    """The one op of a ``recv_any`` call; its result is ``(source, message)``."""

    __slots__ = ("_broken", "_open_pairs")

    def __init__(self, pairs: int, broken: ChannelBroken | None = None) -> None:
        super().__init__(None, gevent.get_hub())
        self._open_pairs = pairs
        self._broken = broken  # a pair found broken before the wait began

    def pair_closed(self, error: BaseException, has_events: bool) -> None:
        """A pair closed while waited on: skip it; fail only when none is left."""
        self._open_pairs -= 1
        if isinstance(error, ChannelBroken):
            self._broken = error
        if self._open_pairs == 0 and not has_events:
            self.finish(error=self._broken or ChannelClosed("every pair is closed"))


class SelectBranch(Op):
    """What one pair's queue of waiters holds for a select; finishing it
    finishes the select with ``(source, result)``."""

    __slots__ = ("has_events", "select", "source")

    def __init__(self, select: Select, source: object, has_events: bool) -> None:
        super().__init__(None)
        self.select = select
        self.source = source
        self.has_events = has_events

    def finish(self, result: Any = None, error: BaseException | None = None) -> bool:
        if error is not None:  # the pair closed while the select waited on it
            if self.state == PENDING:
                self.state = DONE
                self.select.pair_closed(error, self.has_events)
            return True
        # False when another source already won: the pump keeps its message.
        return self.select.finish((self.source, result))


def recv_any(sources: Iterable[Source], timeout: float | None = None) -> tuple[Source, Any]:
    """Receive from whichever of ``sources`` is ready first.

    ``sources`` holds :class:`ChannelPair`\\ s and :class:`gevent.event.Event`\\ s.
    Returns ``(pair, message)`` for the first pair with a message (taken
    atomically: no other receiver gets it), or ``(event, None)`` when an event
    is set first. When several are ready at once, the earliest in ``sources``
    wins. Closed pairs are skipped once drained; when every pair is closed and
    no event is given, raises :class:`ChannelClosed` (:class:`ChannelBroken`
    if one of them broke). ``TimeoutError`` after ``timeout`` seconds. A
    greenlet killed while waiting leaves every message where it was.
    """
    items = list(sources)
    if not items:
        raise ValueError("recv_any needs at least one pair or event")
    pairs: list[ChannelPair] = []
    events: list[Event] = []
    for item in items:
        if isinstance(item, ChannelPair):
            check_direction(item._check_thread().socket_type, sending=False)
            pairs.append(item)
        elif isinstance(item, Event):
            events.append(item)
        else:
            raise TypeError(
                f"recv_any takes ChannelPairs and gevent.event.Events, not {type(item).__name__}"
            )
    timeout = check_timeout(timeout)

    broken: ChannelBroken | None = None
    open_pairs: list[ChannelPair] = []
    for item in items:  # ready now? the earliest in order wins
        if isinstance(item, Event):
            if item.is_set():
                return item, None
            continue
        try:
            msg = item._pump.take_buffered()
        except ChannelBroken as exc:
            broken = exc
            continue
        except ChannelClosed:
            continue
        if msg is not None:
            return item, msg
        open_pairs.append(item)
    if not open_pairs and not events:
        raise broken or ChannelClosed("every pair is closed")

    select = Select(len(open_pairs), broken)
    branches = [(pair, SelectBranch(select, pair, bool(events))) for pair in open_pairs]

    def on_event(event: Event) -> None:
        select.finish((event, None))

    for pair, branch in branches:
        pair._pump.add_receiver(branch)
    for event in events:
        event.rawlink(on_event)
    try:
        done = select.wait(timeout)
    except BaseException:
        if select.state == DONE and select.error is None:
            _give_back(select.result)
        raise
    finally:
        for pair, branch in branches:
            pair._pump.remove_receiver(branch)
        for event in events:
            event.unlink(on_event)
    if not done:
        raise TimeoutError(f"recv_any timed out after {timeout} s")
    if select.error is not None:
        raise select.error
    result: tuple[Source, Any] = select.result
    return result


def _give_back(result: tuple[Source, Any]) -> None:
    source, msg = result
    if isinstance(source, ChannelPair):
        source._pump.deliver(msg, front=True)
