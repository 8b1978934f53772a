"""The driver's report: medians, the ratios the project targets, the tables, the JSON.

Theory of operation
===================

Every figure the report shows is the median over the rounds of one spec,
with its min and max kept in the JSON. The ratios the project sets targets
for (see BENCHMARKS.md) are computed from medians measured in this same run;
nothing is compared with figures from another run. A ratio one of whose
sides was not measured is ``n/a`` (a target) or left out (information).
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gevent
import zmq

from ... import __version__
from .plan import MAIN, RPC_CALLERS, SWEPT, THREADED, Plan, Spec, size_name
from .runner import BUSY, Outcome

__all__ = [
    "INFO",
    "TARGETS",
    "Target",
    "format_report",
    "json_document",
    "medians",
    "noise_notes",
    "ratios",
]

#: The report warns about throughput specs whose rounds differ by more than
#: this share of their median.
_NOISY = 0.3


# ------------------------------------------------------------ medians


#: The figures of each group that get medians.
_FIGURES: dict[str, tuple[str, ...]] = {
    "throughput": ("rate",),
    "latency": ("p50_us", "p99_us", "mean_us"),
    "rpc": ("rate", "p50_us", "p99_us"),
    "rss_growth": ("growth_mib",),
    "memory": ("bytes_per_waiter",),
    "lag": ("p50_ms", "p99_ms", "max_ms", "idle_p99_ms", "rate"),
}


def _figures(spec: Spec) -> tuple[str, ...]:
    return _FIGURES["rss_growth" if spec.case == "rss_growth" else spec.group]


def medians(outcomes: Sequence[Outcome]) -> dict[str, dict[str, Any]]:
    """Per spec key: the median (and min/max, runs) of each figure over its successful rounds."""
    by_key: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        by_key.setdefault(outcome.spec.key, []).append(outcome)
    table: dict[str, dict[str, Any]] = {}
    for key, runs in by_key.items():
        good = [o.result for o in runs if o.result is not None]
        entry: dict[str, Any] = {"runs": len(runs), "ok": len(good)}
        for name in _figures(runs[0].spec):
            values = [r[name] for r in good]
            if values:
                entry[name] = statistics.median(values)
                entry[f"{name}_min"] = min(values)
                entry[f"{name}_max"] = max(values)
        table[key] = entry
    return table


# ======================================================== driver: ratios


@dataclass(frozen=True)
class Target:
    """A figure computed from medians of this run, with the project's target for it (if any)."""

    name: str
    numerator: tuple[str, str]
    denominator: tuple[str, str] | None = None
    bound: float | None = None
    at_least: bool = True
    unit: str = "x"

    def evaluate(self, table: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """``{"name", "value", "target", "status"}``; status PASS, MISS, info or n/a."""
        value = _lookup(table, self.numerator)
        if value is not None and self.denominator is not None:
            below = _lookup(table, self.denominator)
            value = value / below if below else None
        target = None
        if self.bound is not None:
            target = f"{'>=' if self.at_least else '<='} {self.bound:g}{self.unit}"
        if value is None:
            status = "n/a"
        elif self.bound is None:
            status = "info"
        elif (value >= self.bound) if self.at_least else (value <= self.bound):
            status = "PASS"
        else:
            status = "MISS"
        return {
            "name": self.name,
            "value": value,
            "unit": self.unit,
            "target": target,
            "status": status,
        }


def _lookup(table: dict[str, dict[str, Any]], where: tuple[str, str]) -> float | None:
    value = table.get(where[0], {}).get(where[1])
    return None if value is None else float(value)


def _tp(case: str, greenlets: int, transport: str = "tcp", size: int = 64) -> tuple[str, str]:
    return (Spec(case, size, transport, greenlets).key, "rate")


def _rpc(case: str) -> tuple[str, str]:
    return (Spec(case, greenlets=RPC_CALLERS).key, "rate")


_PINNED_RAW = (Spec("rtt_raw", pinned=True).key, "p50_us")
_PINNED_PAIR = (Spec("rtt_pair", pinned=True).key, "p50_us")

TARGETS: tuple[Target, ...] = (
    Target("pair G=10 / raw_green", _tp("pair", 10), _tp("raw_green", 1), 3.0),
    Target("pair G=1000 / pair G=10", _tp("pair", 1000), _tp("pair", 10), 0.8),
    Target(
        "pair_rendezvous G=10 / raw_green", _tp("pair_rendezvous", 10), _tp("raw_green", 1), 1.5
    ),
    Target("threadport 4 thr / plain_threads", _tp("threadport", 4), _tp("plain_threads", 1), 0.7),
    Target("RTT p50 pair / raw (pinned)", _PINNED_PAIR, _PINNED_RAW, 0.75, at_least=False),
    Target("pair G=10 / ceiling", _tp("pair", 10), _tp("ceiling", 1), 0.7),
    Target("shared G=1 / raw_green", _tp("shared", 1), _tp("raw_green", 1), 1.2),
    Target("shared G=10 / green_lock G=10", _tp("shared", 10), _tp("green_lock", 10), 1.2),
    Target("RSS growth over 1M messages", ("rss_growth", "growth_mib"), None, 2.0, False, " MiB"),
    Target(
        "recv waiter cost beyond an Event waiter", ("waiter_cost", "bytes"), None, 2048, False, " B"
    ),
    Target("hub lag p99, pair saturated", ("hub_lag", "p99_ms"), None, 5.0, False, " ms"),
)

INFO: tuple[Target, ...] = (
    Target(
        "RTT p50 pair / raw (unpinned)",
        (Spec("rtt_pair").key, "p50_us"),
        (Spec("rtt_raw").key, "p50_us"),
    ),
    Target("RTT p99 pair / raw (pinned)", (_PINNED_PAIR[0], "p99_us"), (_PINNED_RAW[0], "p99_us")),
    Target("green_lock G=10 / raw_green", _tp("green_lock", 10), _tp("raw_green", 1)),
    Target("pair G=10 / plain_threads", _tp("pair", 10), _tp("plain_threads", 1)),
    Target("plain_threads / raw_green", _tp("plain_threads", 1), _tp("raw_green", 1)),
    Target("ceiling / raw_green", _tp("ceiling", 1), _tp("raw_green", 1)),
    Target(
        "rpc calls/s: Requester / REQ per greenlet", _rpc("rpc_requester"), _rpc("rpc_req_each")
    ),
    Target("rpc calls/s: Requester / REQ + lock", _rpc("rpc_requester"), _rpc("rpc_req_lock")),
)


def _per_combo_info(specs: Sequence[Spec]) -> list[Target]:
    """``pair G=10 / raw_green`` for each size and transport besides 1+64 B over tcp."""
    combos = dict.fromkeys((s.transport, s.size) for s in specs if s.group == "throughput")
    return [
        Target(
            f"pair G=10 / raw_green, {transport} 1+{size_name(size)}",
            _tp("pair", 10, transport, size),
            _tp("raw_green", 1, transport, size),
        )
        for transport, size in combos
        if (transport, size) != ("tcp", 64)
    ]


def ratios(table: dict[str, dict[str, Any]], specs: Sequence[Spec]) -> list[dict[str, Any]]:
    """The target checks (``n/a`` where a side was not measured), then the
    informational ratios that could be computed, from this run's medians."""
    table = dict(table)
    event = _lookup(table, ("waiters_event", "bytes_per_waiter"))
    pair = _lookup(table, ("waiters_pair", "bytes_per_waiter"))
    if event is not None and pair is not None:
        table["waiter_cost"] = {"bytes": pair - event}
    checks = [t.evaluate(table) for t in TARGETS]
    info = [t.evaluate(table) for t in (*INFO, *_per_combo_info(specs))]
    return checks + [row for row in info if row["status"] != "n/a"]


# ------------------------------------------------------------ tables and notes


def _fmt_value(row: dict[str, Any]) -> str:
    value = row["value"]
    if value is None:
        return "-"
    if row["unit"] == "x":
        return f"{value:.2f}x"
    return f"{value:,.2f}{row['unit']}"


def _cell(entry: dict[str, Any] | None, name: str, fmt: str) -> str:
    if entry is None:
        return ""
    if name not in entry:
        return "FAILED"
    return format(entry[name], fmt)


def format_report(
    plan: Plan, table: dict[str, dict[str, Any]], checks: Sequence[dict[str, Any]]
) -> str:
    """The human-readable tables: throughput, sweep, latency, rpc, memory, lag, ratios."""
    specs = plan.specs
    title = (
        f"zmqchan_green {__version__} bench: medians of {plan.rounds} round(s); "
        f"Python {platform.python_version()}, pyzmq {zmq.pyzmq_version()}, "
        f"libzmq {zmq.zmq_version()}, gevent {gevent.__version__}, {os.cpu_count()} CPU(s)"
    )
    out: list[str] = [title]
    combos = list(dict.fromkeys((s.transport, s.size) for s in specs if s.group == "throughput"))
    main = [s for s in specs if s.group == "throughput" and s.greenlets in MAIN[s.case]]
    rows = list(dict.fromkeys((s.case, s.greenlets) for s in main))
    if rows:
        out += ["", "Throughput, msg/s (PUSH->PULL, 2 frames: 1 B header + payload)"]
        header = f"{'case':<17}{'senders':>8}" + "".join(
            f"{t + '/' + size_name(z):>13}" for t, z in combos
        )
        out += [header, "-" * len(header)]
        for case, g in rows:
            who = f"{g} thr" if case in THREADED else f"{g}" if case != "ceiling" else "-"
            cells = "".join(
                f"{_cell(table.get(Spec(case, z, t, g).key), 'rate', ',.0f'):>13}"
                for t, z in combos
            )
            out.append(f"{case:<17}{who:>8}{cells}")
    sweep = [
        s
        for s in specs
        if s.group == "throughput" and s.case in SWEPT and (s.transport, s.size) == ("tcp", 64)
    ]
    swept_g = sorted({s.greenlets for s in sweep})
    if len(swept_g) > 1:
        cases = list(dict.fromkeys(s.case for s in sweep))
        out += ["", "Sharing greenlets sweep, msg/s (tcp, 1+64 B)"]
        header = f"{'G':>6}" + "".join(f"{c:>14}" for c in cases)
        out += [header, "-" * len(header)]
        for g in swept_g:
            cells = "".join(
                f"{_cell(table.get(Spec(c, 64, 'tcp', g).key), 'rate', ',.0f'):>14}" for c in cases
            )
            out.append(f"{g:>6}{cells}")
    latency = [s for s in specs if s.group == "latency"]
    if latency:
        out += ["", "Round trip DEALER<->ROUTER, tcp, 1+64 B, one in flight, us"]
        header = f"{'case':<22}{'p50':>9}{'p99':>9}{'mean':>9}"
        out += [header, "-" * len(header)]
        for s in latency:
            entry = table.get(s.key)
            cells = "".join(
                f"{_cell(entry, n, ',.1f'):>9}" for n in ("p50_us", "p99_us", "mean_us")
            )
            out.append(f"{s.key:<22}{cells}")
    rpc = [s for s in specs if s.group == "rpc"]
    if rpc:
        out += ["", f"RPC, {rpc[0].greenlets} callers at once, ROUTER echo in a pair, tcp, 1+64 B"]
        header = f"{'case':<22}{'calls/s':>10}{'p50 us':>9}{'p99 us':>9}"
        out += [header, "-" * len(header)]
        for s in rpc:
            entry = table.get(s.key)
            out.append(
                f"{s.case:<22}{_cell(entry, 'rate', ',.0f'):>10}"
                f"{_cell(entry, 'p50_us', ',.0f'):>9}{_cell(entry, 'p99_us', ',.0f'):>9}"
            )
    memory = [s for s in specs if s.group == "memory"]
    if memory:
        out += ["", "Memory"]
        for s in memory:
            entry = table.get(s.key)
            if s.case == "rss_growth":
                what = f"RSS growth over {s.count:,} messages after {s.count // 10:,}"
                out.append(f"  {what:<52}{_cell(entry, 'growth_mib', '.2f'):>10} MiB")
            else:
                what = f"{s.case}: RSS per blocked greenlet ({s.count:,})"
                out.append(f"  {what:<52}{_cell(entry, 'bytes_per_waiter', ',.0f'):>10} B")
    if any(s.group == "lag" for s in specs):
        entry = table.get("hub_lag")
        out += ["", "Hub lag of a 1 ms heartbeat, ms"]
        out.append(
            f"  pair saturated: p50 {_cell(entry, 'p50_ms', '.3f')}, "
            f"p99 {_cell(entry, 'p99_ms', '.3f')}, "
            f"max {_cell(entry, 'max_ms', '.3f')} (at {_cell(entry, 'rate', ',.0f')} msg/s); "
            f"idle p99 {_cell(entry, 'idle_p99_ms', '.3f')}"
        )
    out += ["", "Ratios (medians of this run; project targets, tcp 1+64 B)"]
    width = max(len(c["name"]) for c in checks) + 2
    for check in checks:
        target = check["target"] or ""
        out.append(
            f"  {check['name']:<{width}}{_fmt_value(check):>12}  {target:<12}{check['status']}"
        )
    return "\n".join(out)


def noise_notes(outcomes: Sequence[Outcome], table: dict[str, dict[str, Any]]) -> list[str]:
    """Warnings for the reader: throughput specs whose rounds disagree, a busy machine."""
    notes = []
    noisy = sorted(
        key
        for key, entry in table.items()
        if "rate" in entry and (entry["rate_max"] - entry["rate_min"]) > _NOISY * entry["rate"]
    )
    if noisy:
        shown = ", ".join(noisy[:6]) + (", ..." if len(noisy) > 6 else "")
        notes.append(
            f"note: {len(noisy)} spec(s) varied by more than {_NOISY:.0%} of the median "
            f"between rounds ({shown}); min/max are in the JSON"
        )
    shares = [o.foreign for o in outcomes if o.foreign is not None]
    busy = sum(share > BUSY for share in shares)
    if busy:
        notes.append(
            f"note: during {busy} of {len(outcomes)} run(s) other processes used more than "
            f"{BUSY:.0%} of the machine (at most {max(shares):.0%}): those figures may be low"
        )
    return notes


# ------------------------------------------------------------ JSON


def _machine() -> dict[str, Any]:
    """What the JSON records about where it ran."""
    model = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), ""
            )
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "gevent": gevent.__version__,
        "zmqchan_green": __version__,
    }


def json_document(
    plan: Plan,
    outcomes: Sequence[Outcome],
    table: dict[str, dict[str, Any]],
    checks: Sequence[dict[str, Any]],
    seconds: float,
) -> dict[str, Any]:
    """The ``--json`` document: the machine, the plan, every run, medians and ratios."""
    return {
        "machine": _machine(),
        "rounds": plan.rounds,
        "seconds": seconds,
        "specs": [{"key": s.key, **dataclasses.asdict(s)} for s in plan.specs],
        "runs": [
            {
                "key": o.spec.key,
                "round": o.round,
                "wall": o.wall,
                "foreign_cpu": o.foreign,
                "result": o.result,
                "error": o.error,
            }
            for o in outcomes
        ],
        "medians": table,
        "ratios": list(checks),
        "failures": sum(1 for o in outcomes if o.error),
    }
