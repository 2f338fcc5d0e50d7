"""`mshare-hw` (the console script) and `python -m mshare_hw`.

A sweep on a local Dask cluster forks its workers from a server process that imports Dask and mshare-hw once
(mshare_hw.forkserver). The server is started here, before the command's own imports (0.5 s): its imports
(1.4 s of CPU) then overlap those rather than the generation of the first workload, which uses both cores.
Measured on a 2-core machine: the workers started 0.45 s sooner.
"""

import sys

from mshare_hw.forkserver import start_forkserver, wants_local_cluster


def run() -> None:
    if wants_local_cluster(sys.argv[1:]):
        start_forkserver()
    from mshare_hw.cli import run as cli_run

    cli_run()


if __name__ == "__main__":
    run()
