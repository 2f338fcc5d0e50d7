"""The `uniform` pattern generated as it is read, for runs longer than memory holds (a 10^9-access
stream replays in flat memory).

A stream is cut into fixed blocks of `STREAM_BLOCK` accesses; block k is drawn by a Numba kernel from
a seed derived from (the process's seed, k). So any block can be made on its own, the content does not
depend on the chunk size a reader asks for, and the digest is defined by the parameters: nothing is
materialised to name a stream.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from mshare_hw.traces._io import rechunk
from mshare_hw.traces.source import DEFAULT_CHUNK
from mshare_hw.workload.generators.random import derive_seed, threshold
from mshare_hw.workload.generators.working_set import WorkingSetParams, uniform_kernel
from mshare_hw.workload.model import Region, Workload

STREAM_BLOCK = 1 << 20  # accesses per generated block (9 MiB of addresses and kinds)
_TAG_STREAM = 0x5354524D  # "STRM"
_FORMAT = "uniform-stream-v1"  # part of the digest: change it if the generated content changes


@dataclass(frozen=True)
class UniformStream:
    """`n` accesses, each a uniformly random 8-byte-aligned address of [start, start + size); a store with
    probability `store_fraction`, else a load. A TraceSource that holds one block at a time."""

    n: int
    start: int
    size: int
    seed: int  # the process's 64-bit stream seed
    store_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.n < 0 or self.size < 8 or self.start < 0:
            raise ValueError("need n >= 0, size >= 8 and start >= 0")
        threshold(self.store_fraction)  # checks the range

    def block(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Block k (0-based): accesses k * STREAM_BLOCK .. up to (k + 1) * STREAM_BLOCK - 1."""
        m = min(STREAM_BLOCK, self.n - k * STREAM_BLOCK)
        if k < 0 or m <= 0:
            raise IndexError(f"block {k} outside a stream of {self.n} accesses")
        state = np.array([derive_seed(self.seed, _TAG_STREAM, k)], dtype=np.uint64)
        return uniform_kernel(m, state, np.uint64(self.start), self.size // 8, threshold(self.store_fraction))

    def _pieces(self, size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every block in pieces of at most `size` accesses (the kernel carries its state from one piece to
        the next, so a block in pieces is the block): a reader of small chunks holds no whole block."""
        thr, start, words = threshold(self.store_fraction), np.uint64(self.start), self.size // 8
        for k in range(-(-self.n // STREAM_BLOCK)):
            m_block = min(STREAM_BLOCK, self.n - k * STREAM_BLOCK)
            state = np.array([derive_seed(self.seed, _TAG_STREAM, k)], dtype=np.uint64)
            for done in range(0, m_block, size):
                yield uniform_kernel(min(size, m_block - done), state, start, words, thr)

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return rechunk(self._pieces(min(chunk_size, STREAM_BLOCK)), chunk_size)

    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([_FORMAT, asdict(self)], sort_keys=True).encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return self.n


class UniformStreamParams(WorkingSetParams):
    """The `uniform` generator's access pattern (same regions and parameters), generated while it is
    replayed: memory stays flat however many accesses there are. Its draws differ from `uniform`'s."""

    label: ClassVar[str] = "uniform_stream"
    prefix: ClassVar[str] = "stream"

    def generate(self) -> Workload:
        def trace(r: Region, pseed: int) -> UniformStream:
            n, fraction = self.accesses_per_process, float(self.store_fraction)
            return UniformStream(n=n, start=r.start, size=r.size, seed=pseed, store_fraction=fraction)

        return self.workload(trace, self.describe() + f", generated in blocks of {STREAM_BLOCK}")


def uniform_stream_workload(*args, **params) -> Workload:
    """`UniformStreamParams`' workload: (n_processes, accesses_per_process, working_set_bytes, seed, **options)."""
    return UniformStreamParams.call(args, params)
