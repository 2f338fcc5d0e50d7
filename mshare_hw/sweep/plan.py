"""A sweep's plan: the grid points it covers (resolved and checked without replaying), and which of their
runs are already done (in OUT or in a complete shard) and which are still to run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import Experiment, expand, get_dotted
from mshare_hw.results.merge import MergeError, summary_run_ids
from mshare_hw.runner import check_memory, check_point, params_for, run_id_for, workload_key
from mshare_hw.sweep.shards import shard_complete, shard_path
from mshare_hw.workload.build import build_workload
from mshare_hw.workload.model import Workload


class SweepError(RuntimeError):
    """Some runs of a sweep failed (the others are kept: a rerun computes only the missing ones)."""


@dataclass(frozen=True)
class GridPoint:
    index: int  # position in the experiment's grid (0-based)
    point: Experiment  # the resolved single-point experiment
    run_id: str
    label: str  # the point's axis values, for messages


@dataclass
class SweepResult:
    out: Path
    points: int  # grid points this sweep (or shard) covers
    in_out: list[str] = field(default_factory=list)  # run ids already in OUT, kept
    in_shards: list[str] = field(default_factory=list)  # run ids found as complete shards
    computed: list[str] = field(default_factory=list)  # run ids computed by this invocation
    failed: list[tuple[str, str]] = field(default_factory=list)  # (point label, error)
    seconds: float = 0.0
    run_seconds: dict[str, float] = field(default_factory=dict)  # run id -> its task's time (build, replay, write)


def parse_shard(text: str) -> tuple[int, int]:
    """'2/3' -> (2, 3): the second of three slices (1-based)."""
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected I/N with whole numbers, e.g. 2/3") from None
    if n < 1 or not 1 <= i <= n:
        raise ConfigError(f"--shard {text!r}: need 1 <= I <= N")
    return i, n


def _label(exp: Experiment, point: Experiment) -> str:
    data = point.model_dump()
    parts = []
    for key in exp.sweep:
        for k in key.split("+"):
            parts.append(f"{k}={get_dotted(data, k)}")
    return ", ".join(parts) or point.name


def resolve_points(
    exp: Experiment,
    shard: tuple[int, int] | None = None,
    on_workload: Callable[[str, Workload, list[str]], None] | None = None,
    on_generated: Callable[[str, Workload], None] | None = None,
    *,
    name_runs: bool = True,
) -> list[GridPoint]:
    """Expand the grid and check every point as far as possible without replaying it: its workload is
    built (once per distinct workload; a generator's traces are drawn only when read), its traces are
    read for their digests, and its engine parameters, memory layout and event schedule are built.
    Raises ConfigError for the first point that cannot run. With `shard=(i, n)`, only the points k with
    k % n == i - 1 (all are still expanded). `on_generated(key, workload)` sees each workload as soon as
    it is built (before its digests), `on_workload(key, workload, digests)` before it is dropped. With
    `name_runs=False` (`mshare-hw validate`) no trace is drawn or digested and the points' run ids are
    empty: a point is checked from its parameters alone."""
    points = expand(exp)
    selected = [k for k in range(len(points)) if shard is None or k % shard[1] == shard[0] - 1]
    check_memory([points[k] for k in selected], [_label(exp, points[k]) for k in selected])
    by_workload: dict[str, list[int]] = {}
    for k in selected:
        by_workload.setdefault(workload_key(points[k]), []).append(k)
    run_ids: dict[int, str] = {}
    for ks in by_workload.values():
        first = points[ks[0]]
        workload = build_workload(first.workload, first.seed)  # one at a time: only its digests are kept
        if on_generated is not None:
            on_generated(workload_key(first), workload)
        digests = workload.trace_digests() if name_runs else []
        for k in ks:
            label = _label(exp, points[k])
            try:
                check_point(points[k], workload, params_for(points[k], workload.total_accesses()))
            except ConfigError as e:
                raise ConfigError(f"sweep point {k + 1} ({label}): {e}") from None
            run_ids[k] = run_id_for(points[k], digests) if name_runs else ""
        if on_workload is not None:
            on_workload(workload_key(first), workload, digests)
        del workload
    return [GridPoint(k, points[k], run_ids[k], _label(exp, points[k])) for k in selected]


@dataclass
class Plan:
    todo: list[GridPoint]  # the points whose runs are to be computed (each run once)
    out_order: list[str]  # the run ids OUT holds, in its order


def plan_runs(grid: list[GridPoint], out: Path, shard_dir: Path, result: SweepResult) -> Plan:
    """Sort the grid's runs into those already in OUT, those in complete shards (both noted in `result`)
    and those still to run; unreadable shard leftovers are deleted."""
    out_order: list[str] = []
    if out.exists():
        try:
            out_order = summary_run_ids(out, strict=False)
        except (OSError, MergeError) as e:
            raise ConfigError(
                f"{out}: exists and is not a readable mshare-hw results file ({e}); choose another output path"
            ) from None
    in_out = set(out_order)
    todo: list[GridPoint] = []
    planned: set[str] = set()
    for gp in grid:
        if gp.run_id in planned:  # the same configuration twice in the grid: one run
            continue
        planned.add(gp.run_id)
        if gp.run_id in in_out:
            result.in_out.append(gp.run_id)
        elif shard_complete(shard_path(shard_dir, gp.run_id), gp.run_id):
            result.in_shards.append(gp.run_id)
        else:
            shard_path(shard_dir, gp.run_id).unlink(missing_ok=True)  # unreadable leftovers
            todo.append(gp)
    return Plan(todo, out_order)
