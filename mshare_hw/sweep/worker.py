"""One run of a sweep as a task: on a Dask worker (a thread of a local sweep's process, or a remote
worker process) or in the client for `--shard`. Each worker keeps the workloads it replayed last, and a
local sweep's client hands its worker threads the workloads it already generated."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from mshare_hw.config.experiment import Experiment
from mshare_hw.results.hdf5 import write_results
from mshare_hw.runner import WorkloadCache, generate_workload, prepare_point, run_id_for, run_point, workload_key
from mshare_hw.sweep.shards import shard_complete
from mshare_hw.workload.handoff import load_workload
from mshare_hw.workload.model import Workload


class RecentWorkloads(WorkloadCache):
    """A WorkloadCache that keeps only the last few workloads (a worker may see many), and besides them
    the workloads a local sweep's client `hold`s for its worker threads until it calls `release`.
    Thread-safe: those workers share it (two tasks missing the same workload both generate it)."""

    def __init__(self, size: int = 2) -> None:
        super().__init__()
        self._size = size
        self._cache: OrderedDict[str, tuple[Workload, list[str]]] = OrderedDict()
        self._held: dict[str, tuple[Workload, list[str]]] = {}
        self._lock = threading.Lock()

    def get(self, point: Experiment) -> tuple[Workload, list[str]]:
        key = workload_key(point)
        with self._lock:
            value = self._held.get(key) or self._cache.get(key)
            if key in self._cache:
                self._cache.move_to_end(key)
        if value is None:
            value = generate_workload(point)
            self.put(key, *value)
        return value

    def put(self, key: str, workload: Workload, digests: list[str]) -> None:
        with self._lock:
            self._cache[key] = (workload, digests)
            self._cache.move_to_end(key)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)

    def has(self, point: Experiment) -> bool:
        key = workload_key(point)
        with self._lock:
            return key in self._held or key in self._cache

    def hold(self, key: str, workload: Workload, digests: list[str]) -> None:
        with self._lock:
            self._held[key] = (workload, digests)

    def release(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._held.pop(key, None)


WORKER_CACHE = RecentWorkloads()


# tokens of the sweeps in this process that were stopped (interrupted): their local workers' runs end at
# their next progress checkpoint instead of replaying to the end while the client waits for them
STOPPED: set[str] = set()


class Stopped(Exception):
    """A local worker's run ended early because its sweep was stopped."""


# local sweeps' progress: sweep token -> run id -> fraction of the run replayed (at progress checkpoints)
RUNNING: dict[str, dict[str, float]] = {}


def run_task(
    point_data: dict,
    run_id: str,
    shard_path: str,
    experiment: str,
    on_fraction: Callable[[float], None] | None = None,
    workload_file: str | None = None,
    sweep_token: str | None = None,
) -> dict:
    """Compute one run and write its shard (a complete results file, renamed into place). Runs on a Dask
    worker (module-level, so workers import it by name) or in the client for `--shard`, where
    `on_fraction(f)` follows the replay (0 <= f <= 1). `workload_file`: the point's workload as the
    client saved it (mshare_hw.workload.handoff), used instead of generating it here. `sweep_token`: the
    run stops early if that sweep is stopped in this process (a local worker's)."""
    t0 = time.perf_counter()
    point = Experiment.model_validate(point_data)
    path = Path(shard_path)
    if shard_complete(path, run_id):  # an earlier attempt of this task finished
        return {"run_id": run_id, "seconds": 0.0, "pid": os.getpid(), "skipped": True}
    if workload_file is not None and not WORKER_CACHE.has(point):
        WORKER_CACHE.put(workload_key(point), *load_workload(workload_file))
    workload, digests, params = prepare_point(point, WORKER_CACHE)
    actual = run_id_for(point, digests)
    if actual != run_id:
        raise RuntimeError(
            f"run id {actual} on this worker, {run_id} on the client: do they run the same mshare-hw "
            "version with the same dependencies?"
        )

    running = RUNNING.get(sweep_token) if sweep_token is not None else None

    def hook(_label: str, done: int, total: int) -> None:
        if sweep_token in STOPPED:
            raise Stopped(f"sweep {sweep_token} stopped")
        fraction = done / total if total else 1.0
        if on_fraction:
            on_fraction(fraction)
        if running is not None:
            running[run_id] = fraction

    watch = on_fraction is not None or sweep_token is not None
    run = run_point(point, workload, digests, params, run_id=run_id, on_progress=hook if watch else None)
    write_results(path, experiment, [run])
    return {"run_id": run_id, "seconds": time.perf_counter() - t0, "pid": os.getpid(), "skipped": False}
