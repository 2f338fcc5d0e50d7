"""PCID/ASID slot recycling against the number of processes per CPU."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mshare_hw.report.style import PT_COLORS, Drawn, and_join, new_figure, si_formatter, uarchs

LINUX_ASID_SLOTS = 6  # TLB_NR_DYN_ASIDS in arch/x86/include/asm/tlbflush.h


def plot_asid(df: pd.DataFrame) -> Drawn | None:
    """Data: one row per point (column = asid_recycles | share, pt_config, uarchs: the uarchs whose
    identical curve it is, per_cpu = processes per CPU, value; share = % of context switches)."""
    if not (df["asid_recycles"] > 0).any():
        return None
    d = df.assign(per_cpu=df["n_processes"] / df["n_cpus"])
    d = d.assign(share=100.0 * d["asid_recycles"] / d["context_switches"].where(d["context_switches"] > 0))
    if d["per_cpu"].nunique() < 2:
        return None
    fig = new_figure(11.0, 4.6)
    axes = fig.subplots(1, 2)
    markers = "osD^v"
    drawn = []
    for ax, col, ylabel in (
        (axes[0], "asid_recycles", "ASID (PCID) slot recycles (count, all CPUs)"),
        (axes[1], "share", "context switches that recycle an ASID slot (%)"),
    ):
        for pt, g in d.groupby("pt_config", sort=False):
            curves: dict[tuple, list[str]] = {}  # identical curves of several uarchs are drawn once
            for u, gu in g.groupby("uarch", sort=False):
                s = gu.groupby("per_cpu")[col].mean()
                curves.setdefault((tuple(s.index), tuple(np.round(s.values, 1))), []).append(u)
            for k, ((xs, ys), us) in enumerate(curves.items()):
                ax.plot(
                    xs, ys, marker=markers[k % len(markers)], color=PT_COLORS.get(pt),
                    label=f"{pt} page tables: {and_join(us)}" + (" (identical)" if len(us) > 1 else ""),
                )  # fmt: skip
                drawn += [
                    {"column": col, "pt_config": pt, "uarchs": and_join(us), "per_cpu": x, "value": y}
                    for x, y in zip(xs, ys)
                ]
        ax.axvline(LINUX_ASID_SLOTS, color="black", ls=":", lw=1, label="6 ASID slots per CPU (Linux)")
        ax.set_xlabel("processes per CPU")
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(si_formatter())
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"PCID/ASID slot recycling vs processes per CPU on {and_join(uarchs(d))}", fontsize=11)
    return Drawn(fig, pd.DataFrame(drawn))
