"""Generated traces drawn block by block while they are read, so that host memory does not grow with the
number of accesses.

A generator's kernel draws its accesses from one splitmix64 stream per process and carries a little state
between accesses (the stream's position, a program counter, a visit's rows left...). The kernels take
that state as a small uint64 array, read it on entry and write it back on exit, so drawing n1 accesses
and then n2 more gives exactly the n1 + n2 accesses of one call: the blocks concatenated are the whole
trace, whatever the block sizes (tests/workload/test_blocks.py holds them to the kernels that drew whole
traces). Every read (`chunks()`) starts the stream again from its seed.

The digest is the content digest of the whole trace (`ArrayTrace.digest`: blake2b-128 over every address,
then every kind), so runs keep their ids; it is computed in one streaming pass (`stream_digest`, which
spills the kinds to a temporary file until the addresses are hashed), once per trace object.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from mshare_hw.traces._io import stream_digest
from mshare_hw.traces.source import DEFAULT_CHUNK, ArrayTrace
from mshare_hw.workload.model import Workload

RAMP_FIRST = 1 << 13  # accesses in a trace's first chunk


class BlockTrace:
    """A TraceSource of `n` generated accesses. `start()` makes a fresh draw state (the kernel's state
    array and its other arguments), `draw(state, m)` the next m accesses (and advances the state)."""

    def __init__(self, n: int, start: Callable[[], Any], draw: Callable[[Any, int], tuple[np.ndarray, np.ndarray]]):
        self.n = int(n)
        self._start = start
        self._draw = draw
        self._digest: str | None = None

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The trace in chunks of `chunk_size` accesses, but the first ones smaller (RAMP_FIRST, doubling up to
        chunk_size): a replay starts every trace at once and waits for each one's first chunks, while the
        later ones are drawn in the driver's reader thread as the engine replays the earlier ones."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        if self.n == 0:
            return
        state = self._start()
        done = 0
        size = min(RAMP_FIRST, chunk_size)
        while done < self.n:
            m = min(size, self.n - done)
            yield self._draw(state, m)
            done += m
            size = min(2 * size, chunk_size)

    def digest(self) -> str:
        if self._digest is None:
            self._digest = stream_digest(self.chunks())[0]
        return self._digest

    def __len__(self) -> int:
        return self.n

    def to_array(self) -> ArrayTrace:
        """The whole trace in memory (tests, small traces)."""
        return _concat(self.chunks())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n})"


class Lazy:
    """A value built on first use (tables every process of a workload shares, such as a Zipf CDF), once
    even when several threads ask at the same time; not built at all by what only checks a workload."""

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
        return self._value


def to_array(trace) -> ArrayTrace:
    """Any TraceSource's whole content as an ArrayTrace (an ArrayTrace itself as it is)."""
    return trace if isinstance(trace, ArrayTrace) else _concat(trace.chunks())


def materialise(workload: Workload) -> Workload:
    """The same workload with every trace held in memory (benchmarks time the replay alone this way)."""
    procs = [dataclasses.replace(p, trace=to_array(p.trace)) for p in workload.processes]
    return dataclasses.replace(workload, processes=procs)


def _concat(chunks) -> ArrayTrace:
    parts = list(chunks)
    if not parts:
        return ArrayTrace(np.empty(0, np.uint64), np.empty(0, np.uint8))
    return ArrayTrace(np.concatenate([a for a, _ in parts]), np.concatenate([k for _, k in parts]))
