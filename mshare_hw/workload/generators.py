"""Synthetic workload generators (DESIGN §3.3): a database-like workload and micro-benchmarks.

Every generator is seeded and deterministic: the same arguments and seed give bit-identical arrays.
Randomness comes from an explicit splitmix64 stream inside the Numba kernels (never NumPy's global
state), and random decisions compare integer draws with integer thresholds, so the output does not
depend on the NumPy or Numba version (the one float input, a Zipf CDF built by NumPy in float64,
could only change a draw that lands within an ulp of a CDF step). Each process draws from its own stream derived from
(seed, process index), so process i's trace does not depend on how many processes are generated.

Addresses are uint64 byte addresses, kinds uint8 (0 = ifetch, 1 = load, 2 = store); data accesses are
8-byte aligned.

`database_workload` — N client processes of a database server:

* ``buffer_pool`` — one shmem region shared by every process at ``pool_base`` (512 GiB aligned, as
  mshare requires). It is made of ``block_bytes`` database blocks (default 4 KiB, independent of the
  pool's page size, so the same seed gives the same addresses whatever the page size under test).
  A *visit* picks a block by Zipf(``zipf_s``) popularity and makes ``rows_per_visit`` consecutive
  pool accesses at random 8-byte-aligned offsets inside it. Popularity rank -> block is a random
  permutation drawn from the seed (`pool_block_order`), identical for every process, so hot blocks are
  scattered over the pool and every process agrees on which blocks are hot.
* ``text`` — a shared file mapping (the server binary and its libraries: same frames in every
  process) at 0x40_0000, 4 KiB pages. The instruction stream walks functions of ``TEXT_FUNC_BYTES``
  (1 KiB) slots: 4-byte steps; after each fetch a taken branch with probability ``TEXT_BRANCH_PROB``
  (1/6, a basic block of ~6 instructions), which is a loop back to a random earlier instruction of the
  function (50%), a short forward skip of 4..64 bytes (30%) or a call to another function (20%);
  running off the end of a function returns to another one. Functions are picked by
  Zipf(``TEXT_ZIPF_S``) popularity over a seed-permuted order, identical for every process.
* ``heap<i>`` — a private anonymous heap per process (``processes=(i,)``), ``private_bytes`` long,
  placed below 0x7f00_0000_0000 one 1 GiB slot per process, as mmap grows downwards. A heap access is,
  with probability ``private_hot_access_fraction`` (0.9), uniform over the first
  ``private_hot_bytes_fraction`` (1/8) of the heap, otherwise uniform over the whole heap.

Per access: an instruction fetch with probability ``ifetch_fraction``; otherwise a data access, which
goes to the buffer pool with probability ``pool_fraction / (1 - ifetch_fraction)`` (so
``pool_fraction`` is the pool's share of *all* accesses) and to the private heap otherwise. A data
access is a store with probability ``store_fraction`` (a fraction of data accesses, not of all
accesses), else a load.

Micro-benchmarks (`uniform_workload`, `strided_workload`, `pointer_chase_workload`) access one
working set: a single shmem region mapped by every process when ``shared=True``, otherwise one
private anonymous region per process at distinct addresses, each aligned like the shared one
(1 GiB, never straddling a 512 GiB slot) so that the per-process page-table shapes are comparable.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from mshare_hw.workload.model import PAGE_SIZES, ArrayTrace, Process, Region, Workload

__all__ = [
    "HEAP_TOP",
    "SLOT_BYTES",
    "TEXT_BASE",
    "database_workload",
    "default_params",
    "pointer_chase_workload",
    "pool_block_order",
    "random_cycle",
    "random_permutation",
    "strided_workload",
    "uniform_workload",
    "zipf_cdf",
    "zipf_sample",
]

SLOT_BYTES = 1 << 39  # 512 GiB: what one PML4/P4D entry maps; mshare's alignment
GIB = 1 << 30
USER_TOP = 1 << 47  # end of the 4-level user address space (128 TiB)
TEXT_BASE = 0x40_0000
HEAP_TOP = 0x7F00_0000_0000
TEXT_FUNC_BYTES = 1024
TEXT_BRANCH_PROB = 1.0 / 6.0
TEXT_ZIPF_S = 1.0
_MASK64 = (1 << 64) - 1
_ONE53 = 1 << 53

# Stream tags mixed into the seed so that independent uses of one seed do not share a stream.
_TAG_POOL_PERM = 0x504F4F4C  # "POOL"
_TAG_TEXT_PERM = 0x54455854  # "TEXT"
_TAG_PROC = 0x50524F43  # "PROC"
_TAG_CYCLE = 0x4359434C  # "CYCL"
_TAG_MISC = 0x4D495343  # "MISC"


# --------------------------------------------------------------------------------------------------
# PRNG: splitmix64, the same function in Python (seed derivation) and in Numba (the streams).


def _mix64(x: int) -> int:
    """splitmix64's finaliser on a Python int (64-bit wrap-around)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _derive_seed(seed: int, tag: int, index: int = 0) -> int:
    """A 64-bit stream seed for (seed, tag, index)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    return _mix64(_mix64(_mix64(int(seed) & _MASK64) ^ tag) ^ (index & _MASK64))


@numba.njit(cache=True, inline="always")
def _next(state):
    """One splitmix64 step: (new state, 64-bit output)."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


def _threshold(p: float) -> np.uint64:
    """Integer threshold T with P[(draw >> 11) < T] == p (to 2**-53)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {p}")
    return np.uint64(round(p * _ONE53))


# --------------------------------------------------------------------------------------------------
# Zipf and permutations


def zipf_cdf(n_items: int, s: float) -> np.ndarray:
    """Cumulative distribution (float64, length n_items, last element exactly 1.0) of Zipf(s) over
    ranks 1..n_items: P(rank k) ∝ k**-s. s = 0 is uniform."""
    n_items = int(n_items)
    if n_items < 1:
        raise ValueError(f"zipf_cdf: n_items must be >= 1, got {n_items}")
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"zipf_cdf: exponent s must be finite and >= 0, got {s}")
    w = np.arange(1, n_items + 1, dtype=np.float64)
    np.power(w, -float(s), out=w)
    np.cumsum(w, out=w)
    w /= w[-1]
    w[-1] = 1.0
    return w


@numba.njit(cache=True, inline="always")
def _zipf_draw(cdf, z):
    """Rank (0-based) whose CDF interval holds the uniform draw z (first k with cdf[k] > u)."""
    u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    lo = 0
    hi = cdf.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if cdf[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, nogil=True)
def _zipf_sample_kernel(cdf, n, state):
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        state, z = _next(state)
        out[i] = _zipf_draw(cdf, z)
    return out


def zipf_sample(cdf: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n 0-based ranks (int64) drawn from a CDF made by `zipf_cdf`, deterministic in seed."""
    cdf = np.ascontiguousarray(cdf, dtype=np.float64)
    if cdf.ndim != 1 or cdf.size == 0:
        raise ValueError("zipf_sample: cdf must be a non-empty 1-D array")
    return _zipf_sample_kernel(cdf, int(n), np.uint64(_derive_seed(seed, _TAG_MISC)))


@numba.njit(cache=True, nogil=True)
def _permutation_kernel(n, state, cyclic):
    """Fisher-Yates (cyclic=False) or Sattolo (cyclic=True: one single cycle) on 0..n-1."""
    p = np.arange(n).astype(np.int64)
    for i in range(n - 1, 0, -1):
        state, z = _next(state)
        if cyclic:
            j = np.int64(z % np.uint64(i))  # 0 <= j < i
        else:
            j = np.int64(z % np.uint64(i + 1))  # 0 <= j <= i
        t = p[i]
        p[i] = p[j]
        p[j] = t
    return p


def random_permutation(n: int, seed: int) -> np.ndarray:
    """A uniformly random permutation of 0..n-1 (int64), deterministic in seed."""
    if n < 1:
        raise ValueError(f"random_permutation: n must be >= 1, got {n}")
    return _permutation_kernel(int(n), np.uint64(_derive_seed(seed, _TAG_MISC)), False)


def random_cycle(n: int, seed: int) -> np.ndarray:
    """A random cyclic permutation of 0..n-1 (Sattolo): following i -> p[i] visits all n elements
    before coming back. Deterministic in seed."""
    if n < 1:
        raise ValueError(f"random_cycle: n must be >= 1, got {n}")
    return _permutation_kernel(int(n), np.uint64(_derive_seed(seed, _TAG_CYCLE)), True)


def pool_block_order(n_blocks: int, seed: int) -> np.ndarray:
    """Block index of each popularity rank in `database_workload`'s buffer pool: element 0 is the
    hottest block. Same for every process of one workload."""
    if n_blocks < 1:
        raise ValueError(f"pool_block_order: n_blocks must be >= 1, got {n_blocks}")
    return _permutation_kernel(int(n_blocks), np.uint64(_derive_seed(seed, _TAG_POOL_PERM)), False)


def _text_func_order(n_funcs: int, seed: int) -> np.ndarray:
    return _permutation_kernel(int(n_funcs), np.uint64(_derive_seed(seed, _TAG_TEXT_PERM)), False)


# --------------------------------------------------------------------------------------------------
# Database-like workload


@numba.njit(cache=True, nogil=True)  # nogil: the processes' streams are drawn in parallel threads
def _database_kernel(
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
    state, z = _next(state)
    fstart = text_start + np.uint64(func_order[_zipf_draw(func_cdf, z)]) * fbytes
    pc = fstart
    # buffer-pool visit state
    rows_left = 0
    block_base = pool_start

    for i in range(n):
        state, z = _next(state)
        if (z >> s11) < thr_ifetch:
            addrs[i] = pc
            kinds[i] = 0
            pc += four
            state, z = _next(state)
            if (z >> s11) < thr_branch:
                state, z = _next(state)
                r = z % np.uint64(10)
                state, z = _next(state)
                if r < np.uint64(5):  # loop back to an earlier (or this) instruction
                    pc = fstart + four * (z % ((pc - fstart) // four))
                elif r < np.uint64(8):  # forward skip of 4..64 bytes
                    pc += four * (z % np.uint64(16))
                else:  # call another function
                    fstart = text_start + np.uint64(func_order[_zipf_draw(func_cdf, z)]) * fbytes
                    pc = fstart
            if pc >= fstart + fbytes:  # ran off the end: return into another function
                state, z = _next(state)
                fstart = text_start + np.uint64(func_order[_zipf_draw(func_cdf, z)]) * fbytes
                pc = fstart
            continue

        state, z = _next(state)
        if (z >> s11) < thr_pool:
            if rows_left == 0:
                state, z = _next(state)
                block_base = pool_start + np.uint64(block_order[_zipf_draw(block_cdf, z)]) * np.uint64(block_bytes)
                rows_left = rows_per_visit
            state, z = _next(state)
            addrs[i] = block_base + eight * (z % block_words)
            rows_left -= 1
        else:
            state, z = _next(state)
            hot = (z >> s11) < thr_hot
            state, z = _next(state)
            if hot:
                addrs[i] = heap_start + eight * (z % hot_words)
            else:
                addrs[i] = heap_start + eight * (z % heap_words)
        state, z = _next(state)
        kinds[i] = 2 if (z >> s11) < thr_store else 1
    return addrs, kinds


def _check_page_size(page_size: str) -> int:
    if page_size not in PAGE_SIZES:
        raise ValueError(f"page_size must be one of {sorted(PAGE_SIZES)}, got {page_size!r}")
    return PAGE_SIZES[page_size]


def _check_positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _check_fraction(name: str, value: float) -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def _cpu(cpu_of: Sequence[int] | None, i: int, n: int) -> int | None:
    if cpu_of is None:
        return None
    if len(cpu_of) != n:
        raise ValueError(f"cpu_of has {len(cpu_of)} entries for {n} processes")
    return int(cpu_of[i])


def _slot_range(start: int, size: int) -> tuple[int, int]:
    """The 512 GiB slots [lo, hi) that a range touches."""
    lo = start // SLOT_BYTES * SLOT_BYTES
    hi = -(-(start + size) // SLOT_BYTES) * SLOT_BYTES
    return lo, hi


def _overlaps(a0: int, a1: int, b0: int, b1: int) -> bool:
    return a0 < b1 and b0 < a1


def database_workload(
    n_processes: int = 8,
    accesses_per_process: int = 1_000_000,
    pool_bytes: int = 1 << 30,
    private_bytes: int = 8 << 20,
    text_bytes: int = 2 << 20,
    zipf_s: float = 0.99,
    ifetch_fraction: float = 0.3,
    pool_fraction: float = 0.45,
    store_fraction: float = 0.2,
    rows_per_visit: int = 4,
    seed: int = 1,
    pool_base: int = 1 << 39,
    pool_page_size: str = "4K",
    cpu_of: Sequence[int] | None = None,
    n_unrelated: int = 0,
    n_sharer_cpus: int | None = None,
    block_bytes: int = 4096,
    private_hot_bytes_fraction: float = 0.125,
    private_hot_access_fraction: float = 0.9,
) -> Workload:
    """N database clients sharing a Zipf-accessed buffer pool, a shared text, and private heaps.
    ``n_unrelated`` more processes map only their heap and the text (not the pool); with
    ``n_sharer_cpus`` the clients share CPUs 0..n_sharer_cpus-1 and each unrelated process gets a CPU
    after them (so a flush that reaches every CPU shows up as collateral damage).
    See the module docstring for the model; regions are named ``buffer_pool``, ``text`` and
    ``heap<i>``."""
    n_processes = _check_positive_int("n_processes", n_processes)
    if isinstance(n_unrelated, bool) or not isinstance(n_unrelated, int) or n_unrelated < 0:
        raise ValueError(f"n_unrelated must be a non-negative integer, got {n_unrelated!r}")
    n_clients = n_processes
    n_processes = n_clients + n_unrelated
    accesses_per_process = int(accesses_per_process)
    if accesses_per_process < 0:
        raise ValueError(f"accesses_per_process must be >= 0, got {accesses_per_process}")
    rows_per_visit = _check_positive_int("rows_per_visit", rows_per_visit)
    pool_page = _check_page_size(pool_page_size)
    pool_bytes = _check_positive_int("pool_bytes", pool_bytes)
    private_bytes = _check_positive_int("private_bytes", private_bytes)
    text_bytes = _check_positive_int("text_bytes", text_bytes)
    block_bytes = _check_positive_int("block_bytes", block_bytes)
    for name, v in (
        ("ifetch_fraction", ifetch_fraction),
        ("pool_fraction", pool_fraction),
        ("store_fraction", store_fraction),
        ("private_hot_bytes_fraction", private_hot_bytes_fraction),
        ("private_hot_access_fraction", private_hot_access_fraction),
    ):
        _check_fraction(name, v)
    if pool_fraction > 1.0 - ifetch_fraction + 1e-12:
        raise ValueError(f"pool_fraction ({pool_fraction}) + ifetch_fraction ({ifetch_fraction}) must not exceed 1")
    if pool_base <= 0 or pool_base % SLOT_BYTES:
        raise ValueError(f"pool_base must be a positive multiple of 512 GiB, got {pool_base:#x}")
    if pool_bytes % pool_page:
        raise ValueError(f"pool_bytes ({pool_bytes}) must be a multiple of the {pool_page_size} page size")
    if block_bytes % 8 or pool_bytes % block_bytes:
        raise ValueError(f"block_bytes ({block_bytes}) must be a multiple of 8 that divides pool_bytes ({pool_bytes})")
    if text_bytes % 4096:
        raise ValueError(f"text_bytes ({text_bytes}) must be a multiple of 4 KiB")
    if private_bytes % 4096:
        raise ValueError(f"private_bytes ({private_bytes}) must be a multiple of 4 KiB")
    if pool_base + pool_bytes > USER_TOP:
        raise ValueError("buffer pool ends above the 128 TiB user address space")

    heap_stride = -(-private_bytes // GIB) * GIB
    slot_lo, slot_hi = _slot_range(pool_base, pool_bytes)
    heap_starts = [HEAP_TOP - (i + 1) * heap_stride for i in range(n_processes)]
    text_end = TEXT_BASE + text_bytes
    if _overlaps(TEXT_BASE, text_end, slot_lo, slot_hi):
        raise ValueError("the text region would fall inside the buffer pool's 512 GiB slot(s)")
    if heap_starts[-1] < text_end or _overlaps(heap_starts[-1], HEAP_TOP, slot_lo, slot_hi):
        raise ValueError(
            f"{n_processes} private heaps of {private_bytes} bytes (one {heap_stride >> 30} GiB slot each "
            f"below {HEAP_TOP:#x}) would collide with the text or the buffer pool's 512 GiB slot(s)"
        )

    n_blocks = pool_bytes // block_bytes
    block_cdf = zipf_cdf(n_blocks, zipf_s)
    block_order = pool_block_order(n_blocks, seed)
    if n_blocks < (1 << 31):
        block_order = block_order.astype(np.int32)
    func_bytes = min(TEXT_FUNC_BYTES, text_bytes)
    n_funcs = text_bytes // func_bytes
    func_cdf = zipf_cdf(n_funcs, TEXT_ZIPF_S)
    func_order = _text_func_order(n_funcs, seed)

    hot_bytes = max(8, int(private_bytes * private_hot_bytes_fraction) // 8 * 8)
    data_fraction = 1.0 - ifetch_fraction
    pool_given_data = 0.0 if data_fraction <= 0 else min(1.0, pool_fraction / data_fraction)

    regions = [
        Region(
            name="text", start=TEXT_BASE, size=text_bytes, page_size="4K", kind="file", shared=True, share_tables=False
        ),
        Region(
            name="buffer_pool",
            start=pool_base,
            size=pool_bytes,
            page_size=pool_page_size,  # type: ignore[arg-type]
            kind="shmem",
            shared=True,
            processes=tuple(range(n_clients)) if n_unrelated else None,
        ),
    ]
    kernel_args = []
    names_cpus: list[tuple[str, int | None]] = []
    for i in range(n_processes):
        unrelated = i >= n_clients
        heap_start = heap_starts[i]
        regions.append(
            Region(
                name=f"heap{i}",
                start=heap_start,
                size=private_bytes,
                kind="anon",
                shared=False,
                processes=(i,),
            )
        )
        kernel_args.append(
            (
                accesses_per_process,
                np.uint64(_derive_seed(seed, _TAG_PROC, i)),
                np.uint64(TEXT_BASE),
                func_bytes,
                func_cdf,
                func_order,
                np.uint64(pool_base),
                block_bytes,
                block_cdf,
                block_order,
                rows_per_visit,
                np.uint64(heap_start),
                private_bytes,
                hot_bytes,
                _threshold(ifetch_fraction),
                _threshold(0.0 if unrelated else pool_given_data),
                _threshold(store_fraction),
                _threshold(private_hot_access_fraction),
                _threshold(TEXT_BRANCH_PROB),
            )
        )
        name = f"unrelated{i - n_clients}" if unrelated else f"client{i}"
        cpu = _cpu(cpu_of, i, n_processes)
        if n_sharer_cpus is not None and cpu_of is None:
            # clients round-robin on CPUs 0..n_sharer_cpus-1, unrelated processes on the CPUs after them
            cpu = n_sharer_cpus + (i - n_clients) if unrelated else i % n_sharer_cpus
        names_cpus.append((name, cpu))
    # each process's stream depends only on its own seed: drawn in parallel, the result is the same
    with ThreadPoolExecutor(max(1, min(n_processes, os.cpu_count() or 1))) as pool:
        traces = list(pool.map(lambda args: _database_kernel(*args), kernel_args))
    processes = [
        Process(name=name, trace=ArrayTrace(addrs, kinds), cpu=cpu)
        for (name, cpu), (addrs, kinds) in zip(names_cpus, traces, strict=True)
    ]

    description = (
        f"database: {n_processes} clients x {accesses_per_process} accesses; buffer pool "
        f"{pool_bytes} B at {pool_base:#x} ({pool_page_size} pages, {block_bytes} B blocks, "
        f"Zipf s={zipf_s}, {rows_per_visit} rows/visit); text {text_bytes} B; private heap "
        f"{private_bytes} B each; ifetch={ifetch_fraction}, pool={pool_fraction}, "
        f"stores={store_fraction} of data; seed={seed}"
    )
    return Workload(processes=processes, regions=regions, description=description)


# --------------------------------------------------------------------------------------------------
# Micro-benchmarks


def _working_set_regions(
    n_processes: int, working_set_bytes: int, base: int, shared: bool, page_size: str
) -> list[Region]:
    """One shared shmem region at `base`, or one private anon region per process at distinct
    addresses starting at `base`: 1 GiB aligned, packed so that none straddles a 512 GiB slot
    (regions larger than 512 GiB get a 512 GiB-aligned slot run each)."""
    page = _check_page_size(page_size)
    if working_set_bytes % page:
        raise ValueError(f"working_set_bytes ({working_set_bytes}) must be a multiple of the {page_size} page")
    align = page if shared else max(page, GIB)
    if base <= 0 or base % align:
        raise ValueError(f"base ({base:#x}) must be positive and a multiple of {align:#x}")
    if shared:
        if base + working_set_bytes > USER_TOP:
            raise ValueError("working set ends above the 128 TiB user address space")
        return [
            Region(name="ws", start=base, size=working_set_bytes, page_size=page_size, kind="shmem", shared=True)  # type: ignore[arg-type]
        ]
    stride = -(-working_set_bytes // GIB) * GIB
    if stride > SLOT_BYTES:
        stride = -(-working_set_bytes // SLOT_BYTES) * SLOT_BYTES
    starts = []
    addr = base
    for _ in range(n_processes):
        # keep each region inside one 512 GiB slot (or starting on a slot boundary if it is larger)
        if addr // SLOT_BYTES != (addr + working_set_bytes - 1) // SLOT_BYTES:
            addr = -(-addr // SLOT_BYTES) * SLOT_BYTES
        starts.append(addr)
        addr += stride
    if starts[-1] + working_set_bytes > USER_TOP:
        raise ValueError(f"{n_processes} private working sets of {working_set_bytes} bytes do not fit below 128 TiB")
    return [
        Region(
            name=f"ws{i}",
            start=s,
            size=working_set_bytes,
            page_size=page_size,  # type: ignore[arg-type]
            kind="anon",
            shared=False,
            processes=(i,),
        )
        for i, s in enumerate(starts)
    ]


def _region_of(regions: list[Region], i: int) -> Region:
    return regions[0] if len(regions) == 1 and regions[0].shared else regions[i]


@numba.njit(cache=True, nogil=True)  # nogil: streams are drawn during replay, maybe in two worker threads
def _uniform_kernel(n, state, start, words, thr_store):
    addrs = np.empty(n, dtype=np.uint64)
    kinds = np.empty(n, dtype=np.uint8)
    w = np.uint64(words)
    for i in range(n):
        state, z = _next(state)
        addrs[i] = start + np.uint64(8) * (z % w)
        state, z = _next(state)
        kinds[i] = 2 if (z >> np.uint64(11)) < thr_store else 1
    return addrs, kinds


@numba.njit(cache=True, nogil=True)
def _strided_kernel(n, state, start, size, stride, offset, thr_store):
    addrs = np.empty(n, dtype=np.uint64)
    kinds = np.empty(n, dtype=np.uint8)
    off = np.uint64(offset)
    for i in range(n):
        addrs[i] = start + off
        off += np.uint64(stride)
        if off >= np.uint64(size):
            off -= np.uint64(size)
        state, z = _next(state)
        kinds[i] = 2 if (z >> np.uint64(11)) < thr_store else 1
    return addrs, kinds


@numba.njit(cache=True, nogil=True)
def _chase_kernel(n, state, start, nxt, elem_offsets, element_bytes, first, thr_store):
    addrs = np.empty(n, dtype=np.uint64)
    kinds = np.empty(n, dtype=np.uint8)
    e = first
    for i in range(n):
        addrs[i] = start + np.uint64(e) * np.uint64(element_bytes) + np.uint64(elem_offsets[e])
        e = nxt[e]
        state, z = _next(state)
        kinds[i] = 2 if (z >> np.uint64(11)) < thr_store else 1
    return addrs, kinds


def _micro_common(n_processes, accesses_per_process, working_set_bytes, store_fraction):
    n_processes = _check_positive_int("n_processes", n_processes)
    accesses_per_process = int(accesses_per_process)
    if accesses_per_process < 0:
        raise ValueError(f"accesses_per_process must be >= 0, got {accesses_per_process}")
    working_set_bytes = _check_positive_int("working_set_bytes", working_set_bytes)
    _check_fraction("store_fraction", store_fraction)
    return n_processes, accesses_per_process, working_set_bytes


def uniform_workload(
    n_processes: int,
    accesses_per_process: int,
    working_set_bytes: int,
    seed: int,
    base: int = 1 << 39,
    shared: bool = True,
    page_size: str = "4K",
    store_fraction: float = 0.0,
    cpu_of: Sequence[int] | None = None,
) -> Workload:
    """Each access a uniformly random 8-byte-aligned address of the working set."""
    n_processes, accesses_per_process, working_set_bytes = _micro_common(
        n_processes, accesses_per_process, working_set_bytes, store_fraction
    )
    regions = _working_set_regions(n_processes, working_set_bytes, base, shared, page_size)
    thr = _threshold(store_fraction)
    procs = []
    for i in range(n_processes):
        r = _region_of(regions, i)
        a, k = _uniform_kernel(
            accesses_per_process,
            np.uint64(_derive_seed(seed, _TAG_PROC, i)),
            np.uint64(r.start),
            r.size // 8,
            thr,
        )
        procs.append(Process(name=f"uniform{i}", trace=ArrayTrace(a, k), cpu=_cpu(cpu_of, i, n_processes)))
    desc = (
        f"uniform: {n_processes} processes x {accesses_per_process} accesses over "
        f"{working_set_bytes} B ({'shared' if shared else 'private'}, {page_size} pages), "
        f"stores={store_fraction}, seed={seed}"
    )
    return Workload(processes=procs, regions=regions, description=desc)


def strided_workload(
    n_processes: int,
    accesses_per_process: int,
    working_set_bytes: int,
    stride_bytes: int,
    seed: int,
    base: int = 1 << 39,
    shared: bool = True,
    page_size: str = "4K",
    store_fraction: float = 0.0,
    cpu_of: Sequence[int] | None = None,
) -> Workload:
    """Each process walks the working set with a fixed stride, wrapping around at its end; it starts
    at a random 8-byte-aligned offset drawn from (seed, process index)."""
    n_processes, accesses_per_process, working_set_bytes = _micro_common(
        n_processes, accesses_per_process, working_set_bytes, store_fraction
    )
    stride_bytes = _check_positive_int("stride_bytes", stride_bytes)
    if stride_bytes % 8:
        raise ValueError(f"stride_bytes ({stride_bytes}) must be a multiple of 8")
    stride = stride_bytes % working_set_bytes
    regions = _working_set_regions(n_processes, working_set_bytes, base, shared, page_size)
    thr = _threshold(store_fraction)
    procs = []
    for i in range(n_processes):
        r = _region_of(regions, i)
        pseed = _derive_seed(seed, _TAG_PROC, i)
        offset = 8 * (_mix64(pseed ^ _TAG_MISC) % (r.size // 8))
        a, k = _strided_kernel(accesses_per_process, np.uint64(pseed), np.uint64(r.start), r.size, stride, offset, thr)
        procs.append(Process(name=f"strided{i}", trace=ArrayTrace(a, k), cpu=_cpu(cpu_of, i, n_processes)))
    desc = (
        f"strided: {n_processes} processes x {accesses_per_process} accesses, stride {stride_bytes} B over "
        f"{working_set_bytes} B ({'shared' if shared else 'private'}, {page_size} pages), "
        f"stores={store_fraction}, seed={seed}"
    )
    return Workload(processes=procs, regions=regions, description=desc)


def pointer_chase_workload(
    n_processes: int,
    accesses_per_process: int,
    working_set_bytes: int,
    seed: int,
    base: int = 1 << 39,
    shared: bool = True,
    page_size: str = "4K",
    store_fraction: float = 0.0,
    element_bytes: int = 4096,
    cpu_of: Sequence[int] | None = None,
) -> Workload:
    """A linked list threaded through the working set: elements of `element_bytes` (4096: one per
    page, 64: one per cache line) in one random cycle (`random_cycle`); each access reads the next
    element. Every process follows the same cycle (the same list) from its own random start element.
    Each element is touched at a fixed, seed-random 64-byte line inside it (the first line if
    element_bytes <= 64), so page-sized elements do not all fall into one cache set."""
    n_processes, accesses_per_process, working_set_bytes = _micro_common(
        n_processes, accesses_per_process, working_set_bytes, store_fraction
    )
    element_bytes = _check_positive_int("element_bytes", element_bytes)
    if element_bytes % 8 or working_set_bytes % element_bytes:
        raise ValueError(f"element_bytes ({element_bytes}) must be a multiple of 8 that divides working_set_bytes")
    regions = _working_set_regions(n_processes, working_set_bytes, base, shared, page_size)
    n_elem = working_set_bytes // element_bytes
    nxt = random_cycle(n_elem, seed)
    if element_bytes > 64:
        lines = element_bytes // 64
        offs = (random_permutation(n_elem, seed) % lines) * 64
    else:
        offs = np.zeros(n_elem, dtype=np.int64)
    if n_elem < (1 << 31):
        nxt = nxt.astype(np.int32)
        offs = offs.astype(np.int32)
    thr = _threshold(store_fraction)
    procs = []
    for i in range(n_processes):
        r = _region_of(regions, i)
        pseed = _derive_seed(seed, _TAG_PROC, i)
        first = _mix64(pseed ^ _TAG_CYCLE) % n_elem
        a, k = _chase_kernel(
            accesses_per_process, np.uint64(pseed), np.uint64(r.start), nxt, offs, element_bytes, first, thr
        )
        procs.append(Process(name=f"chase{i}", trace=ArrayTrace(a, k), cpu=_cpu(cpu_of, i, n_processes)))
    desc = (
        f"pointer chase: {n_processes} processes x {accesses_per_process} accesses, one cycle of "
        f"{n_elem} x {element_bytes} B elements over {working_set_bytes} B "
        f"({'shared' if shared else 'private'}, {page_size} pages), stores={store_fraction}, seed={seed}"
    )
    return Workload(processes=procs, regions=regions, description=desc)


def default_params(name: str) -> dict:
    """A generator's parameters that have defaults, with those defaults ({} for an unknown name)."""
    import inspect

    from mshare_hw.workload.build import GENERATOR_FUNCS  # build imports this module

    fn = GENERATOR_FUNCS.get(name)
    if fn is None:
        return {}
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not p.empty}
