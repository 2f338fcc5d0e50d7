"""The fork server local Dask workers start from (`mshare-hw sweep` without --shard or --scheduler).

Workers are forked from a server process that has imported Dask and mshare-hw once (where the platform has
one), instead of each importing them afresh: a cluster starts and stops in seconds, not ten. The server's
imports take about a second of one core; `mshare-hw sweep` starts it first thing, so they overlap the
client's own imports, which use one core, rather than its workload generation, which uses both.
"""

from __future__ import annotations

import multiprocessing
from pathlib import Path

START_METHOD = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def start_forkserver() -> None:
    """Start the fork server without waiting for its imports. No effect once it runs (a second sweep in
    this process reuses it as it is), nor where there is no fork server."""
    if START_METHOD != "forkserver":
        return
    from multiprocessing import forkserver

    ctx = multiprocessing.get_context("forkserver")  # the one server Dask's Nanny forks workers from
    ctx.set_forkserver_preload(forkserver_preload(Path.cwd()))
    forkserver.ensure_running()


def wants_local_cluster(argv: list[str]) -> bool:
    """Whether a command line (without the program name) is `sweep` on a local cluster: no --shard, no
    --scheduler (nor a prefix argparse would take for them), no help. Read before the command's parser
    exists, to start the server early (mshare_hw.__main__); a wrong guess costs only the time: an unused
    server, or one started later by the sweep itself."""
    if not argv or argv[0] != "sweep":
        return False
    for arg in argv[1:]:
        name = arg.split("=", 1)[0]
        if name in ("-h", "--help") or (
            len(name) >= 4 and ("--shard".startswith(name) or "--scheduler".startswith(name))
        ):
            return False
    return True


def forkserver_preload(cwd: Path) -> list[str]:
    """Modules the fork server imports once for all workers. It imports them with the current
    directory first on its path (CPython 3.11), so from a source checkout that is not the package this
    process runs (e.g. a clone without the compiled engine) it would import the wrong mshare_hw, and
    every task would fail on the workers: then mshare_hw is left for each worker to import normally."""
    import mshare_hw

    here = Path(mshare_hw.__file__).resolve().parent
    shadow = cwd / "mshare_hw"
    ours = ["mshare_hw.sweep", "mshare_hw._forkserver_exit"]
    return ["distributed"] + ([] if shadow.exists() and shadow.resolve() != here else ours)
