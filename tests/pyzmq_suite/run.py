"""Run pyzmq's own green test classes against zmq.green, patched or not.

``python -m tests.pyzmq_suite.run [--mode patched|plain|both] [--dest DIR]
[PYTEST_ARGS...]`` (from the repository root) fetches the test modules of the
installed pyzmq (:mod:`fetch`) and runs pytest on the green classes of
``test_socket``, ``test_reqrep``, ``test_pubsub``, ``test_multipart``,
``test_poll`` and ``test_pair`` with the :mod:`plugin`. ``patched`` (the
default) makes every socket a ``SharedSocket``; ``plain`` is the baseline;
``both`` runs plain then patched. Extra arguments go to pytest (``-k``,
``-x``, ``--junitxml``...). The exit status is pytest's (the worst, for
``both``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from .fetch import DEFAULT_DEST, MODULES, ROOT, fetch

HERE = Path(__file__).resolve().parent
#: pyzmq's base class arms its own SIGALRM per test unless this is 0, and its
#: tearDown then cancels the timer pytest-timeout armed, leaving a hang in
#: ``Context.term`` unbounded; 0 leaves SIGALRM to pytest-timeout alone.
ZMQ_TEST_TIMEOUT = "0"
#: Seconds the whole pytest run may take before it is killed.
RUN_TIMEOUT = 1200


def pytest_command(suite: Path, mode: str, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(HERE / "suite.ini"),
        "--rootdir",
        str(suite),
        "--confcutdir",
        str(suite),
        "-p",
        "tests.pyzmq_suite.plugin",
        f"--dropin-mode={mode}",
        "-rfEs",
        *[str(suite / module) for module in MODULES],
        *extra,
    ]


def run(suite: Path, mode: str, extra: list[str]) -> int:
    cmd = pytest_command(suite, mode, extra)
    env = dict(os.environ)
    env["ZMQ_TEST_TIMEOUT"] = ZMQ_TEST_TIMEOUT
    # The checkout first, so that -p tests.pyzmq_suite.plugin imports.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    print(f"== dropin, {mode}:", " ".join(cmd), flush=True)
    try:
        return subprocess.run(cmd, cwd=ROOT, env=env, timeout=RUN_TIMEOUT, check=False).returncode
    except subprocess.TimeoutExpired:
        print(f"== dropin, {mode}: killed after {RUN_TIMEOUT}s", flush=True)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("patched", "plain", "both"), default="patched")
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST, help="download directory")
    args, extra = parser.parse_known_args(argv)
    suite = fetch(args.dest.resolve())
    modes = ["plain", "patched"] if args.mode == "both" else [args.mode]
    return max(run(suite, mode, extra) for mode in modes)


if __name__ == "__main__":
    sys.exit(main())
