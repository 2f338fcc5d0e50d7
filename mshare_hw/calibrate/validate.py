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

import numpy as np
import pandas as pd

from mshare_hw.calibrate import replay
from mshare_hw.calibrate.fit import fastest

REACH_PAGES = (32, 128, 512, 1024, 4096, 16384)  # replayed working sets (a subset: replay is slow)
COLUMNS = ["probe", "case", "measured_ns", "predicted_ns", "error_pct", "fitted_on", "note"]


def _nearest(sizes: list[int], ns: list[float], target: int) -> tuple[int, float]:
    i = min(range(len(sizes)), key=lambda k: abs(sizes[k] - target))
    return sizes[i], ns[i]


def random_cycle_order(n: int) -> list[int]:
    """The node order of a random single-cycle chase over n nodes (Sattolo, seeded)."""
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
            replay.chase(profile, random_cycle_order(size), ghz),
            "yes (fit.chase_pages)",
        )
    seq = measurements.get("held_out.chase_sequential_pages")
    for size, measured in zip(seq["sizes"], seq["ns"]) if seq else ():
        add("reach, pages in address order", f"{size} pages", measured, replay.chase(profile, range(size), ghz))
    strided = measurements.get("held_out.chase_strided_pages")
    if strided:
        _strided_rows(profile, strided, ghz, add, rows)
    for key, kind, probe in (
        ("held_out.madvise", "zap", "madvise+refault"),
        ("held_out.mprotect", "protect", "mprotect"),
    ):
        for r in measurements.get(key, []):
            k, n = r["remote"], r["pages"]
            add(probe, f"{n} pages, {k} remote CPUs", min(r["ns"]), replay.shootdown(profile, kind, n, k, ghz))
    pp = measurements.get("held_out.pingpong_touch")
    if pp is not None:
        pipe = fastest(measurements, measurements["fit.pipe_self_ns"])
        add(
            "ping-pong+touch",
            f"{pp['pages']} pages a side",
            min(pp["ns"]),
            replay.pingpong(profile, pp["pages"], ghz, pipe),
        )
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "error_pct"])
    df.insert(4, "error_pct", 100 * (df["predicted_ns"] - df["measured_ns"]) / df["measured_ns"])
    return df.round({"measured_ns": 2, "predicted_ns": 2, "error_pct": 1})


def _strided_rows(profile: Path, curve: dict, ghz: float, add, rows: list) -> None:
    """The held-out chase over random nodes 8 KiB apart, replayed at one working set per octave: each
    point, then each measured rise (`fit.find_rises` over the same working sets, so both curves are read
    alike) against the predicted rise nearest it: its position in nodes and the plateau it reaches in ns."""
    from mshare_hw.calibrate.fit import find_rises
    from mshare_hw.calibrate.probes import STRIDED_SPACING

    sizes, measured = curve["sizes"], curve["ns"]
    picked = [i for i, s in enumerate(sizes) if s & (s - 1) == 0] or list(range(len(sizes)))
    xs = [sizes[i] for i in picked]
    pred = [replay.chase(profile, random_cycle_order(s), ghz, STRIDED_SPACING).ns for s in xs]
    probe = "reach, random nodes 8 KiB apart"
    for x, i, p in zip(xs, picked, pred):
        add(probe, f"{x} nodes", measured[i], replay.Prediction(p))
    got, want = find_rises(xs, [measured[i] for i in picked]), find_rises(xs, pred)
    for k, r in enumerate(got, start=1):
        if not want:
            break
        w = min(want, key=lambda q: abs(np.log(q.position / r.position)))
        note = "a rise's position in nodes (not ns): the middle of its two levels"
        if abs(np.log(w.position / r.position)) > np.log(2):
            note += "; no predicted rise within 2x (the nearest shown)"
        rows.append((f"{probe}: rise {k}", "position", r.position, w.position, "no", note))
        rows.append((f"{probe}: rise {k}", "plateau after it", r.after, w.after, "no", "ns per load"))


def save_table(df: pd.DataFrame, stem: Path) -> tuple[Path, Path]:
    """`stem`.csv and `stem`.md."""
    csv, md = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    df.to_csv(csv, index=False)
    md.write_text(df.to_markdown(index=False) + "\n")
    return csv, md
