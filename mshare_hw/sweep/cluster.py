"""The in-process local Dask cluster of a sweep (worker threads of this process, started in the
background) and the Ctrl-C handling around it."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from mshare_hw.config.errors import ConfigError

# A local cluster's workers are threads of this process: the engine replays without the GIL, so they
# scale like processes (tests/benchmarks/test_sweep_speedup.py) and need no process start, no imports and no
# copies of the workloads. Its scheduler and workers run an event loop in this process too; Dask's defaults
# wake them for bookkeeping tens of times a second, which costs a visible share of a task's wall time; these
# settings keep them quiet.
WORKER_CONFIG = {
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


def local_cluster(n_workers: int):
    import dask
    from dask.distributed import LocalCluster

    with dask.config.set(WORKER_CONFIG):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=False,
            dashboard_address=None,
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},  # its HTTP routes on any free port
            memory_limit=0,  # a run needs what it needs: no pausing of workers
        )


_START_TIMEOUT = 120.0  # seconds a local cluster's start may take (it usually takes one or two)


class BackgroundCluster:
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
            self._future = pool.submit(local_cluster, self.n_workers)
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
        except TimeoutError:  # wedged (see executors.run_dask): the process is on its way out; do not hang it
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
def sigint_noted() -> Iterator[threading.Event]:
    """An Event set by Ctrl-C (SIGINT), which still raises KeyboardInterrupt. Python drops an exception
    raised inside a garbage-collector callback, and Dask's scheduler and workers, in this process, install
    one: a Ctrl-C that lands there is lost, and the event tells the caller. Only in the main thread, and
    only over Python's own handler."""
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


def default_workers(workers: int | None, n_todo: int) -> int:
    """The local cluster's size: `workers` if given, else one per CPU, at most one per run."""
    if workers is not None:
        if workers < 1:
            raise ConfigError(f"--workers {workers}: need at least 1")
        return workers
    return max(1, min(os.cpu_count() or 1, n_todo))
