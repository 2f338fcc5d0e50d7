"""The shipped TLB-reach experiment (configs/experiments/tlb_reach.toml) against the issue's acceptance
check: on zen4, with data-cache latency charged and 2-D (nested) walks, the ns-per-load curve has four
steps - L1 DTLB, L1D (one line per page), L2 DTLB, L2 cache - at the uarch file's capacities (within
15%), their heights in that order from smallest to largest, as a Zen 4 guest measures them."""

from __future__ import annotations

from pathlib import Path

from mshare_hw.config.experiment import load_experiment
from mshare_hw.report.frame import load_report_frame
from mshare_hw.report.reach import STEP_TOLERANCE, reach_curves, reach_steps
from mshare_hw.results.hdf5 import load_summary
from mshare_hw.runner import run_experiment

EXPERIMENT = Path(__file__).resolve().parents[2] / "configs" / "experiments" / "tlb_reach.toml"
ZIPPED = "workload.params.working_set_bytes+workload.params.accesses_per_process+run.warmup_accesses"
# zen4.toml: L1 DTLB 72 entries, L1D 32 KiB = 512 lines, L2 DTLB 3072 4K entries, L2 1 MiB = 16384 lines
ZEN4_STEPS = (("L1 DTLB entries", 72), ("L1D lines", 512), ("L2 TLB entries", 3072), ("L2 cache lines", 16384))


def _run(tmp_path: Path, name: str, *overrides: str) -> Path:
    exp = load_experiment(EXPERIMENT, ['sweep.uarch=["zen4"]', *overrides])
    out = tmp_path / f"{name}.h5"
    run_experiment(exp, out)
    return out


def _latency_is_charged(tmp_path: Path) -> bool:
    """Whether timing "latency" charges data-cache latency: a working set past the L1D (1024 pages, one
    line each) costs more cycles in it than in "translation"."""
    point = f"[{1024 * 4096}, 60000, 1024]"
    timing, virtualization = 'sweep.machine.timing=["translation", "latency"]', 'sweep.machine.virtualization=["none"]'
    out = _run(tmp_path, "probe", timing, virtualization, f"sweep.{ZIPPED}=[{point}]")
    runs = load_report_frame(out)[1]
    assert len(runs) == 2
    cycles = dict(zip(runs["timing"], runs["cycles"]))
    return cycles["latency"] != cycles["translation"]


def test_zen4_latency_nested_reach_curve_has_four_steps_at_its_capacities(tmp_path: Path):
    assert _latency_is_charged(tmp_path), "machine.timing = 'latency' charges no data-cache latency"
    out = _run(tmp_path, "reach", 'sweep.machine.timing=["latency"]', 'sweep.machine.virtualization=["nested"]')
    curves = reach_curves(load_report_frame(out)[1])
    assert len(curves) == len(load_summary(out)) >= 30  # every working-set point of the shipped sweep
    steps = reach_steps(curves)
    table = steps.to_string(index=False)
    assert len(steps) == len(ZEN4_STEPS), f"expected four steps, found:\n{table}"
    for s, (name, capacity) in zip(steps.itertuples(), ZEN4_STEPS):
        assert abs(s.pages / capacity - 1) <= STEP_TOLERANCE, f"{name} ({capacity}) step not within 15%:\n{table}"
    heights = list(steps["height_ns"])
    assert heights == sorted(heights) and len(set(heights)) == len(heights), f"heights not increasing:\n{table}"
