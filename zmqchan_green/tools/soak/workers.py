"""The soak's workers: sending and receiving greenlets, the echo consumer, native threads.

Theory of operation
===================

Senders are greenlets and native OS threads (through the pair's
:class:`~zmqchan_green.ThreadPort`); a thread also receives on its lane, in
batches: a batch of sends, then receives until nothing is there. Every send
and receive has a deadline; a small share of them get a tiny one (the
``send_timeout`` and ``recv_timeout`` faults): a timed-out send was not
accepted, so its message must never arrive. A send that waits its full (long)
deadline counts as a stall, and a stall is a failure.

Receivers take whatever their lane's *current* pair holds: a pair closed under
them by a fault is waited out until the lane has its replacement, and a stall
injected on the lane (``paused_until``) is slept out, so back-pressure reaches
the senders.

The echo consumer is the ROUTER pair's only reader. It never blocks long on
an echo (see ``_ECHO_WAIT``): one it cannot place within 50 ms is refused,
i.e. not accepted and not owed, and the next ones for 50 ms are only offered.
Requests from a stalled peer (:mod:`.stall`) it hands to the lane's *stall
replier*, a greenlet that sends each reply back through the same ROUTER pair
and waits as long as that takes, so that the consumer never waits for a
stalled peer. Each echo accepted for the lane's own DEALER is time-stamped on
the lane: a stalled peer checks with it that the lane keeps moving.

Each worker draws its own RNG from the soak's seeded RNG when it is started,
so the schedule of timeouts follows from ``--seed``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.queue import Empty, Queue

from ... import ChannelBroken, ChannelClosed, WouldBlock
from ..common import RealThread
from .lanes import ECHO, PULL_KILL, THREAD_LANES, Lane, RxGen, Topology, TxGen
from .ledger import ACC, MAYBE, NACC, PENDING, Ledger, Sender, Worker
from .messages import Payloads
from .stall import StalledPeer

__all__ = ["SEND_DEADLINE", "STALL", "Workers"]

#: A send that waits this long is a stall (a failure).
SEND_DEADLINE = 10.0
#: How long the ROUTER's consumer waits for an echo to be accepted. It must not
#: block for long: when a DEALER vanishes with messages still queued for the
#: ROUTER, libzmq keeps its route until the ROUTER has read them, accepting
#: echoes for it into the dead pipe and then, with ROUTER_MANDATORY, refusing
#: them with EAGAIN; a reader blocked on such an echo would never read them.
_ECHO_WAIT = 0.05
#: How long receivers wait before they look at the stop flag and pauses again.
_RECV_WAIT = 0.5
#: Threads receive only briefly, then go back to sending.
_THREAD_RECV_WAIT = 0.02
_THREAD_BATCH = 64
#: Share of sends and receives that get a tiny timeout (injected timeouts).
_TINY_SEND_P = 0.01
_TINY_RECV_P = 0.02
_TINY = 0.002
#: How long an injected receiver stall lasts (seconds, uniform).
STALL = (0.05, 0.3)

#: A stalled peer's request for the stall replier: the peer, its number, the
#: frames to send back, and the ROUTER pair they came from.
_Reply = tuple[StalledPeer, int, list[Any], RxGen]


class Workers:
    """Every worker of the soak, and the switches that stop them.

    ``stopping`` stops the senders (and the fault injector), ``rx_stop`` the
    receivers once their pair has nothing more, ``errors_stop`` the errors
    drainer. Receiving greenlets are in ``workers``, threads in ``threads``
    with their receiving side in ``thread_workers``.
    """

    def __init__(
        self, ledger: Ledger, topology: Topology, payloads: Payloads, rng: random.Random
    ) -> None:
        self.ledger = ledger
        self.topology = topology
        self.lanes = topology.lanes
        self.payloads = payloads
        self.rng = rng
        self.workers: list[Worker] = []
        self.threads: list[Any] = []
        self.thread_workers: list[Worker] = []
        self.stopping = False
        self.rx_stop = False
        self.errors_stop = False

    def start(self, greenlets: int, threads: int) -> None:
        """Spread ``greenlets`` over the lanes, then start ``threads`` native threads.

        Of each lane's share, a quarter (at least one) receive and the rest send;
        on an echo lane, one of the senders' places goes to the ROUTER's consumer.
        """
        share = [greenlets // len(self.lanes)] * len(self.lanes)
        for i in range(greenlets % len(self.lanes)):
            share[i] += 1
        for lane, n in zip(self.lanes, share, strict=True):
            receivers = max(1, n // 4)
            senders = n - receivers
            if lane.spec.kind == ECHO:
                senders -= 1
                consumer = Worker(f"consumer {lane.index}", ordered=True, across_pairs=True)
                rng = self.draw_rng()
                replies: Queue[_Reply] = Queue()
                consumer.greenlet = gevent.spawn(self._echo_consumer, lane, consumer, rng, replies)
                lane.consumer = consumer
                replier = Worker(f"stall replier {lane.index}", ordered=False)
                replier.greenlet = gevent.spawn(self._stall_replier, replier, consumer, replies)
                self.workers.extend((consumer, replier))
            for number in range(receivers):
                self.spawn_receiver(lane, number)
            for _ in range(senders):
                self.spawn_sender(lane)
        for index in range(threads):
            self._start_thread(index)

    def draw_rng(self) -> random.Random:
        """A fresh RNG for one worker (or the injector), drawn from the soak's seeded one."""
        return random.Random(self.rng.getrandbits(64))

    def sending_greenlets(self) -> list[gevent.Greenlet[Any, Any]]:
        """Every sending greenlet ever started."""
        senders = self.ledger.senders.values()
        return [s.greenlet for s in senders if s.greenlet is not None]

    def receiving_greenlets(self) -> list[gevent.Greenlet[Any, Any]]:
        """Every receiving greenlet ever started, consumers included."""
        return [w.greenlet for w in self.workers if w.greenlet is not None]

    def threads_done(self) -> bool:
        """Whether every native thread has finished."""
        return all(w.done for w in self.thread_workers)

    # ------------------------------------------------------------ errors queues

    def errors_drainer(self) -> None:
        """Keep the pairs' ``errors`` queues short, so none is dropped."""
        while not self.errors_stop:
            for rx in self.topology.rx_gens:
                if not rx.closed:
                    self.ledger.drain_errors_rx(rx)
                    self.ledger.note_parked(rx.pair.stats()["parked"])
            for tx in self.topology.tx_gens:
                if not tx.closed:
                    self.ledger.drain_errors_tx(tx)
            gevent.sleep(0.02)

    # ------------------------------------------------------------ greenlet workers

    def spawn_sender(self, lane: Lane) -> Sender:
        """A new sending greenlet on ``lane``."""
        sender = self.ledger.add_sender(lane, "greenlet")
        rng = self.draw_rng()
        sender.greenlet = gevent.spawn(self._green_sender, sender, lane, rng)
        return sender

    def _green_sender(self, sender: Sender, lane: Lane, rng: random.Random) -> None:
        seq = -1
        try:
            while not self.stopping:
                tx = lane.tx
                seq = sender.begin(tx.gen)
                msg = self.payloads.message(sender.sid, tx.gen, seq, lane.frames())
                tiny = rng.random() < _TINY_SEND_P
                timeout = rng.uniform(0.0, _TINY) if tiny else SEND_DEADLINE
                sender.in_send = True
                try:
                    tx.pair.send(msg, timeout=timeout)
                except TimeoutError:
                    sender.outcome[seq] = NACC
                    sender.not_accepted += 1
                    self._send_timed_out(tiny, f"greenlet sender {sender.sid}")
                except ChannelBroken as exc:
                    sender.outcome[seq] = NACC
                    sender.not_accepted += 1
                    self.ledger.problem(f"greenlet sender {sender.sid}: {exc!r}")
                    return
                except ChannelClosed:
                    sender.outcome[seq] = NACC  # recycled under us: not accepted
                    sender.not_accepted += 1
                    self.ledger.count_info("send_closed", 1)
                else:
                    sender.outcome[seq] = ACC
                    sender.accepted += 1
                finally:
                    sender.in_send = False
        except gevent.GreenletExit:
            if seq >= 0 and sender.outcome[seq] == PENDING:
                sender.outcome[seq] = MAYBE  # killed inside send: accepted or not
                sender.maybe += 1
            raise

    def _send_timed_out(self, tiny: bool, who: str) -> None:
        if tiny:
            self.ledger.fault("send_timeout")
        else:
            self.ledger.stall(f"{who}: send stalled for {SEND_DEADLINE} s")

    def spawn_receiver(self, lane: Lane, number: int) -> Worker:
        """A new receiving greenlet on ``lane``: on the PULL pair, or the DEALER pair's echoes."""
        ordered = lane.spec.kind != PULL_KILL
        worker = Worker(f"receiver {lane.index}.{number}", ordered)
        self.workers.append(worker)
        lane.receivers.append(worker)
        rng = self.draw_rng()
        if lane.spec.kind == ECHO:
            worker.greenlet = gevent.spawn(self._green_echo_receiver, lane, worker, rng)
        else:
            worker.greenlet = gevent.spawn(self._green_receiver, lane, worker, rng)
        return worker

    def _recv_timeout(self, rng: random.Random) -> tuple[bool, float]:
        tiny = rng.random() < _TINY_RECV_P
        return tiny, (rng.uniform(0.0, _TINY) if tiny else _RECV_WAIT)

    def _pause(self, lane: Lane) -> bool:
        """Sleep out a stall injected on the lane; whether there was one."""
        wait = lane.paused_until - time.monotonic()
        if wait > 0:
            gevent.sleep(wait)
            return True
        return False

    def _green_receiver(self, lane: Lane, worker: Worker, rng: random.Random) -> None:
        """Receive on a PULL lane until told to stop."""

        def deliver(frames: list[Any], end: RxGen | TxGen) -> None:
            assert isinstance(end, RxGen)
            self.ledger.deliver(frames, end, worker)

        self._green_receive_loop(lane, worker, rng, lambda: lane.rx, deliver)

    def _green_echo_receiver(self, lane: Lane, worker: Worker, rng: random.Random) -> None:
        """Receive echoes on an echo lane's DEALER pair until told to stop."""

        def deliver(frames: list[Any], end: RxGen | TxGen) -> None:
            assert isinstance(end, TxGen)
            self.ledger.deliver_echo(frames, end, worker)

        self._green_receive_loop(lane, worker, rng, lambda: lane.tx, deliver)

    def _green_receive_loop(
        self,
        lane: Lane,
        worker: Worker,
        rng: random.Random,
        current: Callable[[], RxGen | TxGen],
        deliver: Callable[[list[Any], RxGen | TxGen], None],
    ) -> None:
        """Receive from the lane's current ``current()`` pair until told to stop;
        a pair closed under the receiver is waited out until it is replaced."""
        try:
            while True:
                got = self._receive_once(lane, worker, rng, current)
                if got is False:
                    return
                if got is not True:
                    deliver(*got)
        finally:
            worker.done = True

    def _receive_once(
        self,
        lane: Lane,
        worker: Worker,
        rng: random.Random,
        current: Callable[[], RxGen | TxGen],
    ) -> tuple[list[Any], RxGen | TxGen] | bool:
        """One receive from the lane's current pair: ``(frames, pair end)``;
        ``True`` to try again (a stall, a timeout, a pair being replaced);
        ``False`` to stop (told to, or the pair broke)."""
        if self._pause(lane):
            return True
        end = current()
        tiny, timeout = self._recv_timeout(rng)
        worker.in_recv = True
        try:
            frames = end.pair.recv(timeout=timeout)
        except TimeoutError:
            if tiny:
                self.ledger.fault("recv_timeout")
                return True
            return not self.rx_stop
        except ChannelBroken as exc:
            self.ledger.problem(f"{worker.name}: {exc!r}")
            return False
        except ChannelClosed:
            if end is current():
                if self.rx_stop:
                    return False
                gevent.sleep(0.001)
            return True
        finally:
            worker.in_recv = False
        return frames, end

    def _echo_consumer(
        self, lane: Lane, worker: Worker, rng: random.Random, replies: Queue[_Reply]
    ) -> None:
        """The ROUTER's only reader: check each message and send it back.

        An echo that cannot be accepted within ``_ECHO_WAIT`` is refused (not
        accepted, and so never owed); for ``_ECHO_WAIT`` after that, echoes are
        only offered (``send_nowait``), so the reader keeps reading. A stalled
        peer's request goes to the stall replier (``replies``).
        """
        refuse_until = 0.0
        stalled_peers = self.ledger.stalled_peers
        try:
            while True:
                received = self._receive_once(lane, worker, rng, lambda: lane.rx)
                if received is False:
                    return
                if received is True:
                    continue
                frames, rx = received
                assert isinstance(rx, RxGen)
                peer = stalled_peers.get(frames[0])
                if peer is not None:
                    seq = self.ledger.stall_read(peer, frames, rx)
                    if seq is not None:
                        replies.put((peer, seq, frames, rx))
                    continue
                got = self.ledger.deliver(frames, rx, worker)
                if got is None:
                    continue
                sender, seq = got
                if not sender.rgens or sender.rgens[-1][1] != rx.gen:
                    sender.rgens.append((seq, rx.gen))
                accepted = False
                echo = [*frames, rx.gen_frame]
                try:
                    if time.monotonic() < refuse_until:
                        rx.pair.send_nowait(echo)
                    else:
                        rx.pair.send(echo, timeout=_ECHO_WAIT)
                except WouldBlock:
                    self.ledger.count_info("echoes_refused", 1)
                except TimeoutError:
                    # Never block the only reader for long: see _ECHO_WAIT.
                    refuse_until = time.monotonic() + _ECHO_WAIT
                    self.ledger.count_info("echoes_refused", 1)
                except ChannelBroken as exc:
                    self.ledger.problem(f"{worker.name}: echo: {exc!r}")
                    return
                except ChannelClosed:
                    pass  # restarted under us: the echo was not accepted
                else:
                    accepted = True
                    lane.echo_accepted_at = time.monotonic()
                    lane.echoes_accepted += 1
                self.ledger.echo_outcome(sender, seq, rx, accepted)
        finally:
            worker.done = True

    def _stall_replier(self, worker: Worker, consumer: Worker, replies: Queue[_Reply]) -> None:
        """Send stalled peers their replies, each through the ROUTER pair its request
        came from, waiting as long as it takes; ends once the consumer has."""
        try:
            while True:
                try:
                    peer, seq, frames, rx = replies.get(timeout=_RECV_WAIT)
                except Empty:
                    if consumer.done:
                        return
                    continue
                try:
                    rx.pair.send(frames, timeout=SEND_DEADLINE)
                except TimeoutError:
                    peer.replied(seq, accepted=False)
                    self.ledger.count_info("stall_replies_timed_out", 1)
                except ChannelBroken as exc:
                    peer.replied(seq, accepted=False)
                    self.ledger.problem(f"{worker.name}: {exc!r}")
                except ChannelClosed:
                    peer.replied(seq, accepted=False)  # its pair was replaced: not accepted
                else:
                    with self.ledger.lock:
                        rx.stall_accepted += 1
                    peer.replied(seq, accepted=True)
        finally:
            worker.done = True

    # ------------------------------------------------------------ native threads

    def _start_thread(self, index: int) -> None:
        lane = self.lanes[THREAD_LANES[index % len(THREAD_LANES)]]
        sender = self.ledger.add_sender(lane, "thread")
        worker = Worker(f"thread {index}", ordered=lane.spec.kind != PULL_KILL)
        self.thread_workers.append(worker)
        rng = self.draw_rng()
        thread = RealThread(
            target=self._thread_main,
            args=(lane, sender, worker, rng),
            name=f"soak-thread-{index}",
            daemon=True,
        )
        self.threads.append(thread)
        thread.start()

    def _thread_main(self, lane: Lane, sender: Sender, worker: Worker, rng: random.Random) -> None:
        """A native thread: a batch of sends through its lane's ThreadPort, then receives."""
        try:
            while not self.stopping:
                self._thread_send_batch(lane, sender, rng)
                self._thread_recv_batch(lane, worker, rng)
        except BaseException as exc:
            self.ledger.problem(f"{worker.name} crashed: {exc!r}")
        finally:
            worker.done = True

    def _thread_send_batch(self, lane: Lane, sender: Sender, rng: random.Random) -> None:
        for _ in range(_THREAD_BATCH):
            if self.stopping:
                return
            tx = lane.tx
            seq = sender.begin(tx.gen)
            msg = self.payloads.message(sender.sid, tx.gen, seq, lane.frames())
            tiny = rng.random() < _TINY_SEND_P
            timeout = rng.uniform(0.0, _TINY) if tiny else SEND_DEADLINE
            try:
                tx.port.send(msg, timeout=timeout)
            except TimeoutError:
                sender.outcome[seq] = NACC
                sender.not_accepted += 1
                self._send_timed_out(tiny, f"thread sender {sender.sid}")
            except ChannelBroken as exc:
                sender.outcome[seq] = NACC
                sender.not_accepted += 1
                raise RuntimeError(f"send: {exc!r}") from exc
            except ChannelClosed:
                sender.outcome[seq] = NACC
                sender.not_accepted += 1
                self.ledger.count_info("send_closed", 1)
                time.sleep(0.001)
            else:
                sender.outcome[seq] = ACC
                sender.accepted += 1

    def _thread_recv_batch(self, lane: Lane, worker: Worker, rng: random.Random) -> None:
        echo = lane.spec.kind == ECHO
        for _ in range(_THREAD_BATCH):
            wait = lane.paused_until - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, STALL[1]))
                return
            tx = lane.tx
            rx = lane.rx
            port = tx.port if echo else rx.port
            assert port is not None
            tiny = rng.random() < _TINY_RECV_P
            timeout = rng.uniform(0.0, _TINY) if tiny else _THREAD_RECV_WAIT
            try:
                frames = port.recv(timeout=timeout)
            except TimeoutError:
                if tiny:
                    self.ledger.fault("recv_timeout")
                    continue
                return  # nothing there now: back to sending
            except ChannelBroken as exc:
                raise RuntimeError(f"recv: {exc!r}") from exc
            except ChannelClosed:
                time.sleep(0.001)  # replaced under us: drained, the lane has a new pair
                continue
            if echo:
                self.ledger.deliver_echo(frames, tx, worker)
            else:
                self.ledger.deliver(frames, rx, worker)
