"""Page-table memory: measured against the number of processes, and the analytic projection."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from mshare_hw.analysis.ptmem import ptmem
from mshare_hw.report.style import MIB, PT_COLORS, Drawn, and_join, new_figure, page_label, plain_formatter, uarchs
from mshare_hw.report.tables import event_free
from mshare_hw.units import format_bytes

SHARED_NAMES = {
    "p4d": "mshare: one shared copy of the PUD, PMD and PTE pages",
    "pud": "shared PMD and PTE pages (share_level pud)",
    "pmd": "shared PTE pages (share_level pmd)",
}
PROJECTION_MAX_PROCESSES = 2000
LOG_SCALE_RATIO = 10  # process counts spanning this factor or more are drawn on log axes


def plot_pt_vs_processes(df: pd.DataFrame) -> Drawn | None:
    """Data: one row per point (pt_config, uarch when the uarchs differ else "", n_processes, pt_bytes)."""
    base = event_free(df)
    if base["n_processes"].nunique() < 2:
        return None
    by_uarch = base.groupby(["pt_config", "n_processes"])["pt_bytes"].nunique().max() > 1
    fig = new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    groups = ["pt_config", "uarch"] if by_uarch else ["pt_config"]
    points = []
    for key, g in base.groupby(groups, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        series = g.groupby("n_processes")["pt_bytes"].mean() / MIB
        label = f"{key[0]} page tables" + (f" ({key[1]})" if by_uarch else "")
        ax.plot(series.index, series.values, marker="o", color=PT_COLORS.get(key[0]), label=label)
        for x, y in zip(series.index, series.values):
            ax.annotate(
                format_bytes(y * MIB), (x, y), textcoords="offset points", xytext=(7, 0), va="center", fontsize=9
            )
            uarch = key[1] if by_uarch else ""
            points.append({"pt_config": key[0], "uarch": uarch, "n_processes": int(x), "pt_bytes": y * MIB})
    xs = sorted(base["n_processes"].unique())
    wide = max(xs) >= LOG_SCALE_RATIO * min(xs)  # e.g. 8 to 1,500 processes: linear axes crowd the small points
    ax.set_xlabel("processes in the workload" + (" (log scale)" if wide else ""))
    ax.set_ylabel("page-table memory, all levels (MiB" + (", log scale)" if wide else ")"))
    if wide:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(plain_formatter())
        ax.set_ylim(top=ax.get_ylim()[1] * 2)
    else:
        ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.1)
    ticks = []
    for n in xs:
        sh = base[base["n_processes"] == n]["n_sharers"].iloc[0]
        ticks.append(f"{n}" if sh == n else f"{n}\n({sh} sharing + {n - sh} unrelated)")
    ax.set_xticks(xs, ticks)
    if wide:
        ax.minorticks_off()
        ax.set_xlim(min(xs) / 1.5, max(xs) * 2.5)
    else:
        span = max(xs) - min(xs)
        ax.set_xlim(min(xs) - 0.1 * span, max(xs) + 0.3 * span)
    same = " (identical on each)" if not by_uarch and base["uarch"].nunique() > 1 else ""
    ax.set_title(
        f"Measured page-table memory vs processes\n{and_join(uarchs(base))}{same}",
        fontsize=11,
    )
    ax.text(
        0.99, 0.02, "all page-table pages of all processes\n(shared region, heaps, text; host mm included)",
        transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="#555555",
    )  # fmt: skip
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return Drawn(fig, pd.DataFrame(points))


def plot_projection(df: pd.DataFrame) -> Drawn | None:
    """Data: one row per region and process count (region_bytes, page_size, levels, share_level,
    n_processes, private_bytes, shared_bytes)."""
    regions = df[df["region_bytes"] > 0][["region_bytes", "region_page_size", "levels"]].drop_duplicates()
    if regions.empty or len(regions) > 3:
        return None
    ms = df[df["pt_config"] == "mshare"]
    share_level = ms["share_level"].iloc[0] if len(ms) else "p4d"
    ns = np.unique(np.round(np.logspace(0, math.log10(PROJECTION_MAX_PROCESSES), 60)).astype(int))
    fig = new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    styles = ("-", "--", ":")
    shared_name = SHARED_NAMES.get(share_level, f"shared at the {share_level} level")
    points = []
    for (_, reg), style in zip(regions.iterrows(), styles):
        size, page, levels = int(reg.region_bytes), reg.region_page_size, int(reg.levels)
        models = [ptmem(int(n), size, page, share_level, levels) for n in ns]
        priv = np.array([m.private_total_bytes for m in models]) / MIB
        shared = np.array([m.shared_total_bytes for m in models]) / MIB
        tag = f", {format_bytes(size)} of {page_label(page)} pages" if len(regions) > 1 else ""
        ax.plot(ns, priv, style, color=PT_COLORS["private"], label=f"private page tables{tag}")
        ax.plot(ns, shared, style, color=PT_COLORS["mshare"], label=f"{shared_name}{tag}")
        for ys in (priv, shared):
            ax.annotate(
                format_bytes(ys[-1] * MIB), (ns[-1], ys[-1]), textcoords="offset points", xytext=(4, 0),
                va="center", fontsize=9,
            )  # fmt: skip
        for n, m in zip(ns, models):
            points.append(
                {"region_bytes": size, "page_size": page, "levels": levels, "share_level": share_level,
                 "n_processes": int(n), "private_bytes": m.private_total_bytes, "shared_bytes": m.shared_total_bytes}
            )  # fmt: skip
    for n in sorted(df["n_sharers"].unique()):
        ax.axvline(n, color="black", alpha=0.25, lw=1, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1, PROJECTION_MAX_PROCESSES * 4)
    ax.set_xlabel("processes mapping the shared region (log scale)")
    ax.set_ylabel("page-table memory for the region (MiB, log scale)")
    ax.yaxis.set_major_formatter(plain_formatter())
    ax.xaxis.set_major_formatter(plain_formatter())
    reg0 = regions.iloc[0]
    what = (
        f"one {format_bytes(int(reg0.region_bytes))} region of {page_label(reg0.region_page_size)} pages"
        if len(regions) == 1
        else "the shared regions of this file"
    )
    ax.set_title(f"Page-table memory projected to 1-2000 processes: {what}", fontsize=11)
    ax.legend(loc="upper left")
    ax.text(
        0.015, 0.84,
        "analytic model (mshare-hw ptmem): the region's page-table\npages only, the same on every uarch; "
        "dotted lines: the\nnumbers of sharing processes simulated in this file",
        transform=ax.transAxes, ha="left", va="top", fontsize=8, color="#555555",
    )  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    return Drawn(fig, pd.DataFrame(points))
