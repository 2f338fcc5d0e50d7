"""The timing modes' per-CPU state and the overlap mode's interval-style core model: a ring of the load
queue's completion times, the L1D miss buffers' and page walkers' free times. Mirrors kernels/timing.pxi.

An independent data access issued at clock `issue` takes load-queue slot i (a ring): it starts at
t = max(issue, that slot's completion time); its translation is ready at t (L1 TLB hit), t + the L2 TLB
latency (hit) or, on a walk, when the earliest-free page walker (started no sooner than the L2 TLB miss)
has done the walk's reads; its data is ready the L1D latency later on an L1D hit, else the served level's
latency after the earliest-free miss buffer takes it. The clock moves to t + access_cycles; a drain (every
serialising point) moves it to the latest completion still outstanding.
"""

from __future__ import annotations

from mshare_hw.engine.params import SimParams

TR_L1, TR_STLB, TR_WALK = 0, 1, 2  # how an access was translated
L1D = 0  # the cache level code of an L1D hit (reference/caches.py)


def earliest(free_at: list[int]) -> int:
    """The unit that is free first (ties: the lowest)."""
    best = 0
    for i in range(1, len(free_at)):
        if free_at[i] < free_at[best]:
            best = i
    return best


class CoreTiming:
    """One CPU's outstanding work in the overlap mode."""

    def __init__(self, p: SimParams):
        self.lq = [0] * max(1, p.load_queue)
        self.lq_next = 0
        self.mshr = [0] * max(1, p.l1d_miss_buffers)
        self.walker = [0] * max(1, p.page_walkers)
        self.outstanding = 0

    def drain(self, clock: int) -> int:
        """The clock after waiting for every access still outstanding."""
        return max(clock, self.outstanding)

    def overlap(self, p: SimParams, issue: int, path: int, walk_cycles: int, served: int, latency: int) -> int:
        """Time one independent data access issued at `issue`; returns the new clock (the next issue)."""
        slot = self.lq_next
        t = max(issue, self.lq[slot])  # a full load queue waits for its oldest entry
        if path == TR_L1:
            t_tr = t
        elif path == TR_STLB:
            t_tr = t + p.l2_latency
        else:
            u = earliest(self.walker)
            t_tr = max(t + p.l2_latency, self.walker[u]) + walk_cycles
            self.walker[u] = t_tr
        if served == L1D:
            done = t_tr + latency
        else:
            u = earliest(self.mshr)
            done = max(t_tr, self.mshr[u]) + latency
            self.mshr[u] = done
        self.lq[slot] = done
        self.lq_next = (slot + 1) % len(self.lq)
        self.outstanding = max(self.outstanding, done)
        return t + p.access_cycles
