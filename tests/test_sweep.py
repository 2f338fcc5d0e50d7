"""Sweeps: Dask (LocalCluster) vs serial, resume after SIGKILL, --shard + merge, validate."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from mshare_hw.cli import main
from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import load_experiment
from mshare_hw.results.hdf5 import load_summary
from mshare_hw.runner import run_experiment
from mshare_hw.sweep import SweepError, parse_shard, resolve_points, shard_dir_for, sweep

# 2 uarchs x 2 page-table configurations x 3 CPU counts = 12 runs of a small database workload
GRID = """\
name = "grid12"
seed = 3

[machine]
n_cpus = 2

[workload]
generator = "database"

[workload.params]
n_processes = 2
accesses_per_process = 60_000
pool_bytes = "16MiB"
private_bytes = "1MiB"
text_bytes = "256KiB"

[sweep]
uarch = ["skylake_sp", "zen3"]
pt_config = ["private", "mshare"]
"machine.n_cpus" = [1, 2, 4]
"""
N_POINTS = 12


def same_files(a: Path, b: Path, *, ordered: bool = True) -> None:
    """Equal summaries (every column) and equal run groups (attributes and datasets)."""
    sa, sb = load_summary(a), load_summary(b)
    if not ordered:
        sa = sa.sort_values("run_id").reset_index(drop=True)
        sb = sb.sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(sa, sb)
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert fa.attrs["format"] == fb.attrs["format"]
        assert fa.attrs["format_version"] == fb.attrs["format_version"]
        assert sorted(fa["runs"]) == sorted(fb["runs"])
        for rid in fa["runs"]:
            ga, gb = fa["runs"][rid], fb["runs"][rid]
            assert dict(ga.attrs) == dict(gb.attrs), rid
            assert sorted(ga) == sorted(gb), rid
            for name in ga:
                np.testing.assert_array_equal(ga[name][()], gb[name][()], err_msg=f"{rid}/{name}")


def no_temp_files(*dirs: Path) -> bool:
    return not any(p.name.startswith(".") and ".tmp." in p.name for d in dirs if d.is_dir() for p in d.iterdir())


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("grid") / "grid12.toml"
    p.write_text(GRID)
    return p


@pytest.fixture(scope="module")
def serial(grid: Path) -> Path:
    out = grid.parent / "serial.h5"
    run_experiment(load_experiment(grid), out)
    return out


@pytest.fixture(scope="module")
def swept(grid: Path) -> tuple[Path, str]:
    """The uninterrupted sweep on a LocalCluster of 2 worker threads (`mshare-hw sweep` in a subprocess,
    so that a cluster that cannot start fails the test instead of hanging it)."""
    out = grid.parent / "swept.h5"
    cmd = _sweep_cmd(grid, out)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=grid.parent, env=_sub_env())
    assert done.returncode == 0, done.stderr
    return out, done.stderr


# --------------------------------------------------------------------------------------------------


def test_dask_sweep_equals_serial_run(grid: Path, serial: Path, swept):
    out, log = swept
    assert f"{N_POINTS} points; 0 already in" in log and "0 in finished shards" in log, log
    assert f"{N_POINTS} to run on a local Dask cluster of 2 worker threads" in log, log
    assert f"computed {N_POINTS} runs" in log, log
    same_files(serial, out)  # same rows in the same (grid) order, same per-run data
    ids = [gp.run_id for gp in resolve_points(load_experiment(grid))]
    assert list(load_summary(out)["run_id"]) == ids
    assert not shard_dir_for(out).exists()  # shards are merged, then removed
    assert no_temp_files(out.parent)


def test_sweep_of_a_finished_file_computes_nothing(grid: Path, swept, tmp_path: Path):
    out, _ = swept
    copy = tmp_path / "again.h5"
    copy.write_bytes(out.read_bytes())
    res = sweep(load_experiment(grid), copy, workers=2)
    assert res.computed == [] and len(res.in_out) == N_POINTS
    same_files(out, copy)


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


def _sweep_cmd(grid: Path, out: Path, *extra: str) -> list[str]:
    """`python -m mshare_hw` is the `mshare-hw` command."""
    return [sys.executable, "-m", "mshare_hw", "sweep", str(grid), "-o", str(out), "--workers", "2", *extra]


def _sub_env() -> dict[str, str]:
    """The subprocess imports the mshare_hw this test imported (installed, or a source tree built in place)."""
    import mshare_hw

    return {**os.environ, "PYTHONPATH": str(Path(mshare_hw.__file__).resolve().parents[1])}


# 25x longer runs (~0.2-0.5 s each, 2-3 s a sweep): a kill or Ctrl-C lands mid-sweep even on a busy machine
LONGER = "workload.params.accesses_per_process=1_500_000"


@pytest.fixture(scope="module")
def longer_swept(grid: Path) -> Path:
    out = grid.parent / "longer.h5"
    sweep(load_experiment(grid, [LONGER]), out, workers=2)
    return out


def test_sigkilled_sweep_resumes_with_only_the_missing_runs(grid: Path, longer_swept: Path, tmp_path: Path):
    out = tmp_path / "killed.h5"
    shards = shard_dir_for(out)
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(
        _sweep_cmd(grid, out, "--set", LONGER),
        stdout=log,
        stderr=log,
        start_new_session=True,
        cwd=tmp_path,
        env=_sub_env(),
    )
    done: list[Path] = []
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            done = [p for p in shards.glob("*.h5") if not p.name.startswith(".")] if shards.is_dir() else []
            if len(done) >= 2:
                break
            time.sleep(0.002)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client and its in-process cluster
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL, (tmp_path / "first.log").read_text()
    assert not out.exists()  # killed before the merge
    complete = {p.stem: p.stat().st_mtime_ns for p in shards.glob("*.h5") if not p.name.startswith(".")}
    assert 2 <= len(complete) < N_POINTS

    cmd = _sweep_cmd(grid, out, "--keep-shards", "--set", LONGER)
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=_sub_env())
    assert rerun.returncode == 0, rerun.stderr
    m = re.search(r"(\d+) in finished shards; (\d+) to run", rerun.stderr)
    assert m, rerun.stderr
    assert int(m.group(1)) == len(complete)
    assert int(m.group(2)) == N_POINTS - len(complete)
    assert re.search(rf"computed {N_POINTS - len(complete)} runs", rerun.stderr), rerun.stderr
    assert "━" not in rerun.stderr  # stderr is not a terminal: status lines, no progress bar
    assert "Nanny" not in rerun.stderr and "Scheduler" not in rerun.stderr  # no Dask INFO chatter
    # the shards that survived the kill were used as they were, not recomputed
    for rid, mtime in complete.items():
        assert (shards / f"{rid}.h5").stat().st_mtime_ns == mtime
    assert len(list(shards.glob("*.h5"))) == N_POINTS
    assert no_temp_files(shards, out.parent)  # the killed processes' temporary files are gone
    same_files(longer_swept, out)


def test_shards_then_merge_equal_the_full_sweep(grid: Path, swept, tmp_path: Path):
    parts = [tmp_path / f"part{i}.h5" for i in (1, 2, 3)]
    for i, part in enumerate(parts, 1):
        assert main(["sweep", str(grid), "-o", str(part), "--shard", f"{i}/3", "-q"]) == 0
    ids = list(load_summary(swept[0])["run_id"])
    for i, part in enumerate(parts):
        assert list(load_summary(part)["run_id"]) == ids[i::3]  # points k with k % 3 == i - 1
    merged = tmp_path / "merged.h5"
    assert main(["merge", str(merged), *map(str, parts), "-q"]) == 0
    assert list(load_summary(merged)["run_id"]) == ids[0::3] + ids[1::3] + ids[2::3]  # inputs in order given
    same_files(swept[0], merged, ordered=False)
    # merging the merged file with a part again keeps every run once
    again = tmp_path / "again.h5"
    assert main(["merge", str(again), str(parts[1]), str(merged), "-q"]) == 0
    assert list(load_summary(again)["run_id"]) == ids[1::3] + ids[0::3] + ids[2::3]
    same_files(swept[0], again, ordered=False)


def test_merge_refuses_disagreeing_duplicates_and_non_results(swept, tmp_path: Path, capsys):
    out, _ = swept
    bad = tmp_path / "bad.h5"
    bad.write_bytes(out.read_bytes())
    with h5py.File(bad, "r+") as f:
        table = f["summary"][()]
        table["cycles"][0] += 1
        f["summary"][...] = table
    assert main(["merge", str(tmp_path / "m.h5"), str(out), str(bad)]) == 2
    assert "differs" in capsys.readouterr().err
    junk = tmp_path / "junk.h5"
    with h5py.File(junk, "w") as f:
        f["x"] = 1
    assert main(["merge", str(tmp_path / "m.h5"), str(junk)]) == 2
    assert "not an mshare-hw results file" in capsys.readouterr().err
    assert not (tmp_path / "m.h5").exists()


# --------------------------------------------------------------------------------------------------
# validate, --shard parsing


def test_validate_ok_counts_points(grid: Path, capsys):
    assert main(["validate", str(grid)]) == 0
    assert f"{N_POINTS} points" in capsys.readouterr().out
    assert main(["validate", str(grid), "--set", "sweep.uarch=['zen3']"]) == 0
    assert "6 points" in capsys.readouterr().out


@pytest.mark.parametrize(
    "override, message",
    [
        (["events.enabled=true", "events.region='nowhere'"], "no region 'nowhere'"),
        (["workload.params.bogus=1"], "workload.params.bogus"),
        (["sweep.machine.n_cpus=[1, 0]"], "n_cpus"),
    ],
)
def test_validate_reports_bad_points(grid: Path, override: list[str], message: str, capsys):
    args = ["validate", str(grid)]
    for o in override:
        args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err


def test_validate_experiment_with_missing_events_file(grid: Path, tmp_path: Path, capsys):
    assert main(["validate", str(grid), "--set", "events.enabled=true", "--set", "events.file='nope.csv'"]) == 2
    assert "nope.csv" in capsys.readouterr().err


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "x/2", "1", "1/2/3"])
def test_parse_shard_rejects(text: str):
    with pytest.raises(ConfigError):
        parse_shard(text)


def test_parse_shard():
    assert parse_shard("2/3") == (2, 3) and parse_shard("1/1") == (1, 1)


def test_sweep_rejects_output_that_is_not_results(grid: Path, tmp_path: Path, capsys):
    out = tmp_path / "x.h5"
    out.write_text("not hdf5")
    assert main(["sweep", str(grid), "-o", str(out), "--shard", "1/12", "-q"]) == 2
    assert "not a readable mshare-hw results file" in capsys.readouterr().err
    assert json.dumps(out.read_text()) == json.dumps("not hdf5")


def test_failed_run_keeps_the_others_and_a_rerun_retries_only_it(grid: Path, swept, tmp_path: Path, monkeypatch):
    import mshare_hw.sweep as sweep_mod

    real = sweep_mod.run_point
    exp = load_experiment(grid)
    victim = resolve_points(exp)[5]

    def flaky(point, *args, **kwargs):
        if kwargs.get("run_id") == victim.run_id:
            raise ConfigError("simulated failure")
        return real(point, *args, **kwargs)

    monkeypatch.setattr(sweep_mod, "run_point", flaky)  # the local cluster's workers are threads of this process
    out = tmp_path / "flaky.h5"
    with pytest.raises(SweepError, match="1 of 12 runs failed") as e:
        sweep(exp, out, workers=2)
    assert victim.label in str(e.value) and "simulated failure" in str(e.value)
    ids = list(load_summary(out)["run_id"])
    assert len(ids) == N_POINTS - 1 and victim.run_id not in ids

    monkeypatch.setattr(sweep_mod, "run_point", real)
    res = sweep(exp, out, shard=(1, 1))
    assert res.computed == [victim.run_id] and len(res.in_out) == N_POINTS - 1
    same_files(swept[0], out)


def test_serial_shard_replays_the_workload_generated_to_name_its_traces(grid: Path, tmp_path: Path, monkeypatch):
    """The grid check generates each workload once (for its digests); the serial runs reuse it."""
    import mshare_hw.runner as runner_mod
    import mshare_hw.sweep as sweep_mod

    calls = {"check": 0, "runs": 0}

    def counting(where: str, real):
        def build(*args, **kwargs):
            calls[where] += 1
            return real(*args, **kwargs)

        return build

    monkeypatch.setattr(sweep_mod, "build_workload", counting("check", sweep_mod.build_workload))
    monkeypatch.setattr(runner_mod, "build_workload", counting("runs", runner_mod.build_workload))
    exp = load_experiment(grid, ["seed=987654", "sweep.uarch=['zen3']"])  # a workload no other test built
    res = sweep(exp, tmp_path / "one.h5", shard=(1, 1))
    assert len(res.computed) == 6
    assert calls == {"check": 1, "runs": 0}


@pytest.mark.parametrize("budget", ["all", "none"])
def test_local_workers_replay_the_workloads_the_client_generated(
    grid: Path, swept, tmp_path: Path, monkeypatch, budget: str
):
    """A local sweep's workers (threads of the client) take each workload the grid check generated: held in
    memory, or past the memory budget through memory-mapped files; either way none is generated again, the
    results are those of the subprocess sweep, and nothing is left held or on disk."""
    import mshare_hw.runner as runner_mod
    import mshare_hw.sweep as sweep_mod
    from mshare_hw.config.experiment import expand
    from mshare_hw.workload import handoff

    calls = {"check": 0, "runs": 0, "saved": 0}

    def counting(where: str, real):
        def wrapped(*args, **kwargs):
            calls[where] += 1
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(sweep_mod, "build_workload", counting("check", sweep_mod.build_workload))
    monkeypatch.setattr(runner_mod, "build_workload", counting("runs", runner_mod.build_workload))
    monkeypatch.setattr(sweep_mod, "save_traces", counting("saved", handoff.save_traces))
    monkeypatch.setattr(sweep_mod, "_HOLD_BYTES", 1 << 40 if budget == "all" else 0)
    out = tmp_path / "local.h5"
    res = sweep(load_experiment(grid), out, workers=2)
    assert len(res.computed) == N_POINTS
    n_workloads = len({sweep_mod.workload_key(p) for p in expand(load_experiment(grid))})
    assert calls == {"check": n_workloads, "runs": 0, "saved": 0 if budget == "all" else n_workloads}
    assert not sweep_mod._WORKER_CACHE._held
    same_files(swept[0], out)
    assert no_temp_files(out.parent) and not shard_dir_for(out).exists()


def test_worker_cache_keeps_held_workloads_until_released(grid: Path, monkeypatch):
    import mshare_hw.sweep as sweep_mod
    from mshare_hw.config.experiment import expand

    generated: list[str] = []
    monkeypatch.setattr(sweep_mod, "generate_workload", lambda point: generated.append("x") or ("w", ["d"]))
    a, b = (p for p in expand(load_experiment(grid, ["seed=11", "sweep.uarch=['zen3']"]))[:1] +
            expand(load_experiment(grid, ["seed=12", "sweep.uarch=['zen3']"]))[:1])  # fmt: skip
    cache = sweep_mod._RecentWorkloads(size=1)
    held = ("held", ["digest"])
    cache.hold(sweep_mod.workload_key(a), *held)
    for k in range(3):  # recent workloads come and go; the held one stays
        cache.put(f"other{k}", "w", ["d"])
    assert cache.has(a) and cache.get(a) == held and not generated
    assert not cache.has(b)
    cache.get(b)
    assert generated == ["x"] and cache.has(b)
    cache.release([sweep_mod.workload_key(a)])
    assert not cache.has(a)
    cache.get(a)
    assert generated == ["x", "x"]


def test_a_stopped_sweeps_local_run_ends_at_its_next_checkpoint(grid: Path, tmp_path: Path, monkeypatch):
    """Ctrl-C on a local sweep: the client marks the sweep stopped, and its workers' runs (threads that
    cannot be killed) end at their next progress checkpoint, writing nothing, instead of replaying on."""
    import mshare_hw.sweep as sweep_mod

    # enough accesses for a progress checkpoint before the end (every 2^22)
    gp = resolve_points(load_experiment(grid, ["workload.params.accesses_per_process=2_500_000"]))[0]
    checkpoints: list[int] = []
    real = sweep_mod.run_point

    def watched(*args, on_progress=None, **kwargs):
        def hook(label: str, done: int, total: int) -> None:
            checkpoints.append(done)
            on_progress(label, done, total)

        return real(*args, on_progress=hook, **kwargs)

    monkeypatch.setattr(sweep_mod, "run_point", watched)
    monkeypatch.setattr(sweep_mod, "_STOPPED", {"tok"})
    shard = tmp_path / "s.h5"
    with pytest.raises(sweep_mod._Stopped):
        sweep_mod.run_task(gp.point.model_dump(), gp.run_id, str(shard), "grid12", sweep_token="tok")
    total = 2_500_000 * gp.point.workload.params["n_processes"]
    assert len(checkpoints) == 1 and checkpoints[0] < total
    assert not shard.exists() and no_temp_files(tmp_path)
    res = sweep_mod.run_task(gp.point.model_dump(), gp.run_id, str(shard), "grid12", sweep_token="other")
    assert not res["skipped"] and shard.exists()


def test_interrupted_local_sweep_exits_and_resumes(grid: Path, longer_swept: Path, tmp_path: Path):
    out = tmp_path / "int.h5"
    proc = subprocess.Popen(_sweep_cmd(grid, out, "--set", LONGER), stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=_sub_env(),
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.monotonic() + 120
    while "to run on" not in (proc.stderr.readline() or "to run on") and time.monotonic() < deadline:
        pass
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130 and "interrupted" in err, err
    assert "Traceback" not in err and "CancelledError" not in err, err
    assert not out.exists() and no_temp_files(tmp_path, shard_dir_for(out))
    assert main(["sweep", str(grid), "-o", str(out), "--workers", "2", "-q", "--set", LONGER]) == 0
    same_files(longer_swept, out)


def test_sweep_on_an_existing_scheduler_equals_the_local_one(grid: Path, swept, tmp_path: Path):
    """`--scheduler`: the runs go to a cluster's worker processes, which generate their workloads themselves
    (nothing is handed over) and write the shards the client merges."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        out = tmp_path / "remote.h5"
        res = sweep(load_experiment(grid), out, scheduler=cluster.scheduler_address)
    assert len(res.computed) == N_POINTS and not res.failed
    same_files(swept[0], out)
    assert no_temp_files(out.parent) and not shard_dir_for(out).exists()


def test_local_sweep_reports_the_progress_of_running_runs(tmp_path: Path, monkeypatch):
    """Runs on local workers report their progress at their checkpoints (every 2^22 accesses), so the
    progress moves between finished runs: an hour-long run does not leave the bar at 0."""
    import mshare_hw.sweep as sweep_mod

    monkeypatch.setattr(sweep_mod, "_POLL_SECONDS", 0.01)
    two = tmp_path / "two.toml"  # 2 runs of 10M accesses: two checkpoints in each before its end
    two.write_text(
        GRID.replace("accesses_per_process = 60_000", "accesses_per_process = 5_000_000")
        .replace('uarch = ["skylake_sp", "zen3"]', 'uarch = ["zen3"]')
        .replace('pt_config = ["private", "mshare"]', 'pt_config = ["mshare"]')
        .replace('"machine.n_cpus" = [1, 2, 4]', '"machine.n_cpus" = [1, 2]')
    )
    exp = load_experiment(two)
    seen: list[float] = []
    res = sweep(exp, tmp_path / "progress.h5", workers=2, on_progress=lambda done, n: seen.append(done))
    assert len(res.computed) == 2
    assert seen == sorted(seen) and seen[-1] == 2  # never backwards, and complete at the end
    assert any(0 < d < 2 and d != int(d) for d in seen), seen  # a running run's fraction showed
    assert not sweep_mod._RUNNING


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed exception
def test_sigint_noted_survives_a_swallowed_keyboard_interrupt():
    """Ctrl-C during a local sweep raises KeyboardInterrupt and is also noted, so the client can act on it
    when a library swallowed the exception (a garbage-collector callback does); the handler is restored."""
    import gc

    from mshare_hw.sweep import _sigint_noted

    def swallowing(phase, info):  # as Dask's gc diagnosis: an exception raised here is dropped
        if phase == "start":
            os.kill(os.getpid(), signal.SIGINT)

    with _sigint_noted() as noted:
        gc.callbacks.append(swallowing)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(swallowing)
        assert noted.is_set()  # the KeyboardInterrupt itself was lost in the callback
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
