"""Generators drawing their traces block by block while they are replayed (mshare_hw.workload.generators.blocks).

* `test_draw_database`: drawing a database client's trace in the driver's chunks, no replay
  (`accesses_per_s`): the cost every replay of a generated workload now pays for its traces, and the
  digest pass once per workload.
* `test_replay_streamed_vs_in_memory`: the default experiment's workload shape (8 clients, 1 GiB pool,
  4 CPUs, data caches and oracle on) replayed with its traces drawn while replaying (the driver's reader
  thread draws the next chunk while the engine runs) and with the same traces held in memory, interleaved
  (streamed, in memory, streamed, in memory...): `streamed_s`, `in_memory_s` (best of each),
  `stream_overhead` (their ratio - 1; near 0 when a core is free for the reader thread, up to the draw
  cost over the replay cost when none is) and `accesses_per_s` of the streamed replay. Counters equal.
"""

from __future__ import annotations

import time

import numpy as np

from mshare_hw.engine.driver import run_workload
from mshare_hw.engine.layout import build_layout
from mshare_hw.traces.source import DEFAULT_CHUNK
from mshare_hw.workload.generators import database_workload
from mshare_hw.workload.generators.blocks import materialise

DRAW_ACCESSES = 4_000_000
REPLAY_ACCESSES = 500_000  # per client; 8 clients


def test_draw_database(benchmark):
    benchmark.group = "generators"
    trace = database_workload(n_processes=1, accesses_per_process=DRAW_ACCESSES, seed=1).processes[0].trace
    times: list[float] = []

    def draw() -> int:
        t0 = time.perf_counter()
        n = sum(len(a) for a, _ in trace.chunks(DEFAULT_CHUNK))
        times.append(time.perf_counter() - t0)
        return n

    assert benchmark.pedantic(draw, rounds=3, warmup_rounds=1, iterations=1) == DRAW_ACCESSES
    benchmark.extra_info["accesses"] = DRAW_ACCESSES
    benchmark.extra_info["accesses_per_s"] = DRAW_ACCESSES / min(times)


def test_replay_streamed_vs_in_memory(benchmark, make_params):
    benchmark.group = "generators"
    streamed = database_workload(n_processes=8, accesses_per_process=REPLAY_ACCESSES, seed=1)
    in_memory = materialise(streamed)
    params = make_params(n_cpus=4)  # data caches and oracle on
    layout = build_layout(streamed, params)
    times: dict[str, list[float]] = {"streamed": [], "in_memory": []}
    results: dict[str, dict] = {}

    def both() -> None:
        for name, w in (("streamed", streamed), ("in_memory", in_memory)):
            t0 = time.perf_counter()
            results[name] = run_workload(w, params, layout=layout)
            times[name].append(time.perf_counter() - t0)

    benchmark.pedantic(both, rounds=3, warmup_rounds=1, iterations=1)
    np.testing.assert_array_equal(results["streamed"]["cpu_counters"], results["in_memory"]["cpu_counters"])
    np.testing.assert_array_equal(results["streamed"]["proc_counters"], results["in_memory"]["proc_counters"])
    s, m = min(times["streamed"]), min(times["in_memory"])
    info = benchmark.extra_info
    info["accesses"] = streamed.total_accesses()
    info["streamed_s"], info["in_memory_s"], info["stream_overhead"] = s, m, s / m - 1
    info["accesses_per_s"] = streamed.total_accesses() / s
