"""Peak memory of a long replay: flat in trace length (a 10^9-access stream under 1 GiB RSS).

A `uniform_stream` workload (generated block by block while it is replayed) runs in a fresh
subprocess, which reports its own peak RSS (getrusage ru_maxrss) at 1%, 10% and 100% of the run: flat
means the last two are about equal. The default length is 10^7 accesses (seconds); the full check:

    MSHARE_HW_RSS_ACCESSES=1000000000 pytest tests/benchmarks/test_memory_flat.py -s

extra_info: accesses, seconds, accesses_per_s, peak_rss_mib (whole run) and peak_rss_mib_at_1pct /
_at_10pct. The test asserts the peak is below 1 GiB: a leak proportional to the trace would exceed it
at 10^9 accesses (one byte per access is 0.93 GiB).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from mshare_hw.counters import INDEX

DEFAULT_ACCESSES = 10_000_000
WORKING_SET = 16 << 20  # 4,096 pages: L1 DTLB misses and STLB misses with walks through the PWCs and caches
GIB = 1 << 30

CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    from mshare_hw.config.uarch import load_uarch
    from mshare_hw.engine.driver import run_workload
    from mshare_hw.engine.params import build_params
    from mshare_hw.workload.generators.stream import uniform_stream_workload

    n, working_set = int(sys.argv[1]), int(sys.argv[2])
    w = uniform_stream_workload(1, n, working_set, seed=1, store_fraction=0.1)
    params = build_params(load_uarch("skylake_sp"), n_cpus=1)  # data caches and oracle on
    marks = {n // 100: None, n // 10: None}

    def progress(done):
        for m in marks:
            if marks[m] is None and done >= m:
                marks[m] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    result = run_workload(w, params, progress=progress, progress_every=max(1, n // 100))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    accesses = int(result["cpu_counters"][:, 0].sum())
    print(json.dumps({"accesses": accesses, "seconds": seconds, "peak": peak, "at_1pct": marks[n // 100],
                      "at_10pct": marks[n // 10]}))
    """
)


def test_peak_rss_of_a_long_stream(benchmark, tmp_path):
    import mshare_hw

    benchmark.group = "memory"
    assert INDEX["accesses"] == 0  # the child counts accesses from column 0
    n = int(os.environ.get("MSHARE_HW_RSS_ACCESSES", DEFAULT_ACCESSES))
    env = {**os.environ, "PYTHONPATH": str(Path(mshare_hw.__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    out: dict = {}

    def run() -> None:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(n), str(WORKING_SET)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,  # not the source tree, whose unbuilt mshare_hw would shadow the installed package
            timeout=max(600, n // 1_000_000 * 2),  # at least 0.5 M accesses/s
        )
        assert done.returncode == 0, done.stderr
        out.update(json.loads(done.stdout.strip().splitlines()[-1]))

    benchmark.pedantic(run, rounds=1, iterations=1)
    assert out["accesses"] == n
    info = benchmark.extra_info
    info["accesses"] = n
    info["seconds"] = out["seconds"]
    info["accesses_per_s"] = n / out["seconds"]
    info["peak_rss_mib"] = out["peak"] / 2**20
    info["peak_rss_mib_at_1pct"] = out["at_1pct"] / 2**20
    info["peak_rss_mib_at_10pct"] = out["at_10pct"] / 2**20
    assert out["peak"] < GIB
