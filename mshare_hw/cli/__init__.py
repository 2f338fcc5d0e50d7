"""The `mshare-hw` command: `main` parses and dispatches, `run` is the console script. One module per
command group: run_command, machine (uarch, ptmem), results (table, merge, report), sweep (validate, sweep),
traces, workload."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from typing import NoReturn

from rich.markup import escape

from mshare_hw.cli import machine, results, run_command, sweep
from mshare_hw.cli.common import err_console
from mshare_hw.cli.traces import add_trace_parser
from mshare_hw.cli.workload import add_workload_parser
from mshare_hw.config.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="mshare-hw",
        description="Cycle-approximate x86-64 MMU model: private vs shared (mshare) page tables.",
    )
    sub = ap.add_subparsers(dest="command", required=True)
    run_command.add_run_parser(sub)
    machine.add_uarch_parser(sub)
    results.add_table_parser(sub)
    machine.add_ptmem_parser(sub)
    machine.add_calibrate_parser(sub)
    sweep.add_validate_parser(sub)
    sweep.add_sweep_parser(sub)
    results.add_merge_parser(sub)
    results.add_report_parser(sub)
    add_trace_parser(sub)  # `trace convert|info|capture|generate`
    add_workload_parser(sub)  # `workload init`
    return ap


class _LevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _log_warnings_only() -> None:
    """Warnings and errors on stderr, whatever level a library sets on its own loggers (Dask's
    distributed sets INFO on its loggers, and its start/stop chatter would reach a root handler)."""
    root = logging.getLogger()
    if any(getattr(h, "_mshare_hw", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_LevelFormatter())
    handler._mshare_hw = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def _error(text: str) -> int:
    err_console.print(f"[bold red]error:[/bold red] {text}", highlight=False, soft_wrap=True, markup=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done, 1 some sweep runs failed, 2 bad input or an output that cannot be written
    (one line), 130 interrupted (Ctrl-C; `run` first writes the runs that had finished)."""
    try:
        args = build_parser().parse_args(argv)
        _log_warnings_only()
        return args.func(args)
    except ConfigError as e:
        return _error(escape(str(e)))
    except MemoryError:
        return _error("out of memory; make the workload smaller (workload.params, or fewer processes)")
    except OSError as e:  # an output that cannot be written, a full disk, a file another run is writing
        where = f"{e.filename}: " if e.filename else ""
        return _error(escape(f"{where}{e.strerror or e}"))
    except KeyboardInterrupt as e:
        err_console.print(f"interrupted{': ' + escape(str(e)) if str(e) else ''}", highlight=False)
        return 130


def run() -> NoReturn:
    """The console script: `main()`, then the exit handlers (atexit: multiprocessing's clean-up, Dask's,
    logging's), then the process ends without the interpreter tearing down its modules one by one. With
    NumPy, pandas, h5py, numba and Dask loaded that teardown takes a noticeable part of a second and
    releases nothing the OS does not: every file the command wrote is closed (and renamed into place)
    before `main()` returns."""
    code = main()
    try:
        _exit_handlers_then_exit(code)
    except KeyboardInterrupt:
        os._exit(130)


def _exit_handlers_then_exit(code: int) -> NoReturn:
    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)  # CPython's; elsewhere, the usual exit
    if run_exit_handlers is None:
        sys.exit(code)
    run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`): nothing more can be written anyway
            pass
    os._exit(code)
