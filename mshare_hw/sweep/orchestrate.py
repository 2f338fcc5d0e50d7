"""The sweep: plan it, hand the generated workloads to its executor, run what is missing, merge."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from mshare_hw.config.experiment import Experiment, expand
from mshare_hw.fileio import remove_stale_temps
from mshare_hw.sweep.cluster import BackgroundCluster, default_workers
from mshare_hw.sweep.executors import SweepProgressHook, run_dask, run_serial
from mshare_hw.sweep.local_workloads import Handoff, LocalHandoff, SerialHandoff
from mshare_hw.sweep.plan import SweepError, SweepResult, plan_runs, resolve_points
from mshare_hw.sweep.shards import merge_shards, remove_shards, shard_dir_for


def sweep(
    exp: Experiment,
    out: str | Path,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    shard: tuple[int, int] | None = None,
    keep_shards: bool = False,
    on_start: Callable[[SweepResult, int, str], None] | None = None,
    on_progress: SweepProgressHook | None = None,
) -> SweepResult:
    """Run the experiment's grid (or one `shard` of it) and write OUT. See the package docstring.
    `on_start(result, n_todo, where)` is called once the plan is known; `on_progress(done, n_todo)`
    as runs progress (SweepProgressHook). Raises SweepError (after merging the runs that finished) if any run
    failed."""
    out = Path(out).absolute()
    shard_dir = shard_dir_for(out)
    cluster: BackgroundCluster | None = None
    handoff: Handoff
    if shard is not None:
        handoff = SerialHandoff()
    elif scheduler:
        handoff = Handoff()
    else:
        # the cluster starts once the first workload is generated (one worker per CPU, at most one per
        # grid point: the runs to do are not known yet)
        cluster = BackgroundCluster(default_workers(workers, len(expand(exp))))
        handoff = LocalHandoff(shard_dir, cluster.start)
    try:
        return _sweep(exp, out, shard_dir, scheduler, cluster, shard, keep_shards, on_start, on_progress, handoff)
    finally:
        handoff.close()
        if cluster is not None:
            cluster.close()


def _where(shard: tuple[int, int] | None, scheduler: str | None, cluster: BackgroundCluster | None) -> str:
    if shard is not None:
        return f"shard {shard[0]}/{shard[1]}, serially in this process"
    if scheduler:
        return f"Dask scheduler {scheduler}"
    n = cluster.n_workers  # type: ignore[union-attr]
    return f"a local Dask cluster of {n} worker thread{'s' if n != 1 else ''}"


def _sweep(
    exp: Experiment,
    out: Path,
    shard_dir: Path,
    scheduler: str | None,
    cluster: BackgroundCluster | None,
    shard: tuple[int, int] | None,
    keep_shards: bool,
    on_start: Callable[[SweepResult, int, str], None] | None,
    on_progress: SweepProgressHook | None,
    handoff: Handoff,
) -> SweepResult:
    t0 = time.perf_counter()
    remove_stale_temps(out.parent, out.name)
    remove_stale_temps(shard_dir)
    try:
        grid = resolve_points(exp, shard, handoff.keep, handoff.generated)
    finally:
        handoff.finish_saving()  # an error while resolving: let the writes end before their clean-up
    if cluster is not None:
        cluster.start()
    result = SweepResult(out=out, points=len(grid))
    plan = plan_runs(grid, out, shard_dir, result)
    todo = plan.todo
    if on_start:
        on_start(result, len(todo), _where(shard, scheduler, cluster))

    if todo:
        if shard is not None:
            run_serial(exp, todo, shard_dir, result, on_progress)
        else:
            run_dask(exp, todo, shard_dir, result, scheduler, cluster, on_progress, handoff.files)
    handoff.close()

    failed_ids = {gp.run_id for gp in todo} - set(result.computed)
    grid_ids = [gp.run_id for gp in grid if gp.run_id not in failed_ids]
    picks = merge_shards(out, shard_dir, grid_ids, plan.out_order, exp.name)
    if not keep_shards:
        remove_shards(out, shard_dir, picks)
    result.seconds = time.perf_counter() - t0
    if result.failed:
        lines = "\n".join(f"  {label}: {err}" for label, err in result.failed)
        raise SweepError(
            f"{len(result.failed)} of {len(todo)} runs failed (the {len(picks)} finished runs are in {out}; "
            f"rerun the same command to retry only the failed ones):\n{lines}"
        )
    return result
