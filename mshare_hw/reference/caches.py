"""Physically indexed data caches: private L1D and L2 per CPU, one shared LLC, then DRAM.

A read looks up L1D, L2, LLC in turn, costs the latency of the level that has the line, and fills the
line into every level above it (LRU). Page-walk reads and (when enabled) data accesses share them.
"""

from __future__ import annotations

from mshare_hw.engine.params import SetAssoc

L1D, L2, LLC, DRAM = 0, 1, 2, 3


class Cache:
    def __init__(self, spec: SetAssoc):
        self.sets = spec.sets
        self.ways = spec.ways
        self.latency = spec.latency
        self.lines = [-1] * (spec.sets * spec.ways)
        self.lru = [0] * (spec.sets * spec.ways)
        self.tick = 0

    def access(self, line: int) -> bool:
        """Look the line up; on a hit refresh its LRU stamp."""
        base = (line % self.sets) * self.ways
        for w in range(self.ways):
            if self.lines[base + w] == line:
                self.tick += 1
                self.lru[base + w] = self.tick
                return True
        return False

    def fill(self, line: int) -> None:
        base = (line % self.sets) * self.ways
        victim = -1
        for w in range(self.ways):
            if self.lines[base + w] == -1:
                victim = w
                break
        if victim < 0:
            victim = min(range(self.ways), key=lambda w: self.lru[base + w])
        self.tick += 1
        self.lines[base + victim] = line
        self.lru[base + victim] = self.tick


class CacheHierarchy:
    def __init__(self, n_cpus: int, l1d: SetAssoc, l2: SetAssoc, llc: SetAssoc, dram_latency: int):
        self.l1d = [Cache(l1d) for _ in range(n_cpus)]
        self.l2 = [Cache(l2) for _ in range(n_cpus)]
        self.llc = Cache(llc)
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
