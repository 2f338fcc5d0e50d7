"""The HDF5 results file, written to a temporary name and renamed into place (mshare_hw.fileio).

Layout (format "mshare-hw-results", version 1):
  /            attrs: format, format_version, tool_version, created, experiment
  /summary     compound table, one row per run (STABLE_COLUMNS then EXTRA_COLUMNS)
  /runs/<id>/  attrs: config (resolved experiment, JSON), seed, trace_digests (JSON), counter_names
               datasets: cpu_counters, proc_counters (rows x counters), clocks, pt_pages (by level),
               stale_examples (cycle, cpu, proc, va, where), intervals_at + intervals (optional);
               with secondary MMUs (devices) also: device_counters (devices x DEVICE_COUNTERS; attrs
               columns, names, kinds, processes), secondary_proc_counters (processes x PROC_COUNTERS;
               attr columns), device_stale_examples (global_access, device, va)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from mshare_hw.counters import COUNTERS
from mshare_hw.engine.secondary import DEVICE_COUNTERS, DEVICE_STALE_COLUMNS, PROC_COUNTERS
from mshare_hw.fileio import atomic_write
from mshare_hw.results.record import RunRecord
from mshare_hw.results.summary import EXTRA_COLUMNS, STABLE_COLUMNS, STRING_COLUMNS, summary_dtype

FORMAT_NAME = "mshare-hw-results"
FORMAT_VERSION = 1
STALE_COLUMNS = ("cycle", "cpu", "proc", "va", "where")
STALE_WHERE = ("l1_tlb", "l2_tlb", "pwc")

if TYPE_CHECKING:
    import pandas as pd
# pandas is imported by the readers that return DataFrames only: `mshare-hw run` and `sweep` (and the sweep's
# workers) write results without it, and importing it would add a good fraction of a second to every command.


def tool_version() -> str:
    from mshare_hw.version import __version__

    return __version__


class ResultsFormatError(ValueError):
    """A file that is not an mshare-hw results file of the format version this version reads."""


def check_header(f: h5py.File, path: Path) -> None:
    """The one check of a results file's root attributes (format name and version) before reading it."""
    if f.attrs.get("format") != FORMAT_NAME:
        raise ResultsFormatError(f"{path}: not an mshare-hw results file")
    version = int(f.attrs.get("format_version", -1))
    if version != FORMAT_VERSION:
        raise ResultsFormatError(f"{path}: format version {version}, this mshare-hw reads version {FORMAT_VERSION}")


@contextmanager
def new_results_file(path: Path, experiment_name: str) -> Iterator[h5py.File]:
    """An empty results file with its root attributes, open for writing; it appears at `path` (parent
    directories created) only when the block ends without an exception."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the HDF5 1.10 object format (readable by HDF5 1.10 and later): half the per-run overhead of the
    # 1.8-compatible default, which dominates a file of many small runs
    with atomic_write(path) as tmp, h5py.File(tmp, "w", libver=("v110", "latest")) as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["tool_version"] = tool_version()
        f.attrs["created"] = datetime.now(UTC).isoformat(timespec="seconds")
        f.attrs["experiment"] = experiment_name
        yield f


def write_results(path: str | Path, experiment_name: str, runs: list[RunRecord]) -> Path:
    """Write `runs` to a new results file at `path`. Nothing appears there unless the whole file was written."""
    path = Path(path)
    with new_results_file(path, experiment_name) as f:
        table = np.empty(len(runs), dtype=summary_dtype())
        for i, r in enumerate(runs):
            table[i] = tuple(r.row[c] for c in STABLE_COLUMNS + EXTRA_COLUMNS)
        f.create_dataset("summary", data=table)
        grp = f.create_group("runs")
        for r in runs:
            g = grp.create_group(r.run_id)
            g.attrs["config"] = json.dumps(r.config, sort_keys=True)
            g.attrs["seed"] = r.seed
            g.attrs["trace_digests"] = json.dumps(r.trace_digests)
            g.attrs["process_names"] = json.dumps(r.proc_names)
            g.attrs["counter_names"] = json.dumps(list(COUNTERS))
            res = r.result
            g.create_dataset("cpu_counters", data=res["cpu_counters"], compression="gzip")
            g.create_dataset("proc_counters", data=res["proc_counters"], compression="gzip")
            g.create_dataset("clocks", data=res["clocks"])
            g.create_dataset("pt_pages", data=res["pt_pages"])
            stale = np.array(res["stale_examples"], dtype=np.int64).reshape(-1, len(STALE_COLUMNS))
            ds = g.create_dataset("stale_examples", data=stale)
            ds.attrs["columns"] = json.dumps(STALE_COLUMNS)
            ds.attrs["where"] = json.dumps(STALE_WHERE)
            if res.get("device_names"):
                _write_devices(g, res)
            if res["intervals"]:
                g.create_dataset("intervals_at", data=np.array([a for a, _ in res["intervals"]], np.int64))
                g.create_dataset("intervals", data=np.stack([c for _, c in res["intervals"]]), compression="gzip")
    return path


def _write_devices(g: h5py.Group, res: dict) -> None:
    ds = g.create_dataset("device_counters", data=np.asarray(res["device_counters"], np.int64))
    ds.attrs["columns"] = json.dumps(DEVICE_COUNTERS)
    ds.attrs["names"] = json.dumps(res["device_names"])
    ds.attrs["kinds"] = json.dumps(res["device_kinds"])
    ds.attrs["processes"] = json.dumps([int(p) for p in res["device_procs"]])
    ds = g.create_dataset("secondary_proc_counters", data=np.asarray(res["secondary_proc_counters"], np.int64))
    ds.attrs["columns"] = json.dumps(PROC_COUNTERS)
    ex = np.array(res["device_stale_examples"], dtype=np.int64).reshape(-1, len(DEVICE_STALE_COLUMNS))
    g.create_dataset("device_stale_examples", data=ex).attrs["columns"] = json.dumps(DEVICE_STALE_COLUMNS)


def _read_devices(g: h5py.Group) -> dict:
    if "device_counters" not in g:
        return {}
    ds = g["device_counters"]
    return {
        "device_counters": ds[()],
        "device_names": json.loads(ds.attrs["names"]),
        "device_kinds": json.loads(ds.attrs["kinds"]),
        "device_procs": json.loads(ds.attrs["processes"]),
        "secondary_proc_counters": g["secondary_proc_counters"][()],
        "device_stale_examples": [tuple(int(x) for x in r) for r in g["device_stale_examples"][()]],
    }


def load_summary(path: str | Path) -> pd.DataFrame:
    """The /summary table as a DataFrame, strings decoded."""
    import pandas as pd

    path = Path(path)
    with h5py.File(path, "r") as f:
        check_header(f, path)
        df = pd.DataFrame(f["summary"][()])
    for col in df.columns:
        if col in STRING_COLUMNS:
            df[col] = df[col].map(lambda v: v.decode() if isinstance(v, bytes) else v)
    return df


def load_attrs(path: str | Path) -> dict:
    """The file's root attributes: format, format_version, tool_version, created, experiment."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        check_header(f, path)
        return {k: v.decode() if isinstance(v, bytes) else v for k, v in f.attrs.items()}


def load_configs(path: str | Path) -> dict[str, dict]:
    """The resolved configuration of every run, by run id."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        check_header(f, path)
        return {rid: json.loads(g.attrs["config"]) for rid, g in f["runs"].items()}


def load_run(path: str | Path, run_id: str) -> dict:
    """Everything stored for one run: config, per-CPU and per-process counter tables (DataFrames), ..."""
    import pandas as pd

    path = Path(path)
    with h5py.File(path, "r") as f:
        check_header(f, path)
        if run_id not in f["runs"]:
            raise KeyError(f"{path}: no run '{run_id}'")
        g = f["runs"][run_id]
        names = json.loads(g.attrs["counter_names"])
        procs = json.loads(g.attrs["process_names"])
        out = {
            "config": json.loads(g.attrs["config"]),
            "seed": int(g.attrs["seed"]),
            "trace_digests": json.loads(g.attrs["trace_digests"]),
            "cpu_counters": pd.DataFrame(g["cpu_counters"][()], columns=names),
            "proc_counters": pd.DataFrame(g["proc_counters"][()], columns=names, index=procs),
            "clocks": g["clocks"][()],
            "pt_pages": g["pt_pages"][()],
            "stale_examples": pd.DataFrame(g["stale_examples"][()], columns=list(STALE_COLUMNS)),
        }
        dev = _read_devices(g)
        if dev:
            # per device: its counters, kind and bound process; per process: the notifier work it initiated
            table = pd.DataFrame(dev["device_counters"], columns=list(DEVICE_COUNTERS), index=dev["device_names"])
            table.insert(0, "process", [procs[p] for p in dev["device_procs"]])
            table.insert(0, "kind", dev["device_kinds"])
            out["devices"] = table
            sec = pd.DataFrame(dev["secondary_proc_counters"], columns=list(PROC_COUNTERS), index=procs)
            out["proc_counters"] = out["proc_counters"].join(sec)
            out["device_stale_examples"] = pd.DataFrame(
                np.array(dev["device_stale_examples"], np.int64).reshape(-1, len(DEVICE_STALE_COLUMNS)),
                columns=list(DEVICE_STALE_COLUMNS),
            )
        if "intervals" in g:
            out["intervals"] = pd.DataFrame(g["intervals"][()], columns=names, index=g["intervals_at"][()])
        return out


def read_runs(path: str | Path) -> list[RunRecord]:
    """Every run in a results file, in the shape `write_results` takes (so a rewrite keeps them)."""
    path = Path(path)
    with h5py.File(path, "r") as f:
        check_header(f, path)
        summary = f["summary"][()]
        runs = []
        for rec in summary:
            row = {}
            for name in summary.dtype.names:
                v = rec[name]
                row[name] = v.decode() if isinstance(v, bytes) else (int(v) if name not in STRING_COLUMNS else v)
            g = f["runs"][row["run_id"]]
            result = {
                "cpu_counters": g["cpu_counters"][()],
                "proc_counters": g["proc_counters"][()],
                "clocks": g["clocks"][()],
                "pt_pages": g["pt_pages"][()],
                "stale_examples": [tuple(int(x) for x in r) for r in g["stale_examples"][()]],
                "intervals": list(zip(g["intervals_at"][()].tolist(), g["intervals"][()])) if "intervals" in g else [],
                **_read_devices(g),
            }
            runs.append(
                RunRecord(
                    run_id=row["run_id"],
                    row=row,
                    config=json.loads(g.attrs["config"]),
                    seed=int(g.attrs["seed"]),
                    trace_digests=json.loads(g.attrs["trace_digests"]),
                    proc_names=json.loads(g.attrs["process_names"]),
                    result=result,
                )
            )
    return runs
