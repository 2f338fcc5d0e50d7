"""The report's plots. Each `draw(df)` takes the report's table (`report.frame`) and returns a `Drawn`
(the figure and the table of the values it draws), or None when the file has no data for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from mshare_hw.report.plots.asid import plot_asid
from mshare_hw.report.plots.compare import plot_private_vs_mshare
from mshare_hw.report.plots.events import plot_collateral, plot_shootdown, plot_stale
from mshare_hw.report.plots.memory import plot_projection, plot_pt_vs_processes
from mshare_hw.report.plots.reach import plot_reach
from mshare_hw.report.style import Drawn

__all__ = ["PLOTS", "Plot"]


@dataclass(frozen=True)
class Plot:
    name: str  # the PNG's file name without .png
    draw: Callable[[pd.DataFrame], Drawn | None]
    caption: str


PLOTS = (
    Plot("pt_bytes_vs_processes", plot_pt_vs_processes, "Measured page-table memory vs number of processes."),
    Plot(
        "pt_bytes_projection",
        plot_projection,
        "Analytic page-table memory of the shared region for 1 to 2000 processes, private vs shared.",
    ),
    Plot(
        "private_vs_mshare",
        plot_private_vs_mshare,
        "Page faults, page-walk cycles and DRAM walk reads, private vs mshare page tables, per uarch.",
    ),
    Plot(
        "shootdown_cost",
        plot_shootdown,
        "TLB-shootdown cycles per invalidation event (initiator and responders) per strategy, by sharers and CPUs.",
    ),
    Plot(
        "collateral_damage",
        plot_collateral,
        "STLB misses and walk cycles of processes that do not map the shared region, with vs without events.",
    ),
    Plot("stale_translations", plot_stale, "Uses of stale translations per strategy (any non-zero count is a bug)."),
    Plot("asid_recycles", plot_asid, "PCID/ASID slot recycles vs processes per CPU."),
    Plot(
        "tlb_reach",
        plot_reach,
        "TLB reach: ns per load of a one-load-per-page pointer chase vs working set, per timing mode, per uarch.",
    ),
)
