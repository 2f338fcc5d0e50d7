"""A sweep of 8 runs on a 2-worker LocalCluster against the same sweep serially (the target: at least
1.7x on a 2-core machine).

Both are `mshare-hw sweep` commands (`python -m mshare_hw`, the console script's entry point) in
subprocesses, timed from start until their output closes, as a user sees them:
serially with `--shard 1/1` (the same runs, shards and merge, in one process) and with `--workers 2`.
The 8 runs are configs/experiments/flush_strategies.toml's kind: 3 database clients sharing a 256 MiB
pool and an unrelated process on 4 CPUs, invalidation events at 20,000/s, the oracle and data caches on;
2 uarchs x 4 mshare flush strategies over one workload. Run length: under the default
`--benchmark-disable` each run replays 4 x 100k accesses (a smoke test: start-up dominates and the
speedup means nothing); with `--benchmark-enable`, 4 x 10M accesses, several seconds each. A sweep's fixed
costs (Python start-up, imports, generating the workload once to name its traces) are paid serially once
per sweep, and the parallel command adds the local cluster's start (overlapping the client's work), so
shorter runs show a smaller speedup. Real experiments run for seconds to minutes per point;
MSHARE_HW_SWEEP_ACCESSES=N (accesses per process) sets the run length. Both outputs must be identical.

A shared VM's speed drifts, so with `--benchmark-enable` the two commands run in the order serial,
parallel, parallel, serial (a linear drift cancels out) and the figures are best-of-two (as `timeit` takes
the minimum: the noise only ever adds time); `speedup_mean` is the ratio of the means. Without it, each
runs once.

extra_info: runs, accesses_per_run, serial_seconds, parallel_seconds (best), speedup (best over best),
speedup_mean, serial_rounds / parallel_rounds (every wall time), the CPU seconds each command's
processes used (serial_cpu_seconds, parallel_cpu_seconds, of the best rounds), and serial_others_cpus /
parallel_others_cpus: the CPUs other processes of the machine kept busy meanwhile (0 on an idle
machine; at 1, a core was taken and no speedup can show).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mshare_hw.results.hdf5 import load_summary

SMOKE_ACCESSES = 100_000
REAL_ACCESSES = 10_000_000  # per process: 4 x 10M accesses per run

EXPERIMENT = """\
# configs/experiments/flush_strategies.toml's machine, workload and events; 2 uarchs x 4 strategies
name = "sweep8"
seed = 1
pt_config = "mshare"

[machine]
n_cpus = 4

[scheduler]
kind = "pinned"
quantum_cycles = 3_000_000
slice_accesses = 256

[workload]
generator = "database"

[workload.params]
n_processes = 3
n_unrelated = 1
n_sharer_cpus = 3
accesses_per_process = {accesses}
pool_bytes = "256MiB"
private_bytes = "4MiB"
text_bytes = "1MiB"

[events]
enabled = true
region = "buffer_pool"
rate_per_second = 20_000
clock_ghz = 3.0
kinds = {{ zap = 0.6, protect = 0.2, migrate = 0.2 }}
pages = [1, 1, 1, 2, 4, 16, 64]
initiator = "random"

[sweep]
uarch = ["skylake_sp", "zen3"]
strategy = ["host_mm_only", "flush_all", "host_cpumask", "per_sharer"]
"""
RUNS = 8
PROCESSES = 4  # 3 clients and an unrelated process


def _busy_seconds() -> float:
    """CPU seconds used so far by every process of this machine (/proc/stat; 0 where there is none)."""
    try:
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def _session_seconds(sid: int, seen: dict[int, float]) -> None:
    """Update `seen` (pid -> CPU seconds) with the processes of session `sid` (a command and every
    process it started: cluster workers too, which it never waits for)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # fields after the name: state ppid pgrp session ... utime(12) stime(13)
            seen[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_measured(cmd: list[str], env: dict[str, str], timeout: float, cwd: Path) -> dict[str, float]:
    """Run `cmd` in its own session; its wall time, its processes' CPU time (sampled every 0.2 s, so
    a process living under 0.2 s may be missed) and the CPU time all other processes used meanwhile."""
    busy0, t0 = _busy_seconds(), time.perf_counter()
    # cwd: not the source tree, whose unbuilt mshare_hw would shadow the installed package
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, cwd=cwd
    )
    seen: dict[int, float] = {}
    while proc.poll() is None:
        _session_seconds(proc.pid, seen)
        if time.perf_counter() - t0 > timeout:
            proc.kill()
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
    ours = sum(seen.values())
    return {"seconds": wall, "cpu_seconds": ours, "others_cpu_seconds": max(0.0, _busy_seconds() - busy0 - ours)}


def test_sweep_two_workers_vs_serial(benchmark, tmp_path, same_results):
    import mshare_hw

    benchmark.group = "sweep: 2-worker LocalCluster vs serial"
    default = SMOKE_ACCESSES if benchmark.disabled else REAL_ACCESSES
    accesses = int(os.environ.get("MSHARE_HW_SWEEP_ACCESSES", default))
    exp = tmp_path / "sweep8.toml"
    exp.write_text(EXPERIMENT.format(accesses=accesses))
    env = {**os.environ, "PYTHONPATH": str(Path(mshare_hw.__file__).resolve().parents[1])}
    cli = [sys.executable, "-m", "mshare_hw", "sweep", str(exp), "-q"]  # as the `mshare-hw` command
    timeout = 120 + accesses * PROCESSES * RUNS // 500_000  # at least 0.5 M accesses/s

    commands = {
        "serial": [*cli, "-o", str(tmp_path / "serial.h5"), "--shard", "1/1"],
        "parallel": [*cli, "-o", str(tmp_path / "parallel.h5"), "--workers", "2"],
    }
    order = ["serial", "parallel"] if benchmark.disabled else ["serial", "parallel", "parallel", "serial"]
    rounds: dict[str, list[dict[str, float]]] = {"serial": [], "parallel": []}

    def all_rounds() -> None:
        for mode in order:
            (tmp_path / f"{mode}.h5").unlink(missing_ok=True)  # each round computes every run
            rounds[mode].append(run_measured(commands[mode], env, timeout, tmp_path))

    benchmark.pedantic(all_rounds, rounds=1, iterations=1)
    same_results(tmp_path / "serial.h5", tmp_path / "parallel.h5")
    assert len(load_summary(tmp_path / "parallel.h5")) == RUNS

    info = benchmark.extra_info
    info["runs"] = RUNS
    info["accesses_per_run"] = PROCESSES * accesses
    best = {mode: min(rs, key=lambda r: r["seconds"]) for mode, rs in rounds.items()}
    for mode in ("serial", "parallel"):
        info[f"{mode}_rounds"] = [r["seconds"] for r in rounds[mode]]
        info[f"{mode}_seconds"] = best[mode]["seconds"]
        info[f"{mode}_cpu_seconds"] = best[mode]["cpu_seconds"]
        info[f"{mode}_others_cpus"] = best[mode]["others_cpu_seconds"] / best[mode]["seconds"]
    info["speedup"] = best["serial"]["seconds"] / best["parallel"]["seconds"]
    info["speedup_mean"] = float(np.mean(info["serial_rounds"]) / np.mean(info["parallel_rounds"]))
    info["accesses_per_s"] = RUNS * PROCESSES * accesses / best["parallel"]["seconds"]
