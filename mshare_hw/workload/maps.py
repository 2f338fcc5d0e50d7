"""`/proc/PID/maps` snapshots: parse them, and find the mappings several processes share.

A line is `START-END PERMS OFFSET DEV INODE [PATH]`, e.g.

    04a2a000-04e2a000 rw-s 00000000 00:01 1026    /dev/zero (deleted)

PERMS ends in `s` for a MAP_SHARED mapping, `p` for a private one. Adjacent VMAs of one mapping (split
by mprotect) are merged back: same path, same sharing flag, contiguous addresses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mshare_hw.config.errors import ConfigError

_LINE_RE = re.compile(r"^([0-9a-fA-F]+)-([0-9a-fA-F]+)\s+([rwxsp-]{4})\s+([0-9a-fA-F]+)\s+\S+\s+\d+\s*(.*)$")
LARGEST_SHARED = "largest_shared"
# valgrind's own shared mapping for its gdbserver, not the program's
_TOOL_PATHS = ("vgdb-pipe-shared-mem",)


@dataclass(frozen=True)
class Mapping:
    start: int
    end: int
    perms: str
    path: str  # "" for an unnamed anonymous mapping

    @property
    def shared(self) -> bool:
        return self.perms[3] == "s"

    @property
    def size(self) -> int:
        return self.end - self.start

    @property
    def kind(self) -> str:
        """The Region kind: shmem for shared anonymous and tmpfs/SysV memory, file for other files."""
        p = self.path
        if p.startswith("/dev/shm/") or p.startswith("/dev/zero") or p.startswith("/SYSV") or p == "[shmem]":
            return "shmem"
        if p.startswith("/"):
            return "file"
        return "shmem" if self.shared else "anon"


def parse_maps_text(text: str, source: str | Path) -> list[Mapping]:
    """The mappings of one snapshot, sorted by start, adjacent VMAs of one mapping merged."""
    out: list[Mapping] = []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        m = _LINE_RE.match(line.strip())
        if not m:
            raise ConfigError(
                f"{source}: line {no}: not a /proc/PID/maps line; expected 'START-END PERMS OFFSET DEV INODE "
                f"[PATH]', got {line[:80]!r}"
            )
        start, end = int(m.group(1), 16), int(m.group(2), 16)
        if end <= start:
            raise ConfigError(f"{source}: line {no}: end {end:#x} is not above start {start:#x}")
        out.append(Mapping(start, end, m.group(3), m.group(5).strip()))
    out.sort(key=lambda x: (x.start, x.end))
    merged: list[Mapping] = []
    for mp in out:
        last = merged[-1] if merged else None
        if last is not None and last.path == mp.path and last.shared == mp.shared and last.end == mp.start:
            merged[-1] = Mapping(last.start, mp.end, last.perms, last.path)
        elif last is not None and mp.start < last.end and mp.path == last.path and mp.shared == last.shared:
            merged[-1] = Mapping(last.start, max(last.end, mp.end), last.perms, last.path)  # merged snapshots
        else:
            merged.append(mp)
    return merged


def read_maps(path: str | Path) -> list[Mapping]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ConfigError(f"{p}: maps snapshot not found") from None
    except (IsADirectoryError, PermissionError, OSError) as e:
        raise ConfigError(f"{p}: cannot read the maps snapshot ({e})") from None
    return parse_maps_text(text, p)


def _is_tool_mapping(m: Mapping) -> bool:
    return any(t in m.path for t in _TOOL_PATHS)


def common_shared(maps: dict[int, list[Mapping]], min_procs: int = 2) -> list[tuple[Mapping, tuple[int, ...]]]:
    """Shared mappings (flag `s`) that at least `min_procs` processes map at the same address with the
    same backing path, as (mapping, indices of the processes), largest first (then by address)."""
    seen: dict[tuple[int, int, str], list[int]] = {}
    first: dict[tuple[int, int, str], Mapping] = {}
    for proc, mps in maps.items():
        for m in mps:
            if not m.shared or _is_tool_mapping(m):
                continue
            key = (m.start, m.end, m.path)
            seen.setdefault(key, []).append(proc)
            first.setdefault(key, m)
    found = [(first[k], tuple(sorted(v))) for k, v in seen.items() if len(v) >= min_procs]
    found.sort(key=lambda mp: (-mp[0].size, mp[0].start))
    return found


def find_mapping(
    maps: dict[int, list[Mapping]], path: str, start: int | None, where: str
) -> tuple[Mapping, tuple[int, ...]]:
    """The mapping named `path` (or LARGEST_SHARED) in the snapshots, with the processes that map it at the
    same address. `start` picks one of several mappings of the same path."""
    if not maps:
        raise ConfigError(f"{where}: from_maps needs maps snapshots; give `maps` for the processes")
    if path == LARGEST_SHARED:
        common = common_shared(maps)
        if start is not None:
            common = [c for c in common if c[0].start == start]
        if not common:
            raise ConfigError(
                f"{where}: no shared mapping (flag 's') common to two or more processes in the maps snapshots"
            )
        return common[0]
    hits: dict[tuple[int, int], list[int]] = {}
    first: dict[tuple[int, int], Mapping] = {}
    for proc, mps in maps.items():
        for m in mps:
            if m.path == path and (start is None or m.start == start):
                hits.setdefault((m.start, m.end), []).append(proc)
                first.setdefault((m.start, m.end), m)
    if not hits:
        names = sorted({m.path for mps in maps.values() for m in mps if m.path})
        at = f" at {start:#x}" if start is not None else ""
        raise ConfigError(
            f"{where}: no mapping {path!r}{at} in the maps snapshots (named mappings: {', '.join(names[:20])})"
        )
    if len(hits) > 1:
        starts = ", ".join(f"{s:#x}" for s, _ in sorted(hits))
        raise ConfigError(f"{where}: {path!r} is mapped at several addresses ({starts}); give maps_start")
    key = next(iter(hits))
    return first[key], tuple(sorted(hits[key]))
