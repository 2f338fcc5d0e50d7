"""`calibrate --quick` end to end through command.main: the written profile loads with the uarch loader.
Skipped where the probes cannot run (one CPU, no pinning, no built probe module)."""

from __future__ import annotations

import argparse
import json
import os

import pytest

from mshare_hw.config.uarch import load_uarch

probes = pytest.importorskip("mshare_hw._probes", reason="the C probes are not built (python setup.py build_ext)")
pytestmark = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="calibrate needs two CPUs to pin on (shootdown probes)"
)


def _args(*argv: str) -> argparse.Namespace:
    from mshare_hw.calibrate.command import add_arguments

    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


@pytest.mark.slow
def test_quick_calibration_writes_a_profile_that_loads(tmp_path):
    from mshare_hw.calibrate.command import main

    out = tmp_path / "host.toml"
    assert main(_args("-o", str(out), "--quick")) == 0
    u = load_uarch(out)
    assert u.name == "host"
    text = out.read_text()
    assert text.startswith("# Measured profile") and "extends = " in text and "# MEASURED: probe" in text
    assert "# inherited from" in text
    assert json.loads((tmp_path / "host.measurements.json").read_text())["quick"] is True
    assert (tmp_path / "host.validation.csv").exists() and (tmp_path / "host.validation.md").exists()
    assert main(_args("--check", str(out))) == 0


def test_one_cpu_is_refused_politely(capsys):
    from mshare_hw.calibrate.command import main

    assert main(_args("--quick", "--cpus", str(min(os.sched_getaffinity(0))))) == 2
    out = capsys.readouterr().out.strip()
    assert "two or more CPUs" in out and "\n" not in out


def test_shootdown_pairs_give_both_halves_of_every_pair():
    """Each pair: the caller's median round alone and with the mm held by a spinning thread, the median time
    an interrupt took from the spinner and the interrupts per round; the flush IPIs reach the spinner in
    some pair at least."""
    cpus = sorted(os.sched_getaffinity(0))[:2]
    ticks_per_ns = probes.tsc_ghz(10.0)
    pairs = probes.shootdown_pairs(cpus, 1, 100, 4, int(300 * ticks_per_ns), int(50_000 * ticks_per_ns))
    alone, held, gap, per_round = pairs
    assert all(len(x) == 4 for x in pairs)
    assert min(alone) > 0 and min(held) > 0 and max(gap) > 0 and max(per_round) > 0.5
    with pytest.raises(ValueError, match="at least one other"):
        probes.shootdown_pairs(cpus[:1], 1, 100, 4, 1, 1)
