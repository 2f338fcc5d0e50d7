"""Private vs mshare page tables: faults, walk cycles and DRAM walk reads of the same configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mshare_hw.report.style import PT_COLORS, Drawn, and_join, new_figure, percent, si_formatter
from mshare_hw.report.tables import pairs as private_mshare_pairs

PVM_METRICS = (
    ("page_faults", "page faults", "count"),
    ("walk_cycles", "page-walk cycles", "cycles, all CPUs"),
    ("walk_reads_dram", "page-walk reads from DRAM", "count"),
)


def _config_label(row) -> str:
    unrelated = int(row.n_processes) - int(row.n_sharers)
    who = f"{row.n_sharers} sharers + {unrelated} unrelated" if unrelated else f"{row.n_processes} processes"
    pool = row.get("pool_page_size", "")  # the default experiment's 2 MiB pool variant
    return (
        f"{who}\n{row.n_cpus} CPUs"
        + ("\nsleeping" if int(row.sleep_every_accesses) else "")
        + (f"\n{pool} pool" if pool not in ("", "4K") else "")
    )


def _bars(ax, pairs, key: str, ticks: list[str]) -> list[dict]:
    """A private and an mshare bar per pair, labelled with mshare's change; returns the bars' rows."""
    x = np.arange(len(pairs))
    w = 0.38
    priv = np.array([p[key] for p, _ in pairs], dtype=float)
    msh = np.array([m[key] for _, m in pairs], dtype=float)
    ax.bar(x - w / 2, priv, w, color=PT_COLORS["private"], label="private page tables")
    bars = ax.bar(x + w / 2, msh, w, color=PT_COLORS["mshare"], label="mshare (shared page tables)")
    for b, new, old in zip(bars, msh, priv):
        ax.annotate(
            percent(new, old), (b.get_x() + b.get_width() / 2, b.get_height()),
            textcoords="offset points", xytext=(0, 2), ha="center", va="bottom", fontsize=9, fontweight="bold",
        )  # fmt: skip
    ax.set_xticks(x, ticks, fontsize=9)
    ax.set_xlim(-0.6, len(pairs) - 0.4)
    ax.yaxis.set_major_formatter(si_formatter())
    ax.set_ylim(0, max(priv.max(), msh.max()) * 1.15 or 1)
    ax.grid(axis="y", alpha=0.3)
    return [
        {"uarch": p.uarch, "n_cpus": int(p.n_cpus), "n_sharers": int(p.n_sharers),
         "n_processes": int(p.n_processes), "sleep_every_accesses": int(p.sleep_every_accesses),
         "pool_page_size": str(p.get("pool_page_size", "")), "metric": key,
         "private": old, "mshare": new, "label": percent(new, old)}
        for (p, _), old, new in zip(pairs, priv, msh)
    ]  # fmt: skip


def _legend(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=9)


def plot_private_vs_mshare(df: pd.DataFrame) -> Drawn | None:
    """Data: one row per pair of bars (uarch, n_cpus, n_sharers, n_processes, sleep_every_accesses,
    pool_page_size ("" where the workload has none), metric, private, mshare, label = mshare's change)."""
    pairs = private_mshare_pairs(df)
    if not pairs:
        return None
    uarchs = list(dict.fromkeys(p.uarch for p, _ in pairs))
    events = "runs without invalidation events; " if (df["strategy"] == "none").any() else ""
    note = f"{events}totals over all CPUs and processes; labels: change with mshare"
    drawn: list[dict] = []
    if len(pairs) == len(uarchs):  # one configuration per uarch: one row, the uarchs side by side
        fig = new_figure(max(10.0, 1.6 * len(uarchs) * 3), 4.4)
        axes = fig.subplots(1, len(PVM_METRICS))
        p0 = pairs[0][0]
        for ax, (key, what, unit) in zip(axes, PVM_METRICS):
            drawn += _bars(ax, pairs, key, [p.uarch for p, _ in pairs])
            ax.set_ylabel(f"{what} ({unit})")
            ax.set_title(what)
        _legend(fig, axes[0])
        who = f"{p0.n_processes} processes on {p0.n_cpus} CPUs"
        fig.suptitle(f"Private vs mshare page tables on {and_join(uarchs)}, {who}\n({note})", fontsize=11)
        return Drawn(fig, pd.DataFrame(drawn))
    # several configurations: one row per metric, one column per uarch
    fig = new_figure(max(9.0, len(uarchs) * (1.3 * len(pairs) / len(uarchs) + 1.5)), 3.0 * len(PVM_METRICS) + 1.0)
    axes = fig.subplots(len(PVM_METRICS), len(uarchs), squeeze=False)
    for i, (key, what, unit) in enumerate(PVM_METRICS):
        for j, u in enumerate(uarchs):
            sub = [(p, m) for p, m in pairs if p.uarch == u]
            ax = axes[i][j]
            drawn += _bars(ax, sub, key, [_config_label(p).replace(" + ", "\n+ ") for p, _ in sub])
            ax.set_ylabel(f"{what}\n({unit})")
            ax.set_title(f"{u}: {what}", fontsize=10)
        top = max(ax.get_ylim()[1] for ax in axes[i])
        for ax in axes[i]:  # one scale per metric, so the uarchs compare at a glance
            ax.set_ylim(0, top)
    _legend(fig, axes[0][0])
    fig.suptitle(f"Private vs mshare page tables on {and_join(uarchs)}\n({note})", fontsize=11)
    return Drawn(fig, pd.DataFrame(drawn))
