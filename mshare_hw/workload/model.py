"""A workload: processes with their access streams (`mshare_hw.traces.source`), the regions they map,
and where they run."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from mshare_hw.traces.source import DEFAULT_CHUNK, ArrayTrace, TraceSource
from mshare_hw.units import PAGE_SIZES, PageSize

# the trace-level names are used with the workload's by the engine and the tests
__all__ = ["DEFAULT_CHUNK", "PAGE_SIZES", "ArrayTrace", "Process", "Region", "TraceSource", "Workload"]

RegionKind = Literal["anon", "shmem", "file"]


@dataclass(frozen=True)
class Region:
    """A VMA. `shared` regions are one object (same physical frames) mapped by several processes at the
    same virtual address; only they can get shared page tables, and only if `share_tables` (a shared
    library's text is shared memory but not part of an mshare region). `processes` lists who maps the
    region (None: every process); a private region gives each of them its own copy."""

    name: str
    start: int
    size: int
    page_size: PageSize = "4K"
    kind: RegionKind = "anon"
    shared: bool = False
    processes: tuple[int, ...] | None = None
    share_tables: bool = True

    @property
    def end(self) -> int:
        return self.start + self.size

    def maps(self, pid: int) -> bool:
        return self.processes is None or pid in self.processes


@dataclass
class Process:
    name: str
    trace: TraceSource
    cpu: int | None = None  # home CPU; None places process i on CPU i % n_cpus
    dependent: bool = False  # each access waits for the previous one (a pointer chase): no overlap
    # (trace position, cycles): after that many accesses the process blocks (I/O, a lock) for that long
    sleeps: tuple[tuple[int, int], ...] = ()
    # a thread of process `thread_of` (an index into Workload.processes): it shares that process's mm, so it
    # maps what the process maps (regions list the process, never its threads); its own trace and home CPU
    thread_of: int | None = None


@dataclass
class Workload:
    processes: list[Process]
    regions: list[Region] = field(default_factory=list)
    description: str = ""

    def trace_digests(self) -> list[str]:
        """One digest per process, computed in parallel threads (hashing releases the GIL)."""
        if len(self.processes) < 2:
            return [p.trace.digest() for p in self.processes]
        with ThreadPoolExecutor(min(len(self.processes), os.cpu_count() or 1)) as pool:
            return list(pool.map(lambda p: p.trace.digest(), self.processes))

    def total_accesses(self) -> int:
        return sum(len(p.trace) for p in self.processes)
