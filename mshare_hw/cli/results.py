"""`mshare-hw table`, `merge` and `report`: reading and combining results files."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from mshare_hw.cli.common import earlier_runs, say
from mshare_hw.config.errors import ConfigError
from mshare_hw.fileio import check_writable, output_lock

# the default view: what tells the runs apart, then the headline metrics, then (when events fired) the
# shootdown view; identity columns after the first two are shown only when they differ between runs
TABLE_IDENTITY_COLUMNS = (
    "uarch", "pt_config", "n_cpus", "n_processes", "share_level", "strategy", "detach_flush", "seed",
)  # fmt: skip
TABLE_HEADLINE_COLUMNS = ("page_faults", "pt_bytes", "stlb_misses", "walk_cycles", "walk_reads_dram", "cycles")
TABLE_SHOOTDOWN_COLUMNS = (
    "events_fired", "ipis_sent", "invlpg", "full_flushes", "shootdown_cycles_initiator",
    "shootdown_cycles_responder", "collateral_entries_flushed", "stale_translations",
)  # fmt: skip


# shown too when a file has runs with secondary MMUs (devices)
TABLE_DEVICE_COLUMNS = [
    "notifier_policy", "iotlb_invalidations", "iotlb_invalidation_cycles", "mirror_invalidations",
    "device_stale_translations",
]  # fmt: skip


def cmd_table(args: argparse.Namespace) -> int:
    from mshare_hw.results.hdf5 import load_summary

    try:
        df = load_summary(args.results)
    except (OSError, ValueError) as e:
        raise ConfigError(f"{args.results}: cannot read results ({e})") from None
    if not args.columns and df[[c for c in TABLE_IDENTITY_COLUMNS if c in df.columns]].duplicated().any():
        df = with_config_columns(df, args.results)
    cols = args.columns.split(",") if args.columns else default_columns(df)
    unknown = [c for c in cols if c not in df.columns]
    if unknown:
        raise ConfigError(f"--columns: unknown column(s) {', '.join(unknown)} (see the README's HDF5 section)")
    for cond in args.where:
        key, _, value = cond.partition("=")
        if key not in df.columns:
            raise ConfigError(f"--where {cond!r}: unknown column '{key}'")
        df = df[df[key].astype(str) == value]
    df = df[cols]
    if args.csv:
        print(df.to_csv(index=False), end="")
    elif args.markdown:
        print(df.to_markdown(index=False))
    else:
        table = Table(title=str(args.results))
        for c in cols:  # whole numbers, never cut to "152,…"
            table.add_column(c, justify="left" if df[c].dtype == object else "right", no_wrap=True)
        for row in df.itertuples(index=False):
            table.add_row(*(f"{v:,}" if isinstance(v, int | np.integer) else str(v) for v in row))
        console = Console()
        width = console.measure(table, options=console.options.update_width(1 << 16)).maximum
        # wider than the terminal: print it whole (the terminal wraps lines) rather than cut numbers to "152,…"
        (Console(width=width) if width > console.width else console).print(table)
    return 0


# resolved-config keys the summary already has a column for
_KEYS_IN_SUMMARY = {
    "name",
    "uarch",
    "pt_config",
    "share_level",
    "strategy",
    "detach_flush",
    "seed",
    "notifier_policy",
    "machine.n_cpus",
}


def with_config_columns(df, path):
    """`df` plus a column per resolved-config key whose value differs between runs and that the summary
    has no column for (e.g. a swept `machine.data_caches`), so that no two runs look identical."""
    from mshare_hw.config.experiment import flatten_axes
    from mshare_hw.results.hdf5 import load_configs

    configs = load_configs(path)
    flat = {rid: flatten_axes(cfg) for rid, cfg in configs.items()}
    keys = sorted({k for f in flat.values() for k in f} - _KEYS_IN_SUMMARY)
    for key in keys:
        values = [repr(flat.get(rid, {}).get(key)) for rid in df["run_id"]]
        if len(set(values)) > 1:
            df[key] = [str(flat.get(rid, {}).get(key)) for rid in df["run_id"]]
    return df


def default_columns(df) -> list[str]:
    """The default view of a summary table (see TABLE_IDENTITY_COLUMNS)."""
    ident = [
        c for c in TABLE_IDENTITY_COLUMNS if c in df.columns and (c in ("uarch", "pt_config") or df[c].nunique() > 1)
    ]
    ident += [c for c in df.columns if "." in c]  # the varying config keys of with_config_columns
    cols = ident + list(TABLE_HEADLINE_COLUMNS)
    if "events_fired" in df.columns and len(df) and df["events_fired"].max() > 0:
        cols = ident + list(TABLE_SHOOTDOWN_COLUMNS) + ["page_faults", "walk_cycles", "cycles"]
    if "devices" in df.columns and len(df) and df["devices"].max() > 0:
        cols += TABLE_DEVICE_COLUMNS
    return [c for c in dict.fromkeys(cols) if c in df.columns]


def cmd_merge(args: argparse.Namespace) -> int:
    from mshare_hw.results.merge import MergeError, merge_results

    out = Path(args.output)
    check_writable(out)
    with output_lock(out):
        inputs = [Path(p) for p in args.inputs]
        kept = 0
        if out.exists() and not args.replace and not any(p.resolve() == out.resolve() for p in inputs):
            kept = earlier_runs(out)
            inputs.insert(0, out)  # its runs first, as if it had been named first
        try:
            ids = merge_results(out, inputs)
        except MergeError as e:
            raise ConfigError(str(e)) from None
    if kept:
        say(args.quiet, f"{out}: kept {kept} earlier run{'s' if kept != 1 else ''} (--replace drops them)")
    say(args.quiet, f"merged {len(ids)} runs from {len(args.inputs)} files into {out}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from mshare_hw.report import report

    if not Path(args.results).is_file():
        raise ConfigError(f"{args.results}: no such results file")
    out_dir = Path(args.output) if args.output else Path(args.results).with_suffix("")
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir}: exists and is not a directory; report -o takes a directory")
    check_writable(out_dir / "report.md")
    written = report(args.results, out_dir)
    if not args.quiet:
        for p in written:
            print(p)
    return 0


def add_table_parser(sub) -> None:
    tb = sub.add_parser("table", help="print a results file's summary table (terminal, Markdown or CSV)")
    tb.add_argument("results", help="HDF5 results file")
    tb.add_argument(
        "--columns",
        help="comma-separated summary columns (default: the columns that tell the runs apart, the headline "
        "metrics, and the shootdown view when events fired)",
    )
    tb.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE", help="keep matching rows")
    fmt = tb.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="a Markdown table")
    fmt.add_argument("--csv", action="store_true", help="CSV")
    tb.set_defaults(func=cmd_table)


def add_merge_parser(sub) -> None:
    mg = sub.add_parser("merge", help="merge results files (shards, job-array outputs) into one")
    mg.add_argument(
        "output",
        help="merged HDF5 file (written atomically; may also be one of the inputs); if it exists, its runs are "
        "kept (first), unless --replace",
    )
    mg.add_argument(
        "inputs", nargs="+", help="results files, merged in the order given; a run id seen twice is kept once"
    )
    mg.add_argument("--replace", action="store_true", help="drop the runs an existing OUTPUT holds")
    mg.add_argument("-q", "--quiet", action="store_true")
    mg.set_defaults(func=cmd_merge)


def add_report_parser(sub) -> None:
    rp = sub.add_parser("report", help="Markdown/CSV tables and PNG plots of a results file")
    rp.add_argument("results", help="HDF5 results file")
    rp.add_argument("-o", "--output", help="output directory (default: the results file's name without .h5)")
    rp.add_argument("-q", "--quiet", action="store_true", help="do not list the files written")
    rp.set_defaults(func=cmd_report)
