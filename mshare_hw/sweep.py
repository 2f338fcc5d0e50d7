"""Sweeps at scale (DESIGN.md §6): an experiment's grid fanned out over Dask, or one slice of it
serially for a job array, resumable after any kill.

Every grid point is one run, identified by `run_id_for` (a digest of its resolved configuration, its
trace digests and the tool version). A run is computed by one task, which writes its own *shard*: a
complete results file `OUT.shards/<run_id>.h5`, written to a temporary name and renamed into place, so
a shard that exists is whole. When every task is done the client merges OUT's kept runs and the shards
into OUT (atomically, in grid order) and deletes the shards. A sweep killed at any moment (SIGKILL
included) and started again computes only the runs that are neither in OUT nor in a shard; temporary
files of the killed processes are removed.

Executors: an in-process `LocalCluster` (worker threads in this process, one task each at a time: the
engine replays without the GIL; started once the client has generated its first workload, and given the
client's generated workloads instead of generating them again: held in memory, or past a memory budget
as memory-mapped files; Ctrl-C stops their runs at the next progress checkpoint), an existing Dask
scheduler (`scheduler="tcp://host:8786"`, e.g. one started by dask-jobqueue on SLURM/PBS; its workers
need mshare-hw installed and the shard directory on a shared file system), or, with `shard=(i, n)`, this
process alone on the grid points k with k % n == i - 1 (job arrays without Dask).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import Experiment, expand, get_dotted
from mshare_hw.results.hdf5 import write_results
from mshare_hw.results.merge import MergeError, summary_run_ids, write_merged
from mshare_hw.runner import (
    WorkloadCache,
    check_point,
    generate_workload,
    params_for,
    prepare_point,
    run_id_for,
    run_point,
    workload_key,
)
from mshare_hw.workload.build import build_workload
from mshare_hw.workload.handoff import can_hand_off, load_workload, save_meta, save_traces
from mshare_hw.workload.model import ArrayTrace, Workload

__all__ = [
    "GridPoint",
    "SweepError",
    "SweepResult",
    "parse_shard",
    "resolve_points",
    "run_task",
    "shard_dir_for",
    "sweep",
]


class SweepError(RuntimeError):
    """Some runs of a sweep failed (the others are kept: a rerun computes only the missing ones)."""


@dataclass(frozen=True)
class GridPoint:
    index: int  # position in the experiment's grid (0-based)
    point: Experiment  # the resolved single-point experiment
    run_id: str
    label: str  # the point's axis values, for messages


@dataclass
class SweepResult:
    out: Path
    points: int  # grid points this sweep (or shard) covers
    in_out: list[str] = field(default_factory=list)  # run ids already in OUT, kept
    in_shards: list[str] = field(default_factory=list)  # run ids found as complete shards
    computed: list[str] = field(default_factory=list)  # run ids computed by this invocation
    failed: list[tuple[str, str]] = field(default_factory=list)  # (point label, error)
    seconds: float = 0.0
    run_seconds: dict[str, float] = field(default_factory=dict)  # run id -> its task's time (build, replay, write)


# (runs done: the finished ones plus the replayed fraction of those running, where known; runs to do)
ProgressHook = Callable[[float, int], None]


def shard_dir_for(out: str | Path) -> Path:
    """The directory of a sweep's per-run shard files: next to OUT, named OUT.shards."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


def parse_shard(text: str) -> tuple[int, int]:
    """'2/3' -> (2, 3): the second of three slices (1-based)."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected I/N with whole numbers, e.g. 2/3") from None
    if n < 1 or not 1 <= i <= n:
        raise ConfigError(f"--shard {text!r}: need 1 <= I <= N")
    return i, n


def _label(exp: Experiment, point: Experiment) -> str:
    data = point.model_dump()
    parts = []
    for key in exp.sweep:
        for k in key.split("+"):
            parts.append(f"{k}={get_dotted(data, k)}")
    return ", ".join(parts) or point.name


def resolve_points(
    exp: Experiment,
    shard: tuple[int, int] | None = None,
    on_workload: Callable[[str, Workload, list[str]], None] | None = None,
    on_generated: Callable[[str, Workload], None] | None = None,
) -> list[GridPoint]:
    """Expand the grid and check every point as far as possible without replaying it: its workload is
    generated (once per distinct workload) for the trace digests, and its engine parameters, memory
    layout and event schedule are built. Raises ConfigError for the first point that cannot run.
    With `shard=(i, n)`, only the points k with k % n == i - 1 (all are still expanded).
    `on_generated(key, workload)` sees each workload as soon as it is generated (before its digests),
    `on_workload(key, workload, digests)` before it is dropped."""
    points = expand(exp)
    selected = [k for k in range(len(points)) if shard is None or k % shard[1] == shard[0] - 1]
    by_workload: dict[str, list[int]] = {}
    for k in selected:
        by_workload.setdefault(workload_key(points[k]), []).append(k)
    run_ids: dict[int, str] = {}
    for ks in by_workload.values():
        first = points[ks[0]]
        workload = build_workload(first.workload, first.seed)  # one at a time: only its digests are kept
        if on_generated is not None:
            on_generated(workload_key(first), workload)
        digests = workload.trace_digests()
        for k in ks:
            label = _label(exp, points[k])
            try:
                check_point(points[k], workload, params_for(points[k], workload.total_accesses()))
            except ConfigError as e:
                raise ConfigError(f"sweep point {k + 1} ({label}): {e}") from None
            run_ids[k] = run_id_for(points[k], digests)
        if on_workload is not None:
            on_workload(workload_key(first), workload, digests)
        del workload
    return [GridPoint(k, points[k], run_ids[k], _label(exp, points[k])) for k in selected]


# --------------------------------------------------------------------------------------------------
# one run (on a worker, or in this process)


class _RecentWorkloads(WorkloadCache):
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


_WORKER_CACHE = _RecentWorkloads()


# tokens of the sweeps in this process that were stopped (interrupted): their local workers' runs end at
# their next progress checkpoint instead of replaying to the end while the client waits for them
_STOPPED: set[str] = set()


class _Stopped(Exception):
    pass


# local sweeps' progress: sweep token -> run id -> fraction of the run replayed (at progress checkpoints)
_RUNNING: dict[str, dict[str, float]] = {}
_POLL_SECONDS = 0.5  # how often a local sweep's client reports its running runs' progress


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
    if _shard_complete(path, run_id):  # an earlier attempt of this task finished
        return {"run_id": run_id, "seconds": 0.0, "pid": os.getpid(), "skipped": True}
    if workload_file is not None and not _WORKER_CACHE.has(point):
        _WORKER_CACHE.put(workload_key(point), *load_workload(workload_file))
    workload, digests, params = prepare_point(point, _WORKER_CACHE)
    actual = run_id_for(point, digests)
    if actual != run_id:
        raise RuntimeError(
            f"run id {actual} on this worker, {run_id} on the client: do they run the same mshare-hw "
            "version with the same dependencies?"
        )

    running = _RUNNING.get(sweep_token) if sweep_token is not None else None

    def hook(_label: str, done: int, total: int) -> None:
        if sweep_token in _STOPPED:
            raise _Stopped(f"sweep {sweep_token} stopped")
        fraction = done / total if total else 1.0
        if on_fraction:
            on_fraction(fraction)
        if running is not None:
            running[run_id] = fraction

    watch = on_fraction is not None or sweep_token is not None
    run = run_point(point, workload, digests, params, run_id=run_id, on_progress=hook if watch else None)
    write_results(path, experiment, [run])
    return {"run_id": run_id, "seconds": time.perf_counter() - t0, "pid": os.getpid(), "skipped": False}


def _shard_complete(path: Path, run_id: str) -> bool:
    if not path.is_file():
        return False
    try:
        return summary_run_ids(path) == [run_id]
    except (OSError, MergeError, KeyError, ValueError):
        return False


def _remove_stale_temps(directory: Path, pattern: str) -> int:
    """Delete temporary results files (`.NAME.tmp.PID`) whose writer is no longer running here."""
    removed = 0
    if not directory.is_dir():
        return 0
    for p in directory.glob(pattern):
        try:
            pid = int(p.name.rsplit(".", 1)[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and _alive(pid):
            continue
        p.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host (a killed process nobody reaped yet does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust the signal test
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


# --------------------------------------------------------------------------------------------------
# the sweep


def sweep(
    exp: Experiment,
    out: str | Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
    keep_shards: bool = False,
    on_start: Callable[[SweepResult, int, str], None] | None = None,
    on_progress: ProgressHook | None = None,
) -> SweepResult:
    """Run the experiment's grid (or one `shard` of it) and write OUT. See the module docstring.
    `on_start(result, n_todo, where)` is called once the plan is known; `on_progress(done, n_todo)`
    as runs progress (ProgressHook). Raises SweepError (after merging the runs that finished) if any run
    failed."""
    temps: list[Path] = []  # workloads handed to local workers as files
    held: list[str] = []  # workloads held in memory for local workers (_WORKER_CACHE.hold)
    cluster: _BackgroundCluster | None = None
    try:
        if shard is None and not scheduler:
            # the cluster starts once the first workload is generated (one worker per CPU, at most one per
            # grid point: the runs to do are not known yet)
            cluster = _BackgroundCluster(_default_workers(workers, len(expand(exp))))
        return _sweep(exp, out, scheduler, cluster, shard, keep_shards, on_start, on_progress, temps, held)
    finally:
        _unlink_all(temps)
        _WORKER_CACHE.release(held)
        if cluster is not None:
            cluster.close()


def _unlink_all(paths: list[Path]) -> None:
    for p in paths:
        p.unlink(missing_ok=True)
    paths.clear()


def _sweep(
    exp: Experiment,
    out: str | Path,
    scheduler: str | None,
    cluster: _BackgroundCluster | None,
    shard: tuple[int, int] | None,
    keep_shards: bool,
    on_start: Callable[[SweepResult, int, str], None] | None,
    on_progress: ProgressHook | None,
    temps: list[Path],
    held: list[str],
) -> SweepResult:
    t0 = time.perf_counter()
    out = Path(out).absolute()
    shard_dir = shard_dir_for(out)
    local = cluster is not None
    _remove_stale_temps(out.parent, f".{out.name}.tmp.*")
    _remove_stale_temps(shard_dir, ".*.tmp.*")
    handoff: dict[str, str] = {}  # workload key -> its files for local workers
    saving: dict[str, Future] = {}  # workload key -> its traces being written (save_traces)
    to_hold: set[str] = set()  # workload keys to hold in memory for local workers
    room = [_HOLD_BYTES]  # what is left of the budget for held traces
    writer = ThreadPoolExecutor(1, thread_name_prefix="mshare-hw-handoff") if local else None

    def generated(key: str, workload: Workload) -> None:
        """A local cluster starts once the first workload is generated. Its workers are threads of this
        process, so a workload is handed to them in memory, unless its traces would take the held ones past
        the budget: then its traces are written to files (while its digests are computed) for the workers
        to map, and the memory is freed once the grid is resolved."""
        cluster.start()  # type: ignore[union-attr]
        size = _trace_bytes(workload)
        if size <= room[0]:
            room[0] -= size
            to_hold.add(key)
        elif can_hand_off(workload):
            saving[key] = writer.submit(save_traces, workload, shard_dir, key)  # type: ignore[union-attr]
        # else the workers generate it again

    def keep(key: str, workload: Workload, digests: list[str]) -> None:
        """Each workload the grid resolution generated: replayed from memory when this process runs the
        shard or its local workers do, else from memory-mapped files on local workers (instead of being
        generated again there)."""
        if shard is not None:
            _WORKER_CACHE.put(key, workload, digests)
        elif key in to_hold:
            _WORKER_CACHE.hold(key, workload, digests)
            held.append(key)
        elif key in saving:
            arrays, files = saving.pop(key).result()
            temps.extend(files)
            meta = save_meta(workload, digests, arrays, shard_dir, key)
            temps.append(meta)
            handoff[key] = str(meta)

    try:
        grid = resolve_points(exp, shard, keep, generated if local else None)
    finally:
        if writer is not None:
            writer.shutdown(wait=True)  # an error while resolving: let the writes end before their clean-up
            for fut in saving.values():
                if fut.exception() is None:
                    temps.extend(fut.result()[1])
    if cluster is not None:
        cluster.start()
    result = SweepResult(out=out, points=len(grid))

    in_out: set[str] = set()
    out_order: list[str] = []
    if out.exists():
        try:
            out_order = summary_run_ids(out, strict=False)
        except (OSError, MergeError) as e:
            raise ConfigError(
                f"{out}: exists and is not a readable mshare-hw results file ({e}); choose another output path"
            ) from None
        in_out = set(out_order)

    todo: list[GridPoint] = []
    planned: set[str] = set()
    for gp in grid:
        if gp.run_id in planned:  # the same configuration twice in the grid: one run
            continue
        planned.add(gp.run_id)
        if gp.run_id in in_out:
            result.in_out.append(gp.run_id)
        elif _shard_complete(shard_dir / f"{gp.run_id}.h5", gp.run_id):
            result.in_shards.append(gp.run_id)
        else:
            (shard_dir / f"{gp.run_id}.h5").unlink(missing_ok=True)  # unreadable leftovers
            todo.append(gp)

    if shard is not None:
        where = f"shard {shard[0]}/{shard[1]}, serially in this process"
    elif scheduler:
        where = f"Dask scheduler {scheduler}"
    else:
        n = cluster.n_workers  # type: ignore[union-attr]
        where = f"a local Dask cluster of {n} worker thread{'s' if n != 1 else ''}"
    if on_start:
        on_start(result, len(todo), where)

    if todo:
        if shard is not None:
            _run_serial(exp, todo, shard_dir, result, on_progress)
        else:
            _run_dask(exp, todo, shard_dir, result, scheduler, cluster, on_progress, handoff)
    _unlink_all(temps)

    # merge: the grid's runs in grid order, then the runs OUT held that are not in this grid
    failed_ids = {gp.run_id for gp in todo} - set(result.computed)
    picks: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for gp in grid:
        if gp.run_id in seen or gp.run_id in failed_ids:
            continue
        seen.add(gp.run_id)
        picks.append((out if gp.run_id in in_out else shard_dir / f"{gp.run_id}.h5", gp.run_id))
    picks += [(out, rid) for rid in out_order if rid not in seen]
    unchanged = [(out, rid) for rid in out_order] == picks  # nothing new, nothing dropped: keep OUT as it is
    if picks and not unchanged:
        write_merged(out, picks, exp.name)
    if not keep_shards:
        for src, _ in picks:
            if src != out:
                src.unlink(missing_ok=True)
        if shard_dir.is_dir() and not any(shard_dir.iterdir()):
            shard_dir.rmdir()
    result.seconds = time.perf_counter() - t0
    if result.failed:
        lines = "\n".join(f"  {label}: {err}" for label, err in result.failed)
        raise SweepError(
            f"{len(result.failed)} of {len(todo)} runs failed (the {len(picks)} finished runs are in {out}; "
            f"rerun the same command to retry only the failed ones):\n{lines}"
        )
    return result


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows): assume a small machine
        return 8 << 30


# A local sweep holds its generated workloads in memory for its workers up to a quarter of the machine's
# memory (the runs need the rest); the traces of any further workload go through files.
_HOLD_BYTES = _memory_bytes() // 4


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


# A local cluster's workers are threads of this process: the engine replays without the GIL, so they
# scale like processes (measured on this 2-core machine: 8 runs in 18.1-18.8 s on two threads against
# 37.6-40.0 s serially) and need no process start, no imports and no copies of the workloads. Its scheduler
# and workers run an event loop in this process too; Dask's defaults wake them for bookkeeping tens of
# times a second, which (with worker processes) took 6-8% of a task's wall time; with these settings, 1-2%.
_WORKER_CONFIG = {
    # the workers' statistical profiler samples the running tasks every 10 ms (taking the GIL)
    "distributed.worker.profile.enabled": False,
    # every server (scheduler, workers) times its event loop every 20 ms, only to warn when the loop was
    # blocked for over `tick.limit` (3 s): once a second still tells that
    "distributed.admin.tick.interval": "1s",
    # host metrics for the dashboard, every 500 ms in each server, disk counters included
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.admin.system-monitor.disk": False,
    # the scheduler queues tasks and hands one to a worker as it frees up, so there is nothing to steal
    "distributed.scheduler.work-stealing": False,
}


def _local_cluster(n_workers: int):
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set(_WORKER_CONFIG):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP routes on any free port
            memory_limit=0,  # a run needs what it needs: no pausing of workers
        )


_START_TIMEOUT = 120.0  # seconds a local cluster's start may take (it takes 1-2)


class _BackgroundCluster:
    """A LocalCluster started in a thread by `start()`, so that its start-up (Dask's imports, scheduler,
    workers) overlaps the client's own work; `get()` starts it if need be and waits until it is up (and raises
    what its start raised)."""

    def __init__(self, n_workers: int) -> None:
        self.n_workers = n_workers
        self._closed = False
        self._future = None

    def start(self) -> None:
        """Idempotent. The client calls it once its first workload is generated: starting the cluster
        alongside the generation, which keeps both cores busy, would slow both down."""
        if self._future is None:
            pool = ThreadPoolExecutor(1, thread_name_prefix="mshare-hw-cluster")
            self._future = pool.submit(_local_cluster, self.n_workers)
            pool.shutdown(wait=False)

    def get(self):
        self.start()
        return self._future.result()

    def close(self) -> None:
        """Stop the workers and the scheduler (waiting for a start still under way); idempotent."""
        if self._future is None:
            return
        try:
            cluster = self._future.result(timeout=_START_TIMEOUT)
        except TimeoutError:  # wedged (see _run_dask): the process is on its way out; do not hang it
            logging.getLogger("mshare_hw").warning("the local Dask cluster did not start; not waiting for it")
            return
        except Exception:  # it never started: nothing to close (the error reached the caller via get())
            return
        if not self._closed:
            self._closed = True
            # closed while tasks still run (an interrupted sweep), each worker warns that it cancelled one
            worker_log = logging.getLogger("distributed.worker")
            level = worker_log.level
            worker_log.setLevel(logging.ERROR)
            try:
                cluster.close()
            finally:
                worker_log.setLevel(level)


@contextmanager
def _sigint_noted() -> Iterator[threading.Event]:
    """An Event set by Ctrl-C (SIGINT), which still raises KeyboardInterrupt. Python drops an exception
    raised inside a garbage-collector callback, and Dask's scheduler and workers, in this process, install
    one: a Ctrl-C that lands there is lost (seen once in 30 tries), and the event tells the caller. Only in
    the main thread, and only over Python's own handler."""
    noted = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield noted
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is not signal.default_int_handler:
        yield noted
        return

    def note(signum, frame):
        noted.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


def _default_workers(workers: int | None, n_todo: int) -> int:
    if workers is not None:
        if workers < 1:
            raise ConfigError(f"--workers {workers}: need at least 1")
        return workers
    return max(1, min(os.cpu_count() or 1, n_todo))


def _run_serial(
    exp: Experiment, todo: list[GridPoint], shard_dir: Path, result: SweepResult, on_progress: ProgressHook | None
) -> None:
    for i, gp in enumerate(todo):

        def fraction(f: float, i: int = i) -> None:
            if on_progress:
                on_progress(i + min(f, 1.0), len(todo))

        try:
            done = run_task(gp.point.model_dump(), gp.run_id, str(shard_dir / f"{gp.run_id}.h5"), exp.name, fraction)
        except ConfigError as e:
            result.failed.append((gp.label, str(e)))
        else:
            result.run_seconds[gp.run_id] = done["seconds"]
            result.computed.append(gp.run_id)
        if on_progress:
            on_progress(i + 1, len(todo))


def _run_dask(
    exp: Experiment,
    todo: list[GridPoint],
    shard_dir: Path,
    result: SweepResult,
    scheduler: str | None,
    cluster: _BackgroundCluster | None,
    on_progress: ProgressHook | None,
    handoff: dict[str, str],
) -> None:
    import uuid

    token = uuid.uuid4().hex[:8]
    with ExitStack() as stack:
        if cluster is not None:
            stack.callback(_STOPPED.discard, token)  # callbacks run last in, first out
            stack.callback(cluster.close)  # after the client; waits for the running tasks
            # the cluster's thread imports Dask: this one imports it only once that is done. A Ctrl-C that
            # lands while two threads import the same modules can leave a module lock held for good
            # (CPython 3.11), and the cluster's thread waiting on it: seen here, 1 in ~10 tests
            local = cluster.get()
            from dask.distributed import Client

            client = stack.enter_context(Client(local))
        else:
            from dask.distributed import Client

            try:
                client = stack.enter_context(Client(scheduler, timeout="30s"))
            except (OSError, TimeoutError) as e:
                raise ConfigError(f"--scheduler {scheduler}: cannot connect ({e})") from None
        running: dict[str, float] = _RUNNING.setdefault(token, {})  # run id -> fraction replayed (local runs)
        stack.callback(_RUNNING.pop, token, None)
        finished: queue.Queue = queue.Queue()  # futures as they finish (their callbacks run in Dask's thread)
        point_of = {}
        # first in, first run: a worker's next task mostly replays the workload it holds (_WORKER_CACHE)
        for gp in sorted(todo, key=lambda gp: workload_key(gp.point)):
            fut = client.submit(
                run_task,
                gp.point.model_dump(),
                gp.run_id,
                str(shard_dir / f"{gp.run_id}.h5"),
                exp.name,
                workload_file=handoff.get(workload_key(gp.point)),
                sweep_token=token if cluster is not None else None,
                key=f"mshare-hw-run-{gp.run_id}-{token}",
                retries=0 if cluster is not None else 1,  # a remote worker may die; a local one fails for good
            )
            point_of[fut.key] = gp
            fut.add_done_callback(finished.put)
        interrupted = stack.enter_context(_sigint_noted())
        try:
            for done in range(1, len(todo) + 1):
                while True:
                    try:
                        fut = finished.get(timeout=_POLL_SECONDS)
                        break
                    except queue.Empty:  # meanwhile: a Ctrl-C that a library swallowed, local runs' progress
                        if interrupted.is_set():
                            raise KeyboardInterrupt from None
                        if on_progress and running:
                            on_progress(done - 1 + sum(running.values()), len(todo))
                gp = point_of[fut.key]
                if fut.status == "error":
                    exc = fut.exception()
                    result.failed.append((gp.label, f"{type(exc).__name__}: {exc}"))
                else:
                    result.run_seconds[gp.run_id] = fut.result()["seconds"]
                    result.computed.append(gp.run_id)
                fut.release()
                running.pop(gp.run_id, None)
                if on_progress:
                    on_progress(done + sum(running.values()), len(todo))
        except BaseException:  # interrupted (Ctrl-C): local workers' runs stop at their next progress checkpoint
            _STOPPED.add(token)
            raise
    # computed in grid order, whatever the completion order
    order = {gp.run_id: gp.index for gp in todo}
    result.computed.sort(key=order.__getitem__)
