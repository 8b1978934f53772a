"""``python -m zmqchan_green soak``: the command line, and :func:`run_soak`.

:func:`run_soak` starts the watchdog, runs the :class:`~.driver.Soak`, prints
the summary and writes the JSON; whatever happens, every pair is closed and
the context terminated.
"""

from __future__ import annotations

import argparse
import random
import sys
from typing import TextIO

import zmq

from ..common import int_at_least, positive, write_json
from .driver import Soak
from .lanes import LANES, SoakConfig
from .report import summary
from .watchdog import Watchdog

__all__ = ["add_soak_command", "run_soak"]


def run_soak(
    seconds: float = 120.0,
    greenlets: int = 200,
    threads: int = 4,
    json_path: str | None = None,
    seed: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the soak, print a summary and write JSON; ``0`` if every invariant held, else ``1``."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if seed is None:
        seed = random.SystemRandom().randrange(2**32)
    config = SoakConfig(seconds, greenlets, threads, seed)
    soak = Soak(config, err)
    interval = min(5.0, max(1.0, seconds / 5))
    watchdog = Watchdog(soak, interval, json_path)
    print(
        f"soak: {seconds:g} s, {greenlets} greenlets, {threads} threads, seed {seed} "
        f"(repeat the schedule with --seed {seed})",
        file=err,
        flush=True,
    )
    watchdog.thread.start()
    try:
        soak.run()
        document = soak.account()
    finally:
        soak.shut_down()
        soak.topology.ctx.term()
        watchdog.stop = True
    print(summary(document), file=out)
    if soak.ledger.problems:
        print(f"problems ({soak.ledger.problem_count}):", file=err)
        for problem in soak.ledger.problems:
            print(f"  - {problem}", file=err)
    if json_path:
        write_json(json_path, document)
        print(f"JSON written to {json_path}", file=out)
    return 0 if document["ok"] else 1


def _soak_command(args: argparse.Namespace) -> int:
    try:
        return run_soak(
            seconds=args.seconds,
            greenlets=args.greenlets,
            threads=args.threads,
            json_path=args.json or None,
            seed=args.seed,
        )
    except (RuntimeError, zmq.ZMQError) as exc:  # set-up failed: say why, no traceback
        print(f"soak failed: {exc}", file=sys.stderr)
        return 1


def add_soak_command(
    subcommands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register the ``soak`` subcommand; its handler is stored as ``args.handler``."""
    parser = subcommands.add_parser(
        "soak",
        help="bounded soak: greenlets and threads, injected faults, every message accounted for",
        description=(
            "Move messages through DEALER->ROUTER (echoed) and PUSH->PULL pairs over tcp and "
            "inproc, from greenlets and native threads at once, while killing senders and "
            "receivers, timing out sends and receives, closing and replacing pairs, "
            "restarting peers, having peers reconnect mid-message and putting a peer that "
            "stops reading on a ROUTER. At the end every accepted message must have been "
            "delivered once, whole, in order where order is defined, returned by close() or "
            "reported on errors; the only loss allowed is what libzmq dropped at an injected "
            "fault of that kind, and it is stated. Exits 0 if every invariant held, 1 "
            "otherwise."
        ),
    )
    parser.add_argument(
        "--seconds",
        type=positive(float),
        default=120.0,
        help="how long to soak before draining and accounting (default: %(default)s)",
    )
    parser.add_argument(
        "--greenlets",
        type=int_at_least(3 * len(LANES)),
        default=200,
        metavar="N",
        help=f"sending and receiving greenlets, spread over {len(LANES)} lanes "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int_at_least(0),
        default=4,
        metavar="N",
        help="native OS threads, each sending and receiving through a ThreadPort "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="write the figures here as JSON (default: none)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        metavar="N",
        help="seed of the fault schedule, timeouts and payloads (default: random, printed)",
    )
    parser.set_defaults(handler=_soak_command)
