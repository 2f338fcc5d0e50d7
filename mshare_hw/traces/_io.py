"""Shared plumbing of the trace readers: opening (possibly compressed) files as byte streams, the error
type users see, re-chunking, and the streaming content digest (the same as `ArrayTrace.digest`)."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from mshare_hw.config.errors import ConfigError
from mshare_hw.traces import digest_cache

VA_BITS = 57  # LA57: the widest x86-64 virtual address
VA_LIMIT = 1 << VA_BITS

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# Errors a decompressor may raise on truncated or corrupt input.
UTF8_BOM = b"\xef\xbb\xbf"  # what some editors put before the first line of a text file
_DECOMP_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, lzma.LZMAError, zlib.error)
try:  # zstandard is a declared dependency, but keep the other formats usable without it
    import zstandard as _zstd

    _DECOMP_ERRORS = _DECOMP_ERRORS + (_zstd.ZstdError,)
except ImportError:  # pragma: no cover
    _zstd = None


def compression_of(path: str | Path) -> str | None:
    """'gzip', 'xz', 'zstd' (by magic number) or None for an uncompressed file."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return None


class _ZstdReader:
    """A zstd stream reader that notices truncation (zstandard's stream_reader silently stops early) and
    reads concatenated frames."""

    def __init__(self, fh) -> None:
        self._fh = fh
        self._d = _zstd.ZstdDecompressor().decompressobj()
        self._pending = b""
        self._eof = False
        self._in_frame = False

    def _more(self) -> None:
        while not self._pending and not self._eof:
            data = self._fh.read(1 << 20)
            if not data:
                self._eof = True
                if self._in_frame:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
                return
            while data:
                self._in_frame = True
                out = self._d.decompress(data)
                if out:
                    self._pending += out
                if self._d.eof:
                    self._in_frame = False
                    data = self._d.unused_data
                    self._d = _zstd.ZstdDecompressor().decompressobj()
                else:
                    data = b""

    def readinto(self, mv) -> int:
        mv = memoryview(mv).cast("B")
        self._more()
        n = min(len(mv), len(self._pending))
        mv[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def read(self, n: int) -> bytes:
        self._more()
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    def close(self) -> None:
        self._fh.close()


def open_stream(path: str | Path):
    """Open `path` for reading decompressed bytes (gzip, xz and zstd detected by magic number).
    Returns (file object with readinto/read/close, compression name or None)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such file")
    if p.is_dir():
        raise ConfigError(f"{p}: is a directory, expected a trace file")
    comp = compression_of(p)
    if comp == "gzip":
        return gzip.open(p, "rb"), comp
    if comp == "xz":
        return lzma.open(p, "rb"), comp
    if comp == "zstd":
        if _zstd is None:  # pragma: no cover
            raise ConfigError(f"{p}: zstd-compressed, but the 'zstandard' package is not installed")
        return _ZstdReader(open(p, "rb")), comp
    return open(p, "rb", buffering=0), None


def fill(fh, mv, path, comp, offset: int, where=None) -> int:
    """Read into memoryview `mv` until it is full or the stream ends; decompression errors become a
    ConfigError naming the file and the decompressed byte offset (and `where()`, e.g. a line number)."""
    got = 0
    n_total = len(mv)
    while got < n_total:
        try:
            n = fh.readinto(mv[got:])
        except EOFError as e:  # the stream ends before its end-of-stream marker: a cut-short file, not a bad line
            raise ConfigError(
                f"{path}: the {comp or ''} stream ends at byte offset {offset + got} (decompressed) before its "
                f"end-of-stream marker: file truncated or corrupt ({e}); was it cut short? Recompress or recapture it"
            ) from None
        except _DECOMP_ERRORS as e:
            at = f"{where(got)}, " if where is not None else ""
            what = f"{comp} data" if comp else "file"
            raise ConfigError(
                f"{path}: {at}byte offset {offset + got} (decompressed): {what} truncated or corrupt ({e}); "
                f"expected a complete {comp or 'uncompressed'} stream"
            ) from None
        if not n:
            break
        got += n
    return got


def read_head(path: str | Path, n: int = 4096) -> bytes:
    """The first `n` decompressed bytes (fewer if the stream is shorter or broken)."""
    fh, _ = open_stream(path)
    try:
        return fh.read(n)
    except _DECOMP_ERRORS:
        return b""
    finally:
        fh.close()


def rechunk(
    pieces: Iterable[tuple[np.ndarray, np.ndarray]], chunk_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Turn pieces of any size into chunks of exactly `chunk_size` (the last may be shorter)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    buf_a: list[np.ndarray] = []
    buf_k: list[np.ndarray] = []
    have = 0
    for a, k in pieces:
        if not len(a):
            continue
        buf_a.append(a)
        buf_k.append(k)
        have += len(a)
        if have >= chunk_size:
            a_all = np.concatenate(buf_a) if len(buf_a) > 1 else buf_a[0]
            k_all = np.concatenate(buf_k) if len(buf_k) > 1 else buf_k[0]
            i = 0
            while have - i >= chunk_size:
                yield a_all[i : i + chunk_size], k_all[i : i + chunk_size]
                i += chunk_size
            buf_a = [a_all[i:]] if i < have else []
            buf_k = [k_all[i:]] if i < have else []
            have -= i
    if have:
        yield (
            (np.concatenate(buf_a) if len(buf_a) > 1 else buf_a[0]),
            (np.concatenate(buf_k) if len(buf_k) > 1 else buf_k[0]),
        )


def stream_digest(chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[str, int, np.ndarray]:
    """(digest, number of accesses, counts per kind) of a chunk stream in one pass and constant memory.
    The digest equals `ArrayTrace(all addrs, all kinds).digest()`: blake2b-128 over every address, then
    every kind; the kinds are spilled to a temporary file meanwhile."""
    h = hashlib.blake2b(digest_size=16)
    n = 0
    counts = np.zeros(3, dtype=np.int64)
    with tempfile.TemporaryFile() as spill:
        for a, k in chunks:
            a = np.ascontiguousarray(a, dtype=np.uint64)
            k = np.ascontiguousarray(k, dtype=np.uint8)
            h.update(a.data)
            spill.write(k.data)
            counts += np.bincount(k, minlength=3)[:3]
            n += len(a)
        spill.seek(0)
        while True:
            block = spill.read(1 << 22)
            if not block:
                break
            h.update(block)
    return h.hexdigest(), n, counts


def file_key(path: Path) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


class ScannedFile:
    """A trace file whose digest, length and counts per kind come from one pass over `_pieces()`, kept on
    the object and on disk (`mshare_hw.traces.digest_cache`), keyed on the file's size and mtime (so a
    rewritten file is scanned again): a run that finds the scan on disk reads the file once, to replay it."""

    path: Path
    format_name: str
    _scan: tuple | None = None

    def _pieces(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError

    def _scan_options(self) -> dict:
        """The reader's options that change what it yields (part of the cache key)."""
        return {}

    def _scan_extras(self) -> dict:
        """What the reader learnt in the pass besides the digest (kept with it), after `_pieces()`."""
        return {}

    def _restore_extras(self, extras: dict) -> None:
        """Take back `_scan_extras()` from a recorded scan."""

    def cache_where(self) -> tuple[Path, str, dict, tuple[str, ...]]:
        """What names this reader's view of the file in the scan cache: (path, reader, options, modules)."""
        return self.path, self.format_name, self._scan_options(), (type(self).__module__, __name__)

    def record_scan(self, before: list[int], digest: str, n: int, counts: np.ndarray) -> None:
        """Keep a pass's results, on the object and on disk (`before`: the file's stamp before the pass)."""
        extras = self._scan_extras()
        scan = {"digest": digest, "n": n, "counts": [int(c) for c in counts], "extras": extras}
        digest_cache.store(*self.cache_where(), before, scan)
        self._scan = (file_key(self.path), digest, n, counts)

    def _scanned(self) -> tuple[str, int, np.ndarray]:
        key = file_key(self.path)
        if self._scan is None or self._scan[0] != key:
            hit = digest_cache.lookup(*self.cache_where())
            if hit is not None:
                self._restore_extras(hit["extras"])
                self._scan = (key, hit["digest"], int(hit["n"]), np.array(hit["counts"], dtype=np.int64))
            else:
                before = digest_cache.scan_stamp(self.path)
                self.record_scan(before, *stream_digest(self._pieces()))
        return self._scan[1], self._scan[2], self._scan[3]

    def digest(self) -> str:
        return self._scanned()[0]

    def __len__(self) -> int:
        return self._scanned()[1]

    def kind_counts(self) -> np.ndarray:
        return self._scanned()[2]
