"""Validation: each held-out probe's measurement set against the engine's replay of the same access and
event sequence with the profile (mshare_hw.calibrate.replay), as a table (probe, case, measured_ns,
predicted_ns, error_pct, fitted_on, note), printed and saved as CSV and Markdown.

Held out (`fitted_on` = "no"): the chase over pages in address order, madvise(MADV_DONTNEED) + refault of
16 and 48 pages, mprotect round trips of 16 and 48 pages (with 0 and 1 .. N-1 other CPUs holding the mm),
and the two-process ping-pong touching 64 pages a side. Rows of the random page chase the TLB values were
fitted on are kept as a consistency check and say so (`fitted_on` names the series).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mshare_hw.calibrate import replay

REACH_PAGES = (32, 128, 512, 1024, 4096, 16384)  # replayed working sets (a subset: replay is slow)
COLUMNS = ["probe", "case", "measured_ns", "predicted_ns", "error_pct", "fitted_on", "note"]


def _nearest(sizes: list[int], ns: list[float], target: int) -> tuple[int, float]:
    i = min(range(len(sizes)), key=lambda k: abs(sizes[k] - target))
    return sizes[i], ns[i]


def _random_cycle(n: int) -> list[int]:
    from mshare_hw.workload.generators import random_cycle

    nxt = random_cycle(n, 1)
    order, i = [], 0
    for _ in range(n):
        order.append(i)
        i = int(nxt[i])
    return order


def validate(profile_path: str | Path, measurements: dict, reach_pages=REACH_PAGES) -> pd.DataFrame:
    """The validation table for a profile and the measurements of one calibration."""
    profile = Path(profile_path).resolve()
    ghz = measurements["core_ghz"]
    rows = []

    def add(probe: str, case: str, measured: float, pred: replay.Prediction, fitted_on: str = "no") -> None:
        rows.append((probe, case, measured, pred.ns, fitted_on, pred.note))

    chase = measurements["fit.chase_pages"]
    for pages in reach_pages:
        size, measured = _nearest(chase["sizes"], chase["ns"], pages)
        add(
            "reach, random pages",
            f"{size} pages",
            measured,
            replay.chase(profile, _random_cycle(size), ghz),
            "yes (fit.chase_pages)",
        )
    seq = measurements.get("held_out.chase_sequential_pages")
    for size, measured in zip(seq["sizes"], seq["ns"]) if seq else ():
        add("reach, pages in address order", f"{size} pages", measured, replay.chase(profile, range(size), ghz))
    for key, kind, probe in (
        ("held_out.madvise", "zap", "madvise+refault"),
        ("held_out.mprotect", "protect", "mprotect"),
    ):
        for r in measurements.get(key, []):
            k, n = r["remote"], r["pages"]
            add(probe, f"{n} pages, {k} remote CPUs", min(r["ns"]), replay.shootdown(profile, kind, n, k, ghz))
    pp = measurements.get("held_out.pingpong_touch")
    if pp is not None:
        pipe = min(measurements["fit.pipe_self_ns"])
        add(
            "ping-pong+touch",
            f"{pp['pages']} pages a side",
            min(pp["ns"]),
            replay.pingpong(profile, pp["pages"], ghz, pipe),
        )
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "error_pct"])
    df.insert(4, "error_pct", 100 * (df["predicted_ns"] - df["measured_ns"]) / df["measured_ns"])
    return df.round({"measured_ns": 2, "predicted_ns": 2, "error_pct": 1})


def save_table(df: pd.DataFrame, stem: Path) -> tuple[Path, Path]:
    """`stem`.csv and `stem`.md."""
    csv, md = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    df.to_csv(csv, index=False)
    md.write_text(df.to_markdown(index=False) + "\n")
    return csv, md
