"""Synthetic traces generated as they are read, for runs longer than memory holds (DESIGN §7: a
10^9-access stream replays in flat memory).

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

import numpy as np

from mshare_hw.workload.generators import (
    _TAG_PROC,
    _cpu,
    _derive_seed,
    _micro_common,
    _region_of,
    _threshold,
    _uniform_kernel,
    _working_set_regions,
)
from mshare_hw.workload.model import DEFAULT_CHUNK, Process, Workload

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
        _threshold(self.store_fraction)  # checks the range

    def block(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Block k (0-based): accesses k * STREAM_BLOCK .. up to (k + 1) * STREAM_BLOCK - 1."""
        m = min(STREAM_BLOCK, self.n - k * STREAM_BLOCK)
        if k < 0 or m <= 0:
            raise IndexError(f"block {k} outside a stream of {self.n} accesses")
        state = np.uint64(_derive_seed(self.seed, _TAG_STREAM, k))
        return _uniform_kernel(m, state, np.uint64(self.start), self.size // 8, _threshold(self.store_fraction))

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        parts_a: list[np.ndarray] = []
        parts_k: list[np.ndarray] = []
        have = 0
        for k in range(-(-self.n // STREAM_BLOCK)):
            a, kinds = self.block(k)
            pos = 0
            while pos < len(a):
                take = min(chunk_size - have, len(a) - pos)
                parts_a.append(a[pos : pos + take])
                parts_k.append(kinds[pos : pos + take])
                have += take
                pos += take
                if have == chunk_size:
                    yield _joined(parts_a, parts_k)
                    parts_a, parts_k, have = [], [], 0
        if have:
            yield _joined(parts_a, parts_k)

    def digest(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps([_FORMAT, asdict(self)], sort_keys=True).encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return self.n


def _joined(parts_a: list[np.ndarray], parts_k: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if len(parts_a) == 1:
        return parts_a[0], parts_k[0]
    return np.concatenate(parts_a), np.concatenate(parts_k)


def uniform_stream_workload(
    n_processes: int,
    accesses_per_process: int,
    working_set_bytes: int,
    seed: int,
    base: int = 1 << 39,
    shared: bool = True,
    page_size: str = "4K",
    store_fraction: float = 0.0,
    cpu_of: list[int] | None = None,
) -> Workload:
    """The `uniform` generator's access pattern (same regions and parameters), generated while it is
    replayed: memory stays flat however many accesses there are. Its draws differ from `uniform`'s."""
    n_processes, accesses_per_process, working_set_bytes = _micro_common(
        n_processes, accesses_per_process, working_set_bytes, store_fraction
    )
    regions = _working_set_regions(n_processes, working_set_bytes, base, shared, page_size)
    procs = []
    for i in range(n_processes):
        r = _region_of(regions, i)
        stream = UniformStream(
            n=accesses_per_process,
            start=r.start,
            size=r.size,
            seed=_derive_seed(seed, _TAG_PROC, i),
            store_fraction=float(store_fraction),
        )
        procs.append(Process(name=f"stream{i}", trace=stream, cpu=_cpu(cpu_of, i, n_processes)))
    desc = (
        f"uniform_stream: {n_processes} processes x {accesses_per_process} accesses over "
        f"{working_set_bytes} B ({'shared' if shared else 'private'}, {page_size} pages), "
        f"stores={store_fraction}, seed={seed}, generated in blocks of {STREAM_BLOCK}"
    )
    return Workload(processes=procs, regions=regions, description=desc)
