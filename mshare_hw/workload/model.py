"""A workload: processes with their access streams, the regions they map, and where they run.

Traces are consumed in chunks (`TraceSource.chunks`), so a workload never has to hold a whole trace.
Access kinds: 0 = instruction fetch, 1 = load, 2 = store.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

IFETCH, LOAD, STORE = 0, 1, 2
KIND_NAMES = ("ifetch", "load", "store")
PAGE_SIZES = {"4K": 1 << 12, "2M": 1 << 21, "1G": 1 << 30}
DEFAULT_CHUNK = 1 << 20


class TraceSource(Protocol):
    """Anything that yields (addresses uint64, kinds uint8) chunks and can name its content."""

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...

    def digest(self) -> str: ...

    def __len__(self) -> int: ...


@dataclass
class ArrayTrace:
    """An in-memory trace (generators, tests)."""

    addrs: np.ndarray
    kinds: np.ndarray

    def __post_init__(self) -> None:
        self.addrs = np.ascontiguousarray(self.addrs, dtype=np.uint64)
        self.kinds = np.ascontiguousarray(self.kinds, dtype=np.uint8)
        if self.addrs.shape != self.kinds.shape or self.addrs.ndim != 1:
            raise ValueError("addrs and kinds must be 1-D arrays of the same length")
        if self.kinds.size and int(self.kinds.max()) > STORE:
            raise ValueError("kinds must be 0 (ifetch), 1 (load) or 2 (store)")

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for i in range(0, len(self.addrs), chunk_size):
            yield self.addrs[i : i + chunk_size], self.kinds[i : i + chunk_size]

    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(self.addrs)  # the contiguous arrays' bytes, hashed in place (no copy)
        h.update(self.kinds)
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.addrs)


@dataclass(frozen=True)
class Region:
    """A VMA. `shared` regions are one object (same physical frames) mapped by several processes at the
    same virtual address; only they can get shared page tables, and only if `share_tables` (a shared
    library's text is shared memory but not part of an mshare region). `processes` lists who maps the
    region (None: every process); a private region gives each of them its own copy."""

    name: str
    start: int
    size: int
    page_size: Literal["4K", "2M", "1G"] = "4K"
    kind: Literal["anon", "shmem", "file"] = "anon"
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
