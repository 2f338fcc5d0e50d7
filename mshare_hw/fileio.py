"""Files that appear whole or not at all: written under a temporary name next to their final path, then
renamed into place (a rename within a directory is atomic on POSIX).

Every temporary file of mshare-hw is named `.NAME.tmp.PID` (hidden, with its writer's process id), so one
pattern finds them all and a process that was killed mid-write can be told from one still writing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".tmp."


def temp_path(path: str | Path) -> Path:
    """Where `path` is written by this process before it is renamed into place: `.NAME.tmp.PID` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def temp_glob(name: str = "*") -> str:
    """The glob of the temporary files of `name` (of every file by default), whatever their writer."""
    return f".{name}{TEMP_MARK}*"


@contextmanager
def atomic_write(path: str | Path) -> Iterator[Path]:
    """Yields the temporary path to write; on a normal exit it is renamed to `path`. On any exception
    (Ctrl-C included) the temporary file is removed and `path` is left as it was."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temps(directory: Path, name: str = "*") -> int:
    """Delete the temporary files (`temp_glob(name)`) in `directory` whose writer no longer runs on this
    host; returns how many."""
    removed = 0
    if not directory.is_dir():
        return 0
    for p in directory.glob(temp_glob(name)):
        try:
            pid = int(p.name.rsplit(TEMP_MARK, 1)[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and _alive(pid):
            continue
        p.unlink(missing_ok=True)
        removed += 1
    return removed


def _alive(pid: int) -> bool:
    """Whether a process `pid` runs on this host (a killed process nobody reaped yet does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust the signal test
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
