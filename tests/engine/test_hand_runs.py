"""Hand-computed cases on both engines: whole runs: determinism, chunking, refused layouts.
Conventions: tests/engine/machines.py."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from machines import LOAD, PAGE, SLOT, GiB, MiB2, shm_region, tiny

from mshare_hw.counters import INDEX
from mshare_hw.engine.driver import run_workload
from mshare_hw.engine.layout import build_layout
from mshare_hw.engine.params import SetAssoc, SimParams
from mshare_hw.reference.run import run_reference
from mshare_hw.workload.generators.blocks import to_array
from mshare_hw.workload.model import ArrayTrace, Process, Region, Workload

# ---- determinism --------------------------------------------------------------------------------------


def _mixed_workload(seed: int) -> tuple[Workload, SimParams]:
    rng = np.random.default_rng(seed)
    regs = [shm_region(SLOT, 64 * PAGE), Region("heap", 3 * GiB, 8 * MiB2, page_size="2M")]
    pool = np.array(
        [SLOT + i * PAGE + 8 * j for i in range(64) for j in range(3)]
        + [3 * GiB + i * MiB2 + 4096 * j for i in range(8) for j in range(4)]
        + [0x400000 + i * PAGE for i in range(16)],
        dtype=np.uint64,
    )
    procs = [
        Process(f"p{p}", ArrayTrace(rng.choice(pool, 3000), rng.choice(3, 3000).astype(np.uint8))) for p in range(8)
    ]
    params = tiny(
        n_cpus=2,
        pt_config="mshare",
        data_caches=True,
        scheduler="global",
        quantum_cycles=20_000,
        slice_accesses=32,
        warmup_accesses=1000,
        interval_accesses=2500,
    )
    return Workload(procs, regs), params


def _same(a: dict, b: dict) -> None:
    for k in ("cpu_counters", "proc_counters", "clocks", "pt_pages"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert a[k].dtype == b[k].dtype
    assert a["stale_examples"] == b["stale_examples"]
    assert [g for g, _ in a["intervals"]] == [g for g, _ in b["intervals"]]
    for (_, x), (_, y) in zip(a["intervals"], b["intervals"]):
        np.testing.assert_array_equal(x, y)


def test_runs_are_deterministic_and_chunking_is_invisible():
    wl, params = _mixed_workload(11)
    first = run_workload(wl, params)
    _same(first, run_workload(wl, params))
    _same(first, run_workload(wl, params, chunk_size=77))
    _same(first, run_workload(wl, params, chunk_size=1000))
    assert len(first["intervals"]) == 24000 // 2500
    tot = first["cpu_counters"].sum(axis=0)
    assert tot[INDEX["accesses"]] == 24000 - 1000  # warm-up subtracted
    assert tot[INDEX["context_switches"]] > 0 and tot[INDEX["asid_recycles"]] > 0
    # a fresh workload object with the same content gives the same numbers
    _same(first, run_workload(_mixed_workload(11)[0], params))


def test_reference_agrees_on_the_mixed_workload():
    wl, params = _mixed_workload(5)
    small = Workload(
        [
            Process(p.name, ArrayTrace(to_array(p.trace).addrs[:600], to_array(p.trace).kinds[:600]))
            for p in wl.processes
        ],
        wl.regions,
    )
    params = dataclasses.replace(params, warmup_accesses=300, interval_accesses=700)
    _same(run_workload(small, params, chunk_size=50), run_reference(small, params))


def test_address_beyond_the_virtual_address_space_is_refused():
    from mshare_hw.config.errors import ConfigError

    addrs = np.array([1 << 30, (1 << 48) + (1 << 30)], dtype=np.uint64)
    wl = Workload([Process("p0", ArrayTrace(addrs, np.ones(2, np.uint8)))])
    with pytest.raises(ConfigError, match=r"p0.*access #1 .*outside the 4-level user address space"):
        run_workload(wl, tiny())


def test_layout_beyond_what_cache_tags_can_tell_apart_is_refused():
    """The engine's caches keep 32-bit tags (line // sets + 1): with one-set caches, lines must stay below
    2^32 - 1, i.e. frames below (2^32 - 1) // 64 = 67,108,863 (256 GiB). A 512 GiB region is refused with a
    clear error instead of aliasing tags; 64-set caches can tell 16 TiB apart and accept it."""
    from mshare_hw.config.errors import ConfigError

    p = tiny(l1d_cache=SetAssoc(1, 1, 4), l2_cache=SetAssoc(1, 1, 14), llc=SetAssoc(1, 1, 40))
    assert p.max_frames == ((1 << 32) - 1) // 64
    trace = ArrayTrace(np.array([4 * SLOT], np.uint64), np.array([LOAD], np.uint8))
    big = Workload([Process("p", trace)], [Region("big", 4 * SLOT, SLOT)])
    with pytest.raises(ConfigError, match="physical memory"):
        build_layout(big, p)
    p64 = tiny(l1d_cache=SetAssoc(64, 1, 4), l2_cache=SetAssoc(64, 1, 14), llc=SetAssoc(64, 1, 40))
    assert p64.max_frames == (1 << 32) - 1
    build_layout(big, p64)
