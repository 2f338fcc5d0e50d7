"""The project's own trace format, for fast repeated replay: one HDF5 file holding any number of
processes' access streams.

    /                      attrs: format = "mshare-hw-trace", format_version = 1, tool_version,
                                  created (ISO 8601 UTC), plus the caller's `meta` (JSON-able scalars)
    /processes/<i>/        one group per process, i = 0, 1, ... in the order written
        addrs   uint64[n]  chunked (CHUNK_ELEMS), compressed (lzf by default; gzip or none on request)
        kinds   uint8[n]   0 ifetch, 1 load, 2 store; same chunking
        attrs:  name, pid (-1: unknown), source (file it came from), source_format, n_accesses,
                n_ifetch, n_load, n_store, digest (= ArrayTrace(addrs, kinds).digest())

Writing streams chunk by chunk; the file is written under a temporary name and renamed into place, so
a failed conversion never leaves a half-written file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np

from mshare_hw.config.errors import ConfigError
from mshare_hw.fileio import atomic_write
from mshare_hw.traces._io import VA_LIMIT
from mshare_hw.traces.source import DEFAULT_CHUNK, STORE, TraceSource

FORMAT_NAME = "mshare-hw-trace"
FORMAT_VERSION = 1
CHUNK_ELEMS = 1 << 18  # HDF5 chunk: 2 MiB of addresses
COMPRESSIONS = ("lzf", "gzip", "none")


# what h5py raises on a damaged file (corrupt metadata, failed decompression, missing objects)
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError)


@contextlib.contextmanager
def _damaged(path: Path, what: str):
    """Turn h5py's errors on a damaged file into a ConfigError naming the file and the part read."""
    try:
        yield
    except ConfigError:
        raise
    except _H5_ERRORS as e:
        raise ConfigError(
            f"{path}: {what}: damaged or truncated native trace ({type(e).__name__}: {e}); "
            "expected a file written by `mshare-hw trace convert`"
        ) from None


def _open(path: Path) -> h5py.File:
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    try:
        f = h5py.File(path, "r")
    except _H5_ERRORS as e:
        raise ConfigError(f"{path}: not a readable HDF5 file ({e}); expected an mshare-hw native trace") from None
    try:
        with _damaged(path, "file attributes"):
            fmt = f.attrs.get("format")
            if isinstance(fmt, bytes):
                fmt = fmt.decode()
            ok = fmt == FORMAT_NAME and "processes" in f
            ver = int(f.attrs.get("format_version", -1))
    except ConfigError:
        f.close()
        raise
    if not ok:
        f.close()
        raise ConfigError(f"{path}: HDF5 file without format = {FORMAT_NAME!r}; expected an mshare-hw native trace")
    if ver > FORMAT_VERSION:
        f.close()
        raise ConfigError(f"{path}: native trace format version {ver}; this mshare-hw reads up to {FORMAT_VERSION}")
    return f


def _attr_str(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def list_processes(path: str | Path) -> list[dict]:
    """Each process's attributes (with its index `index`), in file order."""
    path = Path(path)
    with _open(path) as f, _damaged(path, "process list"):
        out = []
        for key in sorted(f["processes"], key=int):
            a = f["processes"][key].attrs
            d = {
                k: (_attr_str(v) if isinstance(v, bytes | str) else v.item() if hasattr(v, "item") else v)
                for k, v in a.items()
            }
            d["index"] = int(key)
            for k in _REQUIRED:
                if k not in d:
                    raise KeyError(f"process {key} has no attribute {k!r}")
            d["name"], d["digest"], d["n_accesses"] = str(d["name"]), str(d["digest"]), int(d["n_accesses"])
            for k in ("n_ifetch", "n_load", "n_store", "pid"):
                d[k] = int(d.get(k, -1 if k == "pid" else 0))
            out.append(d)
        return out


_REQUIRED = ("name", "n_accesses", "digest")


class NativeTrace:
    """One process of a native trace file as a TraceSource. `process`: its name or index (None: the
    file's only process)."""

    format_name = "native"

    def __init__(self, path: str | Path, process: str | int | None = None) -> None:
        self.path = Path(path)
        procs = list_processes(self.path)
        if not procs:
            raise ConfigError(f"{self.path}: native trace with no processes")
        if process is None:
            if len(procs) > 1:
                names = ", ".join(repr(p["name"]) for p in procs)
                raise ConfigError(f"{self.path}: holds {len(procs)} processes ({names}); name one of them")
            info = procs[0]
        elif isinstance(process, int | np.integer):
            if not 0 <= int(process) < len(procs):
                raise ConfigError(f"{self.path}: no process #{process}; the file holds {len(procs)}")
            info = procs[int(process)]
        else:
            hits = [p for p in procs if p["name"] == process]
            if not hits:
                names = ", ".join(repr(p["name"]) for p in procs)
                raise ConfigError(f"{self.path}: no process named {process!r}; it holds {names}")
            info = hits[0]
        self.info = info
        self.index = info["index"]
        self.name = info["name"]
        self._group = f"processes/{self.index}"

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        with _open(self.path) as f:
            with _damaged(self.path, f"process {self.name!r}"):
                g = f[self._group]
                da, dk = g["addrs"], g["kinds"]
                n = da.shape[0]
                if dk.shape != da.shape or n != len(self):
                    raise ValueError(f"{n} addresses, {dk.shape[0]} kinds, {len(self)} accesses recorded")
            for i in range(0, n, chunk_size):
                j = min(n, i + chunk_size)
                a = np.empty(j - i, dtype=np.uint64)
                k = np.empty(j - i, dtype=np.uint8)
                with _damaged(self.path, f"process {self.name!r}, accesses {i}..{j - 1}"):
                    da.read_direct(a, np.s_[i:j])
                    dk.read_direct(k, np.s_[i:j])
                if int(k.max()) > STORE or int(a.max()) >= VA_LIMIT:
                    bad = int(np.argmax((k > STORE) | (a >= np.uint64(VA_LIMIT))))
                    raise ConfigError(
                        f"{self.path}: process {self.name!r}, access #{i + bad}: kind {int(k[bad])} at "
                        f"{int(a[bad]):#x}; expected kind 0, 1 or 2 and an address below 2^57"
                    )
                yield a, k

    def digest(self) -> str:
        return str(self.info["digest"])

    def cache_where(self) -> tuple[Path, str, dict, tuple[str, ...]]:
        """What names this process of the file in the scan cache (mshare_hw.traces.digest_cache), for what
        a pass over it finds besides the digest its metadata holds (e.g. the slots a relocation needs)."""
        return self.path, self.format_name, {"process": int(self.index)}, (__name__,)

    def __len__(self) -> int:
        return int(self.info["n_accesses"])

    def kind_counts(self) -> np.ndarray:
        return np.array([self.info["n_ifetch"], self.info["n_load"], self.info["n_store"]], dtype=np.int64)

    def verify(self) -> bool:
        """Recompute the content digest and compare it with the stored one."""
        from mshare_hw.traces._io import stream_digest

        return stream_digest(self.chunks())[0] == self.digest()

    def meta(self) -> dict:
        return {
            "source": str(self.info.get("source", self.path)),
            "source_format": str(self.info.get("source_format", "native")),
            "pid": int(self.info.get("pid", -1)),
        }

    def __repr__(self) -> str:
        return f"NativeTrace({str(self.path)!r}, {self.name!r})"


def open_native(path: str | Path) -> list[tuple[str, NativeTrace]]:
    """All processes of a native trace file as (name, NativeTrace)."""
    return [(p["name"], NativeTrace(path, p["index"])) for p in list_processes(path)]


def _meta_value(k: str, v):
    if isinstance(v, str | int | float | bool | np.integer | np.floating):
        return v
    if isinstance(v, Path):
        return str(v)
    return json.dumps(v, default=str)


def write_native(
    path: str | Path,
    sources: Sequence[tuple[str, TraceSource]],
    meta: dict | None = None,
    *,
    compression: str = "lzf",
    chunk_size: int = DEFAULT_CHUNK,
    process_meta: Sequence[dict] | None = None,
    shuffle: bool = True,
    on_progress=None,
) -> list[dict]:
    """Stream each (name, source) into a native trace file at `path` (atomically). Per-process
    attributes come from `process_meta[i]`, else from `source.meta()` if it has one. Returns the
    per-process attributes written. `on_progress(name, accesses_so_far)` is called after each chunk."""
    if compression not in COMPRESSIONS:
        raise ConfigError(f"compression {compression!r}: expected one of {', '.join(COMPRESSIONS)}")
    if not sources:
        raise ConfigError(f"{path}: nothing to write (no processes)")
    names = [n for n, _ in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: process names must be distinct, got {names}")
    path = Path(path)
    comp = None if compression == "none" else compression
    written = []
    with atomic_write(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT_NAME
            f.attrs["format_version"] = FORMAT_VERSION
            from mshare_hw.version import __version__

            f.attrs["tool_version"] = __version__
            f.attrs["created"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
            for k, v in (meta or {}).items():
                if k not in ("format", "format_version"):
                    f.attrs[k] = _meta_value(k, v)
            procs = f.create_group("processes")
            for i, (name, src) in enumerate(sources):
                g = procs.create_group(str(i))
                kw = dict(chunks=(CHUNK_ELEMS,), maxshape=(None,), compression=comp)
                if comp == "gzip":
                    kw["compression_opts"] = 4
                kw["shuffle"] = shuffle and comp is not None
                da = g.create_dataset("addrs", shape=(0,), dtype=np.uint64, **kw)
                dk = g.create_dataset("kinds", shape=(0,), dtype=np.uint8, **kw)
                h = hashlib.blake2b(digest_size=16)
                counts = np.zeros(3, dtype=np.int64)
                n = 0
                for a, k in src.chunks(chunk_size):
                    a = np.ascontiguousarray(a, dtype=np.uint64)
                    k = np.ascontiguousarray(k, dtype=np.uint8)
                    if k.size and int(k.max()) > STORE:
                        raise ConfigError(f"{name}: access kind {int(k.max())}; expected 0, 1 or 2")
                    m = len(a)
                    da.resize((n + m,))
                    dk.resize((n + m,))
                    da[n : n + m] = a
                    dk[n : n + m] = k
                    h.update(a.data)
                    counts += np.bincount(k, minlength=3)[:3]
                    n += m
                    if on_progress is not None:
                        on_progress(name, n)
                buf = np.empty(min(max(n, 1), CHUNK_ELEMS * 4), dtype=np.uint8)
                for s in range(0, n, len(buf)):  # kinds are hashed after all addresses, as ArrayTrace does
                    e = min(n, s + len(buf))
                    dk.read_direct(buf, np.s_[s:e], np.s_[0 : e - s])
                    h.update(buf[: e - s].data)
                pm = dict(process_meta[i]) if process_meta is not None else {}
                if not pm and hasattr(src, "meta"):
                    pm = dict(src.meta())
                attrs = {
                    "name": name,
                    "pid": int(pm.pop("pid", -1)),
                    "source": str(pm.pop("source", "")),
                    "source_format": str(pm.pop("source_format", type(src).__name__)),
                    "n_accesses": n,
                    "n_ifetch": int(counts[0]),
                    "n_load": int(counts[1]),
                    "n_store": int(counts[2]),
                    "digest": h.hexdigest(),
                }
                for k, v in pm.items():
                    attrs[k] = _meta_value(k, v)
                for k, v in attrs.items():
                    g.attrs[k] = v
                written.append(attrs)
    return written
