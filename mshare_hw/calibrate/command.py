"""`mshare-hw calibrate [-o host.toml] [--quick] [--cpus LIST] [--check host.toml] [--compare A B]`: run the
probes, write a uarch profile that extends the nearest shipped part, and validate it against held-out
measurements; `--compare` sets two profiles' measured values side by side (repeatability).

Beside the profile it writes `<stem>.measurements.json` (the raw probe results and the host's facts,
which `--check` reads back) and `<stem>.validation.csv` / `.md`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mshare_hw.config.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("host.toml"), help="profile to write (host.toml)")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and trials: under 30 s, noisier")
    parser.add_argument("--cpus", type=_cpu_list, default=None, metavar="LIST", help="CPUs to pin on, e.g. 0,2-3")
    parser.add_argument("--check", type=Path, default=None, metavar="PROFILE", help="rerun only the validation")
    parser.add_argument(
        "--compare",
        type=Path,
        nargs=2,
        default=None,
        metavar=("A", "B"),
        help="two profiles' measured values, %% apart",  # argparse %-formats help: %% prints one %
    )
    parser.add_argument("--no-validate", action="store_true", help=argparse.SUPPRESS)


def _cpu_list(text: str) -> list[int]:
    out: list[int] = []
    try:
        for part in filter(None, text.split(",")):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--cpus {text!r}: expected a list like 0,2-3") from None
    return out


def measurements_path(profile: Path) -> Path:
    return profile.with_name(profile.stem + ".measurements.json")


def main(args: argparse.Namespace) -> int:
    from mshare_hw.calibrate.host import CannotProbe, Host, detect, pinnable_cpus
    from mshare_hw.calibrate.probes import Plan, steps
    from mshare_hw.calibrate.profile import write_profile
    from mshare_hw.calibrate.validate import save_table, validate

    console = Console()
    if args.compare is not None:
        return _compare(console, *args.compare)
    if args.check is not None:
        try:
            saved = json.loads(measurements_path(args.check).read_text())
        except (OSError, ValueError) as e:
            raise ConfigError(f"{measurements_path(args.check)}: cannot read the measurements ({e})") from None
        return _report(console, args.check, validate(args.check, saved["measurements"]), save_table)
    out: Path = args.output
    if not out.parent.is_dir():  # checked before any probe runs
        raise ConfigError(f"-o {out}: directory {out.parent} does not exist")
    try:
        host = detect()
        cpus = pinnable_cpus(args.cpus, host)
    except CannotProbe as e:
        console.print(f"mshare-hw calibrate: {e}", soft_wrap=True, highlight=False)
        return 2
    plan = Plan.make(args.quick)
    m: dict = {}
    todo = steps(plan, host, cpus, m)
    start = time.monotonic()
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn()
    ) as bar:
        task = bar.add_task("calibrating", total=len(todo))
        for label, run in todo:
            bar.update(task, description=label)
            try:
                run()
            except OSError as e:
                bar.stop()
                why = e.strerror or e
                console.print(f"mshare-hw calibrate: probe {label!r} cannot run here ({why})", soft_wrap=True)
                return 2
            bar.advance(task)
    measurements_path(out).write_text(
        json.dumps({"host": host.to_dict(), "cpus": cpus, "quick": args.quick, "measurements": m}, indent=1)
    )
    vals = write_profile(out, m, Host.from_dict(host.to_dict()))
    console.print(f"wrote {out} ({len(vals)} measured values, {time.monotonic() - start:.0f} s of probes)")
    if args.no_validate:
        return 0
    return _report(console, out, validate(out, m), save_table)


def _print(console: Console, title: str, df) -> None:
    table = Table(title=title)
    for col in df.columns:
        table.add_column(col, justify="left" if df[col].dtype == object else "right")
    for row in df.itertuples(index=False):
        table.add_row(*(str(v) for v in row))
    console.print(table)


def _compare(console: Console, a: Path, b: Path) -> int:
    from mshare_hw.calibrate.compare import REPEATABLE_PCT, compare_profiles

    try:
        df = compare_profiles(a, b)
    except OSError as e:
        raise ConfigError(f"{e.filename}: cannot read the profile ({e.strerror})") from None
    _print(console, f"measured values of {a} (a) and {b} (b)", df)
    both = df.dropna(subset=["diff_pct"])
    apart = both[~both["repeatable"]]
    console.print(f"{len(both) - len(apart)} of {len(both)} values within {REPEATABLE_PCT:.0f}%", highlight=False)
    return 0


def _report(console: Console, profile: Path, df, save_table) -> int:
    _print(console, f"validation of {profile}", df)
    csv, md = save_table(df, profile.with_name(profile.stem + ".validation"))
    console.print(f"saved {csv} and {md}")
    return 0
