"""Sweeps at scale: an experiment's grid fanned out over Dask, or one slice of it serially for a job
array, resumable after any kill.

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

Modules: plan (grid points, what is done and what is to run), shards, worker (one run as a task, the
worker's workload cache), local_workloads (handing the client's workloads to the runs), cluster (the
local cluster, Ctrl-C), executors (serial, Dask), orchestrate (`sweep` itself).
"""

from mshare_hw.sweep.orchestrate import sweep
from mshare_hw.sweep.plan import GridPoint, SweepError, SweepResult, parse_shard, resolve_points
from mshare_hw.sweep.shards import shard_dir_for
from mshare_hw.sweep.worker import run_task

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
