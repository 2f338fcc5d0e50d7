"""Colours, labels, number formats and figures shared by the report's tables and plots."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

PT_COLORS = {"private": "#d95f02", "mshare": "#1b9e77", "hugetlb_pmd_share": "#7570b3"}
STRATEGY_ORDER = (
    "linux", "host_mm_only", "flush_all", "host_cpumask", "per_sharer", "union_batch", "broadcast",
    "broadcast_va",
)  # fmt: skip
STRATEGY_LABELS = {
    "linux": "linux: private page tables, each mm flushed (today)",
    "host_mm_only": "host_mm_only: only the host mm flushed",
    "flush_all": "flush_all: flush_tlb_all() (posted series)",
    "host_cpumask": "host_cpumask: IPI CPUs that ran a sharer",
    "per_sharer": "per_sharer: flush each sharer mm in turn",
    "union_batch": "union_batch: one IPI round to all sharers' CPUs",
    "broadcast": "broadcast: INVLPGB + TLBSYNC (AMD only)",
    "broadcast_va": "broadcast_va: INVLPGB by address, all PCIDs (AMD only)",
}
STRATEGY_COLORS = {
    "linux": "#d95f02",
    "host_mm_only": "#999999",
    "flush_all": "#e7298a",
    "host_cpumask": "#e6ab02",
    "per_sharer": "#7570b3",
    "union_batch": "#1b9e77",
    "broadcast": "#66a61e",
    "broadcast_va": "#a6761d",
}
DPI = 110
MIB = 1 << 20


def si(v: float) -> str:
    """1.5k, 230M, 12: a number with an SI suffix, for axis ticks."""
    a = abs(v)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            x = v / div
            return f"{x:.0f}{suffix}" if abs(x) >= 100 or x == int(x) else f"{x:.1f}{suffix}"
    return f"{v:.0f}" if v == int(v) else f"{v:.1f}"


def si_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: si(v))


def plain_formatter():
    """1, 10, 100, 1000, 0.1: log-axis ticks as plain numbers."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:,.10g}")


def uarchs(df: pd.DataFrame) -> list[str]:
    """The uarchs of `df` in the order they first appear."""
    return list(dict.fromkeys(df["uarch"]))


def and_join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def percent(new: float, old: float) -> str:
    if not old:
        return ""
    return f"{100.0 * (new - old) / old:+.0f}%"


def page_label(page: str) -> str:
    return {"4K": "4 KiB", "2M": "2 MiB", "1G": "1 GiB"}.get(page, page)


def new_figure(width: float, height: float):
    """A figure on matplotlib's Agg canvas: no display, no global backend switch."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def markdown(df: pd.DataFrame) -> str:
    """A table in Markdown, integers with thousands separators, floats to one decimal."""
    shown = df.copy()
    for c in shown.columns:
        if pd.api.types.is_integer_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: f"{v:,}")
        elif pd.api.types.is_float_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: f"{v:,.1f}" if np.isfinite(v) else "")
    return shown.to_markdown(index=False, disable_numparse=True)


@dataclass(frozen=True)
class Drawn:
    """A plot and the table it draws: one row per point, bar or cell, the drawn values in plain units."""

    figure: object
    data: pd.DataFrame
