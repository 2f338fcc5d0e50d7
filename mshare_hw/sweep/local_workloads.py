"""How a sweep's client passes the workloads it generated while resolving the grid to whoever replays
them, so that none is generated twice: this process's own serial runs (`--shard`) and a local cluster's
worker threads take them from memory; past a memory budget, local workers map their traces from files."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from mshare_hw.sweep.worker import WORKER_CACHE
from mshare_hw.workload.handoff import can_hand_off, save_meta, save_traces
from mshare_hw.workload.model import ArrayTrace, Workload


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows): assume a small machine
        return 8 << 30


# A local sweep holds its generated workloads in memory for its workers up to a quarter of the machine's
# memory (the runs need the rest); the traces of any further workload go through files.
HOLD_BYTES = _memory_bytes() // 4


def _trace_bytes(workload: Workload) -> int:
    """Memory held by the workload's in-memory traces (others read files or draw streams as they go)."""
    total = 0
    for p in workload.processes:
        trace = p.trace
        while hasattr(trace, "inner"):  # a RelocatedTrace around another
            trace = trace.inner
        if isinstance(trace, ArrayTrace):
            total += trace.addrs.nbytes + trace.kinds.nbytes
    return total


class Handoff:
    """Workers elsewhere (an existing Dask scheduler's) generate the workloads again: nothing is handed."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}  # workload key -> its file for load_workload

    def generated(self, key: str, workload: Workload) -> None:
        """A workload as soon as it is generated (before its digests are computed)."""

    def keep(self, key: str, workload: Workload, digests: list[str]) -> None:
        """The workload with its digests, before the grid resolution drops it."""

    def finish_saving(self) -> None:
        """After the grid resolution (or its error)."""

    def close(self) -> None:
        """Delete what was handed over; idempotent."""


class SerialHandoff(Handoff):
    """`--shard`: this process replays the workloads itself, from its worker cache."""

    def keep(self, key: str, workload: Workload, digests: list[str]) -> None:
        WORKER_CACHE.put(key, workload, digests)


class LocalHandoff(Handoff):
    """A local cluster's worker threads take each workload in memory (held in WORKER_CACHE until `close`),
    unless its traces would take the held ones past HOLD_BYTES: then its traces are written to files in
    `directory` while its digests are computed, for the workers to map (mshare_hw.workload.handoff), and
    its memory is freed once the grid is resolved. `on_first` runs when the first workload is generated
    (the cluster starts then)."""

    def __init__(self, directory: Path, on_first: Callable[[], None]) -> None:
        super().__init__()
        self._directory = directory
        self._on_first = on_first
        self._room = HOLD_BYTES  # what is left of the budget for held traces
        self._to_hold: set[str] = set()
        self._held: list[str] = []
        self._saving: dict[str, Future] = {}  # workload key -> its traces being written (save_traces)
        self._temps: list[Path] = []  # every file written, deleted by `close`
        self._writer: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="mshare-hw-handoff")

    def generated(self, key: str, workload: Workload) -> None:
        self._on_first()
        size = _trace_bytes(workload)
        if size <= self._room:
            self._room -= size
            self._to_hold.add(key)
        elif can_hand_off(workload):
            self._saving[key] = self._writer.submit(save_traces, workload, self._directory, key)  # type: ignore[union-attr]
        # else the workers generate it again

    def keep(self, key: str, workload: Workload, digests: list[str]) -> None:
        if key in self._to_hold:
            WORKER_CACHE.hold(key, workload, digests)
            self._held.append(key)
        elif key in self._saving:
            arrays, files = self._saving.pop(key).result()
            self._temps.extend(files)
            meta = save_meta(workload, digests, arrays, self._directory, key)
            self._temps.append(meta)
            self.files[key] = str(meta)

    def finish_saving(self) -> None:
        """After the grid resolution (or its error): let the writes end, so that `close` deletes them all."""
        if self._writer is None:
            return
        self._writer.shutdown(wait=True)
        self._writer = None
        for fut in self._saving.values():
            if fut.exception() is None:
                self._temps.extend(fut.result()[1])

    def close(self) -> None:
        """Delete the files and release the held workloads."""
        self.finish_saving()
        for p in self._temps:
            p.unlink(missing_ok=True)
        self._temps.clear()
        WORKER_CACHE.release(self._held)
        self._held.clear()
