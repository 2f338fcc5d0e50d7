"""Validation: measurements set against what the model predicts with a profile, as a table
(probe, measured, predicted, error %), printed and saved as CSV and Markdown.

The reach curve is replayed through the runner and the engine: the probe's exact pattern (a random
cyclic pointer chase, one line per page, the warm-up lap excluded). With today's `translation` timing the
engine charges no data-cache latency and does not overlap misses, so the curve's cache steps cannot be
predicted yet (the timing modes of issue 15 add them; this function then needs only the `machine.timing`
key). The held-out madvise and ping-pong series have no event sequence in the engine that matches the
probe; they are predicted from the profile's costs by the model's own accounting (faults, flushes, IPIs,
switches) and marked so.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mshare_hw.calibrate.probes import PINGPONG_PAGES
from mshare_hw.config.uarch import load_uarch

REACH_PAGES = (32, 128, 512, 1024, 4096, 16384)  # replayed working sets (a subset: replay is slow)


def _chase_point(profile: Path, pages: int) -> dict:
    from mshare_hw.config.experiment import Experiment
    from mshare_hw.runner import WorkloadCache, prepare_point, run_point

    laps = max(4, 200_000 // pages)
    point = Experiment.model_validate(
        {
            "name": "calibrate-reach",
            "uarch": str(profile),
            "machine": {"n_cpus": 1},
            "run": {"warmup_fraction": 1 / laps},  # the first lap: cold TLBs and first-touch faults
            "workload": {
                "generator": "pointer_chase",
                "params": {
                    "n_processes": 1,
                    "accesses_per_process": pages * laps,
                    "working_set_bytes": pages * 4096,
                    "element_bytes": 4096,
                    "shared": False,
                },
            },
        }
    )
    workload, digests, params = prepare_point(point, WorkloadCache())
    return run_point(point, workload, digests, params).row


def _nearest(sizes: list[int], ns: list[float], target: int) -> tuple[int, float]:
    i = min(range(len(sizes)), key=lambda k: abs(sizes[k] - target))
    return sizes[i], ns[i]


def validate(profile_path: str | Path, measurements: dict, reach_pages=REACH_PAGES) -> pd.DataFrame:
    """The validation table for a profile and the measurements of one calibration."""
    profile = Path(profile_path).resolve()
    u = load_uarch(profile)
    ghz = measurements["core_ghz"]
    rows = []
    chase = measurements["fit.chase_pages"]
    for pages in reach_pages:
        size, measured = _nearest(chase["sizes"], chase["ns"], pages)
        row = _chase_point(profile, size)
        predicted = row["cycles"] / max(row["accesses"], 1) / ghz
        rows.append(("reach (engine)", f"{size} pages", measured, predicted))
    c = u.costs
    for r in measurements.get("held_out.madvise", []):
        k, n = r["remote"], r["pages"]
        flush = n * c.invlpg_cycles if n <= 33 else c.cr3_flush_cycles  # arch/x86/mm/tlb.c flush ceiling
        ipi = (c.ipi_initiator_base_cycles + k * c.ipi_per_target_cycles) if k else 0
        predicted = (n * c.fault_cycles + flush + ipi) / ghz
        rows.append(("madvise+refault (costs)", f"{n} pages, {k} remote CPUs", min(r["ns"]), predicted))
    pp = measurements.get("held_out.pingpong_touch")
    if pp is not None:
        base = measurements["fit.pipe_self_ns"] * ghz
        # two switches with their CR3 writes; the refill of the touched pages is not replayed
        predicted = (base + 2 * (c.context_switch_cycles + c.cr3_noflush_cycles)) / ghz
        rows.append(("ping-pong+touch (costs, no refill)", f"{PINGPONG_PAGES} pages", pp["ns"], predicted))
    df = pd.DataFrame(rows, columns=["probe", "case", "measured_ns", "predicted_ns"])
    df["error_pct"] = 100 * (df["predicted_ns"] - df["measured_ns"]) / df["measured_ns"]
    return df.round({"measured_ns": 2, "predicted_ns": 2, "error_pct": 1})


def save_table(df: pd.DataFrame, stem: Path) -> tuple[Path, Path]:
    """`stem`.csv and `stem`.md."""
    csv, md = stem.with_name(stem.name + ".csv"), stem.with_name(stem.name + ".md")
    df.to_csv(csv, index=False)
    md.write_text(df.to_markdown(index=False) + "\n")
    return csv, md
