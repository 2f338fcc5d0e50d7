"""Streaming synthetic traces: deterministic, independent of the chunk size, digest from parameters."""

from __future__ import annotations

import numpy as np
import pytest

from mshare_hw.config.experiment import WorkloadCfg
from mshare_hw.engine.driver import run_workload
from mshare_hw.workload.build import build_workload
from mshare_hw.workload.generators.stream import STREAM_BLOCK, UniformStream, uniform_stream_workload
from mshare_hw.workload.model import ArrayTrace, Workload

N = 2 * STREAM_BLOCK + 12_345  # two whole blocks and a partial one


def whole(stream, chunk_size: int) -> tuple[np.ndarray, np.ndarray]:
    chunks = list(stream.chunks(chunk_size))
    assert all(len(a) == chunk_size for a, _ in chunks[:-1])
    return np.concatenate([a for a, _ in chunks]), np.concatenate([k for _, k in chunks])


@pytest.fixture(scope="module")
def stream() -> UniformStream:
    return UniformStream(n=N, start=1 << 39, size=1 << 20, seed=7, store_fraction=0.25)


def test_content_does_not_depend_on_chunk_size(stream):
    a1, k1 = whole(stream, STREAM_BLOCK)
    assert len(a1) == N == len(stream)
    for size in (1000, 3 * STREAM_BLOCK, 777_777):
        a, k = whole(stream, size)
        np.testing.assert_array_equal(a, a1)
        np.testing.assert_array_equal(k, k1)


def test_blocks_are_independent_and_within_the_working_set(stream):
    a, k = whole(stream, STREAM_BLOCK)
    b2, _ = stream.block(2)
    assert len(b2) == 12_345
    np.testing.assert_array_equal(b2, a[2 * STREAM_BLOCK :])
    assert not np.array_equal(a[:STREAM_BLOCK], a[STREAM_BLOCK : 2 * STREAM_BLOCK])
    assert a.min() >= 1 << 39 and a.max() < (1 << 39) + (1 << 20)
    assert np.all(a % 8 == 0)
    assert set(np.unique(k)) == {1, 2}
    assert abs((k == 2).mean() - 0.25) < 0.01  # 2.1M draws: the sd of the fraction is 0.0003
    with pytest.raises(IndexError):
        stream.block(3)


def test_same_parameters_same_stream_and_digest(stream):
    again = UniformStream(n=N, start=1 << 39, size=1 << 20, seed=7, store_fraction=0.25)
    assert again.digest() == stream.digest()
    np.testing.assert_array_equal(whole(again, 1 << 16)[0], whole(stream, 1 << 16)[0])
    other = UniformStream(n=N, start=1 << 39, size=1 << 20, seed=8, store_fraction=0.25)
    assert other.digest() != stream.digest()
    assert not np.array_equal(whole(other, STREAM_BLOCK)[0][:1000], whole(stream, STREAM_BLOCK)[0][:1000])
    longer = UniformStream(n=N + 1, start=1 << 39, size=1 << 20, seed=7, store_fraction=0.25)
    assert longer.digest() != stream.digest()


def test_replay_equals_the_materialised_trace():
    """The engine gives the same counters for the stream and for its content held in memory."""
    from mshare_hw.config.uarch import load_uarch
    from mshare_hw.engine.params import build_params

    w = uniform_stream_workload(2, 300_000, 4 << 20, seed=3, store_fraction=0.1)
    mat = Workload(
        processes=[type(p)(name=p.name, trace=ArrayTrace(*whole(p.trace, 1 << 20)), cpu=p.cpu) for p in w.processes],
        regions=w.regions,
    )
    params = build_params(load_uarch("skylake_sp"), n_cpus=2)
    a = run_workload(w, params, chunk_size=50_000)
    b = run_workload(mat, params)
    np.testing.assert_array_equal(a["cpu_counters"], b["cpu_counters"])
    np.testing.assert_array_equal(a["proc_counters"], b["proc_counters"])


def test_experiment_generator_name():
    cfg = WorkloadCfg(
        generator="uniform_stream",
        params={"n_processes": 2, "accesses_per_process": 5, "working_set_bytes": "64KiB"},
    )
    w = build_workload(cfg, seed=1)
    assert w.total_accesses() == 10 and len(w.processes) == 2
    assert w.trace_digests() == build_workload(cfg, seed=1).trace_digests()
    assert w.trace_digests() != build_workload(cfg, seed=2).trace_digests()
    assert w.regions[0].size == 64 << 10 and w.regions[0].shared
