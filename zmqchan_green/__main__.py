"""``python -m zmqchan_green``: the package's command-line tools.

Each tool is a subcommand (``demo``, ``bench``, ``soak``); without one, the help is printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__
from .tools import add_bench_command, add_demo_command, add_soak_command

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m zmqchan_green`` parser, with one subparser per tool."""
    parser = argparse.ArgumentParser(
        prog="python -m zmqchan_green",
        description="Share one ZeroMQ socket safely between many gevent greenlets.",
    )
    parser.add_argument("--version", action="version", version=f"zmqchan_green {__version__}")
    subcommands = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    add_demo_command(subcommands)
    add_bench_command(subcommands)
    add_soak_command(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        status: int = args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
