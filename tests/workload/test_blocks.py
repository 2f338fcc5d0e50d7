"""Generated traces drawn block by block equal the traces drawn whole, exactly, for every generator.

The reference kernels below are the generators' kernels as they were before traces were drawn in blocks
(each drew a process's whole trace in one call), kept verbatim apart from their names: the block-wise
kernels must reproduce their output bit for bit, whatever the block sizes, for every parameter set and
seed drawn, so that runs keep their counters and their ids (trace digests).
"""

from __future__ import annotations

import numba
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mshare_hw.workload.generators import GENERATORS
from mshare_hw.workload.generators.database import TEXT_BASE, TEXT_BRANCH_PROB, TEXT_FUNC_BYTES, TEXT_ZIPF_S
from mshare_hw.workload.generators.random import (
    TAG_CYCLE,
    TAG_MISC,
    TAG_PROC,
    derive_seed,
    mix64,
    next_draw,
    threshold,
    zipf_cdf,
    zipf_draw,
    zipf_draw_guided,
    zipf_guide,
)
from mshare_hw.workload.generators.sleeps import sleep_schedule

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ---- the whole-trace kernels (reference) -----------------------------------------------------------


@numba.njit(cache=True)
def whole_database_kernel(
    n,
    state,
    text_start,
    func_bytes,
    func_cdf,
    func_order,
    pool_start,
    block_bytes,
    block_cdf,
    block_order,
    rows_per_visit,
    heap_start,
    heap_bytes,
    heap_hot_bytes,
    thr_ifetch,
    thr_pool,
    thr_store,
    thr_hot,
    thr_branch,
):
    addrs = np.empty(n, dtype=np.uint64)
    kinds = np.empty(n, dtype=np.uint8)
    s11 = np.uint64(11)
    eight = np.uint64(8)
    four = np.uint64(4)
    block_words = np.uint64(block_bytes // 8)
    heap_words = np.uint64(heap_bytes // 8)
    hot_words = np.uint64(heap_hot_bytes // 8)
    fbytes = np.uint64(func_bytes)

    # instruction-stream state
    state, z = next_draw(state)
    fstart = text_start + np.uint64(func_order[zipf_draw(func_cdf, z)]) * fbytes
    pc = fstart
    # buffer-pool visit state
    rows_left = 0
    block_base = pool_start

    for i in range(n):
        state, z = next_draw(state)
        if (z >> s11) < thr_ifetch:
            addrs[i] = pc
            kinds[i] = 0
            pc += four
            state, z = next_draw(state)
            if (z >> s11) < thr_branch:
                state, z = next_draw(state)
                r = z % np.uint64(10)
                state, z = next_draw(state)
                if r < np.uint64(5):  # loop back to an earlier (or this) instruction
                    pc = fstart + four * (z % ((pc - fstart) // four))
                elif r < np.uint64(8):  # forward skip of 4..64 bytes
                    pc += four * (z % np.uint64(16))
                else:  # call another function
                    fstart = text_start + np.uint64(func_order[zipf_draw(func_cdf, z)]) * fbytes
                    pc = fstart
            if pc >= fstart + fbytes:  # ran off the end: return into another function
                state, z = next_draw(state)
                fstart = text_start + np.uint64(func_order[zipf_draw(func_cdf, z)]) * fbytes
                pc = fstart
            continue

        state, z = next_draw(state)
        if (z >> s11) < thr_pool:
            if rows_left == 0:
                state, z = next_draw(state)
                block_base = pool_start + np.uint64(block_order[zipf_draw(block_cdf, z)]) * np.uint64(block_bytes)
                rows_left = rows_per_visit
            state, z = next_draw(state)
            addrs[i] = block_base + eight * (z % block_words)
            rows_left -= 1
        else:
            state, z = next_draw(state)
            hot = (z >> s11) < thr_hot
            state, z = next_draw(state)
            if hot:
                addrs[i] = heap_start + eight * (z % hot_words)
            else:
                addrs[i] = heap_start + eight * (z % heap_words)
        state, z = next_draw(state)
        kinds[i] = 2 if (z >> s11) < thr_store else 1
    return addrs, kinds


@numba.njit(cache=True)
def whole_uniform_kernel(n, state, start, words, thr_store):
    addrs = np.empty(n, dtype=np.uint64)
    kinds = np.empty(n, dtype=np.uint8)
    w = np.uint64(words)
    for i in range(n):
        state, z = next_draw(state)
        addrs[i] = start + np.uint64(8) * (z % w)
        state, z = next_draw(state)
        kinds[i] = 2 if (z >> np.uint64(11)) < thr_store else 1
    return addrs, kinds


@numba.njit(cache=True)
def whole_strided_kernel(n, state, start, size, stride, offset, thr_store):
    addrs = np.empty(n, dtype=np.uint64)
    kinds = np.empty(n, dtype=np.uint8)
    off = np.uint64(offset)
    for i in range(n):
        addrs[i] = start + off
        off += np.uint64(stride)
        if off >= np.uint64(size):
            off -= np.uint64(size)
        state, z = next_draw(state)
        kinds[i] = 2 if (z >> np.uint64(11)) < thr_store else 1
    return addrs, kinds


@numba.njit(cache=True)
def whole_chase_kernel(n, state, start, nxt, elem_offsets, element_bytes, first, thr_store):
    addrs = np.empty(n, dtype=np.uint64)
    kinds = np.empty(n, dtype=np.uint8)
    e = first
    for i in range(n):
        addrs[i] = start + np.uint64(e) * np.uint64(element_bytes) + np.uint64(elem_offsets[e])
        e = nxt[e]
        state, z = next_draw(state)
        kinds[i] = 2 if (z >> np.uint64(11)) < thr_store else 1
    return addrs, kinds


# ---- whole traces as the generators drew them ------------------------------------------------------


def whole_database(p) -> list[tuple[np.ndarray, np.ndarray]]:
    n_clients = p.n_processes * p.threads_per_process
    heap_starts = p.heap_starts()
    func_cdf, func_order, block_cdf, _, block_order = p.tables()  # the reference searches without the guide
    func_bytes = min(TEXT_FUNC_BYTES, p.text_bytes)
    assert np.array_equal(func_cdf, zipf_cdf(p.text_bytes // func_bytes, TEXT_ZIPF_S))
    hot_bytes = max(8, int(p.private_bytes * p.private_hot_bytes_fraction) // 8 * 8)
    data_fraction = 1.0 - p.ifetch_fraction
    pool_given_data = 0.0 if data_fraction <= 0 else min(1.0, p.pool_fraction / data_fraction)
    return [
        whole_database_kernel(
            p.accesses_per_process,
            np.uint64(derive_seed(p.seed, TAG_PROC, i)),
            np.uint64(TEXT_BASE),
            func_bytes,
            func_cdf,
            func_order,
            np.uint64(p.pool_base),
            p.block_bytes,
            block_cdf,
            block_order,
            p.rows_per_visit,
            np.uint64(heap_starts[i]),
            p.private_bytes,
            hot_bytes,
            threshold(p.ifetch_fraction),
            threshold(0.0 if i >= n_clients else pool_given_data),
            threshold(p.store_fraction),
            threshold(p.private_hot_access_fraction),
            threshold(TEXT_BRANCH_PROB),
        )
        for i in range(p.n_tasks())
    ]


def whole_working_set(name: str, p) -> list[tuple[np.ndarray, np.ndarray]]:
    regions = p.regions()
    thr = threshold(p.store_fraction)
    n = p.accesses_per_process
    out = []
    if name == "pointer_chase":
        nxt, offs = p.cycle()
    for i in range(p.n_processes):
        r = regions[0] if p.shared else regions[i]
        pseed = derive_seed(p.seed, TAG_PROC, i)
        if name == "uniform":
            out.append(whole_uniform_kernel(n, np.uint64(pseed), np.uint64(r.start), r.size // 8, thr))
        elif name == "strided":
            stride = p.stride_bytes % p.working_set_bytes
            offset = 8 * (mix64(pseed ^ TAG_MISC) % (r.size // 8))
            out.append(whole_strided_kernel(n, np.uint64(pseed), np.uint64(r.start), r.size, stride, offset, thr))
        else:
            first = mix64(pseed ^ TAG_CYCLE) % (p.working_set_bytes // p.element_bytes)
            out.append(
                whole_chase_kernel(n, np.uint64(pseed), np.uint64(r.start), nxt, offs, p.element_bytes, first, thr)
            )
    return out


# ---- parameters --------------------------------------------------------------------------------------

SEEDS = st.integers(0, 2**64 - 1) | st.integers(-5, 100)
FRACTIONS = st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 1 / 3])
SLEEPS = st.sampled_from([(0, 0), (50, 1000), (997, 3), (1, 1)])


@st.composite
def database_params(draw):
    ifetch = draw(FRACTIONS)
    every, cycles = draw(SLEEPS)
    return dict(
        n_processes=draw(st.integers(1, 3)),
        accesses_per_process=draw(st.integers(0, 5000)),
        pool_bytes=draw(st.sampled_from([1 << 16, 1 << 20, 3 << 20])),
        private_bytes=draw(st.sampled_from([4096, 1 << 16])),
        text_bytes=draw(st.sampled_from([4096, 1 << 16])),
        zipf_s=draw(st.sampled_from([0, 0.5, 0.99, 1.3])),
        ifetch_fraction=ifetch,
        pool_fraction=draw(FRACTIONS) * (1 - ifetch),
        store_fraction=draw(FRACTIONS),
        rows_per_visit=draw(st.integers(1, 9)),
        seed=draw(SEEDS),
        block_bytes=draw(st.sampled_from([64, 4096])),
        private_hot_bytes_fraction=draw(FRACTIONS),
        private_hot_access_fraction=draw(FRACTIONS),
        n_unrelated=draw(st.integers(0, 2)),
        threads_per_process=draw(st.integers(1, 2)),
        sleep_every_accesses=every,
        sleep_cycles=cycles,
    )


@st.composite
def working_set_params(draw, name: str):
    every, cycles = draw(SLEEPS)
    ws = draw(st.sampled_from([4096, 1 << 16, 3 << 20]))
    params = dict(
        n_processes=draw(st.integers(1, 3)),
        accesses_per_process=draw(st.integers(0, 5000)),
        working_set_bytes=ws,
        seed=draw(SEEDS),
        shared=draw(st.booleans()),
        store_fraction=draw(FRACTIONS),
        sleep_every_accesses=every,
        sleep_cycles=cycles,
    )
    if name == "strided":
        params["stride_bytes"] = draw(st.sampled_from([8, 64, 4096, 4104, 1 << 20, 5 << 20]))
    if name == "pointer_chase":
        params["element_bytes"] = draw(st.sampled_from([8, 64, 4096]))
    return params


BLOCKS = st.lists(st.integers(1, 3000), min_size=1, max_size=4)


def blockwise(trace, sizes: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """The trace read in chunks of sizes[0], then sizes[1], ... (cycling), concatenated."""
    if not sizes:
        sizes = [1]
    parts = []
    state = trace._start() if len(trace) else None
    done, k = 0, 0
    while done < len(trace):
        m = min(sizes[k % len(sizes)], len(trace) - done)
        a, kinds = trace._draw(state, m)
        assert len(a) == len(kinds) == m
        parts.append((a, kinds))
        done += m
        k += 1
    if not parts:
        return np.empty(0, np.uint64), np.empty(0, np.uint8)
    return np.concatenate([a for a, _ in parts]), np.concatenate([k for _, k in parts])


def check_equal(p, workload, expected, sizes) -> None:
    assert len(workload.processes) == len(expected)
    for i, (proc, (ea, ek)) in enumerate(zip(workload.processes, expected, strict=True)):
        a, k = blockwise(proc.trace, sizes)
        np.testing.assert_array_equal(a, ea)
        np.testing.assert_array_equal(k, ek)
        assert a.dtype == np.uint64 and k.dtype == np.uint8
        # the reader's own chunking (one block size) gives the same, and the digest is the whole trace's
        chunked = list(proc.trace.chunks(sizes[0]))
        if chunked:
            np.testing.assert_array_equal(np.concatenate([c for c, _ in chunked]), ea)
            np.testing.assert_array_equal(np.concatenate([c for _, c in chunked]), ek)
        from mshare_hw.traces.source import ArrayTrace

        assert proc.trace.digest() == ArrayTrace(ea, ek).digest()
        assert proc.sleeps == sleep_schedule(len(ea), p.sleep_every_accesses, p.sleep_cycles, p.seed, i)


@SETTINGS
@given(params=database_params(), sizes=BLOCKS)
def test_database_blocks_equal_the_whole_trace(params, sizes):
    p = GENERATORS["database"].checked(**params)
    check_equal(p, p.generate(), whole_database(p), sizes)


@SETTINGS
@given(data=st.data(), sizes=BLOCKS, name=st.sampled_from(["uniform", "strided", "pointer_chase"]))
def test_working_set_blocks_equal_the_whole_trace(data, sizes, name):
    p = GENERATORS[name].checked(**data.draw(working_set_params(name)))
    check_equal(p, p.generate(), whole_working_set(name, p), sizes)


def test_database_blocks_equal_the_whole_trace_at_the_default_size():
    """A whole default client (10^6 accesses, 1 GiB pool) against chunk sizes that do not divide it."""
    p = GENERATORS["database"].checked(n_processes=2, seed=1, n_unrelated=1)
    expected = whole_database(p)
    check_equal(p, p.generate(), expected, [1 << 20, 77_777, 1])


def test_chunks_can_be_read_again_and_in_parallel():
    """Every read starts the stream again; two reads interleaved do not disturb each other."""
    p = GENERATORS["database"].checked(n_processes=1, accesses_per_process=10_000, seed=3)
    trace = p.generate().processes[0].trace
    one, two = trace.chunks(1000), trace.chunks(3000)
    a1 = np.concatenate([next(one)[0] for _ in range(3)])
    a2 = next(two)[0]
    np.testing.assert_array_equal(a1, a2)


@numba.njit(cache=True)
def _both_draws(cdf, guide, zs):
    out = np.empty((2, len(zs)), dtype=np.int64)
    for i in range(len(zs)):
        out[0, i] = zipf_draw(cdf, zs[i])
        out[1, i] = zipf_draw_guided(cdf, guide, zs[i])
    return out


def test_guided_zipf_draw_is_the_binary_search():
    """The guide table only narrows the search: the same rank for every draw, bucket edges and extremes
    included, over CDFs small and large, flat and steep."""
    rng = np.random.default_rng(5)
    edges = np.array([0, 1, (1 << 48) - 1, 1 << 48, (1 << 64) - 1, (1 << 64) - (1 << 11)], dtype=np.uint64)
    buckets = rng.integers(0, 1 << 16, 2000, dtype=np.uint64) << np.uint64(48)
    zs = np.concatenate([edges, buckets, buckets - np.uint64(1), rng.integers(0, 2**64 - 1, 200_000, dtype=np.uint64)])
    for n, s in [(1, 0.99), (2, 0), (7, 3.0), (1000, 0.5), (262_144, 0.99), (262_144, 0), (70_000, 1.3), (5, 60.0)]:
        cdf = zipf_cdf(n, s)
        plain, guided = _both_draws(cdf, zipf_guide(cdf), zs)
        np.testing.assert_array_equal(plain, guided)
