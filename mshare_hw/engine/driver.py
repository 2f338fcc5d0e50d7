"""Drive the Cython engine over a workload: feed trace chunks on request, take checkpoints, collect
results. The returned dict has the same keys as `ReferenceMachine.results()`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from mshare_hw import _engine
from mshare_hw.config.errors import ConfigError
from mshare_hw.engine.layout import Layout, build_layout
from mshare_hw.engine.params import SimParams
from mshare_hw.engine.shootdown import EventLoop
from mshare_hw.traces.source import ArrayTrace, chunk_for
from mshare_hw.workload.model import Workload

ProgressFn = Callable[[int], None]


def _next_checkpoint(params: SimParams, done: int) -> int:
    nxt = _engine.NO_CHECKPOINT
    if params.warmup_accesses > done:
        nxt = params.warmup_accesses
    if params.interval_accesses > 0:
        nxt = min(nxt, (done // params.interval_accesses + 1) * params.interval_accesses)
    return nxt


def run_workload(
    workload: Workload,
    params: SimParams,
    *,
    layout: Layout | None = None,
    chunk_size: int | None = None,
    progress: ProgressFn | None = None,
    progress_every: int = 1 << 22,
    events=None,
    events_by_accesses: bool = False,
    devices=None,
    inspect: Callable[[_engine.Engine], None] | None = None,
) -> dict:
    """Replay `workload` on the machine `params` describes. `progress(n)` is told the running access
    count at checkpoints of `progress_every` accesses. `devices` (SecondaryMMUs) run their bursts at
    their global access counts and hear the events' mmu notifiers. `inspect(engine)` sees the engine
    once the replay is done (benchmarks read its host memory). Traces are read `chunk_size` accesses at a
    time (by default `chunk_for` the number of processes: host memory stays within a fixed budget)."""
    layout = layout or build_layout(workload, params)
    chunk_size = chunk_size or chunk_for(len(workload.processes))
    eng = _engine.Engine(params, layout)
    # traces read from files or drawn by a generator are read one chunk further ahead in a thread while the
    # engine replays (it releases the GIL): their reading or drawing overlaps the replay
    reader = None if all(isinstance(p.trace, ArrayTrace) for p in workload.processes) else ThreadPoolExecutor(1)
    try:
        streams = [_Chunks(p.trace.chunks(chunk_size), reader) for p in workload.processes]
        pending: list = [None] * len(streams)

        fed = [0] * len(streams)

        def feed(proc: int) -> None:
            chunk = pending[proc] if pending[proc] is not None else streams[proc].next()
            pending[proc] = None
            if chunk is not None and len(chunk[0]) and int(chunk[0].max()) >= layout.va_limit:
                i = int(np.argmax(chunk[0] >= layout.va_limit))
                raise ConfigError(
                    f"process '{workload.processes[proc].name}': access #{fed[proc] + i} at {int(chunk[0][i]):#x} "
                    f"is outside the {params.levels}-level user address space (< {layout.va_limit:#x})"
                )
            if chunk is not None:
                fed[proc] += len(chunk[0])
            if chunk is None:
                eng.feed(proc, np.empty(0, np.uint64), np.empty(0, np.uint8), True)
                return
            nxt = streams[proc].next()  # look ahead so the engine knows the last chunk as such
            pending[proc] = nxt
            eng.feed(proc, chunk[0], chunk[1], nxt is None)

        for proc in range(len(streams)):
            feed(proc)

        loop = EventLoop(events, eng, params, layout, events_by_accesses, devices) if events is not None else None
        if loop is not None and not loop.by_accesses:
            eng.set_next_event(loop.next_time())

        def next_access_event() -> int:
            nxt = loop.next_time() if loop is not None and loop.by_accesses else _engine.NO_CHECKPOINT
            return min(nxt, devices.next_time()) if devices is not None else nxt

        warmup_snapshot = None
        intervals: list[tuple[int, np.ndarray]] = []
        next_progress = progress_every if progress else _engine.NO_CHECKPOINT
        ckpt = _next_checkpoint(params, 0)
        eng.set_next_checkpoint(min(ckpt, next_progress, next_access_event()))
        while True:
            status = eng.run()
            if status == _engine.DONE:
                break
            if status == _engine.NEED_INPUT:
                feed(eng.need_proc)
                continue
            if status == _engine.EVENT:
                loop.fire(eng)  # type: ignore[union-attr]
                eng.set_next_event(loop.next_time())  # type: ignore[union-attr]
                continue
            g = eng.global_accesses
            if g == ckpt or g == next_access_event():
                eng.drain_running()  # snapshots, events and devices see every access completed
            if g == ckpt:
                if g == params.warmup_accesses:
                    warmup_snapshot = (eng.cpu_counters.copy(), eng.proc_counters.copy())
                    if devices is not None:
                        devices.snapshot_warmup()
                if params.interval_accesses and g % params.interval_accesses == 0:
                    intervals.append((g, eng.cpu_counters.sum(axis=0)))
                ckpt = _next_checkpoint(params, g)
            if devices is not None and devices.next_time() == g:
                devices.run_due(eng, g)
            while loop is not None and loop.by_accesses and loop.next_time() == g:
                loop.fire(eng)
            if g == next_progress:
                progress(g)  # type: ignore[misc]
                next_progress += progress_every
            eng.set_next_checkpoint(min(ckpt, next_progress, next_access_event()))
        if progress:
            progress(eng.global_accesses)

        if inspect is not None:
            inspect(eng)
        cpu, proc = eng.cpu_counters.copy(), eng.proc_counters.copy()
        if warmup_snapshot is not None:
            cpu -= warmup_snapshot[0]
            proc -= warmup_snapshot[1]
        return {
            "cpu_counters": cpu,
            "proc_counters": proc,
            "clocks": eng.clocks,
            "pt_pages": eng.pt_pages,
            "stale_examples": eng.stale_examples,
            "intervals": intervals,
            "events_fired": loop.fired if loop is not None else 0,
            **(devices.results() if devices is not None else {}),
        }
    finally:
        if reader is not None:  # after an error the chunks still queued for reading are dropped, not read
            reader.shutdown(wait=True, cancel_futures=True)


class _Chunks:
    """A trace's chunks; with a reader thread, the one after the next is read there meanwhile (so with the
    driver's look-ahead a trace holds up to three chunks: mshare_hw.traces.source.CHUNKS_HELD)."""

    def __init__(self, chunks: Iterator, reader: ThreadPoolExecutor | None) -> None:
        self._chunks = chunks
        self._reader = reader
        self._ahead: Future | None = reader.submit(next, chunks, None) if reader is not None else None

    def next(self):
        if self._ahead is None:
            return next(self._chunks, None)
        chunk = self._ahead.result()
        self._ahead = self._reader.submit(next, self._chunks, None) if chunk is not None else None  # type: ignore[union-attr]
        return chunk
