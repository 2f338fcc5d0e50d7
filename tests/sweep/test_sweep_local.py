"""A local sweep (a Dask LocalCluster of worker threads) and a sweep on an existing scheduler: equal to the
serial run, resumable from OUT, keeping failed runs apart, handing the client's workloads to the workers."""

from __future__ import annotations

from pathlib import Path

import pytest

import mshare_hw.runner as runner_mod
from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import expand, load_experiment
from mshare_hw.results.hdf5 import load_summary
from mshare_hw.sweep import SweepError, executors, local_workloads, plan, resolve_points, shard_dir_for, sweep, worker

N_POINTS = 12  # the grid fixture's


def test_dask_sweep_equals_serial_run(grid: Path, serial: Path, swept, same_results, no_temp_files):
    out, log = swept
    assert f"{N_POINTS} points; 0 already in" in log and "0 in finished shards" in log, log
    assert f"{N_POINTS} to run on a local Dask cluster of 2 worker threads" in log, log
    assert f"computed {N_POINTS} runs" in log, log
    same_results(serial, out)  # same rows in the same (grid) order, same per-run data
    ids = [gp.run_id for gp in resolve_points(load_experiment(grid))]
    assert list(load_summary(out)["run_id"]) == ids
    assert not shard_dir_for(out).exists()  # shards are merged, then removed
    assert no_temp_files(out.parent)


def test_sweep_of_a_finished_file_computes_nothing(grid: Path, swept, tmp_path: Path, same_results):
    out, _ = swept
    copy = tmp_path / "again.h5"
    copy.write_bytes(out.read_bytes())
    res = sweep(load_experiment(grid), copy, workers=2)
    assert res.computed == [] and len(res.in_out) == N_POINTS
    same_results(out, copy)


def test_sweep_keeps_other_runs_of_the_output_after_the_grid(grid: Path, swept, tmp_path: Path):
    """A sweep over part of the grid into a file that holds all of it: the swept points first (grid
    order), then the file's other runs, nothing recomputed."""
    out, _ = swept
    copy = tmp_path / "more.h5"
    copy.write_bytes(out.read_bytes())
    exp = load_experiment(grid, ["sweep.uarch=['zen3']"])
    res = sweep(exp, copy, workers=1)
    assert res.computed == [] and len(res.in_out) == 6
    ids = list(load_summary(copy)["run_id"])
    full = list(load_summary(out)["run_id"])
    assert ids == full[6:] + full[:6]


def test_failed_run_keeps_the_others_and_a_rerun_retries_only_it(
    grid: Path, swept, tmp_path: Path, monkeypatch, same_results
):
    real = worker.run_point
    exp = load_experiment(grid)
    victim = resolve_points(exp)[5]

    def flaky(point, *args, **kwargs):
        if kwargs.get("run_id") == victim.run_id:
            raise ConfigError("simulated failure")
        return real(point, *args, **kwargs)

    monkeypatch.setattr(worker, "run_point", flaky)  # the local cluster's workers are threads of this process
    out = tmp_path / "flaky.h5"
    with pytest.raises(SweepError, match="1 of 12 runs failed") as e:
        sweep(exp, out, workers=2)
    assert victim.label in str(e.value) and "simulated failure" in str(e.value)
    ids = list(load_summary(out)["run_id"])
    assert len(ids) == N_POINTS - 1 and victim.run_id not in ids

    monkeypatch.setattr(worker, "run_point", real)
    res = sweep(exp, out, shard=(1, 1))
    assert res.computed == [victim.run_id] and len(res.in_out) == N_POINTS - 1
    same_results(swept[0], out)


@pytest.mark.parametrize("budget", ["all", "none"])
def test_local_workers_replay_the_workloads_the_client_generated(
    grid: Path, swept, tmp_path: Path, monkeypatch, budget: str, count_calls, same_results, no_temp_files
):
    """A local sweep's workers (threads of the client) take each workload the grid check built: held in
    memory whatever the budget, since a generator's traces are drawn while they are read (no trace arrays
    to hand over through files); none is built again, the results are those of the subprocess sweep, and
    nothing is left held or on disk."""
    count_calls(plan, "build_workload", "check")
    count_calls(runner_mod, "build_workload", "runs")
    count_calls(local_workloads, "save_traces", "saved")
    monkeypatch.setattr(local_workloads, "HOLD_BYTES", 1 << 40 if budget == "all" else 0)
    out = tmp_path / "local.h5"
    res = sweep(load_experiment(grid), out, workers=2)
    assert len(res.computed) == N_POINTS
    n_workloads = len({runner_mod.workload_key(p) for p in expand(load_experiment(grid))})
    assert count_calls.calls == {"check": n_workloads, "runs": 0, "saved": 0}
    assert not worker.WORKER_CACHE._held
    same_results(swept[0], out)
    assert no_temp_files(out.parent) and not shard_dir_for(out).exists()


def test_worker_cache_keeps_held_workloads_until_released(grid: Path, monkeypatch):
    generated: list[str] = []
    monkeypatch.setattr(worker, "generate_workload", lambda point: generated.append("x") or ("w", ["d"]))
    a, b = (expand(load_experiment(grid, [f"seed={seed}", "sweep.uarch=['zen3']"]))[0] for seed in (11, 12))
    cache = worker.RecentWorkloads(size=1)
    held = ("held", ["digest"])
    cache.hold(runner_mod.workload_key(a), *held)
    for k in range(3):  # recent workloads come and go; the held one stays
        cache.put(f"other{k}", "w", ["d"])
    assert cache.has(a) and cache.get(a) == held and not generated
    assert not cache.has(b)
    cache.get(b)
    assert generated == ["x"] and cache.has(b)
    cache.release([runner_mod.workload_key(a)])
    assert not cache.has(a)
    cache.get(a)
    assert generated == ["x", "x"]


def test_local_sweep_reports_the_progress_of_running_runs(grid: Path, tmp_path: Path, monkeypatch):
    """Runs on local workers report their progress at their checkpoints (every 2^22 accesses), so the
    progress moves between finished runs: an hour-long run does not leave the bar at 0."""
    monkeypatch.setattr(executors, "POLL_SECONDS", 0.01)
    # 2 runs of 10M accesses: two checkpoints in each before its end
    two = ["workload.params.accesses_per_process=5_000_000", "sweep.uarch=['zen3']", "sweep.pt_config=['mshare']"]
    exp = load_experiment(grid, [*two, "sweep.machine.n_cpus=[1, 2]"])
    seen: list[float] = []
    res = sweep(exp, tmp_path / "progress.h5", workers=2, on_progress=lambda done, n: seen.append(done))
    assert len(res.computed) == 2
    assert seen == sorted(seen) and seen[-1] == 2  # never backwards, and complete at the end
    assert any(0 < d < 2 and d != int(d) for d in seen), seen  # a running run's fraction showed
    assert not worker.RUNNING


def test_sweep_on_an_existing_scheduler_equals_the_local_one(
    grid: Path, swept, tmp_path: Path, same_results, no_temp_files
):
    """`--scheduler`: the runs go to a cluster's worker processes, which generate their workloads themselves
    (nothing is handed over) and write the shards the client merges."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = tmp_path / "remote.h5"
        res = sweep(load_experiment(grid), out, scheduler=cluster.scheduler_address)
    assert len(res.computed) == N_POINTS and not res.failed
    same_results(swept[0], out)
    assert no_temp_files(out.parent) and not shard_dir_for(out).exists()
