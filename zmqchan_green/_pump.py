"""The pump: the one greenlet that touches a pair's socket.

Theory of operation
===================

State. The buffers and waiting callers are :class:`~._queues.Queues`, which
the pump extends: see there for what each holds, and for the callers' fast
paths.

Waking. The pump sleeps on a :class:`gevent.hub.Waiter` (``_sleeper``). Four
things wake it, each only if it is asleep, so there is never more than one
wake-up in flight: the io watcher on ``ZMQ_FD`` (run by the hub), a greenlet
that changed the state (a hub callback, or a zero-delay timer if the pump was
already woken so in this loop iteration; never a direct switch), the
threads' wake pipe (see ``_gate``), and timers (the close deadline, a send
back-off, and a slow keep-alive that notices a socket closed under us).

Edge trigger. ``ZMQ_FD`` only signals *changes*, and only after libzmq has
been asked. So each round reads ``zmq.EVENTS`` once, does what it allows as a
batch (sends while writable, receives while readable and there is room),
and reads ``EVENTS`` again. The pump sleeps only right after an ``EVENTS``
read that offered nothing it can act on; a wake-up that finds nothing just goes
back to sleep. ``EAGAIN`` on the first send of a batch stalls sending until the
next FD event or a short back-off timer (1 ms doubling to 100 ms), instead of
spinning; ``EAGAIN`` later in a batch only means the reading went stale:
``EVENTS`` is read again. A round may also end without that last reading
when no reading could give it work: nothing to send, and nothing it may read
(the socket cannot receive, or the receive side is full and whoever makes
room wakes the pump); the next round starts with a reading. Not on a
rendezvous that sends: it has room (for ``send_nowait`` too, and for the
senders admitted at the end of a batch) only while the last reading said
writable and nothing was sent since, so that reading must be fresh. Within a
batch, each write that went through lets the pump take the next waiting
sender's message into its hand; if libzmq refuses that one, it is the one
message in the pump's hand that a rendezvous may hold.

Reading one. An empty read costs pyzmq an exception (about 3.5 us, more than
an ``EVENTS`` reading), and with one request in flight it would come after
every message. So once a batch of reads found just one message before
``EAGAIN``, the first read of each round takes one message and lets the next
``EVENTS`` reading say whether more wait; when more do at once, reads go on
in batches (until ``EAGAIN`` or the room runs out) again.

Refusals. ``EAGAIN`` part-way through a message is a rollback: the message
is sent again whole, never resumed at the refused frame (on ``REQ`` it is
reported on ``errors``); see ``_wire``. ``sent`` counts only messages libzmq
took whole.

Slow peers (``ROUTER``). A message a peer refuses is parked for that peer
(see ``_parking``), and messages to other peers go on. While anything is
parked a rendezvous accepts only messages for peers that are not stalled;
waiting senders to other peers are taken one at a time and sent at once;
senders to a parked peer keep waiting (their messages are not accepted), so
a stalled peer holds back only its own senders.

Fairness. One wake does at most ``_BATCH`` socket operations, then the pump
yields to the hub through a zero-delay timer: unlike a callback, that lets the
loop go round, so I/O is polled and due timers fire before the pump goes on.

Close. ``close()`` refuses new sends, fails queued senders, calls and
receivers with ``ChannelClosed`` (the senders' messages were not accepted),
stops reading the socket, and wakes the pump, which fixes one deadline
(``linger``, or the socket's ``LINGER``), keeps handing ``_tx`` and the parked
messages to the socket until none is left or the deadline passes, closes the
socket with what remains of the deadline, and records what never went out for
``close()`` to return. Receivers (greenlets and threads alike) still get what
was buffered, then ``ChannelClosed``. The finish path cannot be stopped by an
exception: whatever the socket's ``close()`` does, the socket is released,
every waiter wakes and ``close()`` returns.

Breaking. A fatal ``ZMQError`` (``ETERM``, ``ENOTSOCK``...) or any unexpected
exception ends the loop: the socket is closed with ``linger=0`` (so
``Context.term()`` returns), every waiter gets :class:`ChannelBroken` with the
error as ``__cause__``, and what was accepted but never sent is kept for
``close()``.

Ownership and fork. A socket is driven by one pump at most, and in a child
process every inherited pump becomes a broken one (see ``_registry``): its
watchers and timers stop, its greenlet is never woken again, its buffers are
dropped (they belong to the parent), and nothing touches the socket. A fork
inside ``call()`` is caught as the call returns. For a fork that skips the
hooks (``fork()`` from C), each round and the keep-alive timer check the
pid, so the child's pump goes quiet on its next wake-up, within a second at
most; a round already under way in that instant may still touch the socket.

Subclasses. :class:`~._direct.DirectPump` (``SharedSocket``) lets greenlets
use the socket themselves and changes only what the pump does when the
socket is writable or readable (``_on_writable``/``_on_readable``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
import zmq
from gevent.hub import Hub, Waiter
from gevent.monkey import get_original
from gevent.queue import Queue

from . import _registry
from ._close import close_socket
from ._errors import SendError
from ._gate import ABANDON, ThreadGate
from ._ops import PENDING
from ._parking import Parking
from ._queues import Queues, discard
from ._wire import (
    EVENTS,
    FATAL,
    NOBLOCK,
    POLLIN,
    POLLOUT,
    Backoff,
    Wire,
    get_option,
    recv,
    req_lost,
)

__all__ = ["ERRORS_MAXSIZE", "Pump"]

T = TypeVar("T")

_get_ident: Callable[[], int] = get_original("_thread", "get_ident")
_allocate_lock: Callable[[], Any] = get_original("_thread", "allocate_lock")

#: Socket operations per wake before the pump yields to the hub.
_BATCH = 256
#: How often an idle pump checks that its socket still exists (seconds).
_KEEPALIVE = 1.0
#: Capacity of ``errors``; the oldest entry is dropped beyond it.
ERRORS_MAXSIZE = 1000
#: ``LINGER`` is a C int of milliseconds; longer means no limit (-1).
_LINGER_MAX_MS = 2**31 - 1


class _Inherited(RuntimeError):
    """The cause of a pair found in a child process after a fork."""


class Pump(Queues):
    """A pair's queues and the greenlet that moves messages between them and
    its socket.

    Public methods are for greenlets of the hub's thread (``accept``,
    ``closed_error`` and ``stats`` for any thread); the ``_pump_*`` ones run in
    the pump greenlet only.
    """

    def __init__(
        self,
        socket: zmq.Socket[Any],
        hub: Hub,
        tx_size: int,
        rx_size: int,
        copy: bool,
    ) -> None:
        self.socket = socket
        self._address = _registry.claim(socket, self)
        try:
            self._setup(socket, hub, tx_size, rx_size, copy)
        except BaseException:
            _registry.release(self._address, self)
            raise
        _registry.track(self)

    def _setup(
        self,
        socket: zmq.Socket[Any],
        hub: Hub,
        tx_size: int,
        rx_size: int,
        copy: bool,
    ) -> None:
        # The pump works on a plain (not green) view of the same libzmq socket:
        # no hidden waits, and no EVENTS read after every call.
        self._plain: zmq.Socket[Any] = zmq.Socket.shadow(self._address)
        super().__init__(hub, tx_size, rx_size)
        self._loop = hub.loop
        self.thread_ident = _get_ident()
        self._pid = os.getpid()
        self._gate: ThreadGate | None = None
        self._gate_signalled = False
        self._copy = copy
        self.socket_type = get_option(self._plain, zmq.TYPE)
        self._wire = Wire(self._plain, self.socket_type)
        # REQ and REP allow one message per turn: a second send or receive in
        # the same batch would hit EFSM, so each one waits for a fresh EVENTS.
        self._per_events = 1 if self.socket_type in (zmq.REQ, zmq.REP) else _BATCH
        # A ROUTER routes each message itself (see "Slow peers").
        self._routes = self.socket_type == zmq.ROUTER
        self._receives = self.socket_type not in (zmq.PUSH, zmq.PUB)
        # A rendezvous that can send accepts a message only while the last
        # EVENTS reading said writable and nothing was sent since
        # (``_tx_has_room``). Within a batch, a write that went through is what
        # lets the pump take the next waiting sender's message into its hand.
        self._rendezvous_sends = tx_size == 0 and self.socket_type not in (zmq.PULL, zmq.SUB)

        self._parking = Parking(self._wire, self._report)
        self._parked = self._parking.peers  # the same dict: checked on hot paths
        self._writable = self._routes or bool(get_option(self._plain, EVENTS) & POLLOUT)
        self._backoff = Backoff(self._loop, self._on_event)
        self._first_read = True
        self._read_one = False
        self._forked = False
        self._deadline_timer: Any = None
        self._timer_deadline: float | None = None

        self.sent = 0
        self.received = 0
        self.errors_raised = 0
        self.errors_dropped = 0
        self.wakeups = 0
        self.errors: Queue[SendError] = Queue(ERRORS_MAXSIZE)

        self._sleeper: Waiter[Any] | None = None
        self._sleep_waiter: Waiter[Any] = Waiter(hub)
        # Watch a duplicate of ZMQ_FD: if the socket is closed under us, libzmq
        # closes its descriptor, and a watcher left on a closed descriptor makes
        # libev abort the process. The duplicate stays valid until we close it.
        self._fd = os.dup(get_option(self._plain, zmq.FD))
        try:
            self._io = self._loop.io(self._fd, 1)
        except BaseException:
            os.close(self._fd)
            raise
        self._keepalive = self._loop.timer(_KEEPALIVE, _KEEPALIVE, ref=False)
        self._yield_timer = self._loop.timer(0.0)
        self._wake_timer: Any = self._loop.timer(0.0)  # gevent's stubs lack .active
        self._callback_iteration = -1
        # zmq.green keeps a watcher of its own on ZMQ_FD that reads EVENTS on
        # every signal; while the pair owns the socket, ours is the only one needed.
        green_watcher = getattr(socket, "_state_event", None)
        if green_watcher is not None:
            green_watcher.stop()
        self.greenlet = gevent.spawn_raw(self._pump_run)

    # ------------------------------------------------------------------ waking

    def wake(self) -> None:
        """Make a sleeping pump look at its state again (greenlets only).

        The first wake in a loop iteration is a callback (the pump runs at
        once: low latency). Later ones in the same iteration go through a
        zero-delay timer: greenlets that keep waking the pump would otherwise
        chain callbacks, and gevent runs callbacks for a whole switch interval
        (5 ms) before timers get their turn; a timer lets the loop go round.
        """
        sleeper = self._sleeper
        if sleeper is None:
            return
        iteration = self._loop.iteration
        if iteration != self._callback_iteration:
            self._callback_iteration = iteration
            self._sleeper = None
            self._loop.run_callback(sleeper.switch, None)
        elif not self._wake_timer.active:
            self._wake_timer.start(self._on_wake)

    def _on_wake(self) -> None:
        sleeper = self._sleeper
        if sleeper is not None:
            self._sleeper = None
            sleeper.switch(None)

    def _on_fd(self) -> None:
        # Runs in the hub: libzmq's FD signalled (it has commands to process).
        self._on_event()

    def _on_event(self) -> None:
        # Runs in the hub: for FD events and timers.
        self._send_stalled = False
        sleeper = self._sleeper
        if sleeper is not None:
            self._sleeper = None
            sleeper.switch(None)

    def _on_keepalive(self) -> None:
        if not self._check_pid():
            self._on_event()

    def _check_pid(self) -> bool:
        """``True`` (and the pump made inherited) in a child process that a fork
        without the fork hooks left us in."""
        if os.getpid() != self._pid:
            self.inherited()
            return True
        return False

    def _on_gate_event(self) -> None:
        self._gate_signalled = True
        self._on_event()

    def thread_gate(self) -> ThreadGate | None:
        """The gate for native threads, made on first use (hub thread only);
        ``None`` once the pump has stopped."""
        if self._gate is None and not self.finished:
            context = self.socket.context or zmq.Context.instance()
            self._gate = ThreadGate(context, self._loop, self._on_gate_event)
        return self._gate

    def in_hub(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` in the hub's thread: now if called there, else as
        soon as the hub gets to it (from any thread, e.g. a finalizer)."""
        if _get_ident() == self.thread_ident:
            fn(*args)
        else:
            self._loop.run_callback_threadsafe(fn, *args)

    def socket_lost(self) -> None:
        """The socket was closed under the pair and its address given to a new
        one: wake the pump (from the hub, whatever greenlet calls this), which
        finds the socket closed and breaks."""
        if not self.finished:
            self._loop.run_callback(self._on_event)

    def inherited(self) -> None:
        """Make this pump, copied into a child process by a fork, a broken one
        that never touches libzmq and never runs again."""
        if self._forked:
            return
        self._forked = True
        _registry.forget(self)
        self._lock = _allocate_lock()  # a parent's thread may have held it
        self._sleeper = None
        self.broken = _Inherited(
            f"this pair was inherited across a fork: it belongs to process {self._pid}, "
            f"this is process {os.getpid()}; make new pairs (on a new context) in the child"
        )
        self.closing = True
        self.finished = True
        self._close_watchers()
        if self._gate is not None:
            self._gate.inherited()
        # What the buffers hold belongs to the parent, which still delivers it.
        self._tx.clear()
        self._rx.clear()
        self._parking.clear()
        self._unsent = []
        for queue in (self._tx_wait, self._calls, self._rx_wait):
            while queue:
                op = queue.popleft()
                if op.in_hub_thread:  # native threads of the parent do not exist here
                    op.finish(error=self.closed_error())
        self._done.set()

    def stats(self) -> dict[str, int]:
        """Counters; a consistent-enough snapshot from any thread."""
        return {
            "sent": self.sent + self._parking.sent,
            "received": self.received,
            "tx_pending": len(self._tx) + self._parking.count,
            "rx_pending": len(self._rx),
            "tx_waiting": len(self._tx_wait),
            "rx_waiting": len(self._rx_wait),
            "errors": self.errors_raised,
            "errors_dropped": self.errors_dropped,
            "wakeups": self.wakeups,
            "parked": self._parking.count,
            "rollbacks": self._wire.rollbacks,
        }

    # ------------------------------------------------------------- the pump

    def _pump_run(self) -> None:
        if self._forked or self.finished:
            return  # forked or closed before it ever ran: the watchers are closed already
        try:
            self._io.start(self._on_fd)
            self._keepalive.start(self._on_keepalive)
            while not self._forked and not self.finished:
                exhausted = self._pump_round()
                if self._forked:
                    break
                if self.closing and (
                    not (self._tx or self._parked) or time.monotonic() >= self._pump_deadline()
                ):
                    break
                if exhausted:
                    self._pump_yield()
                else:
                    self._pump_sleep()
        except BaseException as exc:  # fatal ZMQError, a bug, or a kill: never hang callers
            if not self._forked and not self.finished:
                self.broken = exc
        finally:
            # In a child, the parent's socket is not ours to touch; after
            # close_now(), the pump has nothing left to do.
            if not self._forked and not self.finished:
                self._pump_finish()

    def _pump_sleep(self) -> None:
        sleeper = self._sleep_waiter
        sleeper.clear()
        self._sleeper = sleeper
        try:
            sleeper.get()
        finally:
            self._sleeper = None
            if not self._forked:
                self._wake_timer.stop()
        self.wakeups += 1

    def _pump_yield(self) -> None:
        # Not _sleeper: nobody needs to wake a pump that is about to go on.
        waiter = self._sleep_waiter
        waiter.clear()
        self._yield_timer.start(waiter.switch, None)
        try:
            waiter.get()
        finally:
            if not self._forked:
                self._yield_timer.stop()

    def _pump_deadline(self) -> float:
        if self._deadline is None:
            linger_ms = get_option(self._plain, zmq.LINGER)
            self._deadline = float("inf") if linger_ms < 0 else time.monotonic() + linger_ms / 1000
        return self._deadline

    def _pump_round(self) -> bool:
        """Act on the socket until nothing more can be done now.

        Returns ``True`` if it stopped because the batch budget ran out.
        """
        if self._check_pid():
            return False
        if self.socket.closed:
            # Closed by someone else: say so instead of touching a dead handle.
            raise zmq.ZMQError(zmq.ENOTSOCK, "the pair's socket was closed by other code")
        if self._gate_signalled:
            self._gate_signalled = False
            self._serve_thread_ops(self._gate.drain())  # type: ignore[union-attr]
        if self._calls:
            self._pump_calls()
            if self._forked:
                return False  # a call forked: this is the child, hands off the socket
        if self.closing:
            self._arm_deadline()
        budget = _BATCH
        self._first_read = True
        # Whatever woke the pump, a stalled peer may have room again: the
        # command saying so may have been taken by an earlier EVENTS read.
        parking = self._parking
        parking.retry = bool(self._parked)
        while True:
            events = self._read_events()
            self._writable = self._routes or bool(events & POLLOUT)
            done = 0
            if parking.retry and self._parked:
                done += self._pump_parked(budget)
            if self._writable and not self._send_stalled and (self._tx or self._tx_wait):
                done += self._on_writable(budget - done)
            if done and self._per_events == 1:
                pass  # REQ/REP: a send changed the turn, so EVENTS must be read again
            elif events & POLLIN and not self.closing:
                done += self._on_readable(budget - done)
            budget -= done
            if budget <= 0:
                return True
            if not done or self._nothing_pending():
                return False

    def _serve_thread_ops(self, ops: list[tuple[str, Any]]) -> None:
        """Admit what native threads submitted, or tidy up after those that gave up."""
        for kind, op in ops:
            if kind == ABANDON:
                self.abandon(*op)
            else:
                self._admit(kind, op)

    def _nothing_pending(self) -> bool:
        """Whether no ``EVENTS`` reading could give the pump work now (see
        "Edge trigger"): nothing to send, and nothing it may read. Never for
        a rendezvous that sends: whether it has room depends on a fresh
        reading (a send may have filled the pipe, or a read taken a command
        saying it has room again)."""
        if self._rendezvous_sends:
            return False
        return not (self._tx or self._tx_wait or self._parked) and (
            self._rx_starved or not self._receives
        )

    def _read_events(self) -> int:
        return get_option(self._plain, EVENTS)

    def _on_writable(self, budget: int) -> int:
        """Act on a writable socket with something to send; returns how many
        socket operations it did."""
        return self._pump_send(min(budget, self._per_events))

    def _on_readable(self, budget: int) -> int:
        """Act on a readable socket; returns how many messages it read."""
        if self._rx_wait or len(self._rx) < self._rx_limit:
            self._rx_starved = False  # a receiver came (recv_any, a thread): room again
            if self._read_one:  # see "Reading one"
                if self._first_read:
                    self._first_read = False
                    return self._pump_recv(1)
                self._read_one = False  # more came at once: a busy stream
            return self._pump_recv(min(budget, self._per_events))
        self._rx_starved = True
        return 0

    def _arm_deadline(self) -> None:
        deadline = self._pump_deadline()
        if deadline != self._timer_deadline and deadline != float("inf"):
            if self._deadline_timer is not None:
                self._deadline_timer.close()
            self._deadline_timer = self._loop.timer(max(deadline - time.monotonic(), 0.0))
            self._deadline_timer.start(self._on_event)
            self._timer_deadline = deadline

    def _take_waiting(self) -> list[Any] | None:
        """Accept the first waiting sender's message into the pump's hand (the
        head of ``_tx``, which is empty) and return it; ``None`` if none waits.

        Senders to a parked peer keep waiting.
        """
        waiting = self._tx_wait
        with self._lock:
            if self._parked:
                return self._take_routable()
            while waiting:
                op = waiting.popleft()
                if op.finish() and op.payload is not None:
                    self._tx.append(op.payload)
                    return op.payload  # type: ignore[no-any-return]
        return None

    def _take_routable(self) -> list[Any] | None:
        parked = self._parked
        for op in list(self._tx_wait):
            if op.state != PENDING:
                discard(self._tx_wait, op)
                continue
            msg = op.payload
            if msg is not None and bytes(msg[0]) in parked:
                continue
            discard(self._tx_wait, op)
            if op.finish() and msg is not None:
                self._tx.append(msg)
                return msg  # type: ignore[no-any-return]
        return None

    def _admit_waiting(self) -> None:
        """Queue(N) semantics: freed places go to the longest-waiting senders
        (once per batch, so a thousand blocked senders cost one lock, not one each)."""
        if self._tx_wait and self._tx_has_room():
            with self._lock:
                while self._tx_wait and self._tx_has_room():
                    op = self._tx_wait.popleft()
                    if op.finish() and op.payload is not None:
                        self._tx.append(op.payload)

    def _pump_send(self, budget: int) -> int:
        """Hand messages to the socket, oldest first; returns how many it dealt with."""
        tx = self._tx
        n = sent = 0
        try:
            while n < budget:
                if not tx and self.tx_size:
                    # Waiting senders in a burst: libzmq's I/O thread is then
                    # woken once for many messages, not once per message.
                    self._admit_waiting()
                if tx:
                    msg: list[Any] | None = tx[0]
                else:
                    msg = self._take_waiting()
                if msg is None:
                    break
                if self._wire.req_open and not self._wire.end_request():
                    self._stall()
                    break
                if self._parked and bytes(msg[0]) in self._parked:
                    self._park(msg)  # behind the messages already waiting for its peer
                    n += 1
                    continue
                try:
                    refused = self._wire.write(msg)
                except zmq.ZMQError as exc:
                    if exc.errno in FATAL:
                        raise  # the message stays at the head, for close() to return
                    tx.popleft()
                    self._report(msg, exc)
                    n += 1
                    continue
                if refused < 0:
                    tx.popleft()
                    sent += 1
                    n += 1
                    continue
                if refused:
                    self._rolled_back(msg, refused)
                elif self._routes:
                    self._park(msg)
                    n += 1
                    continue
                if n == 0:
                    self._stall()
                break
        finally:
            self.sent += sent
            if sent and self._rendezvous_sends and not self._routes:
                # A rendezvous's room is a fresh reading's (see "Edge trigger"):
                # these writes may have filled the pipe, or (REQ) ended the turn.
                self._writable = False
            self._admit_waiting()
        if sent:
            self._backoff.reset()
        return n

    def _rolled_back(self, msg: list[Any], refused: int) -> None:
        """libzmq refused frame ``refused`` of ``msg`` (at the head of ``_tx``) and
        dropped the frames before it: a pipe was torn down mid-message."""
        if not self._wire.recover(msg, refused):
            self._tx.popleft()
            self._report(msg, req_lost())

    def _park(self, msg: list[Any]) -> None:
        """Move the head of ``_tx`` (``msg``) to its peer's parked messages."""
        with self._lock:  # tx shrinks and parked grows in one step for accept()
            self._tx.popleft()
            self._parking.park(msg)
        if not self._backoff.active:
            self._backoff.arm()

    def _pump_parked(self, budget: int) -> int:
        """Retry parked messages (see ``_parking``); returns how many it dealt with."""
        n = self._parking.retry_peers(budget)
        if self._parked:
            if n:
                self._backoff.reset()
            self._backoff.arm()
        return n

    def _stall(self) -> None:
        self._send_stalled = True
        self._backoff.arm()

    def _report(self, msg: list[Any], exc: zmq.ZMQError) -> None:
        self.errors_raised += 1
        if self.errors.full():
            self.errors.get_nowait()
            self.errors_dropped += 1
        self.errors.put_nowait(SendError(msg, exc))

    def _pump_recv(self, budget: int) -> int:
        plain = self._plain
        copy = self._copy
        rx = self._rx
        n = 0
        try:
            while n < budget:
                if not self._rx_wait and len(rx) >= self._rx_limit:
                    self._rx_starved = True
                    break
                try:
                    frame = recv(plain, NOBLOCK, False)
                except zmq.Again:
                    self._read_one = n == 1  # see "Reading one"
                    break
                except zmq.ZMQError as exc:
                    if exc.errno != zmq.EFSM:
                        raise
                    break  # REQ/REP: not this socket's turn to receive after all
                # Frame.more is far cheaper than getsockopt(RCVMORE).
                msg = [frame.bytes if copy else frame]
                while frame.more:
                    frame = recv(plain, NOBLOCK, False)
                    msg.append(frame.bytes if copy else frame)
                n += 1
                if self._rx_wait:
                    self.deliver(msg)
                else:
                    rx.append(msg)
        finally:
            self.received += n
        return n

    def _pump_calls(self) -> None:
        while self._calls:
            op = self._calls.popleft()
            if op.state == PENDING:
                fn, args, kwargs = op.payload
                try:
                    result = fn(self.socket, *args, **kwargs)
                except BaseException as exc:  # GreenletExit too: fn's, for its caller
                    op.finish(error=exc)
                else:
                    op.finish(result)

    def _unsent_messages(self) -> list[list[Any]]:
        """What was accepted and never handed over, oldest first: parked
        messages (all older than ``_tx``), then ``_tx``."""
        return self._parking.oldest_first() + list(self._tx)

    def _pump_finish(self) -> None:
        """Release everything, whatever fails on the way: the socket stops being
        owned, every waiter wakes and ``close()`` returns."""
        if self.finished:
            return
        _registry.forget(self)  # before the descriptor closes: the fork hook skips us
        try:
            with self._lock:
                self.closing = True  # from here on nobody appends to _tx
            self._close_watchers()
            self._close_socket()
        finally:
            _registry.release(self._address, self)
            self._unsent = self._unsent_messages()
            self._tx.clear()
            self._parking.clear()
            self.finished = True
            try:
                if self._gate is not None:
                    # Receivers still get what is buffered.
                    self._serve_thread_ops(self._gate.close())
            finally:
                self._fail_all(self._tx_wait)
                self._fail_all(self._calls)
                self._fail_all(self._rx_wait)
                self._done.set()

    def _close_watchers(self) -> None:
        """Stop every watcher and timer and close the duplicate ``ZMQ_FD``
        (once: after that the descriptor number may belong to someone else)."""
        for watcher in (self._io, self._keepalive, self._yield_timer, self._backoff):
            watcher.close()
        self._wake_timer.close()
        if self._deadline_timer is not None:
            self._deadline_timer.close()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _close_socket(self) -> None:
        """Close the socket with what remains of the deadline (``0`` if broken)."""
        linger = 0  # broken: nothing more can be flushed, and term() must not wait
        if self.broken is None:
            ms = (self._pump_deadline() - time.monotonic()) * 1000
            linger = -1 if ms > _LINGER_MAX_MS else max(0, int(ms))
        close_socket(self.socket, linger)
