"""``python -m zmqchan_green bench``: the command line, and the driver that ties the parts up.

:func:`run_bench` runs a :class:`~.plan.Plan` through the runner, then prints
the report, writes the JSON and draws the chart. With ``--run-case`` the same
command is a child: it runs one spec (:func:`~.cases.child_main`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TextIO

from ..common import positive, write_json
from .cases import child_main
from .chart import draw_chart
from .plan import CASES, GROUPS, SIZES, TRANSPORTS, Plan, plan_specs
from .report import format_report, json_document, medians, noise_notes, ratios
from .runner import CASE_TIMEOUT, run_all

__all__ = ["add_bench_command", "run_bench"]


def run_bench(
    plan: Plan,
    json_path: str | None,
    png_path: str | None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the plan, print the report, write JSON and PNG.

    Returns ``0`` if every run succeeded, else ``1``.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    started = time.monotonic()
    outcomes = run_all(plan, err)
    table = medians(outcomes)
    checks = ratios(table, plan.specs)
    print(format_report(plan, table, checks), file=out)
    for note in noise_notes(outcomes, table):
        print(note, file=out)
    failed = [o for o in outcomes if o.error]
    if json_path:
        document = json_document(plan, outcomes, table, checks, time.monotonic() - started)
        write_json(json_path, document)
        print(f"\nJSON written to {json_path}", file=out)
    if png_path:
        skipped = draw_chart(table, plan.specs, png_path)
        print(
            f"PNG chart skipped: {skipped}" if skipped else f"PNG chart written to {png_path}",
            file=out,
        )
    print(f"total {time.monotonic() - started:.0f} s", file=out)
    if failed:
        print(f"FAILED: {len(failed)} of {len(outcomes)} run(s) failed:", file=err)
        for o in failed:
            print(f"  - round {o.round} {o.spec.key}: {o.error}", file=err)
        return 1
    return 0


# ------------------------------------------------------------ command line


def _csv(choices: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown) or '(empty)'}; choose from {', '.join(choices)}"
            )
        return names

    return parse


def _sizes(text: str) -> list[int]:
    sizes = []
    for item in (n.strip().lower() for n in text.split(",") if n.strip()):
        factor = 1024 if item.endswith("k") else 1
        try:
            size = int(item.rstrip("k")) * factor
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a size: {item!r}") from None
        if size < 0:
            raise argparse.ArgumentTypeError(f"negative size: {item!r}")
        sizes.append(size)
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def _expand(names: Iterator[str]) -> list[str]:
    return list(dict.fromkeys(c for n in names for c in GROUPS.get(n, (n,))))


def _bench_command(args: argparse.Namespace) -> int:
    if args.run_case is not None:
        return child_main(args.run_case)
    cases = _expand(iter(args.cases)) if args.cases else list(CASES)
    sizes = args.sizes or ([64] if args.quick else list(SIZES))
    specs = plan_specs(cases, sizes, args.transports, args.quick, args.seconds)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    plan = Plan(specs, rounds, args.case_timeout)
    if args.list:
        for spec in specs:
            print(spec.key)
        return 0
    if not specs:
        print("bench: nothing to run with these filters", file=sys.stderr)
        return 1
    return run_bench(plan, args.json or None, args.png or None)


def add_bench_command(
    subcommands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Register the ``bench`` subcommand; its handler is stored as ``args.handler``."""
    parser = subcommands.add_parser(
        "bench",
        help="side-by-side benchmark: pairs vs raw zmq.green, threads and the one-thread ceiling",
        description=(
            "Run each case in its own subprocess, alternate the cases over several rounds, "
            "and print medians and the ratios the project targets (throughput, round-trip latency, "
            "memory, hub lag). Exits 1 if any run failed (lost messages, timeouts)."
        ),
    )
    parser.add_argument(
        "--rounds",
        type=positive(int),
        default=None,
        metavar="N",
        help="rounds over all cases (default: 3, or 1 with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 1 round, 1+64 B only, short runs, fewer waiters",
    )
    parser.add_argument(
        "--cases",
        type=_csv([*CASES, *GROUPS]),
        default=None,
        metavar="LIST",
        help=f"comma-separated cases or groups (default: all): {', '.join([*GROUPS, *CASES])}",
    )
    parser.add_argument(
        "--sizes",
        type=_sizes,
        default=None,
        metavar="LIST",
        help="payload sizes in bytes for throughput, e.g. 64,1k,64k (default: all three)",
    )
    parser.add_argument(
        "--transports",
        type=_csv(TRANSPORTS),
        default=list(TRANSPORTS),
        metavar="LIST",
        help="transports for throughput: tcp,inproc (latency, memory, lag use tcp)",
    )
    parser.add_argument(
        "--seconds",
        type=positive(float),
        default=None,
        help="length of each measured run (default: 1.0, 0.2 with --quick)",
    )
    parser.add_argument(
        "--case-timeout",
        type=positive(float),
        default=CASE_TIMEOUT,
        metavar="SECONDS",
        help="kill a case's subprocess after this long (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        default="bench-results.json",
        metavar="PATH",
        help="write raw results, medians and ratios here (default: %(default)s; '' for none)",
    )
    parser.add_argument(
        "--png",
        default="bench-results.png",
        metavar="PATH",
        help=(
            "draw the sweep chart here if matplotlib is installed "
            "(default: %(default)s; '' for none)"
        ),
    )
    parser.add_argument("--list", action="store_true", help="list the measurements and exit")
    parser.add_argument("--run-case", default=None, help=argparse.SUPPRESS)
    parser.set_defaults(handler=_bench_command)
