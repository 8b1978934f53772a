"""``python -m zmqchan_green demo``: many greenlets share one DEALER socket.

The demo starts its own echo peer, a ``ROUTER`` socket served through a
:class:`~zmqchan_green.ChannelPair` by one greenlet, and connects one
``DEALER`` socket to it, also wrapped in a :class:`~zmqchan_green.ChannelPair`.
Then ``N`` sender greenlets share that one DEALER: each sends ``M`` messages
of four frames, ``[greenlet id, sequence number, random payload, checksum]``,
where the checksum is a BLAKE2b digest of the first three. One receiver
greenlet checks every echoed reply: four frames, a matching checksum, the
payload its sender actually sent, and for each sender its sequence numbers in
order with none missing or repeated. Any mismatch, lost reply or timeout makes
the demo fail with a non-zero exit status; every wait has a deadline, so it
never hangs.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import struct
import sys
import tempfile
import time
from contextlib import ExitStack
from typing import Any, TextIO

import gevent
import zmq
import zmq.green as zmq_green

from .. import ChannelClosed, ChannelPair, SendError
from .common import bind_fresh, int_at_least, positive

__all__ = ["add_demo_command", "run_demo"]

#: How the greenlet id and the sequence number are put on the wire.
_U32 = struct.Struct(">I")
#: Random payloads are 0 to this many bytes long (empty frames included on purpose).
_MAX_PAYLOAD = 512
#: Size of the BLAKE2b checksum frame, in bytes.
_DIGEST_SIZE = 16
#: Once a problem was seen, stop waiting for more replies after this many idle seconds.
_DRAIN_AFTER_ERROR = 1.0
#: At most this many problems are listed in the failure report.
_MAX_LISTED = 10

ENDPOINTS = ("tcp", "ipc", "inproc")


def _checksum(gid: bytes, seq: bytes, payload: bytes) -> bytes:
    digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    digest.update(gid)
    digest.update(seq)
    digest.update(payload)
    return digest.digest()


def _show(frames: list[bytes]) -> str:
    """A short, readable rendering of a message for error reports."""
    shown = [repr(f[:12]) + ("..." if len(f) > 12 else "") for f in frames[:5]]
    if len(frames) > 5:
        shown.append("...")
    return "[" + ", ".join(shown) + "]"


def _remaining(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


class _Tally:
    """What was sent and what came back; touched only by greenlets of one hub."""

    def __init__(self, greenlets: int, messages: int) -> None:
        self.greenlets = greenlets
        self.messages = messages
        self.total = greenlets * messages
        #: Checksum of each message a sender created, by greenlet id then sequence number.
        self.sent: list[list[bytes]] = [[] for _ in range(greenlets)]
        #: The sequence number each sender's next reply must carry.
        self.next_seq: list[int] = [0] * greenlets
        #: Replies that came back for each sender, good or bad.
        self.returned: list[int] = [0] * greenlets
        #: Senders whose ``send`` timed out: (greenlet id, sequence number).
        self.send_timeouts: list[tuple[int, int]] = []
        self.replies = 0
        self.verified = 0
        self.problems: list[str] = []
        self.last_reply_at: float | None = None

    def record_sent(self, gid: int, digest: bytes) -> None:
        """Remember a message before it is sent, so its reply can be checked."""
        self.sent[gid].append(digest)

    def check(self, frames: list[bytes]) -> None:
        """Verify one echoed reply; a mismatch is recorded as a problem."""
        self.replies += 1
        self.last_reply_at = time.monotonic()
        if len(frames) != 4:
            self.problems.append(f"reply of {len(frames)} frame(s), expected 4: {_show(frames)}")
            return
        gid_b, seq_b, payload, digest = frames
        if len(gid_b) != _U32.size or len(seq_b) != _U32.size:
            self.problems.append(f"malformed id or sequence frame in reply {_show(frames)}")
            return
        (gid,) = _U32.unpack(gid_b)
        (seq,) = _U32.unpack(seq_b)
        if gid >= self.greenlets:
            self.problems.append(f"reply for unknown greenlet {gid}")
            return
        self.returned[gid] += 1
        where = f"greenlet {gid} message {seq}"
        if _checksum(gid_b, seq_b, payload) != digest:
            self.problems.append(f"{where}: checksum mismatch (frames damaged or mixed up)")
            return
        sent = self.sent[gid]
        if seq >= len(sent) or sent[seq] != digest:
            self.problems.append(f"{where}: reply does not match anything that greenlet sent")
            return
        expected = self.next_seq[gid]
        if seq != expected:
            if seq < expected:
                self.problems.append(
                    f"{where}: duplicate or out-of-order reply (expected {expected})"
                )
            else:
                self.problems.append(f"{where}: replies {expected}..{seq - 1} missing or late")
                self.next_seq[gid] = seq + 1
            return
        self.next_seq[gid] = seq + 1
        self.verified += 1

    def missing(self) -> str:
        """Which senders still wait for replies, for a timeout report."""
        short = [
            (gid, len(self.sent[gid]) - got)
            for gid, got in enumerate(self.returned)
            if got < len(self.sent[gid])
        ]
        listed = ", ".join(f"greenlet {gid}: {n}" for gid, n in short[:_MAX_LISTED])
        more = (
            f", and {len(short) - _MAX_LISTED} more greenlets" if len(short) > _MAX_LISTED else ""
        )
        return f"replies still missing ({listed}{more})" if short else "no replies missing"


def _sender(
    pair: ChannelPair, gid: int, tally: _Tally, rng: random.Random, deadline: float
) -> None:
    """Send this greenlet's messages through the shared pair, in sequence order."""
    gid_b = _U32.pack(gid)
    seq = 0
    try:
        for seq in range(tally.messages):
            seq_b = _U32.pack(seq)
            payload = rng.randbytes(rng.randint(0, _MAX_PAYLOAD))
            digest = _checksum(gid_b, seq_b, payload)
            tally.record_sent(gid, digest)
            pair.send([gid_b, seq_b, payload, digest], timeout=_remaining(deadline))
    except TimeoutError:
        tally.sent[gid].pop()  # not accepted, so no reply is due
        tally.send_timeouts.append((gid, seq))
    except Exception as exc:
        tally.problems.append(f"greenlet {gid}: send failed: {exc!r}")


def _receiver(pair: ChannelPair, tally: _Tally, deadline: float) -> None:
    """Receive and check every reply until all arrived, the deadline, or a stall after a problem."""
    try:
        while tally.replies < tally.total:
            wait = _remaining(deadline)
            if tally.problems:
                wait = min(wait, _DRAIN_AFTER_ERROR)
            tally.check(pair.recv(timeout=wait))
    except TimeoutError:
        tally.problems.append(
            f"timed out waiting for replies: {tally.replies} of {tally.total} arrived; "
            + tally.missing()
        )
    except Exception as exc:
        tally.problems.append(f"receiver failed: {exc!r}")


def _echo(pair: ChannelPair, problems: list[str], deadline: float) -> None:
    """Send every request on the ROUTER pair back where it came from, until the pair closes."""
    try:
        for msg in pair:
            pair.send(msg, timeout=_remaining(deadline))
    except ChannelClosed:
        pass  # closed at the end of the demo, possibly while sending
    except TimeoutError:
        problems.append("echo peer: send timed out")
    except Exception as exc:
        problems.append(f"echo peer failed: {exc!r}")


def _drain_errors(name: str, pair: ChannelPair, problems: list[str]) -> None:
    while not pair.errors.empty():
        err: SendError = pair.errors.get_nowait()
        problems.append(f"{name}: {err} ({err.__cause__!r})")


def _check_counts(name: str, pair: ChannelPair, total: int, problems: list[str]) -> None:
    stats = pair.stats()
    for key in ("sent", "received"):
        if stats[key] != total:
            problems.append(f"{name}: stats()[{key!r}] is {stats[key]}, expected {total}")
    if stats["errors_dropped"]:
        problems.append(f"{name}: {stats['errors_dropped']} send error(s) dropped")


def _bind(sock: zmq.Socket[Any], endpoint: str, cleanup: ExitStack) -> str:
    if endpoint == "ipc":
        if not zmq.has("ipc"):
            raise RuntimeError("this libzmq has no ipc transport; use --endpoint tcp")
        directory = tempfile.mkdtemp(prefix="zmqchan-demo-")
        cleanup.callback(shutil.rmtree, directory, ignore_errors=True)
        address = f"ipc://{directory}/echo.sock"
        sock.bind(address)
        return address
    return bind_fresh(sock, endpoint, "zmqchan-green-demo")


def run_demo(
    greenlets: int = 100,
    messages: int = 100,
    endpoint: str = "tcp",
    timeout: float = 60.0,
    seed: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the demo and print a summary; return ``0`` if every reply checked out, else ``1``.

    ``greenlets`` senders share one DEALER socket and send ``messages`` each to
    an echo peer reached over ``endpoint`` (``"tcp"``, ``"ipc"`` or
    ``"inproc"``). The whole run, including every send and receive, is bounded
    by ``timeout`` seconds. ``seed`` makes the random payloads reproducible.
    Sockets are closed with ``linger=0`` and the context is terminated on
    every path, success or failure.
    """
    if greenlets < 1 or messages < 1:
        raise ValueError("greenlets and messages must be at least 1")
    if endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint must be one of {', '.join(ENDPOINTS)}, got {endpoint!r}")
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err

    tally = _Tally(greenlets, messages)
    problems = tally.problems
    master = random.Random(seed)
    ctx: zmq.Context[Any] = zmq_green.Context()
    try:
        with ExitStack() as cleanup:
            router = ctx.socket(zmq.ROUTER)
            cleanup.callback(router.close, 0)
            dealer = ctx.socket(zmq.DEALER)
            cleanup.callback(dealer.close, 0)
            # Replies wait at the HWM instead of being dropped when the DEALER
            # side falls behind: the pump holds them until the peer has room.
            router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            router.setsockopt(zmq.LINGER, 0)
            dealer.setsockopt(zmq.LINGER, 0)
            address = _bind(router, endpoint, cleanup)
            dealer.connect(address)

            echo_pair = ChannelPair(router)
            cleanup.callback(echo_pair.close, 0)
            pair = ChannelPair(dealer)
            cleanup.callback(pair.close, 0)

            print(
                f"zmqchan_green demo: {greenlets} greenlets x {messages} messages "
                f"through one DEALER socket, echoed over {address}",
                file=out,
            )
            started = time.monotonic()
            deadline = started + timeout
            echo = gevent.spawn(_echo, echo_pair, problems, deadline)
            receiver = gevent.spawn(_receiver, pair, tally, deadline)
            senders = [
                gevent.spawn(
                    _sender, pair, gid, tally, random.Random(master.getrandbits(64)), deadline
                )
                for gid in range(greenlets)
            ]
            gevent.joinall(senders, timeout=_remaining(deadline) + 1.0)
            if any(not g.dead for g in senders):
                problems.append("some senders did not finish in time")
            if tally.send_timeouts:
                gid, seq = tally.send_timeouts[0]
                problems.insert(
                    0,
                    f"send timed out after {timeout} s in {len(tally.send_timeouts)} "
                    f"greenlet(s) (first: greenlet {gid} at message {seq})",
                )
            if problems:
                # Replies to messages never sent would be waited for in vain.
                receiver.join(timeout=_DRAIN_AFTER_ERROR)
            else:
                receiver.join(timeout=_remaining(deadline) + 1.0)
            finished = tally.last_reply_at if tally.replies == tally.total else None
            elapsed = (finished or time.monotonic()) - started
            everyone: list[gevent.Greenlet[Any, Any]] = [receiver, *senders]
            for g in everyone:
                if not g.dead:
                    g.kill(timeout=1.0)

            unsent = pair.close(linger=0)
            if unsent:
                problems.append(f"DEALER pair: {len(unsent)} accepted message(s) never sent")
            echo_unsent = echo_pair.close(linger=0)
            if echo_unsent:
                problems.append(f"echo peer: {len(echo_unsent)} accepted repl(ies) never sent")
            echo.join(timeout=1.0)
            if not echo.dead:
                problems.append("echo peer did not stop after close()")
                echo.kill(timeout=1.0)
            _drain_errors("DEALER pair", pair, problems)
            _drain_errors("echo peer", echo_pair, problems)
            if not problems:
                _check_counts("DEALER pair", pair, tally.total, problems)
                _check_counts("echo peer", echo_pair, tally.total, problems)
    finally:
        ctx.term()

    rate = tally.verified / elapsed if elapsed > 0 else float("inf")
    print(f"greenlets:  {greenlets}", file=out)
    accepted = sum(len(digests) for digests in tally.sent)
    print(f"messages:   {accepted} sent, {tally.verified} echoed back and verified", file=out)
    print(f"errors:     {len(problems)}", file=out)
    print(f"elapsed:    {elapsed:.3f} s", file=out)
    print(f"throughput: {rate:,.0f} msg/s (round trips)", file=out)
    if problems:
        print(f"FAILED: {len(problems)} problem(s):", file=err)
        for problem in problems[:_MAX_LISTED]:
            print(f"  - {problem}", file=err)
        if len(problems) > _MAX_LISTED:
            print(f"  ... and {len(problems) - _MAX_LISTED} more", file=err)
        return 1
    print("OK", file=out)
    return 0


def _demo_command(args: argparse.Namespace) -> int:
    try:
        return run_demo(
            greenlets=args.greenlets,
            messages=args.messages,
            endpoint=args.endpoint,
            timeout=args.timeout,
            seed=args.seed,
        )
    except (RuntimeError, zmq.ZMQError) as exc:  # set-up failed: say why, no traceback
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1


def add_demo_command(
    subcommands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register the ``demo`` subcommand; its handler is stored as ``args.handler``."""
    parser = subcommands.add_parser(
        "demo",
        help="many greenlets share one DEALER socket; every echoed reply is verified",
        description=(
            "Start an echo peer (a ROUTER socket), connect one DEALER socket wrapped "
            "in a ChannelPair, and let many greenlets send through it at once. Every "
            "reply is checked (content, checksum, exactly once, per-greenlet order). "
            "Exits 0 on success, 1 on any mismatch or timeout."
        ),
    )
    parser.add_argument(
        "--greenlets",
        type=int_at_least(1),
        default=100,
        metavar="N",
        help="sender greenlets sharing the socket (default: %(default)s)",
    )
    parser.add_argument(
        "--messages",
        type=int_at_least(1),
        default=100,
        metavar="M",
        help="messages each greenlet sends (default: %(default)s)",
    )
    parser.add_argument(
        "--endpoint",
        choices=ENDPOINTS,
        default="tcp",
        help="transport to the echo peer (default: %(default)s; tcp is 127.0.0.1 on a random port)",
    )
    parser.add_argument(
        "--timeout",
        type=positive(float),
        default=60.0,
        metavar="SECONDS",
        help="fail if the whole run takes longer (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed for the random payloads, to repeat a run exactly",
    )
    parser.set_defaults(handler=_demo_command)
