"""`mshare-hw validate` and `mshare-hw sweep`: check an experiment's grid, run it on Dask or in shards."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mshare_hw.cli.common import earlier_runs, err_console, say
from mshare_hw.config.errors import ConfigError
from mshare_hw.fileio import check_writable, output_lock


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.0f} runs"),  # running runs count by their fraction done
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
    )


def cmd_validate(args: argparse.Namespace) -> int:
    from mshare_hw.sweep import resolve_points
    from mshare_hw.workload.manifest import load_run_file

    exp = load_run_file(args.experiment, args.set)
    points = resolve_points(exp, name_runs=False)  # checked from their parameters: no trace is drawn
    print(f"{args.experiment}: OK, experiment '{exp.name}', {len(points)} point{'s' if len(points) != 1 else ''}")
    for key, values in grid_axes(exp).items():
        print(f"  {key}: {', '.join(values)}")
    print(f"  page-table isolation (machine.pti): {_pti_by_uarch(points)}")
    return 0


# the model's axes, listed by `validate` even where the grid does not vary them
MODEL_AXES = ("uarch", "pt_config", "share_level", "strategy", "detach_flush", "notifier_policy", "scheduler.kind")


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def grid_axes(exp) -> dict[str, list[str]]:
    """Each setting of the grid's points that a run depends on, with its values in grid order: the model's
    axes and every [machine] key always, any other key where the points differ."""
    from mshare_hw.config.experiment import expand

    rows = [_flat(p.model_dump(exclude={"sweep", "exclude", "name", "description"})) for p in expand(exp)]
    axes: dict[str, list[str]] = {}
    for key in rows[0]:
        values = list(dict.fromkeys(repr(r.get(key)) if not isinstance(r.get(key), str) else r[key] for r in rows))
        if key in MODEL_AXES or key.startswith("machine.") or len(values) > 1:
            axes[key] = values
    return axes


def _pti_by_uarch(points) -> str:
    """Each uarch's resolved PTI setting over the points, e.g. "skylake_sp on, zen3 off" ("on/off" when a
    sweep sets machine.pti both ways)."""
    from mshare_hw.config.uarch import load_uarch, resolve_pti

    seen: dict[str, set[str]] = {}
    for gp in points:
        on = resolve_pti(gp.point.machine.pti, load_uarch(gp.point.uarch))
        seen.setdefault(gp.point.uarch, set()).add("on" if on else "off")
    return ", ".join(f"{u} {'/'.join(sorted(v, reverse=True))}" for u, v in seen.items())


def cmd_sweep(args: argparse.Namespace) -> int:
    from mshare_hw.config.experiment import expand
    from mshare_hw.sweep import parse_shard
    from mshare_hw.workload.manifest import load_run_file

    exp = load_run_file(args.experiment, args.set)
    shard = parse_shard(args.shard) if args.shard else None
    if shard and args.scheduler:
        raise ConfigError("--shard runs without Dask: give --shard or --scheduler, not both")
    if shard and shard[0] > (n_points := len(expand(exp))):
        raise ConfigError(
            f"--shard {args.shard}: the grid has {n_points} point{'s' if n_points != 1 else ''}, so shard {shard[0]} "
            f"of {shard[1]} has none; use at most {n_points} shards"
        )
    if args.output:
        out = Path(args.output)
    elif shard:
        out = Path(f"{exp.name}.shard{shard[0]}of{shard[1]}.h5")
    else:
        out = Path(f"{exp.name}.h5")
    check_writable(out)
    with output_lock(out):
        return _sweep_locked(args, exp, out, shard)


def _sweep_locked(args: argparse.Namespace, exp, out: Path, shard: tuple[int, int] | None) -> int:
    from mshare_hw.sweep import SweepError, sweep

    kept = earlier_runs(out)
    if kept:
        say(
            args.quiet,
            f"{out}: exists; kept its {kept} earlier run{'s' if kept != 1 else ''} (a sweep resumes into it)",
        )
    progress = _progress(args.quiet)
    task: list[int] = []

    def on_start(res, n_todo: int, where: str) -> None:
        say(
            args.quiet,
            f"sweep {exp.name}: {res.points} points; {len(res.in_out)} already in {out}, "
            f"{len(res.in_shards)} in finished shards; "
            + (f"{n_todo} to run on {where}" if n_todo else "nothing to run"),
        )
        task.append(progress.add_task(f"sweep {exp.name}", total=n_todo))

    def on_progress(done: float, total: int) -> None:
        progress.update(task[0], completed=done)

    try:
        with progress:
            res = sweep(
                exp,
                out,
                scheduler=args.scheduler,
                workers=args.workers,
                shard=shard,
                keep_shards=args.keep_shards,
                on_start=on_start,
                on_progress=on_progress,
            )
    except SweepError as e:
        err_console.print(f"[bold red]error:[/bold red] {e}", highlight=False, soft_wrap=True)
        return 1
    say(args.quiet, f"sweep {exp.name}: computed {len(res.computed)} runs in {res.seconds:.1f} s; results: {out}")
    return 0


def add_validate_parser(sub) -> None:
    va = sub.add_parser("validate", help="check an experiment file (every grid point) without running it")
    va.add_argument("experiment", help="experiment TOML file (or a workload manifest)")
    va.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (repeatable)")
    va.set_defaults(func=cmd_validate)


def add_sweep_parser(sub) -> None:
    sw = sub.add_parser(
        "sweep",
        help="run an experiment's grid on Dask (or one --shard of it serially); resumable",
        description="Each run writes its own shard (OUT.shards/<run_id>.h5); at the end the shards are merged "
        "into OUT in grid order. Runs already in OUT or in a finished shard are not recomputed, so a killed "
        "sweep started again finishes only the missing runs.",
    )
    sw.add_argument("experiment", help="experiment TOML file")
    sw.add_argument(
        "-o",
        "--output",
        help="HDF5 results file (default: <experiment name>.h5); an existing one keeps its runs and the sweep "
        "adds the missing ones",
    )
    sw.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting (repeatable)")
    where = sw.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler, e.g. tcp://host:8786")
    where.add_argument(
        "--workers", type=int, help="workers (threads) of the local Dask cluster (default: CPUs, at most one per run)"
    )
    sw.add_argument(
        "--shard",
        metavar="I/N",
        help="run only grid points k with k %% N == I-1, serially without Dask (job arrays); "
        "default output <name>.shardIofN.h5",
    )
    sw.add_argument("--keep-shards", action="store_true", help="keep the per-run shard files after merging")
    sw.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no status lines")
    sw.set_defaults(func=cmd_sweep)
