"""Region relocation: move a captured shared region to an mshare-aligned base.

A captured region sits wherever mmap put it, usually next to other mappings in the same 512 GiB
P4D slot, so mshare could not link it. Relocation rewrites the trace's addresses on the fly: every
access inside [start, end) of a relocated region moves to base + (addr - start), keeping its offset in
the region; nothing else changes. The private run of the comparison replays the same relocated
addresses, so both see the same virtual layout.

Bases are picked slot by slot from the lowest free 512 GiB slot up (slot 0 holds the executable and
the heap): free means no access of any process, outside the regions being moved, falls into it, and no
other region or earlier base uses it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from mshare_hw.config.errors import ConfigError
from mshare_hw.traces import digest_cache
from mshare_hw.traces._io import stream_digest
from mshare_hw.traces.source import DEFAULT_CHUNK, TraceSource

SLOT_SHIFT = 39  # 512 GiB: what one P4D entry maps, the coarsest alignment any share level needs
SLOT = 1 << SLOT_SHIFT


@dataclass(frozen=True)
class Move:
    """Accesses in [start, end) move to new_start + (addr - start)."""

    start: int
    end: int
    new_start: int


class RelocatedTrace:
    """A TraceSource whose addresses inside each `Move` range are shifted; constant memory (one chunk)."""

    def __init__(self, inner: TraceSource, moves: Iterable[Move]) -> None:
        self.inner = inner
        self.moves = tuple(sorted(moves, key=lambda m: m.start))
        for a, b in zip(self.moves, self.moves[1:]):
            if b.start < a.end:
                raise ValueError(f"relocated ranges at {a.start:#x} and {b.start:#x} overlap")

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if not self.moves:
            yield from self.inner.chunks(chunk_size)
            return
        bounds = [
            (np.uint64(m.start), np.uint64(m.end), np.uint64((m.new_start - m.start) % (1 << 64))) for m in self.moves
        ]
        for a, k in self.inner.chunks(chunk_size):
            masks = [(a >= s) & (a < e) for s, e, _ in bounds]
            if any(m.any() for m in masks):
                a = a.copy()
                with np.errstate(over="ignore"):
                    for m, (_, _, delta) in zip(masks, bounds):
                        a[m] += delta
            yield a, k

    def digest(self) -> str:
        if not self.moves:
            return self.inner.digest()
        h = hashlib.blake2b(digest_size=16)
        h.update(self.inner.digest().encode())
        h.update(json.dumps([[m.start, m.end, m.new_start] for m in self.moves]).encode())
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name: str):  # bad_lines, meta(), path, ... of the wrapped reader
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        moves = ", ".join(f"[{m.start:#x},{m.end:#x})->{m.new_start:#x}" for m in self.moves)
        return f"RelocatedTrace({self.inner!r}, {moves})"


def used_slots(source: TraceSource, exclude: Iterable[tuple[int, int]] = ()) -> set[int]:
    """The 512 GiB slots the trace's accesses fall into, leaving out accesses in the `exclude` ranges.
    One pass, recorded in the scan cache (mshare_hw.traces.digest_cache) for a trace file, so a later run
    reads the file only to replay it; a lackey or ChampSim reader's digest is computed in the same pass
    and recorded too."""
    exclude = [(int(s), int(e)) for s, e in exclude]
    where = source.cache_where() if hasattr(source, "cache_where") else None
    if where is not None:
        path, reader, options, modules = where
        where = (path, reader, {**options, "used_slots_excluding": exclude}, modules)
        hit = digest_cache.lookup(*where)
        if hit is not None:
            return set(hit["slots"])
        before = digest_cache.scan_stamp(path)
    ex = [(np.uint64(s), np.uint64(e)) for s, e in exclude]
    slots: set[int] = set()
    shift = np.uint64(SLOT_SHIFT)

    def tap():
        for a, k in source.chunks(DEFAULT_CHUNK):
            keep = a
            if ex and len(a):
                m = np.zeros(len(a), dtype=bool)
                for s, e in ex:
                    m |= (a >= s) & (a < e)
                keep = a[~m]
            if len(keep):
                slots.update(int(x) for x in np.unique(keep >> shift))
            yield a, k

    if hasattr(source, "record_scan"):
        source.record_scan(before, *stream_digest(tap()))
    else:
        for _ in tap():
            pass
    if where is not None:
        digest_cache.store(*where, before, {"slots": sorted(slots)})
    return slots


def pick_bases(sizes: list[int], taken: set[int], first_slot: int, last_slot: int, names: list[str]) -> list[int]:
    """For each region size in order, the base of the lowest run of free slots (not in `taken`) from
    `first_slot` that holds it; the chosen slots become taken."""
    bases = []
    for size, name in zip(sizes, names):
        need = -(-size // SLOT)
        s = first_slot
        while s + need - 1 <= last_slot and any(x in taken for x in range(s, s + need)):
            s += 1
        if s + need - 1 > last_slot:
            raise ConfigError(
                f"region '{name}': no {need} free 512 GiB slot(s) left below {(last_slot + 1) * SLOT:#x} to relocate it"
            )
        taken.update(range(s, s + need))
        bases.append(s * SLOT)
    return bases
