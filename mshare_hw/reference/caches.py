"""Physically indexed data caches: private L1D and L2 per CPU, one shared LLC, then DRAM.

A read looks up L1D, L2, LLC in turn, costs the latency of the level that has the line, and fills the
line into every level above it (replacement: set_array.py). Page-walk reads and (when enabled) data
accesses share them.
"""

from __future__ import annotations

from mshare_hw.engine.params import SetAssoc
from mshare_hw.reference.set_array import SetArray, stream_seed

L1D, L2, LLC, DRAM = 0, 1, 2, 3


class Cache(SetArray):
    """Entries are line numbers (None: invalid)."""

    def __init__(self, spec: SetAssoc, stream: int = 1):
        super().__init__(spec.sets, spec.ways, spec.replacement, stream)
        self.latency = spec.latency

    def access(self, line: int) -> bool:
        """Look the line up; on a hit touch its way."""
        base = (line % self.sets) * self.ways
        for w in range(self.ways):
            if self.entries[base + w] == line:
                self.touch(base + w)
                return True
        return False

    def fill(self, line: int) -> None:
        self.fill_set(line % self.sets, line)


class CacheHierarchy:
    def __init__(self, n_cpus: int, l1d: SetAssoc, l2: SetAssoc, llc: SetAssoc, dram_latency: int, seed: int = 0):
        self.l1d = [Cache(l1d, stream_seed(seed, "l1d_cache", 0, c)) for c in range(n_cpus)]
        self.l2 = [Cache(l2, stream_seed(seed, "l2_cache", 0, c)) for c in range(n_cpus)]
        self.llc = Cache(llc, stream_seed(seed, "llc", 0, 0))  # one stream: the LLC is shared
        self.dram_latency = dram_latency

    def read(self, cpu: int, paddr: int) -> tuple[int, int]:
        """Returns (level that served the line, latency)."""
        line = paddr >> 6
        if self.l1d[cpu].access(line):
            return L1D, self.l1d[cpu].latency
        if self.l2[cpu].access(line):
            self.l1d[cpu].fill(line)
            return L2, self.l2[cpu].latency
        if self.llc.access(line):
            self.l2[cpu].fill(line)
            self.l1d[cpu].fill(line)
            return LLC, self.llc.latency
        self.llc.fill(line)
        self.l2[cpu].fill(line)
        self.l1d[cpu].fill(line)
        return DRAM, self.dram_latency
