"""Trace readers (lackey text, ChampSim binary, the native HDF5 format) and conversion between them.

Every reader is a `mshare_hw.traces.source.TraceSource`: it streams (addrs uint64, kinds uint8)
chunks in constant memory and raises only `ConfigError` (naming the file and the line or byte offset)
on bad input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mshare_hw.config.errors import ConfigError
from mshare_hw.traces._io import HDF5_MAGIC, UTF8_BOM, compression_of, open_stream, read_head
from mshare_hw.traces.champsim import ChampSimTrace
from mshare_hw.traces.lackey import LackeyTrace
from mshare_hw.traces.native import NativeTrace, open_native, write_native

FORMATS = ("lackey", "champsim", "native")

__all__ = [
    "FORMATS",
    "ChampSimTrace",
    "LackeyTrace",
    "NativeTrace",
    "detect_format",
    "open_trace",
    "trace_info",
    "write_native",
]


def _looks_like_text(head: bytes) -> bool:
    if not head:
        return True
    printable = sum(1 for b in head if b in (9, 10, 13) or 32 <= b < 127)
    return printable >= 0.95 * len(head)


def detect_format(path: str | Path) -> str:
    """'native' (HDF5 magic), 'champsim' (binary content, or 'champsim' in the name) or 'lackey'
    (text content)."""
    p = Path(path)
    open_stream(p)[0].close()  # missing file, directory -> ConfigError
    with open(p, "rb") as f:
        if f.read(8) == HDF5_MAGIC:
            return "native"
    if "champsim" in p.name.lower():
        return "champsim"
    return "lackey" if _looks_like_text(read_head(p, 4096).removeprefix(UTF8_BOM)) else "champsim"


def open_trace(path: str | Path, fmt: str = "auto", skip_bad_lines: bool = False) -> list[tuple[str, object]]:
    """The processes of a trace file as (name, TraceSource): one for lackey and ChampSim files (named
    after the file), all of a native file's."""
    p = Path(path)
    if fmt == "auto":
        fmt = detect_format(p)
    name = p.name
    for suffix in (".gz", ".xz", ".zst"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if fmt == "lackey":
        return [(name, LackeyTrace(p, skip_bad_lines=skip_bad_lines))]
    if fmt == "champsim":
        return [(name, ChampSimTrace(p))]
    if fmt == "native":
        return open_native(p)
    raise ConfigError(f"{p}: unknown trace format {fmt!r}; expected one of auto, {', '.join(FORMATS)}")


def trace_info(source, chunk_size: int = 1 << 20) -> dict:
    """One streaming pass: accesses, counts by kind, address range, distinct 4 KiB pages."""
    counts = np.zeros(3, dtype=np.int64)
    lo, hi = None, None
    pages = np.empty(0, dtype=np.uint64)
    n = 0
    pending: list[np.ndarray] = []
    pending_n = 0
    for a, k in source.chunks(chunk_size):
        n += len(a)
        counts += np.bincount(k, minlength=3)[:3]
        if len(a):
            amin, amax = int(a.min()), int(a.max())
            lo = amin if lo is None else min(lo, amin)
            hi = amax if hi is None else max(hi, amax)
            pending.append(np.unique(a >> np.uint64(12)))
            pending_n += len(pending[-1])
            if pending_n > 4 * len(pages) + (1 << 20):
                pages = np.unique(np.concatenate([pages, *pending]))
                pending, pending_n = [], 0
    if pending:
        pages = np.unique(np.concatenate([pages, *pending]))
    return {
        "accesses": n,
        "ifetch": int(counts[0]),
        "load": int(counts[1]),
        "store": int(counts[2]),
        "addr_min": lo,
        "addr_max": hi,
        "pages_4k": len(pages),
    }


def file_compression(path: str | Path) -> str | None:
    return compression_of(path)
