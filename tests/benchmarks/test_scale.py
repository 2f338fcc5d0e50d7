"""The cover letter's case (configs/experiments/cover_letter.toml) at 1,500 processes: replay speed and
the host memory the sparse page tables take per present PTE, private and mshare, on Skylake-SP with 64
CPUs. 2,000 accesses per process by default (a smoke test); the experiment's 100,000 with
MSHARE_HW_SCALE_ACCESSES=100000 (~1.5 x 10^8 accesses per run, minutes each, several GiB):

    MSHARE_HW_SCALE_ACCESSES=100000 pytest tests/benchmarks/test_scale.py --benchmark-enable -s

extra_info: accesses_per_s (replay only; the workload is generated outside the timed part),
host_bytes_per_pte (the engine's page-table structures over the leaf and upper entries present),
present_entries, pt_host_bytes, pt_bytes (the simulated tables' memory), tables, dense_tables.
"""

from __future__ import annotations

import os
import time

import pytest

from mshare_hw.config.uarch import load_uarch
from mshare_hw.counters import INDEX
from mshare_hw.engine.driver import run_workload
from mshare_hw.engine.layout import build_layout
from mshare_hw.engine.params import build_params
from mshare_hw.workload.generators import database_workload
from mshare_hw.workload.generators.blocks import materialise

N_PROCESSES = 1500
ACCESSES = int(os.environ.get("MSHARE_HW_SCALE_ACCESSES", "2000"))


@pytest.fixture(scope="module")
def cover_letter_workload():
    return materialise(  # drawn here, outside the timed replay
        database_workload(
            n_processes=N_PROCESSES, accesses_per_process=ACCESSES, pool_bytes=300 << 30, private_bytes=8 << 20
        )
    )


@pytest.mark.parametrize("pt_config", ["private", "mshare"])
def test_scale_1500_processes(benchmark, cover_letter_workload, pt_config):
    benchmark.group = "scale: 1,500 processes, 300 GiB pool"
    params = build_params(load_uarch("skylake_sp"), n_cpus=64, data_caches=True, oracle=False, pt_config=pt_config)
    layout = build_layout(cover_letter_workload, params)
    seen: dict = {}
    times: list[float] = []

    def replay():
        t0 = time.perf_counter()
        result = run_workload(
            cover_letter_workload, params, layout=layout, inspect=lambda e: seen.update(e.pt_host_memory())
        )
        times.append(time.perf_counter() - t0)
        return result

    result = benchmark.pedantic(replay, rounds=1, iterations=1)
    n = cover_letter_workload.total_accesses()
    totals = result["cpu_counters"].sum(axis=0)
    assert int(totals[INDEX["accesses"]]) == n
    present = seen["present_entries"]
    assert present >= int(totals[INDEX["pages_mapped"]]) // (N_PROCESSES if pt_config == "mshare" else 1)
    info = benchmark.extra_info
    info["accesses"] = n
    info["accesses_per_s"] = n / min(times)
    info["present_entries"] = present
    info["pt_host_bytes"] = seen["host_bytes"]
    info["host_bytes_per_pte"] = seen["host_bytes"] / present
    info["pt_bytes"] = int(result["pt_pages"].sum()) * 4096
    info["tables"] = seen["tables"]
    info["dense_tables"] = seen["dense_tables"]
    # the host holds far less than the simulated tables: entries present, not 4 KiB table pages
    assert seen["host_bytes"] < info["pt_bytes"]
