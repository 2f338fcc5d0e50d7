"""Differential tests: the Cython engine and the pure-Python reference model must agree exactly.

Hypothesis draws tiny machines (1-3 CPUs, 1-2 TLB structures per level with odd set counts, xor or
modulo index, split or unified L2 TLB, per-level / unified / no page-walk caches, tiny caches with
non-power-of-two sets, random latencies and costs, PCID on/off, 4 or 5 levels, pinned or global
scheduling with short quanta, warm-up and interval checkpoints) and tiny workloads (up to 8 processes,
possibly all on one CPU so ASIDs recycle; private and shared regions with 4K/2M/1G pages, some spanning
two 512 GiB slots; undeclared addresses), under private and mshare page tables at every share level.
`run_workload` (fed in random chunk sizes) and `run_reference` must return identical counters, clocks,
page-table pages, stale examples and interval samples.

A second property drives both engines step by step (switch_to / access / enter_lazy / bump_tlb_gen /
plant_pte_change) so that lazy catch-up, slot-generation flushes and the oracle's stale hits, which
replaying a workload alone never produces, are compared too.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from machines import tiny
from random_machines import (
    SHAPE_NAMES,
    SLOT,
    KiB4,
    MiB2,
    address_pool,
    assert_same_results,
    cases,
    differential_settings,
    record_coverage,
)

from mshare_hw import _engine
from mshare_hw.counters import COUNTERS
from mshare_hw.engine.driver import run_workload
from mshare_hw.engine.params import SetAssoc, SimParams, TLBStruct
from mshare_hw.reference import ReferenceMachine
from mshare_hw.reference.run import run_reference
from mshare_hw.workload.model import ArrayTrace, Process, Region, Workload

DIFF_SETTINGS = differential_settings(250)
STEP_SETTINGS = differential_settings(120)


@DIFF_SETTINGS
@given(data=st.data())
def test_engine_matches_reference(data):
    params, workload, layout = data.draw(cases(), label="case")
    chunk = data.draw(st.integers(1, 100), label="chunk_size")
    got = run_workload(workload, params, layout=layout, chunk_size=chunk)
    want = run_reference(workload, params, layout=layout)
    assert_same_results(got, want)
    record_coverage(got["cpu_counters"], params)
    # Nothing in a plain replay changes a present PTE, so no TLB or PWC hit can be stale.
    assert got["cpu_counters"][:, COUNTERS.index("stale_translations")].sum() == 0


# ---- step-by-step differential ---------------------------------------------------------------------


def _empty_traces(n: int):
    return [(np.empty(0, np.uint64), np.empty(0, np.uint8)) for _ in range(n)]


@STEP_SETTINGS
@given(data=st.data())
def test_single_steps_match(data):
    params, workload, layout = data.draw(cases(), label="case")
    n_procs, n_cpus = layout.n_procs, params.n_cpus
    eng = _engine.Engine(params, layout)
    ref = ReferenceMachine(params, layout, _empty_traces(n_procs))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    pool = address_pool(list(workload.regions), rng, 47 if params.levels == 4 else 56)
    hot = pool[: int(rng.integers(1, 9))]
    loaded = [-1] * n_cpus
    lazy = [False] * n_cpus
    touched: list[tuple[int, int]] = []
    n_ops = data.draw(st.integers(1, 300), label="n_ops")
    for _ in range(n_ops):
        op = rng.choice(6, p=[0.12, 0.65, 0.05, 0.05, 0.08, 0.05])
        cpu = int(rng.integers(0, n_cpus))
        if op == 0 or (op == 1 and (loaded[cpu] < 0 or lazy[cpu])):
            proc = int(rng.integers(0, n_procs)) if rng.random() < 0.8 or loaded[cpu] < 0 else loaded[cpu]
            eng.switch_to(cpu, proc)
            ref.switch_to(cpu, proc)
            loaded[cpu], lazy[cpu] = proc, False
        elif op == 1:
            va = int(rng.choice(hot)) if rng.random() < 0.6 else int(rng.choice(pool))
            kind = int(rng.choice(3, p=[0.2, 0.5, 0.3]))
            eng.access(cpu, loaded[cpu], va, kind)
            ref.access(cpu, loaded[cpu], va, kind)
            touched.append((loaded[cpu], va))
        elif op == 2:
            if loaded[cpu] >= 0:
                eng.enter_lazy(cpu)
                ref.enter_lazy(cpu)
                lazy[cpu] = True
        elif op == 3:
            mm = int(rng.integers(0, n_procs + layout.n_hosts))
            eng.bump_tlb_gen(mm)
            ref.bump_tlb_gen(mm)
        elif op == 5:
            if loaded[cpu] >= 0:
                eng.end_slice(cpu, loaded[cpu])
                ref.end_slice(cpu, loaded[cpu])
        else:
            if touched and rng.random() < 0.8:
                proc, va = touched[int(rng.integers(0, len(touched)))]
            else:
                proc, va = int(rng.integers(0, n_procs)), int(rng.choice(pool))
            assert eng.plant_pte_change(proc, va) == ref.plant_pte_change(proc, va)
    for cpu in range(n_cpus):
        assert eng.asid_slots(cpu) == ref.asid_slots(cpu)
    want = ref.results()
    assert_same_results(
        {
            "cpu_counters": eng.cpu_counters,
            "proc_counters": eng.proc_counters,
            "clocks": eng.clocks,
            "pt_pages": eng.pt_pages,
            "stale_examples": eng.stale_examples,
            "intervals": [],
        },
        {**want, "cpu_counters": ref.cpu_counters, "proc_counters": ref.proc_counters},
    )
    record_coverage(eng.cpu_counters, params)
    np.testing.assert_array_equal(ref.clocks, want["clocks"])
    np.testing.assert_array_equal(ref.pt_pages, want["pt_pages"])


def _fixed_params() -> SimParams:
    return tiny(
        n_cpus=2,
        l1i=(TLBStruct((12,), 2, 2, False), TLBStruct((21, 30), 1, 2, False)),
        l1d=(TLBStruct((12, 21, 30), 3, 2, False),),
        l2d=(TLBStruct((12, 21), 4, 2, True), TLBStruct((30,), 1, 1, False)),
        pwc_structs=(SetAssoc(2, 2), SetAssoc(1, 2), SetAssoc(1, 1)),
        pwc_of_level=(-1, -1, 0, 1, 2, -1),
        l1d_cache=SetAssoc(3, 2, 4),
        l2_cache=SetAssoc(5, 2, 12),
        llc=SetAssoc(7, 3, 40),
        data_caches=True,
        fault_cycles=900,
        fault_per_page_cycles=30,
        link_fault_cycles=200,
        context_switch_cycles=150,
        cr3_noflush_cycles=10,
        cr3_flush_cycles=100,
        pt_config="mshare",
        scheduler="global",
        quantum_cycles=700,
        slice_accesses=13,
        warmup_accesses=50,
        interval_accesses=97,
    )


@pytest.mark.parametrize("chunk", [1, 3, 64, 1 << 20])
def test_chunking_is_invisible(chunk):
    """One fixed mixed workload: every chunk size gives the reference's numbers."""
    params = _fixed_params()
    rng = np.random.default_rng(7)
    regs = [
        Region("shm", 2 * SLOT, 40 * KiB4, kind="shmem", shared=True),
        Region("heap", 4 * SLOT + 3 * MiB2, 2 * MiB2, page_size="2M"),
    ]
    pool = address_pool(regs, rng, 47)
    procs = []
    for p in range(9):
        n = 150 + 10 * p
        procs.append(
            Process(f"p{p}", ArrayTrace(rng.choice(np.array(pool, np.uint64), n), rng.choice(3, n).astype(np.uint8)))
        )
    wl = Workload(procs, regs)
    got = run_workload(wl, params, chunk_size=chunk)
    assert_same_results(got, run_reference(wl, params))
    assert len(got["intervals"]) == sum(len(p.trace) for p in procs) // 97


def test_xor_index_needs_power_of_two_sets():
    # the engine masks the xor index with sets - 1; a non-power-of-two set count is refused up front
    with pytest.raises(ValueError, match="power-of-two"):
        TLBStruct((12, 21, 30), 3, 1, True)


@pytest.mark.parametrize(
    ("uarch", "shape"),
    [
        ("skylake_sp", "one-block sets"),  # all sets <= 16 ways, 2^k cache sets
        ("zen3", "one-block cache sets"),  # fully associative 64-entry L1 TLBs: 4 blocks
        ("icelake_sp", "any sets"),  # 20-way L2 cache: 2 blocks
    ],
)
def test_hot_loop_copy_follows_the_set_shapes(uarch, shape):
    from mshare_hw.config.uarch import load_uarch
    from mshare_hw.engine.params import build_params

    assert SHAPE_NAMES[_engine.set_shape(build_params(load_uarch(uarch), n_cpus=2))] == shape


def test_another_replacement_policy_runs_the_general_copy():
    from mshare_hw.config.uarch import load_uarch
    from mshare_hw.engine.params import build_params

    for policy, shape in (("lru", "one-block sets"), ("plru", "any sets"), ("random", "any sets")):
        params = build_params(load_uarch("skylake_sp"), n_cpus=2, replacement=policy)
        assert SHAPE_NAMES[_engine.set_shape(params)] == shape
