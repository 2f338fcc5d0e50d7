"""The TLB-reach curve: ns per load against the working set, one line per (timing, virtualization)
mode, one panel per uarch, its capacities marked."""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.ticker import LogLocator, NullFormatter

from mshare_hw.report.reach import MODE_KEYS, capacities, reach_curves
from mshare_hw.report.style import Drawn, new_figure, plain_formatter

TIMING_COLORS = {"translation": "#7570b3", "latency": "#d95f02", "overlap": "#1b9e77"}
VIRT_STYLES = {"none": "-", "nested": "--"}
MARK_STYLES = ("#666666", ":"), ("#1f78b4", "-."), ("#666666", "--"), ("#1f78b4", (0, (1, 3)))


def plot_reach(df: pd.DataFrame) -> Drawn | None:
    """Data: one row per drawn point (`reach_curves`: uarch, timing, virtualization, pages, cycles and
    ns per load, the uarch's clock and capacities)."""
    curves = reach_curves(df)
    if curves.empty:
        return None
    names = list(dict.fromkeys(curves["uarch"]))
    cols = min(len(names), 2)
    rows = math.ceil(len(names) / cols)
    fig = new_figure(6.0 * cols, 4.2 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, uarch in zip(axes, names):
        g = curves[curves["uarch"] == uarch]
        for (timing, virt), c in g.groupby(list(MODE_KEYS), sort=False):
            ax.plot(
                c["pages"], c["ns_per_load"], marker="o", ms=3, color=TIMING_COLORS.get(timing),
                ls=VIRT_STYLES.get(virt, "-"), label=f"{timing}, {'native' if virt == 'none' else virt}",
            )  # fmt: skip
        cap = capacities(uarch)
        for (label, pages), (color, style) in zip(cap.marks().items(), MARK_STYLES):
            ax.axvline(pages, color=color, ls=style, lw=1, label=f"{label} ({pages:,})")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(plain_formatter())
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(plain_formatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{uarch} ({cap.clock_ghz:g} GHz)", fontsize=10)
        ax.set_xlabel("working set (4 KiB pages, one load per page; log scale)")
        ax.set_ylabel("ns per load (log scale)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="lower right")
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.suptitle("TLB reach: a pointer chase over N pages, one line per page (warm-up lap excluded)", fontsize=11)
    return Drawn(fig, curves)
