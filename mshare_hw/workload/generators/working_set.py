"""Micro-benchmarks over one working set: uniform, strided and pointer-chase access patterns.

The working set is a single shmem region mapped by every process when ``shared`` (the default),
otherwise one private anonymous region per process at distinct addresses, each aligned like the shared
one (1 GiB, never straddling a 512 GiB slot) so that the per-process page-table shapes are comparable.
Data accesses are 8-byte aligned; a store with probability ``store_fraction``, else a load.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import numba
import numpy as np
from pydantic import NonNegativeInt, PositiveInt, model_validator

from mshare_hw.traces.source import TraceSource
from mshare_hw.units import PAGE_SIZES, PageSize
from mshare_hw.workload.generators.blocks import BlockTrace, Lazy
from mshare_hw.workload.generators.params import GIB, SLOT_BYTES, USER_TOP, Bytes, Fraction, GeneratorParams
from mshare_hw.workload.generators.random import (
    TAG_CYCLE,
    TAG_MISC,
    TAG_PROC,
    derive_seed,
    mix64,
    next_draw,
    random_cycle,
    random_permutation,
    threshold,
)
from mshare_hw.workload.model import Process, Region, Workload


class WorkingSetParams(GeneratorParams):
    """What every working-set generator takes; each process `i` draws from its own seed (seed, i)."""

    prefix: ClassVar[str]  # process names: prefix0, prefix1, ...
    positional: ClassVar[tuple[str, ...]] = ("n_processes", "accesses_per_process", "working_set_bytes", "seed")

    n_processes: PositiveInt
    accesses_per_process: NonNegativeInt
    working_set_bytes: Bytes
    seed: int
    base: int = 1 << 39
    shared: bool = True
    page_size: PageSize = "4K"
    store_fraction: Fraction = 0.0
    cpu_of: list[int] | None = None
    dependent: bool = False  # each access waits for the previous one (machine.timing = "overlap")

    @model_validator(mode="after")
    def _check_cpus(self) -> WorkingSetParams:
        self.check_cpu_of(self.n_processes)
        return self

    def regions(self) -> list[Region]:
        """One shared shmem region at `base`, or one private anon region per process at distinct
        addresses starting at `base`: 1 GiB aligned, packed so that none straddles a 512 GiB slot
        (regions larger than 512 GiB get a 512 GiB-aligned slot run each)."""
        n, size, base, page_size = self.n_processes, self.working_set_bytes, self.base, self.page_size
        page = PAGE_SIZES[page_size]
        if size % page:
            raise ValueError(f"working_set_bytes ({size}) must be a multiple of the {page_size} page")
        align = page if self.shared else max(page, GIB)
        if base <= 0 or base % align:
            raise ValueError(f"base ({base:#x}) must be positive and a multiple of {align:#x}")
        if self.shared:
            if base + size > USER_TOP:
                raise ValueError("working set ends above the 128 TiB user address space")
            return [Region(name="ws", start=base, size=size, page_size=page_size, kind="shmem", shared=True)]
        stride = -(-size // GIB) * GIB
        if stride > SLOT_BYTES:
            stride = -(-size // SLOT_BYTES) * SLOT_BYTES
        starts = []
        addr = base
        for _ in range(n):
            # keep each region inside one 512 GiB slot (or starting on a slot boundary if it is larger)
            if addr // SLOT_BYTES != (addr + size - 1) // SLOT_BYTES:
                addr = -(-addr // SLOT_BYTES) * SLOT_BYTES
            starts.append(addr)
            addr += stride
        if starts[-1] + size > USER_TOP:
            raise ValueError(f"{n} private working sets of {size} bytes do not fit below 128 TiB")
        return [
            Region(name=f"ws{i}", start=s, size=size, page_size=page_size, kind="anon", shared=False, processes=(i,))
            for i, s in enumerate(starts)
        ]

    def leaf_entries(self, fault_around: int, shared_tables: bool) -> int:
        """At most every page of the working set, each access faulting in at most `fault_around` pages
        (shmem) or one (anon)."""
        pages = self.working_set_bytes // PAGE_SIZES[self.page_size]
        per_process = min(pages, self.accesses_per_process * (fault_around if self.shared else 1))
        if self.shared and shared_tables:
            return min(pages, self.n_processes * per_process)
        return self.n_processes * per_process

    def describe(self, pattern: str = "") -> str:
        return (
            f"{self.label}: {self.n_processes} processes x {self.accesses_per_process} accesses{pattern} over "
            f"{self.working_set_bytes} B ({'shared' if self.shared else 'private'}, {self.page_size} pages), "
            f"stores={self.store_fraction}, seed={self.seed}"
        )

    def workload(self, trace: Callable[[Region, int], TraceSource], description: str) -> Workload:
        """Process i replays `trace(its region, its 64-bit seed)`."""
        regions = self.regions()
        # the engine's per-process flag, where the process model has it (timing "overlap")
        procs = []
        for i in range(self.n_processes):
            region = regions[0] if self.shared else regions[i]
            procs.append(
                Process(
                    name=f"{self.prefix}{i}",
                    trace=trace(region, derive_seed(self.seed, TAG_PROC, i)),
                    cpu=None if self.cpu_of is None else self.cpu_of[i],
                    dependent=self.dependent,
                )
            )
        return self.with_sleeps(Workload(processes=procs, regions=regions, description=description))


# The kernels draw the next n accesses of a trace and carry their state between calls in `st` (a uint64
# array, read on entry, written back on exit), so a trace drawn in blocks equals the trace drawn at once
# (mshare_hw.workload.generators.blocks). st[0] is the splitmix64 stream's state.


@numba.njit(cache=True, nogil=True)  # nogil: streams are drawn during replay, maybe in two worker threads
def uniform_kernel(n, st, start, words, thr_store):
    addrs = np.empty(n, dtype=np.uint64)
    kinds = np.empty(n, dtype=np.uint8)
    w = np.uint64(words)
    state = st[0]
    for i in range(n):
        state, z = next_draw(state)
        addrs[i] = start + np.uint64(8) * (z % w)
        state, z = next_draw(state)
        kinds[i] = 2 if (z >> np.uint64(11)) < thr_store else 1
    st[0] = state
    return addrs, kinds


@numba.njit(cache=True, nogil=True)
def _strided_kernel(n, st, start, size, stride, thr_store):
    """st: [stream state, offset of the next access]."""
    addrs = np.empty(n, dtype=np.uint64)
    kinds = np.empty(n, dtype=np.uint8)
    state = st[0]
    off = st[1]
    for i in range(n):
        addrs[i] = start + off
        off += np.uint64(stride)
        if off >= np.uint64(size):
            off -= np.uint64(size)
        state, z = next_draw(state)
        kinds[i] = 2 if (z >> np.uint64(11)) < thr_store else 1
    st[0] = state
    st[1] = off
    return addrs, kinds


@numba.njit(cache=True, nogil=True)
def _chase_kernel(n, st, start, nxt, elem_offsets, element_bytes, thr_store):
    """st: [stream state, element of the next access]."""
    addrs = np.empty(n, dtype=np.uint64)
    kinds = np.empty(n, dtype=np.uint8)
    state = st[0]
    e = np.int64(st[1])
    for i in range(n):
        addrs[i] = start + np.uint64(e) * np.uint64(element_bytes) + np.uint64(elem_offsets[e])
        e = nxt[e]
        state, z = next_draw(state)
        kinds[i] = 2 if (z >> np.uint64(11)) < thr_store else 1
    st[0] = state
    st[1] = np.uint64(e)
    return addrs, kinds


def _state(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


class UniformParams(WorkingSetParams):
    """Each access a uniformly random 8-byte-aligned address of the working set."""

    label: ClassVar[str] = "uniform"
    prefix: ClassVar[str] = "uniform"

    def generate(self) -> Workload:
        thr = threshold(self.store_fraction)

        def trace(r: Region, pseed: int) -> BlockTrace:
            start, words = np.uint64(r.start), r.size // 8
            return BlockTrace(
                self.accesses_per_process,
                lambda: _state(pseed),
                lambda st, m: uniform_kernel(m, st, start, words, thr),
            )

        return self.workload(trace, self.describe())


class StridedParams(WorkingSetParams):
    """Each process walks the working set with a fixed stride, wrapping around at its end; it starts
    at a random 8-byte-aligned offset drawn from (seed, process index)."""

    label: ClassVar[str] = "strided"
    prefix: ClassVar[str] = "strided"

    positional: ClassVar[tuple[str, ...]] = (
        "n_processes",
        "accesses_per_process",
        "working_set_bytes",
        "stride_bytes",
        "seed",
    )

    stride_bytes: Bytes

    @model_validator(mode="after")
    def _check_stride(self) -> StridedParams:
        if self.stride_bytes % 8:
            raise ValueError(f"stride_bytes ({self.stride_bytes}) must be a multiple of 8")
        return self

    def generate(self) -> Workload:
        stride = self.stride_bytes % self.working_set_bytes
        thr = threshold(self.store_fraction)

        def trace(r: Region, pseed: int) -> BlockTrace:
            offset = 8 * (mix64(pseed ^ TAG_MISC) % (r.size // 8))
            start, size = np.uint64(r.start), r.size
            return BlockTrace(
                self.accesses_per_process,
                lambda: _state(pseed, offset),
                lambda st, m: _strided_kernel(m, st, start, size, stride, thr),
            )

        return self.workload(trace, self.describe(f", stride {self.stride_bytes} B"))


class PointerChaseParams(WorkingSetParams):
    """A linked list threaded through the working set: elements of `element_bytes` (4096: one per
    page, 64: one per cache line) in one random cycle (`random_cycle`); each access reads the next
    element. Every process follows the same cycle (the same list) from its own random start element.
    Each element is touched at a fixed, seed-random 64-byte line inside it (the first line if
    element_bytes <= 64), so page-sized elements do not all fall into one cache set. With 4096-byte
    elements this is the classic TLB-reach loop: one load per page, the lines spread evenly over the
    64 line offsets of a page (a permutation modulo 64). Its accesses are `dependent` by default: each
    address is read from the previous element."""

    label: ClassVar[str] = "pointer chase"
    prefix: ClassVar[str] = "chase"

    element_bytes: Bytes = 4096
    dependent: bool = True  # each element's address is read from the previous one

    @model_validator(mode="after")
    def _check_elements(self) -> PointerChaseParams:
        if self.element_bytes % 8 or self.working_set_bytes % self.element_bytes:
            raise ValueError(
                f"element_bytes ({self.element_bytes}) must be a multiple of 8 that divides working_set_bytes"
            )
        return self

    def cycle(self) -> tuple[np.ndarray, np.ndarray]:
        """The list every process follows: next element of each element, and each element's line offset."""
        element_bytes = self.element_bytes
        n_elem = self.working_set_bytes // element_bytes
        nxt = random_cycle(n_elem, self.seed)
        if element_bytes > 64:
            lines = element_bytes // 64
            offs = (random_permutation(n_elem, self.seed) % lines) * 64
        else:
            offs = np.zeros(n_elem, dtype=np.int64)
        if n_elem < (1 << 31):
            nxt = nxt.astype(np.int32)
            offs = offs.astype(np.int32)
        return nxt, offs

    def scratch_bytes(self) -> int:
        """The cycle and the line offsets (int64 while drawn)."""
        return (self.working_set_bytes // self.element_bytes) * 16

    def generate(self) -> Workload:
        element_bytes = self.element_bytes
        n_elem = self.working_set_bytes // element_bytes
        cycle = Lazy(self.cycle)  # built when a trace is first read, shared by every process
        thr = threshold(self.store_fraction)

        def trace(r: Region, pseed: int) -> BlockTrace:
            first = mix64(pseed ^ TAG_CYCLE) % n_elem
            start = np.uint64(r.start)

            def draw(st: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
                nxt, offs = cycle.get()
                return _chase_kernel(m, st, start, nxt, offs, element_bytes, thr)

            return BlockTrace(self.accesses_per_process, lambda: _state(pseed, first), draw)

        return self.workload(trace, self.describe(f", one cycle of {n_elem} x {element_bytes} B elements"))


def uniform_workload(*args, **params) -> Workload:
    """`UniformParams`' workload: (n_processes, accesses_per_process, working_set_bytes, seed, **options)."""
    return UniformParams.call(args, params)


def strided_workload(*args, **params) -> Workload:
    """`StridedParams`' workload: (n_processes, accesses_per_process, working_set_bytes, stride_bytes, seed,
    **options)."""
    return StridedParams.call(args, params)


def pointer_chase_workload(*args, **params) -> Workload:
    """`PointerChaseParams`' workload: (n_processes, accesses_per_process, working_set_bytes, seed, **options)."""
    return PointerChaseParams.call(args, params)
