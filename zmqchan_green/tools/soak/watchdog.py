"""The soak's watchdog: progress lines, and an abort rather than a hang.

Theory of operation
===================

A watchdog OS thread (an unpatched one: it must run even if the hub is stuck)
looks at the soak every quarter second. It prints progress to stderr while
the soak runs, and aborts the run (exit 1) if nothing moves for 30 seconds
(``ledger.progress`` and the phase unchanged), or if the whole run overshoots
its time by far. An abort prints the state, the problems so far and the stack
of every thread, writes the JSON so far (``"aborted"``), and exits at once
with :func:`os._exit`: a thread stuck in libzmq could make a normal exit hang.

The stacks are dumped by :func:`faulthandler.dump_traceback`, which walks
every thread's frames without taking any lock the stuck code might hold.
:func:`faulthandler.dump_traceback_later` is not used: it fires after a fixed
time, whereas this abort depends on progress, and the abort must print the
state and write the JSON before the process exits, which
``dump_traceback_later(exit=True)`` cannot do.
"""

from __future__ import annotations

import faulthandler
import os
import time
from typing import Any

from ..common import RealThread, write_json
from .driver import Soak
from .report import mib

__all__ = ["Watchdog"]

#: Abort if nothing moves for this long.
_WATCHDOG = 30.0
#: ... or if the run takes this much longer than asked.
_OVERTIME = 150.0


class Watchdog:
    """An OS thread: progress lines, and an abort if nothing moves (never hang).

    Start it with ``thread.start()``; set ``stop`` to end it.
    """

    def __init__(self, soak: Soak, interval: float, json_path: str | None) -> None:
        self.soak = soak
        self.interval = interval
        self.json_path = json_path
        self.stop = False
        self.thread: Any = RealThread(target=self._run, name="soak-watchdog", daemon=True)

    def _run(self) -> None:
        soak = self.soak
        last: tuple[int, str] = (-1, "")
        last_change = time.monotonic()
        next_report = time.monotonic() + self.interval
        hard_deadline = time.monotonic() + soak.config.seconds + _OVERTIME
        while not self.stop:
            time.sleep(0.25)
            if self.stop:
                return
            now = time.monotonic()
            state = (soak.ledger.progress, soak.phase)
            if state != last:
                last, last_change = state, now
            elif now - last_change > _WATCHDOG:
                self._abort(f"no progress for {_WATCHDOG:.0f} s in phase {soak.phase!r}")
            if now > hard_deadline:
                self._abort(f"the run overshot its time by {_OVERTIME:.0f} s")
            if now >= next_report and soak.phase == "soaking":
                next_report = now + self.interval
                self._report()

    def _report(self) -> None:
        snap = self.soak.snapshot()
        elapsed = max(snap["elapsed"], 1e-9)
        print(
            f"soak: {snap['elapsed']:7.1f} s  sent {snap['sent']:,}  accepted "
            f"{snap['accepted']:,}  delivered {snap['delivered']:,} "
            f"({snap['delivered'] / elapsed:,.0f}/s)  echoes {snap['echoes_delivered']:,}  "
            f"faults {snap['faults']:,}  problems {snap['problems']}  "
            f"rss {mib(snap['rss_kib'])}",
            file=self.soak.err,
            flush=True,
        )

    def _abort(self, reason: str) -> None:
        err = self.soak.err
        problems = self.soak.ledger.problems
        print(f"soak: WATCHDOG: {reason}; aborting (exit 1)", file=err, flush=True)
        snap = self.soak.snapshot()
        print(f"soak: state at abort: {snap}", file=err, flush=True)
        for problem in problems:
            print(f"  - {problem}", file=err)
        try:
            faulthandler.dump_traceback(file=err, all_threads=True)
        except (OSError, ValueError, AttributeError):
            pass  # err may not be a real file
        if self.json_path:
            document = {
                "aborted": reason,
                "ok": False,
                "state": snap,
                "problems": problems,
            }
            try:
                write_json(self.json_path, document)
            except OSError:
                pass
        err.flush()
        os._exit(1)
