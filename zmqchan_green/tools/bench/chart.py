"""The driver's chart: throughput against the number of greenlets sharing one socket.

Drawn with matplotlib (the ``bench`` extra) when it is installed; without it the
report says why the chart was skipped and everything else is unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .plan import BUFFER, SWEEP, SWEPT, Spec

__all__ = ["draw_chart"]

#: Legend names of the swept cases.
_LEGEND = {
    "pair": f"pair (ChannelPair, buffers {BUFFER}/{BUFFER})",
    "green_lock": "green_lock (zmq.green + Semaphore)",
    "shared": "shared (SharedSocket, the drop-in)",
}


def draw_chart(table: dict[str, dict[str, Any]], specs: Sequence[Spec], path: str) -> str | None:
    """Draw throughput vs sharing greenlets as a PNG; the reason it was skipped, or ``None``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "matplotlib is not installed (pip install 'zmqchan-green[bench]')"
    series: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    for s in specs:
        entry = table.get(s.key, {})
        if s.case in SWEPT and (s.transport, s.size) == ("tcp", 64) and "rate" in entry:
            series.setdefault(s.case, []).append((s.greenlets, entry))
    if not series:
        return "no sweep results (pair, green_lock or shared over tcp at 1+64 B)"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    try:
        for case, points in series.items():
            points.sort(key=lambda p: p[0])
            xs = [g for g, _ in points]
            ys = [e["rate"] for _, e in points]
            low = [e["rate"] - e["rate_min"] for _, e in points]
            high = [e["rate_max"] - e["rate"] for _, e in points]
            ax.errorbar(
                xs, ys, yerr=[low, high], marker="o", capsize=3, label=_LEGEND.get(case, case)
            )
        references = (
            ("raw_green", "raw zmq.green 1->1", ":"),
            ("plain_threads", "plain pyzmq, 2 threads", "--"),
            ("ceiling", "ceiling (1 thread, NOBLOCK)", "-."),
        )
        for case, name, style in references:
            rate = table.get(Spec(case, 64, "tcp", 1).key, {}).get("rate")
            if rate is not None:
                ax.axhline(rate, linestyle=style, color="grey", linewidth=1)
                ax.annotate(
                    name,
                    (0.01, rate),
                    xycoords=("axes fraction", "data"),
                    textcoords="offset points",
                    xytext=(0, 3),
                    fontsize=8,
                    color="dimgrey",
                )
        ax.set_xscale("log")
        ax.set_xticks(SWEEP, [str(g) for g in SWEEP])
        ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _pos: f"{y / 1000:,.0f}k"))
        ax.set_xlabel("greenlets sharing one socket")
        ax.set_ylabel("messages / s (median, min-max bars)")
        ax.set_title("zmqchan_green: PUSH->PULL over tcp, 1 B + 64 B messages")
        ax.set_ylim(bottom=0)
        ax.grid(True, which="both", alpha=0.3)
        # Below the axes, so that it never hides a point or an error bar.
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2, fontsize=9)
        fig.savefig(path, bbox_inches="tight")
    finally:
        plt.close(fig)
    return None
