"""The soak's accounting: after the run, every attempt's fate, and every invariant checked.

Theory of operation
===================

The accounting runs at the end, after senders stopped, receivers drained,
every pair closed and every closed pair swept of what it still buffered. For
every accepted message (and echo): delivered, returned by ``close()``,
reported on ``errors``, or lost. A lost message is *lost in libzmq* only if a
fault that makes libzmq drop queued messages could have caught it in libzmq's
queues (:class:`~.losses.LossEvent`): its sending pair was closed by a
``sender_recycle`` (libzmq drops what it still holds when the linger ends), or
its lane's receiving pair was closed by a ``peer_restart``; and only if it was
not behind the fault: a pipe is FIFO, so a message older than one already
delivered from the same (sender, sending pair) had left libzmq before the
fault, and a message attempted after the new receiving pair got its first
message rides behind that one on a live connection. Each such fault may cost
at most what libzmq's queues hold (:data:`~.lanes.LOSS_CAPACITY`); where
several faults could have dropped a message, it is attributed so that each
stays within that if it can. Anything else is a loss, and a failure.

A ``peer_churn`` is one event however many times it tore the connection
down; it may cost what libzmq's queues hold once per teardown.

The pairs' own counters are checked against the tally too: for each sending
pair, handed to the socket + returned + reported lies between the accepted and
the accepted-plus-maybe messages, and no more messages count as lost in
libzmq than were handed to the socket and never arrived; for each receiving
pair, read from the socket == delivered to receivers (stalled peers' requests
included); for each ROUTER pair, handed + returned + reported == echoes plus
stalled peers' replies accepted. Stalled peers are accounted on their own
(:meth:`~.stall.StalledPeer.account`).

The per-attempt bytes are scanned at C speed: outcome and fate are OR-ed into
one byte per attempt, counted with a :class:`~collections.Counter`, and the
attempts that were accepted and nothing more are found with a regular
expression over the bytes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from .lanes import ECHO, LOSS_CAPACITY, Lane, RxGen, Topology, TxGen
from .ledger import (
    ACC,
    DLV,
    EACC,
    EDLV,
    EERR,
    ENACC,
    ERET,
    ERR,
    MAYBE,
    NACC,
    PENDING,
    RET,
    Ledger,
    Sender,
    gen_at,
)
from .losses import LossEvent

__all__ = ["Accounting", "Tally"]

#: bytes.translate tables: 1 where a message was delivered / its echo was attempted.
_DELIVERED = bytes(1 if v & DLV else 0 for v in range(256))
_ECHO_ATTEMPTED = bytes(1 if v & (EACC | ENACC) else 0 for v in range(256))


def _or_bytes(a: bytes | bytearray, b: bytes | bytearray) -> bytes:
    """Byte-wise OR of two equally long byte strings (at C speed)."""
    n = len(a)
    return (int.from_bytes(a, "little") | int.from_bytes(b, "little")).to_bytes(n, "little")


@dataclass
class Tally:
    """What the accounting found: message counts by fate, and the losses by cause."""

    totals: Counter[str]
    lost_by_cause: Counter[str]
    echo_lost_by_cause: Counter[str]
    #: The faults that cost more than libzmq's queues can hold.
    over_capacity: list[LossEvent]
    #: The stalled peers' requests and replies, by fate, summed.
    stalled: Counter[str]


class Accounting:
    """One pass over the ledger at the end of the run; :meth:`run` returns the :class:`Tally`.

    Invariants that do not hold are recorded as problems in the ledger (and
    some counted there: duplicates, phantoms).
    """

    def __init__(self, ledger: Ledger, topology: Topology) -> None:
        self.ledger = ledger
        self.topology = topology
        self.lanes = topology.lanes

    def run(self) -> Tally:
        """Check every invariant (a failed one is a problem in the ledger); the totals."""
        pairs: list[TxGen | RxGen] = [*self.topology.tx_gens, *self.topology.rx_gens]
        for pair in pairs:
            stats = pair.pair.stats()
            pair.sent, pair.errors = stats["sent"], stats["errors"]
            pair.errors_dropped, pair.received = stats["errors_dropped"], stats["received"]
            pair.rollbacks = stats["rollbacks"]

        totals: Counter[str] = Counter()
        lost_by_cause: Counter[str] = Counter()
        echo_lost_by_cause: Counter[str] = Counter()
        per_tx: dict[int, Counter[str]] = {tx.gen: Counter() for tx in self.topology.tx_gens}
        #: (lane, the indices of the lane's loss events that could have dropped it).
        lost_in_libzmq: list[tuple[int, list[int]]] = []
        for sender in self.ledger.senders.values():
            n = sender.attempts
            outcome = bytes(sender.outcome[:n])
            fwd = bytes(sender.fwd[:n])
            echo = bytes(sender.echo[:n])
            combined = _or_bytes(outcome, fwd)
            lane = self.lanes[sender.lane]
            totals["attempted"] += n
            for gen, start, end in sender.ranges():
                counts = per_tx[gen]
                part = combined[start:end]
                hist = Counter(part)
                counts["acc"] += sum(c for v, c in hist.items() if v & 3 == ACC)
                counts["maybe"] += sum(c for v, c in hist.items() if v & 3 == MAYBE)
                counts["dlv"] += sum(c for v, c in hist.items() if v & DLV)
            hist = Counter(combined)
            for value, count in hist.items():
                self._classify(value, count, sender, totals)
            for match in re.finditer(b"\x01", combined):  # accepted, and nothing more
                seq = match.start()
                lost_gen = gen_at(sender.gens, seq)
                assert lost_gen is not None
                covering = self._covering(lane, sender.sid, lost_gen, seq)
                if not covering:
                    self.ledger.problem(
                        f"LOST: sender {sender.sid} (lane {sender.lane}) message {seq}: "
                        "accepted, never delivered nor returned"
                    )
                    totals["lost"] += 1
                else:
                    lost_in_libzmq.append((lane.index, covering))
                    per_tx[lost_gen]["libzmq_lost"] += 1
            if lane.spec.kind == ECHO:
                self._account_echo(sender, fwd, echo, totals, echo_lost_by_cause)
        self._attribute(lost_in_libzmq, lost_by_cause)
        self._check_counters(per_tx, totals)
        over_capacity = self._check_capacity()
        stalled: Counter[str] = Counter()
        for peer in self.ledger.stalled_peers.values():
            stalled.update(peer.account())
        totals["stall_lost"] = stalled["lost"]
        return Tally(totals, lost_by_cause, echo_lost_by_cause, over_capacity, stalled)

    def _classify(self, value: int, count: int, sender: Sender, totals: Counter[str]) -> None:
        """Tally ``count`` attempts whose outcome | fate byte is ``value``."""
        outcome, fate = value & 3, value & ~3
        if fate & DLV:
            totals["delivered"] += count
        if fate & RET:
            totals["returned"] += count
        if fate & ERR:
            totals["reported"] += count
        if bin(fate).count("1") > 1:
            self.ledger.duplicates += count
            self.ledger.problem(
                f"sender {sender.sid}: {count} message(s) with two fates ({fate:#x})"
            )
        if outcome == PENDING:
            self.ledger.problem(f"sender {sender.sid}: {count} send(s) never finished")
        elif outcome == ACC:
            totals["accepted"] += count
        elif outcome == NACC:
            totals["not_accepted"] += count
            if fate:
                self.ledger.phantoms += count
                self.ledger.problem(
                    f"sender {sender.sid}: {count} message(s) not accepted (timeout or "
                    f"closed) yet {'delivered' if fate & DLV else 'returned/reported'}"
                )
        else:
            totals["maybe"] += count
            if fate:
                totals["maybe_accepted"] += count
                totals["accepted"] += count
            else:
                totals["maybe_undelivered"] += count

    def _covering(self, lane: Lane, sid: int, gen: int, seq: int) -> list[int]:
        """The lane's loss events that could have dropped message ``seq`` of ``sid``
        through sending pair ``gen`` (indices, oldest first)."""
        covering = []
        for i, event in enumerate(lane.loss_events):
            if seq <= event.low.get((sid, gen), -1):
                break  # delivered after it before this fault, and so before every later one
            if event.covers(sid, gen, seq):
                covering.append(i)
        return covering

    def _attribute(self, lost: list[tuple[int, list[int]]], lost_by_cause: Counter[str]) -> None:
        """Attribute each message lost in libzmq to one fault that could have dropped it.

        Several faults may cover one message (a sender with nothing delivered
        between two restarts); each fault may cost at most what the queues
        hold. Messages whose last candidate comes first are placed first, each
        with its oldest candidate that has room: when the candidates of each
        message are consecutive faults (their bounds only grow; only another
        sending pair's recycle can come between), this fits them all if any
        assignment does. One that fits nowhere goes to its oldest candidate,
        which then reports more than it can hold.
        """
        lost.sort(key=lambda item: (item[0], item[1][-1]))
        for index, covering in lost:
            lane = self.lanes[index]
            events = lane.loss_events
            capacity = LOSS_CAPACITY[lane.spec.transport]
            chosen = events[covering[0]]
            for i in covering:
                if events[i].lost < capacity * events[i].teardowns:
                    chosen = events[i]
                    break
            chosen.lost += 1
            lost_by_cause[chosen.kind] += 1

    def _account_echo(
        self,
        sender: Sender,
        fwd: bytes,
        echo: bytes,
        totals: Counter[str],
        lost_by_cause: Counter[str],
    ) -> None:
        for value, count in Counter(echo).items():
            if value & EDLV and not value & EACC:
                self.ledger.phantoms += count
                self.ledger.problem(
                    f"sender {sender.sid}: {count} echo(es) delivered, never accepted"
                )
            if bin(value & (ERET | EERR | EDLV)).count("1") > 1:
                self.ledger.duplicates += count
                self.ledger.problem(f"sender {sender.sid}: {count} echo(es) with two fates")
            if value & EACC and value & ENACC:
                self.ledger.problem(f"sender {sender.sid}: {count} echo(es) both accepted and not")
        # Delivered to the echo peer, yet neither echoed nor refused: at C speed.
        delivered = int.from_bytes(fwd.translate(_DELIVERED), "little")
        attempted = int.from_bytes(echo.translate(_ECHO_ATTEMPTED), "little")
        unechoed = (delivered & ~attempted).to_bytes(len(fwd), "little")
        for match in re.finditer(b"\x01", unechoed):
            self.ledger.problem(
                f"sender {sender.sid} message {match.start()}: delivered, never echoed"
            )
        for match in re.finditer(bytes([EACC]), echo):
            seq = match.start()
            rgen = gen_at(sender.rgens, seq)
            tgen = gen_at(sender.gens, seq)
            assert rgen is not None and tgen is not None
            for event in self.lanes[sender.lane].loss_events:
                if event.covers_echo(sender.sid, tgen, rgen, seq):
                    event.echo_lost += 1
                    lost_by_cause[event.kind] += 1
                    break
            else:
                totals["echo_lost"] += 1
                self.ledger.problem(
                    f"LOST: echo of sender {sender.sid} message {seq}: accepted by the "
                    "ROUTER pair, never delivered, returned nor reported"
                )

    def _check_counters(self, per_tx: dict[int, Counter[str]], totals: Counter[str]) -> None:
        """The pairs' own counters against the tally."""
        for tx in self.topology.tx_gens:
            counts = per_tx[tx.gen]
            out = tx.sent + tx.returned + tx.errors
            if not counts["acc"] <= out <= counts["acc"] + counts["maybe"]:
                totals["counter_mismatches"] += 1
                self.ledger.problem(
                    f"sending pair {tx.gen}: handed {tx.sent} + returned {tx.returned} + "
                    f"reported {tx.errors} = {out}, but {counts['acc']} accepted and "
                    f"{counts['maybe']} maybe"
                )
            if counts["dlv"] > tx.sent:
                totals["counter_mismatches"] += 1
                self.ledger.problem(
                    f"sending pair {tx.gen}: {counts['dlv']} delivered > {tx.sent} sent"
                )
            if counts["libzmq_lost"] > tx.sent - counts["dlv"]:
                totals["counter_mismatches"] += 1
                self.ledger.problem(
                    f"sending pair {tx.gen}: {counts['libzmq_lost']} lost in libzmq but only "
                    f"{tx.sent - counts['dlv']} handed to the socket and not delivered"
                )
            if tx.errors_dropped:
                self.ledger.problem(
                    f"sending pair {tx.gen}: {tx.errors_dropped} SendError(s) dropped"
                )
            if self.lanes[tx.lane].spec.kind == ECHO and tx.received != tx.echo_delivered:
                totals["counter_mismatches"] += 1
                self.ledger.problem(
                    f"DEALER pair {tx.gen}: read {tx.received} echoes, "
                    f"receivers got {tx.echo_delivered}"
                )
        for rx in self.topology.rx_gens:
            if rx.received != rx.delivered:
                totals["counter_mismatches"] += 1
                self.ledger.problem(
                    f"receiving pair {rx.gen}: read {rx.received}, receivers got {rx.delivered}"
                )
            if self.lanes[rx.lane].spec.kind == ECHO:
                out = rx.sent + rx.returned + rx.errors
                if out != rx.echo_accepted + rx.stall_accepted:
                    totals["counter_mismatches"] += 1
                    self.ledger.problem(
                        f"ROUTER pair {rx.gen}: handed {rx.sent} + returned {rx.returned} + "
                        f"reported {rx.errors} != {rx.echo_accepted} echoes + "
                        f"{rx.stall_accepted} stalled peers' replies accepted"
                    )
                if rx.errors_dropped:
                    self.ledger.problem(
                        f"ROUTER pair {rx.gen}: {rx.errors_dropped} SendError(s) dropped"
                    )

    def _check_capacity(self) -> list[LossEvent]:
        """The faults that cost more than libzmq's queues on their lane can hold."""
        over_capacity = []
        for lane in self.lanes:
            for e in lane.loss_events:
                capacity = LOSS_CAPACITY[lane.spec.transport] * e.teardowns
                if max(e.lost, e.echo_lost) > capacity:
                    over_capacity.append(e)
                    self.ledger.problem(
                        f"{e.kind} of pair {e.old_gen} (lane {lane.index}): {e.lost} messages "
                        f"and {e.echo_lost} echoes lost, more than libzmq can hold ({capacity})"
                    )
        return over_capacity
