"""Files that appear whole or not at all: written under a temporary name next to their final path, then
renamed into place (a rename within a directory is atomic on POSIX).

Every temporary file of mshare-hw is named `.NAME.tmp.PID` (hidden, with its writer's process id), so one
pattern finds them all and a process that was killed mid-write can be told from one still writing.

A command that writes a results file first checks it can (`check_writable`, before any compute) and
holds `output_lock` on it while it reads, computes and writes, so two commands never write one file.
"""

from __future__ import annotations

import errno
import fcntl
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


def check_writable(path: str | Path) -> None:
    """Raise OSError (one line naming `path`) unless a file can be written at `path`: it is not a directory
    and its directory exists or can be created, and takes a new file (tried with a temporary one)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = temp_path(path)
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise OSError(e.errno, f"cannot write here ({e.strerror})", str(path)) from None


def lock_path(path: str | Path) -> Path:
    """The lock file of `path`: `.NAME.lock` beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


class FileBusyError(OSError):
    """Another process holds the `output_lock` of the file."""


@contextmanager
def output_lock(path: str | Path) -> Iterator[None]:
    """Hold the exclusive lock of `path` (an flock on its lock file) for the block; if another process
    holds it, raise FileBusyError at once rather than wait for a run of unknown length."""
    lock = lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise FileBusyError(
                errno.EBUSY,
                f"another mshare-hw (pid {holder}) is writing this file; wait for it or choose another output",
                str(path),
            ) from None
        # the holder before us may have removed the lock file after we opened it: lock the file in place
        try:
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)
