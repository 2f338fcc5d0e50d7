"""Replay speed of the Cython engine, in accesses per second on one core.

Targets (not asserted: these are benchmarks, not timed tests; compare the
`accesses_per_s` in extra_info, or the pytest-benchmark table, with them):
  TLB-hit-dominated, data caches off >= 50 M/s; data caches on >= 15 M/s;
  walk-heavy (working set far beyond STLB reach, walks through the caches) >= 8 M/s;
  coherence oracle on <= 15% slower than off; the pure-Python reference >= 100x slower (fine).

Run for real with: pytest tests/benchmarks --benchmark-enable
With the default --benchmark-disable each benchmark runs once, as a plain test.
"""

from __future__ import annotations

import numpy as np
import pytest

from mshare_hw.engine.driver import run_workload
from mshare_hw.engine.layout import build_layout
from mshare_hw.reference.run import run_reference
from mshare_hw.workload.generators import database_workload
from mshare_hw.workload.generators.blocks import materialise

ROUNDS = 3


@pytest.mark.parametrize("data_caches", [False, True], ids=["caches_off", "caches_on"])
def test_replay_tlb_hits(benchmark, bench_replay, make_params, hit_workload, data_caches):
    """4M uniform loads over 64 KiB (16 pages): after 16 faults and a few walks, every access is an L1
    DTLB hit (and, with data caches on, an L1D hit). The oracle is off: this is the bare replay rate."""
    benchmark.group = "replay: TLB-hit dominated"
    params = make_params(data_caches=data_caches, oracle=False)
    _, totals = bench_replay(hit_workload, params)
    n = hit_workload.total_accesses()
    assert totals["walks"] < 100  # hit dominated, as intended
    assert totals["l1_dtlb_hits"] > 0.999 * n


def test_replay_walk_heavy(benchmark, bench_replay, make_params, walk_workload):
    """Touch each page of 256 MiB once, then 3M uniform loads over it: the STLB (1,536 entries) covers
    ~2% of the working set, so nearly every load walks; walk reads go through L1D/L2/LLC (and the data
    accesses too). The rate is over the whole run, first-touch pass and its faults included."""
    benchmark.group = "replay: walk heavy"
    params = make_params(data_caches=True, oracle=False)
    _, totals = bench_replay(walk_workload, params)
    n_pages = walk_workload.regions[0].size // 4096
    n_uniform = walk_workload.total_accesses() - n_pages
    assert totals["walks"] > 0.9 * n_uniform  # walk dominated, as intended
    assert totals["page_faults"] == n_pages // 16  # all faults in the first pass (16-page fault-around)
    assert totals["walk_reads"] >= totals["walks"]


TIMING = pytest.mark.parametrize("timing", ["translation", "latency", "overlap"])
# the timing benchmarks hold replacement at LRU, so that they time the modes' accounting alone ("auto" picks
# the uarch's policies outside translation mode; test_replay_replacement times those)


@TIMING
def test_replay_timing_hits(benchmark, bench_replay, make_params, hit_workload, timing):
    """The hit-dominated trace with data caches on under each timing mode (machine.timing): latency and
    overlap charge the data caches' latencies (targets: translation as fast as before the modes existed,
    latency within 15% of translation; overlap reported)."""
    benchmark.group = "replay: timing modes, TLB-hit dominated"
    params = make_params(data_caches=True, oracle=False, timing=timing, replacement="lru")
    _, totals = bench_replay(hit_workload, params)
    assert (totals["data_cycles"] > 0) == (timing != "translation")


@TIMING
def test_replay_timing_walks(benchmark, bench_replay, make_params, walk_workload, timing):
    """The walk-heavy trace under each timing mode (overlap: walks and misses overlap up to the [core]
    limits)."""
    benchmark.group = "replay: timing modes, walk heavy"
    params = make_params(data_caches=True, oracle=False, timing=timing, replacement="lru")
    _, totals = bench_replay(walk_workload, params)
    assert totals["walks"] > 0


@pytest.mark.parametrize("replacement", ["lru", "plru", "random"])
def test_replay_replacement(benchmark, bench_replay, make_params, walk_workload, replacement):
    """The walk-heavy trace with every TLB, PWC and cache under one replacement policy (machine.replacement):
    LRU runs the block-scan hot loop; PLRU and random run the general copy."""
    benchmark.group = "replay: replacement policies, walk heavy"
    params = make_params(data_caches=True, oracle=False, replacement=replacement)
    _, totals = bench_replay(walk_workload, params)
    assert totals["walks"] > 0


@pytest.mark.parametrize("host_page_size", ["4K", "2M"])
def test_replay_nested(benchmark, bench_replay, make_params, walk_workload, host_page_size):
    """The walk-heavy trace as a guest (machine.virtualization = "nested"): two-dimensional walks."""
    benchmark.group = "replay: nested walks, walk heavy"
    params = make_params(data_caches=True, oracle=False, virtualization="nested", host_page_size=host_page_size)
    _, totals = bench_replay(walk_workload, params)
    assert totals["nested_walk_reads"] > 0


@pytest.mark.parametrize("oracle", [False, True], ids=["oracle_off", "oracle_on"])
def test_oracle_cost(benchmark, bench_replay, make_params, hit_workload, oracle):
    """The coherence oracle's cost on the hit-dominated trace with data caches off (where a per-access
    overhead shows most). Compare the two `accesses_per_s` figures: on should be <= 15% slower."""
    benchmark.group = "oracle on vs off"
    params = make_params(data_caches=False, oracle=oracle)
    _, totals = bench_replay(hit_workload, params)
    assert totals["stale_translations"] == 0


PAIRED_ROUNDS = 5


def test_oracle_overhead_paired(benchmark, make_params, hit_workload, timed):
    """Oracle on, timed by the benchmark; oracle off, timed in the (untimed) setup right before each
    round. Replay rates on this VM vary by up to ~1.5x from process to process (memory placement), much
    more than the oracle's cost, so the slowdown is only meaningful from interleaved pairs in one process:
    extra_info["oracle_slowdown"] = mean(on) / mean(off) - 1 (target <= 0.15)."""
    benchmark.group = "oracle on vs off"
    on_params = make_params(data_caches=False, oracle=True)
    off_params = make_params(data_caches=False, oracle=False)
    layout = build_layout(hit_workload, on_params)
    on, off = timed(run_workload), timed(run_workload)

    def setup():
        off(hit_workload, off_params, layout=layout)
        return (hit_workload, on_params), {"layout": layout}

    benchmark.pedantic(on, setup=setup, rounds=PAIRED_ROUNDS, warmup_rounds=1, iterations=1)
    n = hit_workload.total_accesses()
    np.testing.assert_array_equal(on.result["cpu_counters"], off.result["cpu_counters"])  # no invalidations
    info = benchmark.extra_info
    info["accesses"] = n
    info["runs"] = len(on.times[-PAIRED_ROUNDS:])
    info["accesses_per_s"] = n / on.mean(PAIRED_ROUNDS)
    info["oracle_off_accesses_per_s"] = n / off.mean(PAIRED_ROUNDS)
    info["oracle_slowdown"] = on.mean(PAIRED_ROUNDS) / off.mean(PAIRED_ROUNDS) - 1


REF_PROCESSES = 2
REF_ACCESSES_PER_PROCESS = 10_000
ENGINE_REPEATS = 10


def test_engine_vs_reference(benchmark, make_params, timed):
    """The pure-Python reference model against the Cython engine on the same 20k-access database
    workload (2 clients on 2 CPUs: faults, walks, a shared pool). The benchmark times the reference;
    the engine is timed alongside (best of several runs, it takes milliseconds). Both must agree."""
    benchmark.group = "engine vs reference"
    workload = materialise(
        database_workload(
            n_processes=REF_PROCESSES,
            accesses_per_process=REF_ACCESSES_PER_PROCESS,
            pool_bytes=16 << 20,
            private_bytes=1 << 20,
            text_bytes=256 << 10,
            seed=1,
        )
    )
    n = workload.total_accesses()
    params = make_params(n_cpus=2)  # data caches and oracle on, as in tests
    layout = build_layout(workload, params)

    ref = timed(run_reference)
    benchmark.pedantic(ref, setup=lambda: ((workload, params), {"layout": layout}), rounds=ROUNDS, iterations=1)

    eng = timed(run_workload)
    for _ in range(ENGINE_REPEATS):
        eng(workload, params, layout=layout)

    np.testing.assert_array_equal(eng.result["cpu_counters"], ref.result["cpu_counters"])
    np.testing.assert_array_equal(eng.result["proc_counters"], ref.result["proc_counters"])
    np.testing.assert_array_equal(eng.result["pt_pages"], ref.result["pt_pages"])

    ref_rate = n / ref.mean()
    eng_rate = n / eng.best()
    info = benchmark.extra_info
    info["accesses"] = n
    info["accesses_per_s"] = ref_rate  # what the benchmark timed: the reference
    info["reference_accesses_per_s"] = ref_rate
    info["engine_accesses_per_s"] = eng_rate
    info["engine_over_reference"] = eng_rate / ref_rate
