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
