"""`mshare-hw run`: replay an experiment's grid in this process, print its summary table."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from mshare_hw.cli.common import add_output_policy, earlier_runs, err_console, fmt_bytes, say
from mshare_hw.config.errors import ConfigError
from mshare_hw.fileio import check_writable, output_lock


def cmd_run(args: argparse.Namespace) -> int:
    from mshare_hw.workload.manifest import load_run_file

    exp = load_run_file(args.experiment, args.set + (["workload.skip_bad_lines=true"] if args.skip_bad_lines else []))
    out = Path(args.output) if args.output else Path(f"{exp.name}.h5")
    check_writable(out)
    with output_lock(out):
        return _run_locked(args, exp, out)


def _run_locked(args: argparse.Namespace, exp, out: Path) -> int:
    from mshare_hw.runner import RunInterrupted, run_experiment

    if out.exists() and not (args.append or args.overwrite):
        raise ConfigError(
            f"{out}: exists ({earlier_runs(out)} runs); give --append to add this experiment's runs to them, "
            "--overwrite to replace the file, or -o another file"
        )
    console = Console()
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=args.quiet or not err_console.is_terminal,
    )
    tasks: dict[str, int] = {}

    def on_progress(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = progress.add_task(label, total=total)
        progress.update(tasks[label], completed=done)

    kept = earlier_runs(out) if args.append else 0
    try:
        with progress:
            rows = run_experiment(exp, out, on_progress=on_progress, keep_existing=not args.overwrite)
    except RunInterrupted as e:
        if e.finished or kept:
            n = f"{e.finished} finished run{'s' if e.finished != 1 else ''}"
            err_console.print(f"interrupted: {n} written to {out}" + (f" (with its {kept} earlier)" if kept else ""))
        else:
            err_console.print(f"interrupted before the first run finished; {out} not written")
        return 130
    if kept:
        say(args.quiet, f"{out}: kept {kept} earlier run{'s' if kept != 1 else ''} (--append)")
    if not args.quiet:
        console.print(summary_table(exp.name, rows))
        for line in comparison_lines(rows):
            console.print(line, highlight=False)
        console.print(f"results: {out}")
    return 0


SUMMARY_METRICS = (
    ("accesses", "accesses"),
    ("page_faults", "page faults"),
    ("pt_bytes", "page-table memory"),
    ("stlb_misses", "STLB misses"),
    ("walks", "page walks"),
    ("walk_cycles", "walk cycles"),
    ("walk_reads_dram", "walk reads from DRAM"),
    ("fault_cycles", "fault cycles"),
    ("context_switches", "context switches"),
    ("asid_recycles", "ASID recycles"),
    ("cycles", "cycles (all CPUs)"),
    ("stale_translations", "stale translations"),
)
HEADLINE = (
    ("page_faults", "faults"),
    ("pt_bytes", "PT memory"),
    ("walk_reads_dram", "DRAM walk reads"),
    ("walk_cycles", "walk cycles"),
    ("cycles", "cycles"),
)


def _compact(v: int) -> str:
    if abs(v) < 10_000:
        return f"{v:,}"
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.1f}{suffix}"
    return f"{v:,}"


def summary_table(title: str, rows: list[dict]) -> Table:
    """Metrics down, runs across: private and mshare side by side per uarch."""
    table = Table(title=f"{title}: totals over all CPUs and processes")
    table.add_column("metric")
    for r in rows:
        pages = f"\n{r['pool_page_size']} pool" if r.get("pool_page_size") not in (None, "", "4K") else ""
        table.add_column(f"{r['uarch']}\n{r['pt_config']}{pages}", justify="right")
    for key, label in SUMMARY_METRICS:
        fmt = fmt_bytes if key == "pt_bytes" else _compact
        table.add_row(label, *(fmt(r[key]) for r in rows))
    return table


def comparison_lines(rows: list[dict]) -> list[str]:
    """`mshare vs private` (and `hugetlb_pmd_share vs private`) changes for every pair of runs that differ only
    in pt_config. A run whose buffer pool is not in 4 KiB pages says its page size."""
    out = []
    for r in rows:
        if r["pt_config"] == "private":
            continue
        for base in rows:
            if base["pt_config"] == "private" and all(
                base.get(k) == r.get(k)
                for k in (
                    "uarch",
                    "n_cpus",
                    "n_processes",
                    "accesses",
                    "strategy",
                    "seed",
                    "sleep_every_accesses",
                    "threads_per_process",
                    "pool_page_size",
                )  # fmt: skip
            ):
                parts = []
                for key, label in HEADLINE:
                    if base[key]:
                        parts.append(f"{label} {100.0 * (r[key] - base[key]) / base[key]:+.0f}%")
                sleepy = " (sleeping clients)" if r.get("sleep_every_accesses") else ""
                if r.get("threads_per_process", 1) > 1:
                    sleepy += f" ({r['threads_per_process']} threads per process)"
                if r.get("pool_page_size") not in (None, "", "4K"):
                    sleepy += f" ({r['pool_page_size']} pool pages)"
                out.append(f"{r['uarch']}{sleepy}: {r['pt_config']} vs private: " + ", ".join(parts))
                break
    return out


def add_run_parser(sub) -> None:
    run = sub.add_parser("run", help="run an experiment (the built-in default when no file is given)")
    run.add_argument(
        "experiment",
        nargs="?",
        help="experiment TOML file, or a workload manifest (then: private vs mshare on the default uarch); "
        "default: the built-in default experiment",
    )
    run.add_argument(
        "-o",
        "--output",
        help="HDF5 results file (default: <experiment name>.h5); an existing one needs --append or --overwrite",
    )
    add_output_policy(run, what="this experiment's")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting, e.g. --set machine.n_cpus=8 (repeatable); a key that is also a [sweep] axis "
        "replaces the axis",
    )
    run.add_argument(
        "--skip-bad-lines", action="store_true", help="manifest traces: skip and count malformed lackey lines"
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no table")
    run.set_defaults(func=cmd_run)
