"""What the benchmark measures: the cases, their groups, and the specs of one round.

A :class:`Spec` is one measurement (a case at one size, transport and number
of senders); :func:`plan_specs` lists the specs of one round, and a
:class:`Plan` adds how many rounds the driver runs and how long a child may
take. The sizes here (buffers, senders, waiters) are what the report's tables
and the project's targets (BENCHMARKS.md) are stated for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

__all__ = [
    "BUFFER",
    "CASES",
    "GREENLETS",
    "GROUPS",
    "MAIN",
    "RPC_CALLERS",
    "SIZES",
    "SWEEP",
    "SWEPT",
    "THREADED",
    "TRANSPORTS",
    "Plan",
    "Spec",
    "plan_specs",
    "size_name",
]

#: Buffer sizes of the pairs in the buffered cases.
BUFFER = 64
#: Sending greenlets of the main-table cases, and of the sweep.
GREENLETS = 10
_MANY_GREENLETS = 1000
SWEEP = (1, 10, 100, 1000)
#: Caller greenlets of the RPC cases.
RPC_CALLERS = 50
#: Native threads sending through a ThreadPort.
_PORT_THREADS = 4
#: Messages of ``rss_growth`` (after a baseline of a tenth of them).
_RSS_MESSAGES = 1_000_000
#: Greenlets blocked at once in the ``waiters_*`` cases.
_WAITERS = 10_000

SIZES = (64, 1024, 65536)
TRANSPORTS = ("tcp", "inproc")

#: Throughput cases of the main table, with the senders each one uses there.
MAIN: dict[str, tuple[int, ...]] = {
    "raw_green": (1,),
    "green_lock": (GREENLETS,),
    "plain_threads": (1,),
    "ceiling": (1,),
    "pair": (GREENLETS, _MANY_GREENLETS),
    "pair_rendezvous": (GREENLETS,),
    "threadport": (_PORT_THREADS,),
    "shared": (1, GREENLETS),
}
#: Cases swept over the number of sending greenlets (1+64 B over tcp).
SWEPT = ("pair", "green_lock", "shared")

GROUPS: dict[str, tuple[str, ...]] = {
    "throughput": tuple(MAIN),
    "latency": ("rtt_raw", "rtt_pair"),
    "rpc": ("rpc_requester", "rpc_req_each", "rpc_req_lock"),
    "memory": ("rss_growth", "waiters_event", "waiters_pair"),
    "lag": ("hub_lag",),
}
CASES: tuple[str, ...] = tuple(name for names in GROUPS.values() for name in names)

#: Throughput cases whose senders are OS threads (the table says "thr").
THREADED = frozenset({"plain_threads", "threadport"})


@dataclass(frozen=True)
class Spec:
    """One measurement: what a child runs and the driver files results under.

    ``greenlets`` is the number of senders (greenlets, or threads for the
    threaded cases). ``seconds`` sizes throughput and latency runs; ``warmup``
    is the size of the first, unmeasured run; ``count`` is the message count of
    ``rss_growth`` or the waiters of ``waiters_*``.
    """

    case: str
    size: int = 64
    transport: str = "tcp"
    greenlets: int = 1
    pinned: bool = False
    seconds: float = 1.0
    warmup: int = 2000
    count: int = 0

    @property
    def group(self) -> str:
        """``throughput``, ``latency``, ``rpc``, ``memory`` or ``lag``."""
        return next(group for group, names in GROUPS.items() if self.case in names)

    @property
    def key(self) -> str:
        """A stable name, unique within one run: results and JSON are filed under it."""
        if self.group == "throughput":
            return f"{self.case}/{self.transport}/{self.size}/g{self.greenlets}"
        if self.group == "latency":
            return f"{self.case}/{'pinned' if self.pinned else 'unpinned'}"
        if self.group == "rpc":
            return f"{self.case}/g{self.greenlets}"
        return self.case

    @property
    def label(self) -> str:
        """How the progress lines name the spec."""
        if self.group == "throughput":
            what = f"{self.case} {self.transport} 1+{size_name(self.size)}"
            if self.case == "ceiling":
                return what
            return f"{what} {'thr' if self.case in THREADED else 'G'}={self.greenlets}"
        if self.group == "latency":
            pinning = "pinned" if self.pinned else "unpinned"
            return f"{self.case} tcp 1+{size_name(self.size)} {pinning}"
        return self.case


def size_name(size: int) -> str:
    """``64B``, ``1KiB``: a payload size as the tables and labels show it."""
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024}KiB"
    return f"{size}B"


@dataclass(frozen=True)
class Plan:
    """What the driver runs: specs, rounds, and the child's time limit."""

    specs: tuple[Spec, ...]
    rounds: int
    case_timeout: float


def plan_specs(
    cases: Sequence[str] = CASES,
    sizes: Sequence[int] = SIZES,
    transports: Sequence[str] = TRANSPORTS,
    quick: bool = False,
    seconds: float | None = None,
) -> tuple[Spec, ...]:
    """The specs for one round, in the order the first round runs them.

    Throughput cases run for every size and transport asked for; the sweep
    over sending greenlets is added when 1+64 B over tcp is among them. The
    latency, memory and lag cases always use 1+64 B over tcp. ``quick`` makes
    every run short (smoke tests): fewer messages, waiters and seconds.
    """
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        raise ValueError(f"unknown case(s): {', '.join(unknown)}")
    if seconds is None:
        seconds = 0.2 if quick else 1.0
    scale = 20 if quick else 1
    make = partial(Spec, seconds=seconds, warmup=200 if quick else 2000)
    specs: list[Spec] = []
    for transport in transports:
        for size in sizes:
            for case, senders in MAIN.items():
                if case in cases:
                    specs.extend(make(case, size, transport, g) for g in senders)
    if 64 in sizes and "tcp" in transports:
        specs.extend(make(case, 64, "tcp", g) for case in SWEPT if case in cases for g in SWEEP)
    for case in GROUPS["latency"]:
        if case in cases:
            specs.extend(make(case, pinned=pinned) for pinned in (True, False))
    specs.extend(make(case, greenlets=RPC_CALLERS) for case in GROUPS["rpc"] if case in cases)
    if "rss_growth" in cases:
        specs.append(make("rss_growth", greenlets=GREENLETS, count=_RSS_MESSAGES // scale))
    for case in ("waiters_event", "waiters_pair"):
        if case in cases:
            specs.append(make(case, count=_WAITERS // scale))
    if "hub_lag" in cases:
        specs.append(make("hub_lag", greenlets=GREENLETS))
    unique = dict.fromkeys(specs)  # the sweep repeats some main-table specs
    return tuple(unique)
