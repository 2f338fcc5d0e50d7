"""Fixtures shared across the test tree: a tiny experiment file and a whole-file results comparison."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest


@pytest.fixture(autouse=True, scope="session")
def _trace_scan_cache(tmp_path_factory):
    """Trace scans (mshare_hw.traces.digest_cache) go to a directory of the session, not the user's cache;
    subprocesses inherit it."""
    import os

    old = os.environ.get("MSHARE_HW_CACHE_DIR")
    os.environ["MSHARE_HW_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("MSHARE_HW_CACHE_DIR", None)
    else:
        os.environ["MSHARE_HW_CACHE_DIR"] = old


TINY_EXPERIMENT = """\
name = "tiny"
seed = {seed}
uarch = "skylake_sp"

[machine]
n_cpus = 2

[workload]
generator = "database"

[workload.params]
n_processes = 2
accesses_per_process = {accesses}
pool_bytes = "16MiB"
private_bytes = "1MiB"
text_bytes = "256KiB"

[sweep]
pt_config = ["private", "mshare"]
"""


def tiny_experiment_text(*, seed: int = 1, accesses: int = 1000) -> str:
    """A 2-process database experiment on 2 CPUs, private vs mshare: 2 runs of `accesses` each."""
    return TINY_EXPERIMENT.format(seed=seed, accesses=accesses)


@pytest.fixture(scope="session")
def tiny_text() -> Callable[..., str]:
    """`tiny_text(seed=1, accesses=1000)`: the tiny experiment's TOML, for fixtures wider than one test."""
    return tiny_experiment_text


@pytest.fixture
def make_tiny(tmp_path: Path) -> Callable[..., Path]:
    """Writes the tiny experiment (see `tiny_experiment_text`) into tmp_path and returns its path."""

    def make(*, seed: int = 1, accesses: int = 1000, name: str = "tiny.toml") -> Path:
        p = tmp_path / name
        p.write_text(tiny_experiment_text(seed=seed, accesses=accesses))
        return p

    return make


@pytest.fixture
def tiny(make_tiny) -> Path:
    """The tiny experiment with its defaults (seed 1, 1,000 accesses per process)."""
    return make_tiny()


def assert_same_results(a: Path, b: Path, *, ordered: bool = True) -> None:
    """Equal summaries (every column) and equal run groups (attributes and datasets)."""
    from mshare_hw.results.hdf5 import load_summary

    sa, sb = load_summary(a), load_summary(b)
    if not ordered:
        sa = sa.sort_values("run_id").reset_index(drop=True)
        sb = sb.sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(sa, sb)
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert fa.attrs["format"] == fb.attrs["format"]
        assert fa.attrs["format_version"] == fb.attrs["format_version"]
        assert sorted(fa["runs"]) == sorted(fb["runs"])
        for rid in fa["runs"]:
            ga, gb = fa["runs"][rid], fb["runs"][rid]
            assert dict(ga.attrs) == dict(gb.attrs), rid
            assert sorted(ga) == sorted(gb), rid
            for name in ga:
                np.testing.assert_array_equal(ga[name][()], gb[name][()], err_msg=f"{rid}/{name}")


@pytest.fixture
def same_results() -> Callable[..., None]:
    """`same_results(a, b, ordered=True)`: asserts two results files hold the same runs and summary."""
    return assert_same_results
