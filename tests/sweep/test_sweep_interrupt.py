"""A sweep stopped by SIGKILL or Ctrl-C: it exits promptly, leaves no temporary files, and a rerun
computes only the missing runs."""

from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from mshare_hw.cli import main
from mshare_hw.config.experiment import load_experiment
from mshare_hw.sweep import resolve_points, shard_dir_for, sweep, worker
from mshare_hw.sweep.cluster import sigint_noted

N_POINTS = 12  # the grid fixture's

# 25x longer runs: a kill or Ctrl-C lands mid-sweep even on a busy machine
LONGER = "workload.params.accesses_per_process=1_500_000"


@pytest.fixture(scope="module")
def longer_swept(grid: Path) -> Path:
    out = grid.parent / "longer.h5"
    sweep(load_experiment(grid, [LONGER]), out, workers=2)
    return out


def test_sigkilled_sweep_resumes_with_only_the_missing_runs(
    grid: Path, longer_swept: Path, tmp_path: Path, sweep_command, subprocess_env, same_results, no_temp_files
):
    out = tmp_path / "killed.h5"
    shards = shard_dir_for(out)
    log = (tmp_path / "first.log").open("w")
    proc = subprocess.Popen(
        sweep_command(grid, out, "--set", LONGER),
        stdout=log,
        stderr=log,
        start_new_session=True,
        cwd=tmp_path,
        env=subprocess_env,
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

    cmd = sweep_command(grid, out, "--keep-shards", "--set", LONGER)
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=subprocess_env)
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
    same_results(longer_swept, out)


def test_a_stopped_sweeps_local_run_ends_at_its_next_checkpoint(grid: Path, tmp_path: Path, monkeypatch, no_temp_files):
    """Ctrl-C on a local sweep: the client marks the sweep stopped, and its workers' runs (threads that
    cannot be killed) end at their next progress checkpoint, writing nothing, instead of replaying on."""
    # enough accesses for a progress checkpoint before the end (every 2^22)
    gp = resolve_points(load_experiment(grid, ["workload.params.accesses_per_process=2_500_000"]))[0]
    checkpoints: list[int] = []
    real = worker.run_point

    def watched(*args, on_progress=None, **kwargs):
        def hook(label: str, done: int, total: int) -> None:
            checkpoints.append(done)
            on_progress(label, done, total)

        return real(*args, on_progress=hook, **kwargs)

    monkeypatch.setattr(worker, "run_point", watched)
    monkeypatch.setattr(worker, "STOPPED", {"tok"})
    shard = tmp_path / "s.h5"
    with pytest.raises(worker.Stopped):
        worker.run_task(gp.point.model_dump(), gp.run_id, str(shard), "grid12", sweep_token="tok")
    total = 2_500_000 * gp.point.workload.params["n_processes"]
    assert len(checkpoints) == 1 and checkpoints[0] < total
    assert not shard.exists() and no_temp_files(tmp_path)
    res = worker.run_task(gp.point.model_dump(), gp.run_id, str(shard), "grid12", sweep_token="other")
    assert not res["skipped"] and shard.exists()


def test_interrupted_local_sweep_exits_and_resumes(
    grid: Path, longer_swept: Path, tmp_path: Path, sweep_command, subprocess_env, same_results, no_temp_files
):
    out = tmp_path / "int.h5"
    proc = subprocess.Popen(sweep_command(grid, out, "--set", LONGER), stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, env=subprocess_env,
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
    same_results(longer_swept, out)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the swallowed exception
def test_sigint_noted_survives_a_swallowed_keyboard_interrupt():
    """Ctrl-C during a local sweep raises KeyboardInterrupt and is also noted, so the client can act on it
    when a library swallowed the exception (a garbage-collector callback does); the handler is restored."""

    def swallowing(phase, info):  # as Dask's gc diagnosis: an exception raised here is dropped
        if phase == "start":
            os.kill(os.getpid(), signal.SIGINT)

    with sigint_noted() as noted:
        gc.callbacks.append(swallowing)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(swallowing)
        assert noted.is_set()  # the KeyboardInterrupt itself was lost in the callback
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
