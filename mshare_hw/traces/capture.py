"""`mshare-hw trace capture`: run a command under valgrind lackey, one trace per process, with maps
snapshots of every traced process, then compress the traces (the caller writes the workload manifest,
`mshare_hw.workload.init`).

Valgrind runs the program inside its own process, so the pid in `trace.%p` is the traced process's pid
and /proc/PID/maps shows the program's mappings (next to valgrind's). Snapshots are taken every
`interval` seconds; a process's snapshots are merged (every mapping ever seen is kept), since mappings
appear while it runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from mshare_hw.config.errors import ConfigError

VALGRIND_HINT = (
    "valgrind is not installed (or not on PATH); install it, e.g. `apt-get install valgrind` (Debian/Ubuntu) "
    "or `dnf install valgrind` (Fedora/RHEL)"
)


def valgrind_command(out_dir: Path, command: list[str], valgrind: str = "valgrind") -> list[str]:
    return [
        valgrind,
        "--tool=lackey",
        "--trace-mem=yes",
        "--trace-children=yes",
        "--vgdb=no",
        f"--log-file={out_dir / 'trace.%p'}",
        *command,
    ]


def _children(pid_of_root: int) -> set[int]:
    """The root and all its descendants, from /proc/*/stat."""
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2 :].split()
        if len(rest) > 1:
            parent[int(entry.name)] = int(rest[1])
    out = {pid_of_root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent.items():
            if ppid in out and pid not in out:
                out.add(pid)
                changed = True
    return out


class MapsRecorder:
    """Merged /proc/PID/maps snapshots per pid: every distinct line seen, in address order."""

    def __init__(self) -> None:
        self.lines: dict[int, dict[tuple[int, str], str]] = {}

    def snapshot(self, pid: int) -> None:
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:  # gone already
            return
        seen = self.lines.setdefault(pid, {})
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                start = int(line.split("-", 1)[0], 16)
            except ValueError:
                continue
            seen.setdefault((start, line), line)

    def write(self, out_dir: Path) -> list[Path]:
        written = []
        for pid, seen in sorted(self.lines.items()):
            p = out_dir / f"maps.{pid}"
            p.write_text("\n".join(seen[k] for k in sorted(seen)) + "\n", encoding="utf-8")
            written.append(p)
        return written


def compress_file(path: Path, method: str) -> Path:
    """Compress `path` to path.zst / path.gz (streaming) and remove the original."""
    if method == "none":
        return path
    if method == "zstd":
        import zstandard

        out = path.with_name(path.name + ".zst")
        with open(path, "rb") as fi, open(out, "wb") as fo:
            zstandard.ZstdCompressor(level=3).copy_stream(fi, fo)
    elif method == "gzip":
        import gzip

        out = path.with_name(path.name + ".gz")
        with open(path, "rb") as fi, gzip.open(out, "wb", compresslevel=4) as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
    else:
        raise ConfigError(f"--compression {method!r}: expected zstd, gzip or none")
    path.unlink()
    return out


def capture(
    out_dir: str | Path,
    command: list[str],
    *,
    interval: float = 0.05,
    compression: str = "zstd",
    valgrind: str | None = None,
    say=print,
) -> int:
    """Run `command` under lackey, leaving its traces and maps snapshots in `out_dir`; returns its exit status."""
    if not command:
        raise ConfigError("trace capture: no command given; usage: mshare-hw trace capture -o DIR -- COMMAND ...")
    if interval <= 0:
        raise ConfigError(f"--maps-interval {interval}: expected a positive number of seconds")
    vg = valgrind or shutil.which("valgrind")
    if vg is None:
        raise ConfigError(VALGRIND_HINT)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    old = [f.name for f in out.iterdir() if f.name.startswith(("trace.", "maps."))]
    if old:
        raise ConfigError(f"{out}: already holds traces or maps ({', '.join(sorted(old)[:5])}); use an empty directory")
    cmd = valgrind_command(out.resolve(), command, vg)
    say(f"tracing: {' '.join(command)}")
    rec = MapsRecorder()
    try:
        proc = subprocess.Popen(cmd)
    except OSError as e:
        raise ConfigError(f"cannot start {vg}: {e}. {VALGRIND_HINT}") from None
    t0 = time.monotonic()
    try:
        while proc.poll() is None:
            for pid in _children(proc.pid):
                rec.snapshot(pid)
            time.sleep(interval)
    except KeyboardInterrupt:
        proc.terminate()
        proc.wait()
        raise
    status = proc.returncode
    traces = sorted(f for f in out.iterdir() if f.name.startswith("trace.") and f.name[6:].isdigit())
    if not traces:
        raise ConfigError(f"{out}: valgrind wrote no traces (exit status {status}); is the command right?")
    rec.lines = {pid: v for pid, v in rec.lines.items() if (out / f"trace.{pid}").exists()}
    rec.write(out)
    say(f"traced {len(traces)} processes in {time.monotonic() - t0:.1f} s (exit status {status}); compressing")
    for t in traces:
        compress_file(t, compression)
    return status
