"""The memory check: a grid point whose estimated peak host memory exceeds what the machine has is
refused before anything is generated or run, in one line naming the figure and the key to change."""

from __future__ import annotations

import pytest

from mshare_hw.cli import main
from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import expand
from mshare_hw.config.uarch import load_uarch
from mshare_hw.engine.footprint import PT_ENTRY_BYTES, PT_TABLE_BYTES, estimate, per_cpu_bytes
from mshare_hw.engine.params import build_params
from mshare_hw.runner import check_memory, point_footprint
from mshare_hw.workload.generators.random import zipf_cdf, zipf_distinct
from mshare_hw.workload.manifest import load_run_file

# 8 x 10^9 accesses over a 16 TiB pool: ~160 GiB of page tables (the traces themselves are drawn in chunks
# while they are replayed, so their number of accesses alone no longer fills memory)
HUGE = ["--set", "workload.params.accesses_per_process=1000000000", "--set", 'workload.params.pool_bytes="16TiB"']


@pytest.mark.parametrize("command", ["validate", "run", "sweep"])
def test_refused_before_running_no_results_file(tmp_path, capsys, command):
    out = tmp_path / "out.h5"
    argv = [command, "configs/experiments/default.toml", *HUGE]
    argv += ["-o", str(out)] if command != "validate" else []
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "host memory" in err and "workload.params.accesses_per_process" in err and "available" in err
    assert not out.exists()
    assert not (tmp_path / "out.h5.shards").exists() or not any((tmp_path / "out.h5.shards").iterdir())


@pytest.mark.parametrize(
    ("n_cpus", "n_processes", "message"),
    [(100_000, 8, "expected 1..65,536"), (65_536, 16_384, "per-mm cpumasks")],
)
def test_n_cpus_bounded_by_the_structures(capsys, n_cpus, n_processes, message):
    argv = ["validate", "configs/experiments/default.toml", "--set", f"machine.n_cpus={n_cpus}"]
    argv += ["--set", f"workload.params.n_processes={n_processes}", "--set", "workload.params.accesses_per_process=1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "machine.n_cpus" in err and message in err


def test_page_tables_named_when_they_dominate():
    """1,500 private clients touching ~10^5 pages each over a 300 GiB pool: the page tables dominate."""
    exp = load_run_file(
        None,
        [
            "workload.params.n_processes=1500",
            "workload.params.accesses_per_process=100000",
            'workload.params.pool_bytes="300GiB"',
            "machine.n_cpus=64",
            "pt_config=private",
            "uarch=skylake_sp",
        ],
    )
    point = expand(exp)[0]  # the default grid's first point (clients awake)
    fp = point_footprint(point)
    assert fp is not None and fp.largest() == "page_tables"
    with pytest.raises(ConfigError, match="pt_config = mshare"):
        check_memory([point], available=fp.total - 1)
    check_memory([point], available=fp.total)  # fits exactly: no error


def test_estimate_parts_by_hand():
    """Each part is its count times its unit cost."""
    params = build_params(load_uarch("skylake_sp"), n_cpus=4)
    fp = estimate(params, n_processes=10, leaf_entries=1600, interval_rows=3, trace_bytes=900, scratch_bytes=7)
    assert fp.cpus == 4 * per_cpu_bytes(params)
    assert fp.page_tables == 1600 * PT_ENTRY_BYTES + (1600 // 16 + 40) * PT_TABLE_BYTES
    assert fp.traces == 900
    # the generator's tables are gone before the page tables grow: the larger of the two counts
    assert fp.total == fp.base + fp.cpus + fp.llc + fp.processes + fp.intervals + 900 + fp.page_tables


def test_zipf_distinct_matches_the_exact_sum():
    import numpy as np

    for n, s, draws in [(1000, 0.99, 500), (300_000, 0.99, 2250), (5000, 0.0, 3000), (70_000, 1.2, 10_000)]:
        p = np.diff(np.concatenate([[0.0], zipf_cdf(n, s)]))
        exact = float((-np.expm1(-draws * p)).sum())
        assert zipf_distinct(n, s, draws) == pytest.approx(exact, rel=0.02)
