"""Shared fixtures for the replay benchmarks.

Traces are generated once per session, outside every timed section. Each benchmark records
`accesses_per_s` in `benchmark.extra_info`, computed from its own `time.perf_counter()` measurements:
with `--benchmark-disable` (the default addopts) pytest-benchmark runs the function once and keeps no
stats, and the figure is still wanted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from mshare_hw.config.uarch import load_uarch
from mshare_hw.counters import INDEX
from mshare_hw.engine.driver import run_workload
from mshare_hw.engine.layout import build_layout
from mshare_hw.engine.params import SimParams, build_params
from mshare_hw.workload.generators import strided_workload, uniform_workload
from mshare_hw.workload.generators.blocks import materialise, to_array
from mshare_hw.workload.model import ArrayTrace, Process, Workload

ROUNDS = 3  # timed rounds per benchmark when benchmarking is enabled
WARMUP_ROUNDS = 1  # untimed first run (page faults on the engine's fresh arrays, cold caches)

HIT_ACCESSES = 4_000_000
HIT_WORKING_SET = 64 << 10  # 16 pages: every access after the first few is an L1 DTLB hit

WALK_WORKING_SET = 256 << 20  # 65,536 pages, ~40x the Skylake-SP STLB's 1,536 entries
WALK_UNIFORM_ACCESSES = 3_000_000


@pytest.fixture(scope="session")
def skylake():
    return load_uarch("skylake_sp")


@pytest.fixture(scope="session")
def make_params(skylake) -> Callable[..., SimParams]:
    def make(**kw) -> SimParams:
        kw.setdefault("n_cpus", 1)
        return build_params(skylake, **kw)

    return make


@pytest.fixture(scope="session")
def hit_workload() -> Workload:
    """One process, 4M uniform loads over 64 KiB: TLB-hit dominated."""
    return materialise(uniform_workload(1, HIT_ACCESSES, HIT_WORKING_SET, seed=1))


@pytest.fixture(scope="session")
def walk_workload() -> Workload:
    """One process over a 256 MiB shared region: first a pass touching every page once (4 KiB stride, so
    every page is faulted in, 16 at a time with shmem fault-around), then 3M uniform loads. The second
    part is walk-dominated: nearly every access misses the STLB and walks, with page-table lines read
    through L1D/L2/LLC. The benchmark measures the whole run, the 65,536-access first-touch pass with
    its 4,096 faults included (2% of the accesses)."""
    touch = strided_workload(1, WALK_WORKING_SET // 4096, WALK_WORKING_SET, 4096, seed=1)
    uni = uniform_workload(1, WALK_UNIFORM_ACCESSES, WALK_WORKING_SET, seed=1)
    assert touch.regions == uni.regions
    t, u = to_array(touch.processes[0].trace), to_array(uni.processes[0].trace)
    trace = ArrayTrace(np.concatenate([t.addrs, u.addrs]), np.concatenate([t.kinds, u.kinds]))
    return Workload(
        processes=[Process(name="walker", trace=trace)],
        regions=uni.regions,
        description=f"touch every page of {WALK_WORKING_SET} B, then {WALK_UNIFORM_ACCESSES} uniform loads",
    )


@dataclass
class Timed:
    """Wraps a call and keeps its wall-clock durations."""

    fn: Callable
    times: list[float] = field(default_factory=list)
    result: object = None

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        self.result = self.fn(*args, **kwargs)
        self.times.append(time.perf_counter() - t0)
        return self.result

    def mean(self, last: int | None = None) -> float:
        """Mean duration of the last `last` calls (all calls if None): warm-up rounds come first."""
        t = self.times[-last:] if last else self.times
        return sum(t) / len(t)

    def best(self, last: int | None = None) -> float:
        return min(self.times[-last:] if last else self.times)


@pytest.fixture(scope="session")
def timed() -> type[Timed]:
    """`timed(fn)`: a callable wrapper that keeps the wall-clock time of every call."""
    return Timed


def counter_totals(result: dict) -> dict[str, int]:
    totals = result["cpu_counters"].sum(axis=0)
    return {name: int(totals[i]) for name, i in INDEX.items()}


@pytest.fixture
def bench_replay(benchmark):
    """`bench_replay(workload, params)`: benchmark `run_workload` (layout built outside the timed part),
    record the rate and a few trace characteristics, return (Timed, counter totals)."""

    def run(
        workload: Workload, params: SimParams, rounds: int = ROUNDS, warmup_rounds: int = WARMUP_ROUNDS
    ) -> tuple[Timed, dict[str, int]]:
        layout = build_layout(workload, params)
        timed = Timed(run_workload)

        def setup():
            return (workload, params), {"layout": layout}

        benchmark.pedantic(timed, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
        n = workload.total_accesses()
        totals = counter_totals(timed.result)
        assert totals["accesses"] == n
        info = benchmark.extra_info
        info["accesses"] = n
        measured = timed.times[-rounds:]  # with benchmarking disabled: the single untimed-by-pytest run
        info["runs"] = len(measured)
        info["seconds_mean"] = timed.mean(rounds)
        info["accesses_per_s"] = n / timed.mean(rounds)
        info["accesses_per_s_best"] = n / timed.best(rounds)
        info["walks_per_access"] = totals["walks"] / n
        info["stlb_misses_per_access"] = totals["stlb_misses"] / n
        info["page_faults"] = totals["page_faults"]
        info["data_caches"] = params.data_caches
        info["oracle"] = params.oracle
        return timed, totals

    return run
