"""Shards: each run of a sweep writes a complete results file `OUT.shards/<run_id>.h5` (renamed into place,
so one that exists is whole); at the end they are merged into OUT in grid order and deleted."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from mshare_hw.results.merge import MergeError, summary_run_ids, write_merged


def shard_dir_for(out: str | Path) -> Path:
    """The directory of a sweep's per-run shard files: next to OUT, named OUT.shards."""
    out = Path(out)
    return out.with_name(out.name + ".shards")


def shard_path(shard_dir: Path, run_id: str) -> Path:
    return shard_dir / f"{run_id}.h5"


def shard_complete(path: Path, run_id: str) -> bool:
    """Whether `path` is a whole shard of the run `run_id`."""
    if not path.is_file():
        return False
    try:
        return summary_run_ids(path) == [run_id]
    except (OSError, MergeError, KeyError, ValueError):
        return False


def merge_shards(
    out: Path, shard_dir: Path, grid_run_ids: Iterable[str], out_order: list[str], experiment: str
) -> list[tuple[Path, str]]:
    """Write OUT with the grid's runs in grid order (each from OUT or from its shard), then the runs OUT held
    that are not in this grid; OUT is left as it is when that changes nothing. Returns the picks: (file,
    run id) in OUT's new order. `out_order`: the run ids OUT held, in its order."""
    in_out = set(out_order)
    picks: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for rid in grid_run_ids:
        if rid in seen:
            continue
        seen.add(rid)
        picks.append((out if rid in in_out else shard_path(shard_dir, rid), rid))
    picks += [(out, rid) for rid in out_order if rid not in seen]
    unchanged = [(out, rid) for rid in out_order] == picks  # nothing new, nothing dropped: keep OUT as it is
    if picks and not unchanged:
        write_merged(out, picks, experiment)
    return picks


def remove_shards(out: Path, shard_dir: Path, picks: list[tuple[Path, str]]) -> None:
    """Delete the merged shards, and their directory once it is empty."""
    for src, _ in picks:
        if src != out:
            src.unlink(missing_ok=True)
    if shard_dir.is_dir() and not any(shard_dir.iterdir()):
        shard_dir.rmdir()
