"""Repeatability: two synthetic profiles' MEASURED values compared key by key."""

from __future__ import annotations

import math

import pytest

from mshare_hw.calibrate.compare import compare_profiles, measured_values

A = """extends = "zen4"
name = "a"
[features]
pcid = true  # MEASURED: probe /proc/cpuinfo flags, cpu, 2025-01-01
# la57 = false  # inherited from zen4
[tlb]
[[tlb.l1d]]
entries = 72  # MEASURED: probe cpuid, cpu, 2025-01-01
[costs]
fault_cycles = 2000  # MEASURED: probe fault_anon, cpu, 2025-01-01, spread 3%
invlpg_cycles = 200  # MEASURED: probe mprotect, cpu, 2025-01-01, spread 5%
cr3_flush_cycles = 96
"""
B = (
    A.replace("2000", "2100")
    .replace("= 200", "= 300")
    .replace("pcid = true", "pcid = false")
    .replace("invlpg_cycles", "ipi_responder_cycles")
)


def test_measured_values_reads_only_marked_keys():
    assert measured_values(A) == {
        "features.pcid": True,
        "tlb.l1d[0].entries": 72,
        "costs.fault_cycles": 2000,
        "costs.invlpg_cycles": 200,
    }


def test_compare_profiles_percent_apart(tmp_path):
    (tmp_path / "a.toml").write_text(A)
    (tmp_path / "b.toml").write_text(B)
    df = compare_profiles(tmp_path / "a.toml", tmp_path / "b.toml").set_index("key")
    assert df.loc["costs.fault_cycles", "diff_pct"] == pytest.approx(100 * 100 / 2100, abs=0.05)
    assert bool(df.loc["costs.fault_cycles", "repeatable"])
    assert df.loc["tlb.l1d[0].entries", "diff_pct"] == 0
    assert df.loc["features.pcid", "diff_pct"] == 100 and not df.loc["features.pcid", "repeatable"]
    assert math.isnan(df.loc["costs.invlpg_cycles", "diff_pct"]) and df.loc["costs.invlpg_cycles", "b"] is None
    assert math.isnan(df.loc["costs.ipi_responder_cycles", "diff_pct"])
