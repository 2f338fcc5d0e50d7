"""Merge results files (shards of a sweep, job-array outputs) into one, without loading the runs.

Every run group is copied as it is (datasets, compression and attributes included) and its summary row
is carried over, so a merged file holds exactly what the inputs held. The output is written to a
temporary name and renamed into place, like every results file (`new_results_file`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path

import h5py
import numpy as np

from mshare_hw.results.hdf5 import FORMAT_NAME, ResultsFormatError, check_header, new_results_file
from mshare_hw.results.summary import EXTRA_COLUMNS, STABLE_COLUMNS, STRING_COLUMNS, summary_dtype

__all__ = ["MergeError", "merge_results", "summary_run_ids", "write_merged"]

COLUMNS = STABLE_COLUMNS + EXTRA_COLUMNS


class MergeError(ValueError):
    """An input is not a results file of this format, or two inputs disagree about one run."""


def _check(f: h5py.File, path: Path) -> None:
    try:
        check_header(f, path)
    except ResultsFormatError as e:
        raise MergeError(str(e)) from None
    if "summary" not in f or "runs" not in f:
        raise MergeError(f"{path}: no /summary or /runs")
    names = f["summary"].dtype.names or ()
    if tuple(names) != COLUMNS:
        raise MergeError(
            f"{path}: its summary columns differ from this mshare-hw's (written by another version?); "
            "rerun its experiment instead of merging it"
        )


def _rows(f: h5py.File) -> dict[str, dict]:
    """run_id -> summary row (plain Python values), in file order."""
    out: dict[str, dict] = {}
    table = f["summary"][()]
    for rec in table:
        row = {}
        for name in COLUMNS:
            v = rec[name]
            row[name] = (v.decode() if isinstance(v, bytes) else str(v)) if name in STRING_COLUMNS else int(v)
        out[row["run_id"]] = row
    return out


def summary_run_ids(path: str | Path, *, strict: bool = True) -> list[str]:
    """The run ids in a results file's summary, in order. With `strict=False` a file of another summary
    schema (an older version) reads as empty, as the runner treats such runs: to be replayed."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        try:
            _check(f, path)
        except MergeError:
            if strict or f.attrs.get("format") != FORMAT_NAME:
                raise
            return []
        return list(_rows(f))


def write_merged(out: str | Path, picks: Sequence[tuple[str | Path, str]], experiment: str | None = None) -> Path:
    """Write `out` with the runs `picks` names, in that order: (source file, run id) pairs. The root
    attributes are those of a fresh results file; `experiment` defaults to the sources' experiment
    name(s)."""
    out = Path(out)
    with ExitStack() as stack:
        files: dict[Path, h5py.File] = {}
        rows: dict[Path, dict[str, dict]] = {}
        for src, _ in picks:
            p = Path(src)
            if p not in files:
                f = stack.enter_context(h5py.File(p, "r"))
                _check(f, p)
                files[p], rows[p] = f, _rows(f)
        seen: set[str] = set()
        for src, rid in picks:
            if rid in seen:
                raise MergeError(f"run {rid} picked twice")
            seen.add(rid)
            if rid not in rows[Path(src)] or rid not in files[Path(src)]["runs"]:
                raise MergeError(f"{src}: no run '{rid}'")
        if experiment is None:
            names = list(dict.fromkeys(str(f.attrs.get("experiment", "")) for f in files.values()))
            experiment = "+".join(n for n in names if n)
        table = np.empty(len(picks), dtype=summary_dtype())
        for i, (src, rid) in enumerate(picks):
            table[i] = tuple(rows[Path(src)][rid][c] for c in COLUMNS)
        with new_results_file(out, experiment) as dst:
            dst.create_dataset("summary", data=table)
            grp = dst.create_group("runs")
            for src, rid in picks:
                files[Path(src)].copy(files[Path(src)]["runs"][rid], grp, name=rid)
    return out


def merge_results(out: str | Path, inputs: Iterable[str | Path], experiment: str | None = None) -> list[str]:
    """Merge results files into `out`: every run of every input, inputs in the order given, runs in
    their file's order. A run id present in several inputs is kept once (the first); its summary rows
    must agree (equal run ids are equal configurations, traces and tool version, hence equal results).
    `out` may be one of the inputs. Returns the merged run ids in order."""
    inputs = [Path(p) for p in inputs]
    if not inputs:
        raise MergeError("nothing to merge: give at least one input file")
    picks: list[tuple[Path, str]] = []
    first: dict[str, tuple[Path, dict]] = {}
    for p in inputs:
        if not p.is_file():
            raise MergeError(f"{p}: no such file")
        try:
            with h5py.File(p, "r") as f:
                _check(f, p)
                file_rows = _rows(f)
        except OSError as e:
            raise MergeError(f"{p}: cannot read ({e})") from None
        for rid, row in file_rows.items():
            if rid in first:
                src, prev = first[rid]
                diff = [c for c in COLUMNS if prev[c] != row[c]]
                if diff:
                    raise MergeError(
                        f"run {rid} differs between {src} and {p} (columns {', '.join(diff[:5])}): "
                        "equal run ids must have equal results; were they produced by modified code?"
                    )
                continue
            first[rid] = (p, row)
            picks.append((p, rid))
    write_merged(out, picks, experiment)
    return [rid for _, rid in picks]
