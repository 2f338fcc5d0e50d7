"""A database-like workload: N client processes of a database server.

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
* ``heap<i>`` — a private anonymous heap per trace (``processes=(i,)``), ``private_bytes`` long,
  placed below 0x7f00_0000_0000 one 1 GiB slot per process, as mmap grows downwards. A heap access is,
  with probability ``private_hot_access_fraction`` (0.9), uniform over the first
  ``private_hot_bytes_fraction`` (1/8) of the heap, otherwise uniform over the whole heap.

Per access: an instruction fetch with probability ``ifetch_fraction``; otherwise a data access, which
goes to the buffer pool with probability ``pool_fraction / (1 - ifetch_fraction)`` (so
``pool_fraction`` is the pool's share of *all* accesses) and to the private heap otherwise. A data
access is a store with probability ``store_fraction`` (a fraction of data accesses, not of all
accesses), else a load.

Every process draws from its own stream derived from (seed, process index), so process i's trace does
not depend on how many processes are generated.

Threads: with ``threads_per_process`` T > 1 each client is a process of T threads, one trace each, all in
the process's mm (``Process.thread_of``). Traces are numbered thread by thread (client i's threads are
traces i*T .. i*T+T-1, named ``client<i>.<j>``) and drawn exactly as the traces of that many
single-threaded clients would be, each with its own heap (a thread's malloc arena) mapped by its process:
one N-threaded process and N single-threaded clients run the same accesses.
"""

from __future__ import annotations

from typing import ClassVar

import numba
import numpy as np
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from mshare_hw.units import PAGE_SIZES, PageSize
from mshare_hw.workload.generators.blocks import BlockTrace, Lazy
from mshare_hw.workload.generators.params import GIB, SLOT_BYTES, USER_TOP, Bytes, Fraction, GeneratorParams
from mshare_hw.workload.generators.random import (
    TAG_POOL_PERM,
    TAG_PROC,
    TAG_TEXT_PERM,
    derive_seed,
    next_draw,
    permutation_kernel,
    threshold,
    zipf_cdf,
    zipf_distinct,
    zipf_draw,
    zipf_draw_guided,
    zipf_guide,
)
from mshare_hw.workload.model import Process, Region, Workload

TEXT_BASE = 0x40_0000
HEAP_TOP = 0x7F00_0000_0000
TEXT_FUNC_BYTES = 1024
TEXT_BRANCH_PROB = 1.0 / 6.0
TEXT_ZIPF_S = 1.0


def pool_block_order(n_blocks: int, seed: int) -> np.ndarray:
    """Block index of each popularity rank in `database_workload`'s buffer pool: element 0 is the
    hottest block. Same for every process of one workload."""
    if n_blocks < 1:
        raise ValueError(f"pool_block_order: n_blocks must be >= 1, got {n_blocks}")
    return permutation_kernel(int(n_blocks), np.uint64(derive_seed(seed, TAG_POOL_PERM)), False)


def _text_func_order(n_funcs: int, seed: int) -> np.ndarray:
    return permutation_kernel(int(n_funcs), np.uint64(derive_seed(seed, TAG_TEXT_PERM)), False)


# the draw state a database trace carries from one block to the next (`_database_kernel`'s `st`)
_ST_RNG, _ST_PC, _ST_FSTART, _ST_ROWS_LEFT, _ST_BLOCK_BASE = range(5)


@numba.njit(cache=True, nogil=True)
def _database_start(st, text_start, func_bytes, func_cdf, func_order):
    """The state before a trace's first access: the instruction stream starts in a Zipf-drawn function."""
    state, z = next_draw(st[_ST_RNG])
    fstart = text_start + np.uint64(func_order[zipf_draw(func_cdf, z)]) * np.uint64(func_bytes)
    st[_ST_RNG] = state
    st[_ST_PC] = fstart
    st[_ST_FSTART] = fstart
    st[_ST_ROWS_LEFT] = 0
    st[_ST_BLOCK_BASE] = 0


@numba.njit(cache=True, nogil=True)  # nogil: traces are drawn while replaying, and their digests in parallel
def _database_kernel(
    n,
    st,
    text_start,
    func_bytes,
    func_cdf,
    func_order,
    pool_start,
    block_bytes,
    block_cdf,
    block_guide,
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

    state = st[_ST_RNG]
    # instruction-stream state
    fstart = st[_ST_FSTART]
    pc = st[_ST_PC]
    # buffer-pool visit state (block_base is read only after a visit's first row has set it)
    rows_left = np.int64(st[_ST_ROWS_LEFT])
    block_base = st[_ST_BLOCK_BASE]

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
                rank = zipf_draw_guided(block_cdf, block_guide, z)
                block_base = pool_start + np.uint64(block_order[rank]) * np.uint64(block_bytes)
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
    st[_ST_RNG] = state
    st[_ST_PC] = pc
    st[_ST_FSTART] = fstart
    st[_ST_ROWS_LEFT] = np.uint64(rows_left)
    st[_ST_BLOCK_BASE] = block_base
    return addrs, kinds


class DatabaseParams(GeneratorParams):
    """N database clients sharing a Zipf-accessed buffer pool, a shared text, and private heaps.
    ``n_unrelated`` more processes map only their heap and the text (not the pool); with
    ``n_sharer_cpus`` the clients share CPUs 0..n_sharer_cpus-1 and each unrelated process gets a CPU
    after them (so a flush that reaches every CPU shows up as collateral damage).
    See the module docstring for the model; regions are named ``buffer_pool``, ``text`` and
    ``heap<i>``."""

    label: ClassVar[str] = "database"

    n_processes: PositiveInt = 8
    accesses_per_process: NonNegativeInt = 1_000_000
    pool_bytes: Bytes = 1 << 30
    private_bytes: Bytes = 8 << 20
    text_bytes: Bytes = 2 << 20
    zipf_s: int | float = Field(default=0.99, ge=0, allow_inf_nan=False)
    ifetch_fraction: Fraction = 0.3
    pool_fraction: Fraction = 0.45
    store_fraction: Fraction = 0.2
    rows_per_visit: PositiveInt = 4
    seed: int = 1
    pool_base: int = 1 << 39
    pool_page_size: PageSize = "4K"
    cpu_of: list[int] | None = None
    dependent: bool = False  # each access waits for the previous one (machine.timing = "overlap")
    n_unrelated: NonNegativeInt = 0
    n_sharer_cpus: PositiveInt | None = None
    # each client a process of this many threads (one trace each, sharing its mm); see the module docstring
    threads_per_process: PositiveInt = 1
    block_bytes: Bytes = 4096
    private_hot_bytes_fraction: Fraction = 0.125
    private_hot_access_fraction: Fraction = 0.9

    @model_validator(mode="after")
    def _check(self) -> DatabaseParams:
        pool_bytes, pool_base, block_bytes = self.pool_bytes, self.pool_base, self.block_bytes
        if self.pool_fraction > 1.0 - self.ifetch_fraction + 1e-12:
            raise ValueError(
                f"pool_fraction ({self.pool_fraction}) + ifetch_fraction ({self.ifetch_fraction}) must not exceed 1"
            )
        if pool_base <= 0 or pool_base % SLOT_BYTES:
            raise ValueError(f"pool_base must be a positive multiple of 512 GiB, got {pool_base:#x}")
        if pool_bytes % PAGE_SIZES[self.pool_page_size]:
            raise ValueError(f"pool_bytes ({pool_bytes}) must be a multiple of the {self.pool_page_size} page size")
        if block_bytes % 8 or pool_bytes % block_bytes:
            raise ValueError(
                f"block_bytes ({block_bytes}) must be a multiple of 8 that divides pool_bytes ({pool_bytes})"
            )
        if self.text_bytes % 4096:
            raise ValueError(f"text_bytes ({self.text_bytes}) must be a multiple of 4 KiB")
        if self.private_bytes % 4096:
            raise ValueError(f"private_bytes ({self.private_bytes}) must be a multiple of 4 KiB")
        if pool_base + pool_bytes > USER_TOP:
            raise ValueError("buffer pool ends above the 128 TiB user address space")
        self.check_cpu_of(self.n_tasks())
        return self

    def n_tasks(self) -> int:
        """Traces (and scheduled tasks): every client thread, then the unrelated processes."""
        return self.n_processes * self.threads_per_process + self.n_unrelated

    def n_traces(self) -> int:
        return self.n_tasks()

    def heap_starts(self) -> list[int]:
        """Where each process's heap starts: one 1 GiB-aligned slot each below HEAP_TOP, clear of the text
        and of the buffer pool's 512 GiB slot(s)."""
        n = self.n_tasks()
        stride = -(-self.private_bytes // GIB) * GIB
        starts = [HEAP_TOP - (i + 1) * stride for i in range(n)]
        slot_lo = self.pool_base // SLOT_BYTES * SLOT_BYTES
        slot_hi = -(-(self.pool_base + self.pool_bytes) // SLOT_BYTES) * SLOT_BYTES
        text_end = TEXT_BASE + self.text_bytes
        if TEXT_BASE < slot_hi and slot_lo < text_end:
            raise ValueError("the text region would fall inside the buffer pool's 512 GiB slot(s)")
        if starts[-1] < text_end or (starts[-1] < slot_hi and slot_lo < HEAP_TOP):
            raise ValueError(
                f"{n} private heaps of {self.private_bytes} bytes (one {stride >> 30} GiB slot each "
                f"below {HEAP_TOP:#x}) would collide with the text or the buffer pool's 512 GiB slot(s)"
            )
        return starts

    def cpu(self, i: int) -> int | None:
        """Task i's home CPU (client threads first, then the unrelated processes)."""
        if self.cpu_of is not None:
            return self.cpu_of[i]
        if self.n_sharer_cpus is None:
            return None
        # client threads round-robin on CPUs 0..n_sharer_cpus-1, unrelated processes on the CPUs after them
        unrelated = i - self.n_processes * self.threads_per_process
        return self.n_sharer_cpus + unrelated if unrelated >= 0 else i % self.n_sharer_cpus

    def scratch_bytes(self) -> int:
        """The pool's popularity tables while they are built: a float64 CDF and the int64 permutation with
        its int32 copy, per block."""
        return (self.pool_bytes // self.block_bytes) * (8 + 8 + 4)

    def tables(self) -> tuple[np.ndarray, ...]:
        """What every process's draws share: the text functions' Zipf CDF and popularity order, the pool
        blocks' Zipf CDF, its guide table (`zipf_guide`) and their popularity order (`pool_block_order`)."""
        n_blocks = self.pool_bytes // self.block_bytes
        block_cdf = zipf_cdf(n_blocks, self.zipf_s)
        block_order = pool_block_order(n_blocks, self.seed)
        if n_blocks < (1 << 31):
            block_order = block_order.astype(np.int32)
        n_funcs = self.text_bytes // min(TEXT_FUNC_BYTES, self.text_bytes)
        func_cdf, func_order = zipf_cdf(n_funcs, TEXT_ZIPF_S), _text_func_order(n_funcs, self.seed)
        return func_cdf, func_order, block_cdf, zipf_guide(block_cdf), block_order

    def leaf_entries(self, fault_around: int, shared_tables: bool) -> int:
        """Pool: the expected distinct blocks of the clients' visits (Zipf), each faulting in at most
        `fault_around` pages (shmem fault-around) or its own pages; the clients' union once when the
        pool's tables are shared. Heap and text: at most one page per access of theirs, fault-around for
        the text (a file), up to their size."""
        acc, n = self.accesses_per_process, self.n_processes + self.n_unrelated
        page = PAGE_SIZES[self.pool_page_size]
        pool_pages = self.pool_bytes // page
        per_block = max(-(-self.block_bytes // page), fault_around if page == 4096 else 1)
        visits = acc * self.pool_fraction / self.rows_per_visit
        n_blocks = self.pool_bytes // self.block_bytes
        if shared_tables:
            pool = min(pool_pages, zipf_distinct(n_blocks, self.zipf_s, visits * self.n_processes) * per_block)
        else:
            pool = self.n_processes * min(pool_pages, zipf_distinct(n_blocks, self.zipf_s, visits) * per_block)
        heap = min(self.private_bytes // 4096, acc * max(0.0, 1.0 - self.ifetch_fraction - self.pool_fraction))
        text = min(self.text_bytes // 4096, acc * self.ifetch_fraction * fault_around)
        return int(pool + n * (heap + text))

    def generate(self) -> Workload:
        threads = self.threads_per_process
        n_clients = self.n_processes * threads  # client traces (threads); client i's are i*threads + 0..threads-1
        n = n_clients + self.n_unrelated
        heap_starts = self.heap_starts()
        func_bytes = min(TEXT_FUNC_BYTES, self.text_bytes)
        tables = Lazy(self.tables)  # built when a trace is first read, shared by every process
        hot_bytes = max(8, int(self.private_bytes * self.private_hot_bytes_fraction) // 8 * 8)
        data_fraction = 1.0 - self.ifetch_fraction
        pool_given_data = 0.0 if data_fraction <= 0 else min(1.0, self.pool_fraction / data_fraction)

        def trace(i: int) -> BlockTrace:
            """Task i's trace: its own stream, derived from (seed, i), drawn block by block."""
            seed = derive_seed(self.seed, TAG_PROC, i)
            thr_pool = threshold(0.0 if i >= n_clients else pool_given_data)

            def start() -> np.ndarray:
                st = np.zeros(5, dtype=np.uint64)
                st[_ST_RNG] = seed
                func_cdf, func_order = tables.get()[:2]
                _database_start(st, np.uint64(TEXT_BASE), func_bytes, func_cdf, func_order)
                return st

            def draw(st: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
                func_cdf, func_order, block_cdf, block_guide, block_order = tables.get()
                return _database_kernel(
                    m,
                    st,
                    np.uint64(TEXT_BASE),
                    func_bytes,
                    func_cdf,
                    func_order,
                    np.uint64(self.pool_base),
                    self.block_bytes,
                    block_cdf,
                    block_guide,
                    block_order,
                    self.rows_per_visit,
                    np.uint64(heap_starts[i]),
                    self.private_bytes,
                    hot_bytes,
                    threshold(self.ifetch_fraction),
                    thr_pool,
                    threshold(self.store_fraction),
                    threshold(self.private_hot_access_fraction),
                    threshold(TEXT_BRANCH_PROB),
                )

            return BlockTrace(self.accesses_per_process, start, draw)

        def name(i: int) -> str:
            if i >= n_clients:
                return f"unrelated{i - n_clients}"
            return f"client{i}" if threads == 1 else f"client{i // threads}.{i % threads}"

        def leader(i: int) -> int:
            return i if i >= n_clients else i // threads * threads

        processes = [
            Process(
                name=name(i),
                trace=trace(i),
                cpu=self.cpu(i),
                dependent=self.dependent,
                thread_of=None if leader(i) == i else leader(i),
            )
            for i in range(n)
        ]
        text = Region(name="text", start=TEXT_BASE, size=self.text_bytes, kind="file", shared=True, share_tables=False)
        pool_region = Region(
            name="buffer_pool",
            start=self.pool_base,
            size=self.pool_bytes,
            page_size=self.pool_page_size,
            kind="shmem",
            shared=True,
            processes=tuple(range(0, n_clients, threads)) if self.n_unrelated else None,
        )
        # one heap per trace (a thread's malloc arena), mapped by its process
        heaps = [
            Region(
                name=f"heap{i}", start=start, size=self.private_bytes, kind="anon", shared=False, processes=(leader(i),)
            )
            for i, start in enumerate(heap_starts)
        ]
        description = (
            f"database: {n} clients x {self.accesses_per_process} accesses; buffer pool "
            f"{self.pool_bytes} B at {self.pool_base:#x} ({self.pool_page_size} pages, {self.block_bytes} B blocks, "
            f"Zipf s={self.zipf_s}, {self.rows_per_visit} rows/visit); text {self.text_bytes} B; private heap "
            f"{self.private_bytes} B each; ifetch={self.ifetch_fraction}, pool={self.pool_fraction}, "
            f"stores={self.store_fraction} of data; seed={self.seed}"
        )
        if threads > 1:
            description += f"; {self.n_processes} processes of {threads} threads"
        return self.with_sleeps(
            Workload(processes=processes, regions=[text, pool_region, *heaps], description=description)
        )


def database_workload(**params) -> Workload:
    """`DatabaseParams`' workload."""
    return DatabaseParams.checked(**params).generate()
