"""Synthetic generators: determinism, addresses inside mapped regions, mix of kinds, Zipf ranking,
pointer-chase cycles, region layout."""

from __future__ import annotations

import itertools
from typing import get_args

import numpy as np
import pytest

from mshare_hw.config.experiment import GeneratorName
from mshare_hw.workload.generators import (
    GENERATORS,
    SLOT_BYTES,
    database_workload,
    default_params,
    generator_params,
    pointer_chase_workload,
    pool_block_order,
    random_cycle,
    strided_workload,
    uniform_workload,
    zipf_cdf,
    zipf_sample,
)
from mshare_hw.workload.generators.blocks import to_array
from mshare_hw.workload.model import Workload

MiB = 1 << 20
GiB = 1 << 30

DB_KW = {"n_processes": 3, "accesses_per_process": 60_000, "pool_bytes": 64 * MiB, "private_bytes": 4 * MiB}


@pytest.fixture(scope="module")
def db() -> Workload:
    return database_workload(**DB_KW, seed=7)


def _arrays(w: Workload):
    return [(to_array(p.trace).addrs, to_array(p.trace).kinds) for p in w.processes]


def _assert_inside_mapped_regions(w: Workload):
    for pid, p in enumerate(w.processes):
        addrs = to_array(p.trace).addrs
        inside = np.zeros(addrs.shape, dtype=bool)
        for r in w.regions:
            if r.maps(pid):
                inside |= (addrs >= np.uint64(r.start)) & (addrs < np.uint64(r.end))
        assert inside.all(), f"process {pid}: {np.count_nonzero(~inside)} accesses outside its regions"


def _assert_no_overlap(w: Workload):
    rs = sorted(w.regions, key=lambda r: r.start)
    for a, b in itertools.pairwise(rs):
        assert a.end <= b.start, f"{a.name} overlaps {b.name}"


# ---------------------------------------------------------------------------------------- database


def test_database_deterministic(db):
    again = database_workload(**DB_KW, seed=7)
    for (a1, k1), (a2, k2) in zip(_arrays(db), _arrays(again), strict=True):
        assert np.array_equal(a1, a2) and np.array_equal(k1, k2)
        assert a1.dtype == np.uint64 and k1.dtype == np.uint8
    assert db.trace_digests() == again.trace_digests()
    other = database_workload(**DB_KW, seed=8)
    for (a1, _), (a2, _) in zip(_arrays(db), _arrays(other), strict=True):
        assert not np.array_equal(a1, a2)
    # processes draw from their own streams, and those do not depend on the number of processes
    assert len(set(db.trace_digests())) == 3
    fewer = database_workload(**{**DB_KW, "n_processes": 2}, seed=7)
    assert fewer.trace_digests() == db.trace_digests()[:2]


def test_database_regions(db):
    regions = {r.name: r for r in db.regions}
    pool, text = regions["buffer_pool"], regions["text"]
    assert pool.kind == "shmem" and pool.shared and pool.processes is None
    assert pool.start % SLOT_BYTES == 0 and pool.size == 64 * MiB and pool.page_size == "4K"
    assert text.kind == "file" and text.shared and text.start == 0x40_0000 and text.page_size == "4K"
    heaps = [regions[f"heap{i}"] for i in range(3)]
    for i, h in enumerate(heaps):
        assert h.kind == "anon" and not h.shared and h.processes == (i,) and h.size == 4 * MiB
        assert not (pool.start <= h.start < pool.start + SLOT_BYTES)
        assert not (pool.start < h.end <= pool.start + SLOT_BYTES)
    assert len({h.start for h in heaps}) == 3
    _assert_no_overlap(db)
    _assert_inside_mapped_regions(db)
    assert [p.name for p in db.processes] == ["client0", "client1", "client2"]
    assert all(p.cpu is None for p in db.processes)
    assert "database" in db.description


def test_database_kind_and_region_fractions(db):
    pool = next(r for r in db.regions if r.name == "buffer_pool")
    text = next(r for r in db.regions if r.name == "text")
    for a, k in _arrays(db):
        n = len(k)
        ifetch = k == 0
        assert abs(ifetch.mean() - 0.3) < 0.01
        data = ~ifetch
        # store_fraction is a fraction of data accesses
        assert abs((k == 2).sum() / data.sum() - 0.2) < 0.01
        in_text = (a >= text.start) & (a < text.end)
        assert np.array_equal(in_text, ifetch)  # fetches hit the text, data never does
        in_pool = (a >= pool.start) & (a < pool.end)
        assert abs(in_pool.sum() / n - 0.45) < 0.01
        assert (a[data] % 8 == 0).all()
        assert (a[ifetch] % 4 == 0).all()


def test_database_zipf_ranking_same_for_every_process():
    w = database_workload(
        n_processes=3, accesses_per_process=100_000, pool_bytes=16 * MiB, private_bytes=1 * MiB, seed=3
    )
    pool = next(r for r in w.regions if r.name == "buffer_pool")
    order = pool_block_order(pool.size // 4096, 3)
    for p in w.processes:
        a = to_array(p.trace).addrs
        blocks = ((a[(a >= pool.start) & (a < pool.end)] - np.uint64(pool.start)) // np.uint64(4096)).astype(np.int64)
        counts = np.bincount(blocks, minlength=pool.size // 4096)
        top = np.argsort(-counts, kind="stable")[:2]
        assert top[0] == order[0]  # the most popular block gets the most visits ...
        assert top[1] == order[1]  # ... and the ranking is the same block in every process
        assert counts[order[0]] > 1.5 * counts[order[1]]
    # hot blocks are scattered over the pool, not packed at its start
    assert order[:16].max() > pool.size // 4096 // 4


def test_database_rows_per_visit_stay_in_one_block():
    w = database_workload(
        n_processes=1,
        accesses_per_process=20_000,
        pool_bytes=16 * MiB,
        rows_per_visit=5,
        ifetch_fraction=0.0,
        pool_fraction=1.0,
        seed=5,
    )
    a = to_array(w.processes[0].trace).addrs
    blocks = (a // np.uint64(4096)).reshape(-1, 5)
    assert (blocks == blocks[:, :1]).all()


def test_database_options():
    w = database_workload(
        n_processes=2,
        accesses_per_process=1000,
        pool_bytes=4 * MiB,
        pool_page_size="2M",
        cpu_of=[1, 0],
        seed=2,
    )
    assert [p.cpu for p in w.processes] == [1, 0]
    assert next(r for r in w.regions if r.name == "buffer_pool").page_size == "2M"
    _assert_inside_mapped_regions(w)
    # the page size does not change the addresses
    w4k = database_workload(n_processes=2, accesses_per_process=1000, pool_bytes=4 * MiB, seed=2)
    assert w.trace_digests() == w4k.trace_digests()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pool_base": (1 << 39) + (1 << 30)},  # not 512 GiB aligned
        {"pool_base": 0},
        {"pool_bytes": 3 * MiB, "pool_page_size": "2M"},
        {"pool_page_size": "8K"},
        {"ifetch_fraction": 0.6, "pool_fraction": 0.5},
        {"store_fraction": 1.5},
        {"pool_base": 0x7F00_0000_0000 - SLOT_BYTES},  # heaps would fall into the pool's slot
        {"cpu_of": [0]},
    ],
)
def test_database_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        database_workload(**{"n_processes": 2, "accesses_per_process": 10, "pool_bytes": 4 * MiB, **kwargs})


# ------------------------------------------------------------------------------------------ zipf


def test_zipf_cdf_and_sampler():
    cdf = zipf_cdf(1000, 1.0)
    assert cdf.shape == (1000,) and cdf[-1] == 1.0 and (np.diff(cdf) > 0).all()
    h = np.sum(1.0 / np.arange(1, 1001))
    assert cdf[0] == pytest.approx(1.0 / h)
    assert np.allclose(zipf_cdf(4, 0.0), [0.25, 0.5, 0.75, 1.0])
    s = zipf_sample(cdf, 200_000, seed=1)
    assert np.array_equal(s, zipf_sample(cdf, 200_000, seed=1))
    assert s.min() >= 0 and s.max() < 1000
    freq = np.bincount(s, minlength=1000) / len(s)
    assert freq[0] == pytest.approx(1.0 / h, rel=0.03)
    assert freq[1] == pytest.approx(0.5 / h, rel=0.05)
    with pytest.raises(ValueError):
        zipf_cdf(0, 1.0)
    with pytest.raises(ValueError):
        zipf_cdf(10, -1.0)


# -------------------------------------------------------------------------------- microbenchmarks


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("which", ["uniform", "strided", "chase"])
def test_micro_layout_determinism_and_bounds(which, shared):
    def make(seed):
        common = {
            "n_processes": 3,
            "accesses_per_process": 20_000,
            "working_set_bytes": 8 * MiB,
            "seed": seed,
            "shared": shared,
            "store_fraction": 0.25,
        }
        if which == "uniform":
            return uniform_workload(**common)
        if which == "strided":
            return strided_workload(**common, stride_bytes=4096 + 64)
        return pointer_chase_workload(**common)

    w = make(11)
    assert w.trace_digests() == make(11).trace_digests()
    assert w.trace_digests() != make(12).trace_digests()
    if shared:
        assert len(w.regions) == 1
        r = w.regions[0]
        assert r.shared and r.kind == "shmem" and r.processes is None and r.start == 1 << 39
    else:
        assert len(w.regions) == 3
        for i, r in enumerate(w.regions):
            assert not r.shared and r.kind == "anon" and r.processes == (i,)
            assert r.start % GiB == 0 and r.start // SLOT_BYTES == (r.end - 1) // SLOT_BYTES
    _assert_no_overlap(w)
    _assert_inside_mapped_regions(w)
    for a, k in _arrays(w):
        assert set(np.unique(k)) <= {1, 2}
        assert abs((k == 2).mean() - 0.25) < 0.02
        assert (a % 8 == 0).all()


def test_uniform_covers_working_set():
    w = uniform_workload(1, 50_000, 1 * MiB, seed=1)
    pages = np.unique((to_array(w.processes[0].trace).addrs - np.uint64(1 << 39)) >> np.uint64(12))
    assert len(pages) == 256


def test_strided_steps():
    w = strided_workload(1, 1000, 1 * MiB, stride_bytes=4096, seed=1)
    a = to_array(w.processes[0].trace).addrs.astype(np.int64) - (1 << 39)
    d = np.diff(a) % MiB
    assert (d == 4096).all()


def test_random_cycle_is_one_cycle():
    for n in (1, 2, 3, 17, 1000):
        p = random_cycle(n, seed=5)
        assert sorted(p) == list(range(n))
        e, seen = 0, set()
        for _ in range(n):
            seen.add(e)
            e = p[e]
        assert e == 0 and len(seen) == n


@pytest.mark.parametrize("element_bytes", [4096, 64])
def test_pointer_chase_visits_every_element_once_per_cycle(element_bytes):
    ws = 2 * MiB
    n = ws // element_bytes
    w = pointer_chase_workload(2, 3 * n, ws, seed=9, element_bytes=element_bytes)
    for p in w.processes:
        elem = ((to_array(p.trace).addrs - np.uint64(1 << 39)) // np.uint64(element_bytes)).astype(np.int64)
        for c in range(3):
            assert np.array_equal(np.sort(elem[c * n : (c + 1) * n]), np.arange(n))
        assert np.array_equal(elem[:n], elem[n : 2 * n])  # the same cycle again
        # every visit of an element touches the same line in it
        assert len(np.unique(to_array(p.trace).addrs)) == n
    # same list in every process, from different start elements
    e0 = ((to_array(w.processes[0].trace).addrs - np.uint64(1 << 39)) // np.uint64(element_bytes)).astype(np.int64)
    e1 = ((to_array(w.processes[1].trace).addrs - np.uint64(1 << 39)) // np.uint64(element_bytes)).astype(np.int64)
    shift = int(np.nonzero(e0[:n] == e1[0])[0][0])
    assert np.array_equal(e0[shift : shift + n], e1[:n])


def test_private_regions_large_working_sets_get_own_slots():
    w = uniform_workload(3, 10, 600 * GiB, seed=1, shared=False, page_size="1G")
    starts = [r.start for r in w.regions]
    assert all(s % SLOT_BYTES == 0 for s in starts)
    _assert_no_overlap(w)
    _assert_inside_mapped_regions(w)


# ---------------------------------------------------------------------------------------- registry


def test_registry_names_the_generators_experiments_accept():
    assert tuple(GENERATORS) == get_args(GeneratorName)


def test_default_params_leave_out_required_ones():
    db = default_params("database")
    assert db["pool_bytes"] == 1 << 30 and db["pool_page_size"] == "4K" and db["seed"] == 1
    uniform = default_params("uniform")
    assert "n_processes" not in uniform and "seed" not in uniform
    assert uniform == {
        "base": 1 << 39,
        "shared": True,
        "page_size": "4K",
        "store_fraction": 0.0,
        "cpu_of": None,
        "dependent": False,
        "sleep_every_accesses": 0,
        "sleep_cycles": 0,
    }
    chase = default_params("pointer_chase")
    assert chase["element_bytes"] == 4096 and chase["dependent"] is True


def test_dependent_reaches_the_processes():
    args = {"n_processes": 2, "accesses_per_process": 4, "working_set_bytes": 1 << 16}

    def flags(name: str, params: dict) -> list[bool]:
        return [p.dependent for p in generator_params(name, params, 1).generate().processes]

    assert flags("pointer_chase", args) == [True, True]
    assert flags("uniform", args) == [False, False]
    assert flags("uniform", args | {"dependent": True}) == [True, True]
    assert flags("database", {"n_processes": 1, "accesses_per_process": 4, "dependent": True}) == [True]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: database_workload(store_fraction=1.5), "store_fraction: Input should be less than or equal to 1"),
        (lambda: uniform_workload(1, 10, "lots", seed=1), "working_set_bytes: invalid size 'lots'"),
        (lambda: uniform_workload(1, 10, 4096, seed=1, bogus=2), "bogus: unknown parameter"),
        (lambda: strided_workload(1, 10, 4096, 12, seed=1), "stride_bytes (12) must be a multiple of 8"),
    ],
)
def test_direct_calls_fail_with_one_line_naming_the_parameter(call, message):
    with pytest.raises(ValueError) as ei:
        call()
    assert message in str(ei.value) and "\n" not in str(ei.value)


def test_sleeps_drawn_per_process_from_the_seed():
    """Sleeping clients: geometric gaps (mean sleep_every_accesses), exponential lengths (mean sleep_cycles),
    per process from (seed, index): process 0's sleeps do not depend on how many processes there are; none
    by default; the two keys go together."""
    from mshare_hw.workload.generators import generator_params

    base = dict(accesses_per_process=200_000, pool_bytes="16MiB", private_bytes="1MiB", text_bytes="64KiB")
    two = generator_params("database", dict(base, n_processes=2, sleep_every_accesses=2000, sleep_cycles=50_000), 3)
    one = generator_params("database", dict(base, n_processes=1, sleep_every_accesses=2000, sleep_cycles=50_000), 3)
    w2, w1 = two.generate(), one.generate()
    assert w2.processes[0].sleeps == w1.processes[0].sleeps
    assert w2.processes[0].sleeps != w2.processes[1].sleeps
    s = w2.processes[0].sleeps
    pos = np.array([a for a, _ in s])
    assert np.all(np.diff(pos) >= 1) and 1 <= pos[0] and pos[-1] < 200_000
    # ~100 sleeps: the means within a few standard errors (10%)
    assert 80 <= len(s) <= 120
    assert abs(np.diff(np.r_[0, pos]).mean() / 2000 - 1) < 0.25
    assert abs(np.mean([b for _, b in s]) / 50_000 - 1) < 0.25
    assert "sleeps every ~2000 accesses" in w2.description
    plain = generator_params("database", dict(base, n_processes=1), 3).generate()
    assert plain.processes[0].sleeps == () and "sleeps" not in plain.description
    stream = generator_params(
        "uniform_stream",
        dict(
            n_processes=1, accesses_per_process=1000, working_set_bytes="1MiB", sleep_every_accesses=10, sleep_cycles=5
        ),
        3,
    ).generate()
    assert len(stream.processes[0].sleeps) > 50


def test_threads_per_process_draws_the_clients_traces():
    """One process of 4 threads runs the traces 4 single-threaded clients would (thread j of client i is trace
    i*T + j), each thread with its own heap mapped by its process; regions name processes, never threads."""
    from mshare_hw.workload.generators import generator_params

    base = dict(accesses_per_process=3000, pool_bytes="16MiB", private_bytes="1MiB", text_bytes="64KiB")
    four = generator_params("database", dict(base, n_processes=4), 5).generate()
    one = generator_params("database", dict(base, n_processes=1, threads_per_process=4), 5).generate()
    two = generator_params("database", dict(base, n_processes=2, threads_per_process=2, n_unrelated=1), 5).generate()
    assert [p.thread_of for p in one.processes] == [None, 0, 0, 0]
    assert [p.name for p in one.processes] == ["client0.0", "client0.1", "client0.2", "client0.3"]
    for a, b in zip(four.processes, one.processes):
        assert np.array_equal(to_array(a.trace).addrs, to_array(b.trace).addrs) and np.array_equal(
            to_array(a.trace).kinds, to_array(b.trace).kinds
        )
    assert [r.processes for r in one.regions if r.name.startswith("heap")] == [(0,)] * 4
    assert [p.thread_of for p in two.processes] == [None, 0, None, 2, None]
    pool = next(r for r in two.regions if r.name == "buffer_pool")
    assert pool.processes == (0, 2)  # the two client processes, not the unrelated one
    assert "1 processes of 4 threads" in one.description
