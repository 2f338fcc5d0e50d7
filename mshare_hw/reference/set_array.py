"""A set-associative structure's sets with LRU replacement, shared by the TLB arrays (tlb.py) and the
page-walk caches (pwc.py). Mirrors kernels/set_array.pxi.

`entries` holds sets x ways entries (None = invalid), each with an `lru` stamp: a hit or a fill stamps the
entry with the next tick; a fill takes the set's first invalid way, else its least recently used one.
"""

from __future__ import annotations


class SetArray:
    def __init__(self, sets: int, ways: int):
        self.sets = sets
        self.ways = ways
        self.entries: list = [None] * (sets * ways)
        self.tick = 0

    def touch(self, e) -> None:
        """Make `e` the most recently used entry of its set."""
        self.tick += 1
        e.lru = self.tick

    def fill_set(self, set_: int, e) -> None:
        """Put `e` into set `set_`: its first invalid way, else its least recently used one."""
        base = set_ * self.ways
        victim = -1
        for w in range(self.ways):
            if self.entries[base + w] is None:
                victim = w
                break
        if victim < 0:
            victim = min(range(self.ways), key=lambda w: self.entries[base + w].lru)
        self.touch(e)
        self.entries[base + victim] = e

    def drop(self, i: int, removed) -> None:
        """Invalidate entry `i`; `removed[owner]` counts it (if given)."""
        if removed is not None:
            removed[self.entries[i].owner] += 1
        self.entries[i] = None
