"""Page-walk caches: entries of level-L tables (L >= 2) that point to a lower table, tagged by PCID and
the VA prefix that entry covers. Per-level structures (Intel) or one shared structure (AMD)."""

from __future__ import annotations

from dataclasses import dataclass

from mshare_hw.engine.params import SimParams
from mshare_hw.reference.set_array import SetArray, stream_seed


def entry_shift(level: int) -> int:
    """log2 of the VA span one entry of a level-`level` table maps."""
    return 12 + 9 * (level - 1)


@dataclass
class PWCEntry:
    level: int
    pcid: int
    tag: int
    child: int  # table index the entry points to
    loc: int  # where the entry lives, for the oracle
    version: int
    owner: int


class PWCArray(SetArray):
    def lookup(self, level: int, pcid: int, tag: int) -> PWCEntry | None:
        base = (tag % self.sets) * self.ways
        for w in range(self.ways):
            e = self.entries[base + w]
            if e is not None and e.level == level and e.tag == tag and e.pcid == pcid:
                self.touch(base + w)
                return e
        return None

    def fill(self, e: PWCEntry) -> None:
        self.fill_set(e.tag % self.sets, e)

    def flush(self, pcid: int, removed=None) -> int:
        """Every entry of `pcid`, or of every PCID when pcid < 0."""
        n = 0
        for i, e in enumerate(self.entries):
            if e is not None and (pcid < 0 or e.pcid == pcid):
                self.drop(i, removed)
                n += 1
        return n


class PWC:
    def __init__(self, params: SimParams, cpu: int = 0):
        self.arrays = [
            PWCArray(s.sets, s.ways, s.replacement, stream_seed(params.seed, "pwc", k, cpu))
            for k, s in enumerate(params.pwc_structs)
        ]
        self.of_level = params.pwc_of_level

    def lookup(self, level: int, pcid: int, va: int) -> PWCEntry | None:
        k = self.of_level[level]
        if k < 0:
            return None
        return self.arrays[k].lookup(level, pcid, va >> entry_shift(level))

    def fill(self, level: int, pcid: int, va: int, child: int, loc: int, version: int, owner: int) -> None:
        k = self.of_level[level]
        if k >= 0:
            self.arrays[k].fill(PWCEntry(level, pcid, va >> entry_shift(level), child, loc, version, owner))

    def flush(self, pcid: int, removed=None) -> int:
        return sum(a.flush(pcid, removed) for a in self.arrays)
