"""`mshare-hw workload init DIR`: write DIR/workload.toml from per-process traces and maps snapshots.

Recognised names (PID = the process id, as valgrind's `--log-file=PREFIX.%p` writes it):
    traces:  PREFIX.PID, PREFIX.PID.gz, PREFIX.PID.xz, PREFIX.PID.zst   (e.g. trace.1234.zst)
    maps:    maps.PID, maps.PID.txt, PREFIX.PID.maps                     (copies of /proc/PID/maps)
A process without a snapshot of its own uses its parent's (valgrind logs `Parent PID:`), since a
forked child starts with its parent's mappings. Shared regions are the mappings with the `s` flag that
two or more processes map at the same address with the same backing path.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from mshare_hw.config.errors import ConfigError
from mshare_hw.traces._io import read_head
from mshare_hw.workload.maps import Mapping, common_shared, read_maps

MANIFEST_NAME = "workload.toml"
_MAPS_RE = re.compile(r"^(?:maps\.(?P<a>\d+)(?:\.txt)?|(?:.+\.)?(?P<b>\d+)\.maps)$")
_TRACE_RE = re.compile(r"^(?P<prefix>.+?)\.(?P<pid>\d+)(?:\.(?:gz|xz|zst))?$")
_PARENT_RE = re.compile(rb"^==\d+== Parent PID: (\d+)", re.M)
_ACCESS_RE = re.compile(rb"^(?:I |\s[LSM]) ", re.M)


@dataclass
class Found:
    pid: int
    trace: Path
    maps: Path | None
    maps_from_parent: bool = False


def scan_dir(d: Path) -> tuple[list[Found], list[str]]:
    """The traced processes in `d` (sorted by pid) and notes about files left out."""
    if not d.is_dir():
        raise ConfigError(f"{d}: not a directory")
    maps: dict[int, Path] = {}
    traces: dict[int, list[Path]] = {}
    for f in sorted(d.iterdir()):
        if not f.is_file() or f.name.startswith("."):
            continue
        mm = _MAPS_RE.match(f.name)
        if mm:
            maps[int(mm.group("a") or mm.group("b"))] = f
            continue
        mt = _TRACE_RE.match(f.name)
        if mt:
            traces.setdefault(int(mt.group("pid")), []).append(f)
    notes: list[str] = []
    found: list[Found] = []
    for pid in sorted(traces):
        files = traces[pid]
        if len(files) > 1:
            raise ConfigError(f"{d}: several traces for pid {pid} ({', '.join(f.name for f in files)}); keep one")
        head = read_head(files[0], 1 << 16)
        if not _ACCESS_RE.search(head):
            notes.append(f"{files[0].name}: no lackey access lines at its start; left out")
            continue
        found.append(Found(pid, files[0], maps.get(pid)))
    for fd in found:
        if fd.maps is None:
            m = _PARENT_RE.search(read_head(fd.trace, 4096))
            parent = int(m.group(1)) if m else None
            if parent is not None and parent in maps:
                fd.maps, fd.maps_from_parent = maps[parent], True
                notes.append(f"pid {fd.pid}: no maps snapshot; using its parent's (pid {parent})")
            else:
                notes.append(f"pid {fd.pid}: no maps snapshot")
    if not found:
        raise ConfigError(
            f"{d}: no traces found; expected per-process lackey traces named PREFIX.PID[.gz|.xz|.zst] "
            "(valgrind --log-file=PREFIX.%p) and maps snapshots named maps.PID"
        )
    return found, notes


def _region_name(m: Mapping, used: set[str]) -> str:
    p = m.path
    if p.startswith("[anon:") and p.endswith("]"):
        base = p[6:-1]
    elif p.startswith("/dev/zero") or not p:
        base = "shared_anon"
    elif p.startswith("/"):
        base = Path(p.split(" (deleted)")[0]).name
    else:
        base = p.strip("[]")
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base) or "shared"
    name, i = base, 2
    while name in used:
        name, i = f"{base}_{i}", i + 1
    used.add(name)
    return name


def _q(s: str) -> str:
    return json.dumps(s)  # a TOML basic string


def write_manifest(
    d: str | Path, name: str | None = None, *, overwrite: bool = False
) -> tuple[Path, list[str], list[tuple[Mapping, int]]]:
    """Write DIR/workload.toml (an existing one, perhaps edited by hand, only with `overwrite`). Returns
    (its path, notes, [(shared mapping, number of processes)])."""
    d = Path(d)
    if (d / MANIFEST_NAME).exists() and not overwrite:
        raise ConfigError(f"{d / MANIFEST_NAME}: exists (and may have been edited); give --force to replace it")
    found, notes = scan_dir(d)
    snapshots = {i: read_maps(f.maps) for i, f in enumerate(found) if f.maps is not None}
    common = common_shared(snapshots)
    lines = [
        "# Workload manifest written by `mshare-hw workload init`; edit freely (see the README).",
        f"name = {_q(name or d.resolve().name)}",
        f"description = {_q(f'{len(found)} traced processes from {d.resolve().name}')}",
        "",
    ]
    for f in found:
        lines += ["[[processes]]", f"pid = {f.pid}", f"trace = {_q(f.trace.name)}"]
        if f.maps is not None:
            note = "  # the parent's: inherited at fork" if f.maps_from_parent else ""
            lines.append(f"maps = {_q(f.maps.name)}{note}")
        lines.append("")
    used: set[str] = set()
    if not common:
        notes.append("no shared mapping common to two or more processes: every access is private memory")
        lines.append("# no shared mapping (flag 's') common to two or more processes was found in the maps snapshots")
    for m, procs in common:
        rname = _region_name(m, used)
        lines += [
            f"# {m.size} bytes at {m.start:#x}, {m.perms}, mapped by {len(procs)} processes",
            "[[regions]]",
            f"name = {_q(rname)}",
            f"from_maps = {_q(m.path)}",
            f"maps_start = {m.start:#x}",
            f"kind = {_q(m.kind)}",
            "",
        ]
    out = d / MANIFEST_NAME
    tmp = d / f".{MANIFEST_NAME}.tmp"
    tmp.write_text("\n".join(lines).rstrip("\n") + "\n", encoding="utf-8")
    tmp.replace(out)
    return out, notes, [(m, len(p)) for m, p in common]


def summary_lines(out: Path, notes: list[str], common: list[tuple[Mapping, int]]) -> list[str]:
    """What `workload init` and `trace capture` tell the user about the manifest they wrote."""
    return [
        *(f"note: {n}" for n in notes),
        *(
            f"shared region: {m.path or '(anonymous)'} at {m.start:#x}, {m.size} bytes, {k} processes"
            for m, k in common
        ),
        f"wrote {out}",
    ]
