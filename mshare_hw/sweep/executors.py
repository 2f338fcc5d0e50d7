"""Executors of a sweep's runs: serially in this process (`--shard`), or as Dask tasks on a local cluster
(worker threads of this process) or an existing scheduler's workers."""

from __future__ import annotations

import queue
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import Experiment
from mshare_hw.runner import workload_key
from mshare_hw.sweep import worker
from mshare_hw.sweep.cluster import BackgroundCluster, sigint_noted
from mshare_hw.sweep.plan import GridPoint, SweepResult
from mshare_hw.sweep.shards import shard_path

# (runs done: the finished ones plus the replayed fraction of those running, where known; runs to do)
SweepProgressHook = Callable[[float, int], None]
POLL_SECONDS = 0.5  # how often a local sweep's client reports its running runs' progress


def run_serial(
    exp: Experiment, todo: list[GridPoint], shard_dir: Path, result: SweepResult, on_progress: SweepProgressHook | None
) -> None:
    for i, gp in enumerate(todo):

        def fraction(f: float, i: int = i) -> None:
            if on_progress:
                on_progress(i + min(f, 1.0), len(todo))

        try:
            path = str(shard_path(shard_dir, gp.run_id))
            done = worker.run_task(gp.point.model_dump(), gp.run_id, path, exp.name, fraction)
        except ConfigError as e:
            result.failed.append((gp.label, str(e)))
        else:
            result.run_seconds[gp.run_id] = done["seconds"]
            result.computed.append(gp.run_id)
        if on_progress:
            on_progress(i + 1, len(todo))


def run_dask(
    exp: Experiment,
    todo: list[GridPoint],
    shard_dir: Path,
    result: SweepResult,
    scheduler: str | None,
    cluster: BackgroundCluster | None,
    on_progress: SweepProgressHook | None,
    workload_files: dict[str, str],
) -> None:
    import uuid

    token = uuid.uuid4().hex[:8]
    with ExitStack() as stack:
        if cluster is not None:
            stack.callback(worker.STOPPED.discard, token)  # callbacks run last in, first out
            stack.callback(cluster.close)  # after the client; waits for the running tasks
            # the cluster's thread imports Dask: this one imports it only once that is done. A Ctrl-C that
            # lands while two threads import the same modules can leave a module lock held for good
            # (CPython 3.11), and the cluster's thread waiting on it forever
            local = cluster.get()
            from dask.distributed import Client

            client = stack.enter_context(Client(local))
        else:
            from dask.distributed import Client

            try:
                client = stack.enter_context(Client(scheduler, timeout="30s"))
            except (OSError, TimeoutError) as e:
                raise ConfigError(f"--scheduler {scheduler}: cannot connect ({e})") from None
        running: dict[str, float] = worker.RUNNING.setdefault(token, {})  # run id -> fraction replayed (local runs)
        stack.callback(worker.RUNNING.pop, token, None)
        finished: queue.Queue = queue.Queue()  # futures as they finish (their callbacks run in Dask's thread)
        point_of = {}
        # first in, first run: a worker's next task mostly replays the workload it holds (its WORKER_CACHE)
        for gp in sorted(todo, key=lambda gp: workload_key(gp.point)):
            fut = client.submit(
                worker.run_task,
                gp.point.model_dump(),
                gp.run_id,
                str(shard_path(shard_dir, gp.run_id)),
                exp.name,
                workload_file=workload_files.get(workload_key(gp.point)),
                sweep_token=token if cluster is not None else None,
                key=f"mshare-hw-run-{gp.run_id}-{token}",
                retries=0 if cluster is not None else 1,  # a remote worker may die; a local one fails for good
            )
            point_of[fut.key] = gp
            fut.add_done_callback(finished.put)
        interrupted = stack.enter_context(sigint_noted())
        try:
            for done in range(1, len(todo) + 1):
                while True:
                    try:
                        fut = finished.get(timeout=POLL_SECONDS)
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
            worker.STOPPED.add(token)
            raise
    # computed in grid order, whatever the completion order
    order = {gp.run_id: gp.index for gp in todo}
    result.computed.sort(key=order.__getitem__)
