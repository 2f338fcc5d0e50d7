"""What one pass over a trace file finds (its content digest, number of accesses, counts per kind, bad
lines), kept on disk so that a later run names the file without reading it: a run then reads a trace
file once, to replay it.

A trace file (lackey, ChampSim) has no header that says what it holds, so `len()` and `digest()` need a
full pass; the replay needs another. The result of the first is stored as one small JSON file per trace
in the cache directory (`cache_dir()`: ``$MSHARE_HW_CACHE_DIR``, else ``$XDG_CACHE_HOME/mshare-hw``, else
``~/.cache/mshare-hw``), under ``trace-digests/``, named after a hash of its key:

* the file's resolved path, the reader (format and the options that change what it yields, such as
  lackey's ``skip_bad_lines``) and a hash of the reader's own source (a fixed parser scans again);
* it is used only while the file's size, mtime_ns, inode and ctime_ns are those recorded, so a file
  rewritten, replaced or touched is scanned again;
* an entry is written only if the file did not change during the scan and its mtime is more than
  `SETTLE_SECONDS` old (a file still being written could change within one timestamp tick).

Native trace files need no cache: their digests are in their metadata. Failing to read or write the cache
(a read-only home, a damaged entry) only means scanning again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from functools import cache
from pathlib import Path

from mshare_hw.fileio import atomic_write

SETTLE_SECONDS = 2.0
_FORMAT = "mshare-hw-trace-scan-v1"
_log = logging.getLogger("mshare_hw")


def cache_dir() -> Path:
    """Where trace scans are kept (see the module docstring)."""
    env = os.environ.get("MSHARE_HW_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "mshare-hw"


@cache
def _source_hash(module: str) -> str:
    """A hash of a reader module's source file (its parser), part of every key of that reader."""
    path = getattr(sys.modules.get(module), "__file__", None)
    try:
        return hashlib.blake2b(Path(path).read_bytes(), digest_size=8).hexdigest() if path else "?"
    except OSError:
        return "?"


def _stamp(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def _entry_path(key: dict) -> Path:
    name = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=16).hexdigest()
    return cache_dir() / "trace-digests" / f"{name}.json"


def _key(path: Path, reader: str, options: dict, modules: tuple[str, ...]) -> dict:
    key = {
        "format": _FORMAT,
        "path": str(path.resolve()),
        "reader": reader,
        "options": options,
        "source": [_source_hash(m) for m in modules],
    }
    return json.loads(json.dumps(key, sort_keys=True))  # as read back from an entry (tuples become lists)


def lookup(path: Path, reader: str, options: dict, modules: tuple[str, ...]) -> dict | None:
    """The recorded scan of `path` if it is still that file's, else None."""
    key = _key(path, reader, options, modules)
    try:
        entry = json.loads(_entry_path(key).read_text(encoding="utf-8"))
        if entry.get("key") == key and entry.get("stamp") == _stamp(path):
            return entry["scan"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    return None


def scan_stamp(path: Path) -> list[int]:
    """The file's stamp before a scan (pass it to `store`)."""
    return _stamp(path)


def store(path: Path, reader: str, options: dict, modules: tuple[str, ...], before: list[int], scan: dict) -> None:
    """Record `scan` (JSON-able) of `path`, unless the file changed since `before` or is too fresh."""
    try:
        after = _stamp(path)
        if after != before or time.time() - after[1] / 1e9 < SETTLE_SECONDS:
            return
        key = _key(path, reader, options, modules)
        target = _entry_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target) as tmp:
            Path(tmp).write_text(json.dumps({"key": key, "stamp": after, "scan": scan}), encoding="utf-8")
    except OSError as e:
        _log.debug("trace digest cache: not written for %s (%s)", path, e)
