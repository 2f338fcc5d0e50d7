"""A trace: a stream of (addresses uint64, kinds uint8) chunks, and the in-memory kind.

Traces are consumed in chunks (`TraceSource.chunks`), so nothing has to hold a whole trace.
Access kinds: 0 = instruction fetch, 1 = load, 2 = store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

IFETCH, LOAD, STORE = 0, 1, 2
DEFAULT_CHUNK = 1 << 20
MIN_CHUNK = 1 << 13
# What a replay's trace chunks may take in all: each trace holds up to CHUNKS_HELD chunks at once (the one
# the engine replays, the driver's look-ahead, the one being read or drawn meanwhile) of 9 bytes per access.
TRACE_BUFFER_BYTES = 64 << 20
CHUNKS_HELD = 3
# A generated workload whose traces take at most this in all is drawn once and held while its grid points
# run (each private/mshare/uarch point would otherwise draw it again); the runner holds no more than this.
HELD_TRACE_BYTES = 256 << 20


def chunk_for(n_traces: int) -> int:
    """Accesses per chunk when `n_traces` traces are replayed together: DEFAULT_CHUNK for a few, smaller for
    many, so that the chunks held stay within TRACE_BUFFER_BYTES (never below MIN_CHUNK, which bounds the
    per-chunk cost of handing a chunk to the engine)."""
    per_trace = TRACE_BUFFER_BYTES // (CHUNKS_HELD * 9 * max(1, n_traces))
    return max(MIN_CHUNK, min(DEFAULT_CHUNK, per_trace))


def buffer_bytes(n_traces: int, accesses_per_trace: int) -> int:
    """Host memory the chunks of `n_traces` traces of `accesses_per_trace` accesses take while replayed."""
    return n_traces * min(accesses_per_trace, chunk_for(n_traces) * CHUNKS_HELD) * 9


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
