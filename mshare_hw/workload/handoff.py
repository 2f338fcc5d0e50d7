"""Hand a generated workload from one process to others through files they memory-map.

A sweep's client generates every workload once to name its traces (digests); its local workers then
need the same workload. Generating it again in each worker costs as much as in the client, on the
workers' cores, before their first run. Instead the client saves the trace arrays as .npy files next to
the shards and the workers map them read-only: the page cache holds one copy for all, loading costs
nothing, and the content is the client's own, so the digests travel with it.

Files are named like every temporary file (mshare_hw.fileio.temp_path: `.NAME.tmp.PID`), so those of a
killed sweep are removed by the next one. Only workloads whose traces are all in memory (ArrayTrace) are
handed off; others (streams, trace files) are cheap to open again.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np

from mshare_hw.fileio import temp_path
from mshare_hw.workload.model import ArrayTrace, Process, Workload


def can_hand_off(workload: Workload) -> bool:
    return all(isinstance(p.trace, ArrayTrace) for p in workload.processes)


def save_traces(workload: Workload, directory: Path, key: str) -> tuple[list[tuple[str, str]], list[Path]]:
    """Write the trace arrays of `workload` (ArrayTrace traces only) to files in `directory`; returns their
    names per process (for `save_meta`) and every file written (to delete when done). Needs no digests,
    so a sweep writes them while the digests are computed."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    arrays = []
    for i, p in enumerate(workload.processes):
        assert isinstance(p.trace, ArrayTrace)
        names = []
        for part, arr in (("addrs", p.trace.addrs), ("kinds", p.trace.kinds)):
            path = temp_path(directory / f"{_stem(key)}.p{i}.{part}.npy")
            with open(path, "wb") as f:
                np.save(f, arr)
            written.append(path)
            names.append(path.name)
        arrays.append((names[0], names[1]))
    return arrays, written


def save_meta(workload: Workload, digests: list[str], arrays: list[tuple[str, str]], directory: Path, key: str) -> Path:
    """Write the file `load_workload` reads: the workload without its traces, the names of the trace files
    `save_traces` wrote, and the digests."""
    meta = temp_path(directory / f"{_stem(key)}.workload.pickle")
    skeleton = {
        "regions": workload.regions,
        "description": workload.description,
        "processes": [(p.name, p.cpu) for p in workload.processes],
        "arrays": arrays,
        "digests": digests,
    }
    meta.write_bytes(pickle.dumps(skeleton))
    return meta


def save_workload(workload: Workload, digests: list[str], directory: Path, key: str) -> tuple[Path, list[Path]]:
    """`save_traces` then `save_meta`: returns the file to pass to `load_workload` and every file written."""
    arrays, written = save_traces(workload, directory, key)
    meta = save_meta(workload, digests, arrays, directory, key)
    return meta, [*written, meta]


def _stem(key: str) -> str:
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def load_workload(meta: str | Path) -> tuple[Workload, list[str]]:
    """The workload `save_workload` wrote, its traces memory-mapped read-only, and its digests."""
    meta = Path(meta)
    skeleton = pickle.loads(meta.read_bytes())
    processes = []
    for (name, cpu), (a_name, k_name) in zip(skeleton["processes"], skeleton["arrays"], strict=True):
        addrs = np.load(meta.parent / a_name, mmap_mode="r")
        kinds = np.load(meta.parent / k_name, mmap_mode="r")
        processes.append(Process(name=name, trace=ArrayTrace(addrs, kinds), cpu=cpu))
    workload = Workload(processes=processes, regions=skeleton["regions"], description=skeleton["description"])
    return workload, skeleton["digests"]
