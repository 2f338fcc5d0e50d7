"""The tiny machine and the single-step driver of the hand-computed cases: `tiny()` parameters whose
costs the expected numbers refer to by name, and `Drive`, which runs the same steps on the Cython engine or
the reference model.

Conventions: process m has ctx_id 2 + m (init_mm is 1); PCID = ASID + 1; the machine is `tiny()` unless a
test overrides a field. Undeclared addresses fault in as anonymous 4 KiB pages (one page per fault).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mshare_hw import _engine
from mshare_hw.counters import COUNTERS, INDEX
from mshare_hw.engine.layout import build_layout
from mshare_hw.engine.params import SetAssoc, SimParams, TLBStruct
from mshare_hw.reference import ReferenceMachine
from mshare_hw.workload.model import ArrayTrace, Process, Region, Workload

IFETCH, LOAD, STORE = 0, 1, 2
PAGE = 1 << 12
MiB2 = 1 << 21
GiB = 1 << 30
SLOT = 1 << 39  # 512 GiB: what one PML4 entry maps
ALL = (12, 21, 30)

# costs used by tiny(); the expectations below refer to these names
CS, CR3_FLUSH, CR3_NOFLUSH = 100, 50, 7
FAULT, FAULT_PER_PAGE, LINK_FAULT = 1000, 10, 300


def tiny(**overrides) -> SimParams:
    base = SimParams(
        n_cpus=1,
        levels=4,
        pcid=True,
        l1i=(TLBStruct(ALL, 2, 2, False),),
        l1d=(TLBStruct(ALL, 2, 2, False),),  # 4 entries: 2 sets x 2 ways, modulo index
        l2d=(TLBStruct(ALL, 16, 4, False),),  # 64 entries: never evicts in these tests
        l2i=None,
        l2_latency=7,
        # one 4x4 PWC per level: PDE (2), PDPTE (3), PML4E (4), PML5E (5)
        pwc_structs=(SetAssoc(4, 4), SetAssoc(4, 4), SetAssoc(4, 4), SetAssoc(4, 4)),
        pwc_of_level=(-1, -1, 0, 1, 2, 3),
        l1d_cache=SetAssoc(8, 4, 4),
        l2_cache=SetAssoc(8, 4, 14),
        llc=SetAssoc(16, 4, 40),
        dram_latency=200,
        data_caches=False,
        oracle=True,
        access_cycles=1,
        ifetch_cycles=1,
        fault_cycles=FAULT,
        fault_per_page_cycles=FAULT_PER_PAGE,
        link_fault_cycles=LINK_FAULT,
        context_switch_cycles=CS,
        cr3_noflush_cycles=CR3_NOFLUSH,
        cr3_flush_cycles=CR3_FLUSH,
        fault_around_pages=16,
        pt_config="private",
        share_level="p4d",
        scheduler="pinned",
        quantum_cycles=10**12,
        slice_accesses=64,
    )
    return dataclasses.replace(base, **overrides)


class Drive:
    """One engine of either kind behind the single-step API, with counter helpers."""

    def __init__(self, kind: str, params: SimParams, n_procs: int = 1, regions=(), dependent=()):
        empty = (np.empty(0, np.uint64), np.empty(0, np.uint8))
        flags = list(dependent) + [False] * (n_procs - len(dependent))
        procs = [Process(f"p{i}", ArrayTrace(*empty), dependent=flags[i]) for i in range(n_procs)]
        wl = Workload(procs, list(regions))
        self.kind = kind
        self.params = params
        self.layout = build_layout(wl, params)
        if kind == "cython":
            self.eng = _engine.Engine(params, self.layout)
        else:
            self.eng = ReferenceMachine(params, self.layout, [empty] * n_procs)

    # actions
    def access(self, cpu: int, proc: int, va: int, kind: int = LOAD) -> None:
        self.eng.access(cpu, proc, va, kind)

    def load(self, proc: int, va: int, cpu: int = 0) -> None:
        self.access(cpu, proc, va, LOAD)

    def store(self, proc: int, va: int, cpu: int = 0) -> None:
        self.access(cpu, proc, va, STORE)

    def switch_to(self, cpu: int, proc: int) -> None:
        self.eng.switch_to(cpu, proc)

    def end_slice(self, cpu: int, proc: int) -> None:
        self.eng.end_slice(cpu, proc)

    def enter_lazy(self, cpu: int) -> None:
        self.eng.enter_lazy(cpu)

    def bump_tlb_gen(self, mm: int) -> None:
        self.eng.bump_tlb_gen(mm)

    def plant_pte_change(self, proc: int, va: int) -> bool:
        return bool(self.eng.plant_pte_change(proc, va))

    # observations
    def asid_slots(self, cpu: int = 0) -> tuple[int, list[int]]:
        asid, ids = self.eng.asid_slots(cpu)
        return int(asid), [int(x) for x in ids]

    def total(self, name: str) -> int:
        return int(np.asarray(self.eng.cpu_counters)[:, INDEX[name]].sum())

    def proc(self, p: int, name: str) -> int:
        return int(np.asarray(self.eng.proc_counters)[p, INDEX[name]])

    def totals(self) -> np.ndarray:
        return np.asarray(self.eng.cpu_counters).sum(axis=0).copy()

    def since(self, snap: np.ndarray) -> dict[str, int]:
        """Counters that changed since `snap` (cycle-like counters included)."""
        d = self.totals() - snap
        return {COUNTERS[i]: int(v) for i, v in enumerate(d) if v}

    def clock(self, cpu: int = 0) -> int:
        return int(np.asarray(self.eng.clocks)[cpu])

    def pt_pages(self) -> list[int]:
        return [int(x) for x in self.eng.pt_pages]

    def stale_examples(self) -> list[tuple]:
        if self.kind == "cython":
            ex = self.eng.stale_examples
        else:
            ex = self.eng.results()["stale_examples"]
        return [tuple(int(v) for v in x) for x in ex]


def pick(d: dict[str, int], *names: str) -> dict[str, int]:
    return {n: d.get(n, 0) for n in names}


# addresses the cases use
BASE = 1 * GiB  # VPN 0x40000 is even, so page i of BASE goes to L1 DTLB set i % 2
A = 1 * GiB + 4 * (1 << 20) + 3 * PAGE
B = A + 5 * PAGE  # same 2 MiB as A
C = 1 * GiB + 10 * (1 << 20)  # same 1 GiB, another 2 MiB
D = 2 * GiB + PAGE  # same 512 GiB, another 1 GiB
E = SLOT + 1 * GiB  # another 512 GiB


def shm_region(start: int = SLOT, size: int = 4 * (1 << 20)) -> Region:
    return Region("shm", start, size, kind="shmem", shared=True)
