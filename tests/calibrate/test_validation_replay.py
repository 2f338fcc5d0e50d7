"""The probes replayed in the engine with a shipped profile: machine settings, and the predictions'
structure (more work costs more), no timing of the host."""

from __future__ import annotations

import pytest

from mshare_hw.calibrate import replay
from mshare_hw.config.uarch import load_uarch


def test_machine_settings_pass_timing_and_nested_only_when_a_hypervisor_was_measured():
    u = load_uarch("zen4")
    m = replay.machine_settings(u, 2)
    assert m["n_cpus"] == 2 and m["timing"] == replay.TIMING and "virtualization" not in m
    vm = u.model_copy(update={"features": u.features.model_copy(update={"hypervisor": True})})
    assert replay.machine_settings(vm, 2)["virtualization"] == "nested"


def test_madvise_replay_costs_more_with_more_pages_and_a_remote_cpu():
    one = replay.shootdown("zen4", "zap", 16, 0, 3.0)
    assert "events replayed" in one.note
    assert replay.shootdown("zen4", "zap", 48, 0, 3.0).ns > one.ns
    assert replay.shootdown("zen4", "zap", 16, 1, 3.0).ns > one.ns


def test_mprotect_replay_is_two_flushes_without_faults():
    u = load_uarch("zen4").costs
    p = replay.shootdown("zen4", "protect", 16, 0, 1.0)
    assert p.ns < 16 * u.fault_cycles  # no refaults
    assert p.ns >= 2 * 16 * u.invlpg_cycles * 0.9


def test_chase_replay_steps_up_past_the_l1_dtlb():
    entries = load_uarch("zen4").tlb.l1d[0].entries
    small = replay.chase("zen4", range(entries // 2), 3.0).ns
    big = replay.chase("zen4", range(entries * 4), 3.0).ns
    assert big > small


def test_pingpong_replay_turns_hold_about_the_pages():
    p = replay.pingpong("zen4", 64, 3.0, pipe_ns=500.0)
    assert p.ns > 500.0
    touches = float(p.note.split()[0])
    assert touches == pytest.approx(64, rel=0.25)  # the quantum search stops within 10% or keeps the closest
