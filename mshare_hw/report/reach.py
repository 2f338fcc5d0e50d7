"""The TLB-reach curve of a results file: ns per load of the one-load-per-page pointer chase against its
working set, per uarch and (timing, virtualization) mode, the uarch's capacities, and the curve's steps
(`mshare_hw.calibrate.fit.find_rises`, built on the plateau fit `mshare-hw calibrate` applies to a real machine).
`mshare-hw report` writes the step table as reach_steps.{csv,md}; `print_step_table(FILE)` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mshare_hw.calibrate.fit import find_rises
from mshare_hw.config.errors import ConfigError
from mshare_hw.config.uarch import load_uarch
from mshare_hw.report.frame import load_report_frame

MODE_KEYS = ("timing", "virtualization")
CURVE_KEYS = ("uarch", *MODE_KEYS)
MIN_POINTS = 3  # working sets a curve needs to be drawn (and its steps fitted)
STEP_TOLERANCE = 0.15  # a step "at" a capacity lies within this fraction of it


@dataclass(frozen=True)
class Capacities:
    """What a uarch file says bounds the reach curve, in 4 KiB pages of the one-line-per-page loop,
    and its clock (cycles -> ns)."""

    clock_ghz: float
    l1_dtlb: int  # L1 DTLB 4K entries
    l1d_lines: int  # L1D size / 64
    l2_tlb: int  # L2 DTLB (STLB) 4K entries
    l2_lines: int  # L2 size / 64

    def marks(self) -> dict[str, int]:
        """The capacities by label, in order of size."""
        marks = {
            "L1 DTLB entries": self.l1_dtlb,
            "L1D lines": self.l1d_lines,
            "L2 TLB entries": self.l2_tlb,
            "L2 cache lines": self.l2_lines,
        }
        return dict(sorted(marks.items(), key=lambda kv: kv[1]))


def capacities(uarch: str) -> Capacities | None:
    """The uarch's capacities (None when its file cannot be read)."""
    try:
        u = load_uarch(uarch)
    except ConfigError:
        return None

    def entries_4k(level) -> int:
        return sum(s.entries for s in level if "4K" in s.sizes)

    return Capacities(
        clock_ghz=float(u.core.clock_ghz),
        l1_dtlb=entries_4k(u.tlb.l1d),
        l1d_lines=u.caches.l1d.size_kib * 1024 // 64,
        l2_tlb=entries_4k(u.tlb.l2d),
        l2_lines=u.caches.l2.size_kib * 1024 // 64,
    )


def reach_curves(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (uarch, timing, virtualization, pages): cycles per measured load and ns per load at
    the uarch's clock (the mean over the runs of that point), with the uarch's capacities. Only the
    reach runs (`chase_pages` > 0) of curves with at least MIN_POINTS working sets; empty if none."""
    runs = df[(df["chase_pages"] > 0) & (df["accesses"] > 0)]
    rows = []
    for (uarch, timing, virt), g in runs.groupby(list(CURVE_KEYS), sort=False):
        cap = capacities(uarch)
        if cap is None or g["chase_pages"].nunique() < MIN_POINTS:
            continue
        per_load = (g["cycles"] / g["accesses"]).groupby(g["chase_pages"]).mean().sort_index()
        for pages, cyc in per_load.items():
            rows.append(
                {"uarch": uarch, "timing": timing, "virtualization": virt, "pages": int(pages),
                 "cycles_per_load": float(cyc), "clock_ghz": cap.clock_ghz, "ns_per_load": float(cyc) / cap.clock_ghz,
                 "l1_dtlb_entries": cap.l1_dtlb, "l1d_lines": cap.l1d_lines, "l2_tlb_entries": cap.l2_tlb,
                 "l2_lines": cap.l2_lines}
            )  # fmt: skip
    return pd.DataFrame(rows)


def reach_steps(curves: pd.DataFrame) -> pd.DataFrame:
    """The upward steps of each curve of `reach_curves`: one row per rise between two plateaus (position =
    the working set where the curve crosses the middle of the rise, `calibrate.fit.find_rises`), its levels
    and height in ns, and the nearest capacity with the position's offset from it (`at_capacity` when
    within STEP_TOLERANCE)."""
    rows = []
    if curves.empty:
        return pd.DataFrame(rows)
    for (uarch, timing, virt), g in curves.groupby(list(CURVE_KEYS), sort=False):
        cap = capacities(uarch)
        marks = cap.marks() if cap else {}
        for k, s in enumerate(find_rises(g["pages"], g["ns_per_load"]), start=1):
            name, at = min(marks.items(), key=lambda kv: abs(s.position / kv[1] - 1)) if marks else ("", 0)
            off = s.position / at - 1 if at else float("nan")
            rows.append(
                {"uarch": uarch, "timing": timing, "virtualization": virt, "step": k, "pages": int(round(s.position)),
                 "before_ns": s.before, "after_ns": s.after, "height_ns": s.height, "nearest": name,
                 "capacity": at, "offset_pct": 100.0 * off, "at_capacity": bool(abs(off) <= STEP_TOLERANCE)}
            )  # fmt: skip
    return pd.DataFrame(rows)


def step_table(path: str | Path) -> pd.DataFrame:
    """The steps of every reach curve in results file `path`."""
    return reach_steps(reach_curves(load_report_frame(Path(path))[1]))


def print_step_table(path: str | Path) -> None:
    """Print the step table of results file `path` (Markdown)."""
    steps = step_table(path)
    print(steps.to_markdown(index=False, floatfmt=".2f") if len(steps) else f"{path}: no TLB-reach curves")
