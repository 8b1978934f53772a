"""``python -m zmqchan_green bench``: the side-by-side benchmark.

Theory of operation
===================

The *driver* (``bench`` without ``--run-case``) builds a list of
:class:`Spec`\\ s, one per measurement, and runs every spec once per round, each
in a fresh subprocess (``python -m zmqchan_green bench --run-case JSON``), so
that no case inherits another's heap, sockets, threads or CPU caches. Rounds
alternate the order (forward, then backward) so that slow drift of the machine
does not always favour the same cases. The table shows per-spec medians, and
the ratios the project sets targets for (see BENCHMARKS.md) are computed from
medians measured in this same run; nothing is compared with figures from
another run.

A *child* (``--run-case``) runs one spec and prints one JSON line on stdout.
Every wait in it has a deadline, so a broken case fails instead of hanging, and
the driver kills a child that overruns anyway. A throughput case is a
*transfer*: ``G`` senders (greenlets or threads) push ``N`` two-frame messages
(a 1-byte header and a payload) over PUSH→PULL, one receiver takes them; the
transfer fails loudly when the receiver gets fewer, more, or malformed
messages. Each transfer is run three times on the same sockets: a warm-up (it
also waits out the tcp connect), a short calibration, and the measured run,
sized from the calibration to last about ``--seconds``.

Modules
-------
* :mod:`.plan`: the cases, their groups, and the specs of one round.
* :mod:`.harness`: what a child's cases are built from (sockets, workers with
  deadlines, the transfer, run sizing).
* :mod:`.cases`: the cases themselves, and the child's entry point.
* :mod:`.runner`: children run one per spec and round, in alternating order,
  with the share of the machine other processes used.
* :mod:`.report`: medians, the target ratios, the tables, the JSON document.
* :mod:`.chart`: the sweep chart (matplotlib, optional).
* :mod:`.command`: the command line, and :func:`run_bench`, which ties them up.
"""

from __future__ import annotations

from .cases import run_case
from .command import add_bench_command, run_bench
from .harness import BenchError
from .plan import CASES, GROUPS, Plan, Spec, plan_specs
from .report import ratios

__all__ = [
    "CASES",
    "GROUPS",
    "BenchError",
    "Plan",
    "Spec",
    "add_bench_command",
    "plan_specs",
    "ratios",
    "run_bench",
    "run_case",
]
