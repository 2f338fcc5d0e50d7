"""Imported by the fork server alone (mshare_hw.forkserver preloads it): the server ends at once when the
sweep that started it does.

The server holds nothing to finalize (its workers are gone by then), yet tearing down an interpreter with
Dask and mshare-hw loaded took it 0.8 s, during which it kept the sweep's stderr open: a pipeline such as
`mshare-hw sweep ... | tee log` waited for it. Its forked children never run atexit handlers (multiprocessing
ends them with os._exit), so only the server itself takes this exit.
"""

import atexit
import os
import sys


def _exit_now() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    os._exit(0)


atexit.register(_exit_now)
