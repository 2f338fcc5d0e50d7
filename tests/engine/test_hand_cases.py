"""Hand-computed cases, each run on BOTH engines (the Cython `Engine` and the reference model) through
the same single-step API: access / switch_to / enter_lazy / bump_tlb_gen / asid_slots /
plant_pte_change. Every expected number is derived in the comments from DESIGN §2.1-2.5 and §2.8.

Conventions used below: process m has ctx_id 2 + m (init_mm is 1); PCID = ASID + 1; the machine is
`tiny()` unless a test overrides a field. Undeclared addresses fault in as anonymous 4 KiB pages (one
page per fault).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mshare_hw import _engine
from mshare_hw.analysis.ptmem import LEVEL_NAMES, ptmem
from mshare_hw.counters import COUNTERS, INDEX
from mshare_hw.engine.driver import run_reference, run_workload
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

    def __init__(self, kind: str, params: SimParams, n_procs: int = 1, regions=()):
        empty = (np.empty(0, np.uint64), np.empty(0, np.uint8))
        wl = Workload([Process(f"p{i}", ArrayTrace(*empty)) for i in range(n_procs)], list(regions))
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


@pytest.fixture(params=["cython", "reference"])
def drive(request):
    def make(params: SimParams, n_procs: int = 1, regions=()) -> Drive:
        return Drive(request.param, params, n_procs, regions)

    return make


def pick(d: dict[str, int], *names: str) -> dict[str, int]:
    return {n: d.get(n, 0) for n in names}


# ---- TLBs ------------------------------------------------------------------------------------------

BASE = 1 * GiB  # VPN 0x40000 is even, so page i of BASE goes to L1 DTLB set i % 2


def test_l1_dtlb_two_way_lru_and_stlb_refill(drive):
    d = drive(tiny())
    d.switch_to(0, 0)
    # (page, L1 hit?, STLB hit? when L1 missed). L1 DTLB: set = page % 2, 2 ways, LRU.
    steps = [
        (0, False, False),  # set0 [0]
        (2, False, False),  # set0 [0 2]
        (4, False, False),  # set0 full: evict LRU 0 -> [2 4]
        (0, False, True),  # 0 still in the STLB: refill L1, evict LRU 2 -> [4 0]
        (2, False, True),  # STLB hit, evict 4 -> [0 2]
        (1, False, False),  # set1 [1]
        (0, True, None),  # hit; 0 becomes MRU of set0 (2 is LRU)
        (3, False, False),  # set1 [1 3]
        (1, True, None),  # hit
        (4, False, True),  # STLB hit; set0 LRU is 2 (0 was touched later) -> [0 4]
        (0, True, None),  # 0 survived: the victim really was the LRU way
        (2, False, True),  # STLB hit; evict 4 (0 touched at the step before) -> [0 2]
    ]
    for page, l1_hit, stlb_hit in steps:
        snap = d.totals()
        d.load(0, BASE + page * PAGE + 8)
        got = d.since(snap)
        assert got["l1_dtlb_hits" if l1_hit else "l1_dtlb_misses"] == 1, (page, got)
        if l1_hit:
            assert pick(got, "l1_dtlb_misses", "stlb_hits", "stlb_misses", "walks") == dict.fromkeys(
                ("l1_dtlb_misses", "stlb_hits", "stlb_misses", "walks"), 0
            )
        else:
            assert got.get("stlb_hits", 0) == int(stlb_hit), (page, got)
            assert got.get("stlb_misses", 0) == int(not stlb_hit), (page, got)
            # an STLB hit stalls exactly the STLB latency; a miss walks
            if stlb_hit:
                assert got["translation_cycles"] == 7 and "walks" not in got
    # totals: 3 L1 hits, 9 misses; 4 STLB hits (0, 2, 4, 2 again), 5 STLB misses (5 distinct pages)
    assert d.total("l1_dtlb_hits") == 3
    assert d.total("l1_dtlb_misses") == 9
    assert d.total("stlb_hits") == 4
    assert d.total("stlb_misses") == 5
    assert d.total("l1_itlb_hits") + d.total("l1_itlb_misses") == 0
    assert d.total("page_faults") == 5  # one anonymous fault per distinct page


def test_l1_hits_do_not_touch_stlb_and_l1_victims_are_not_written_back(drive):
    one_set = (TLBStruct(ALL, 1, 2, False),)
    d = drive(tiny(l1d=one_set, l2d=one_set))
    d.switch_to(0, 0)
    A, B, C = (BASE + i * PAGE for i in range(3))
    d.load(0, A)  # L1 [A]    L2 [A]
    d.load(0, B)  # L1 [A B]  L2 [A B]
    d.load(0, A)  # L1 hit: A becomes L1-MRU only; in L2, A is still the LRU way
    d.load(0, C)  # walk; L2 evicts A (its LRU) -> [C B]; L1 evicts B (its LRU) -> [A C]
    assert (d.total("l1_dtlb_hits"), d.total("stlb_hits"), d.total("stlb_misses")) == (1, 0, 3)
    snap = d.totals()
    d.load(0, B)  # L1 miss, STLB hit (B survived in L2): refill L1, evicting A -> L1 [C B]
    assert pick(d.since(snap), "l1_dtlb_misses", "stlb_hits", "stlb_misses") == {
        "l1_dtlb_misses": 1,
        "stlb_hits": 1,
        "stlb_misses": 0,
    }
    snap = d.totals()
    d.load(0, A)  # A left the L1 and was not written into the L2 (already evicted there): walk
    got = d.since(snap)
    assert pick(got, "stlb_hits", "stlb_misses", "walks", "page_faults") == {
        "stlb_hits": 0,
        "stlb_misses": 1,
        "walks": 1,
        "page_faults": 0,
    }


def test_itlb_and_dtlb_are_separate_and_share_the_unified_stlb(drive):
    d = drive(tiny())
    d.switch_to(0, 0)
    d.access(0, 0, BASE, IFETCH)  # ITLB miss, STLB miss, walk; fills the STLB and the ITLB
    snap = d.totals()
    d.load(0, BASE)  # DTLB miss, but the unified STLB has it
    assert pick(d.since(snap), "l1_dtlb_misses", "stlb_hits", "walks") == {
        "l1_dtlb_misses": 1,
        "stlb_hits": 1,
        "walks": 0,
    }
    snap = d.totals()
    d.access(0, 0, BASE, IFETCH)
    assert pick(d.since(snap), "l1_itlb_hits", "ifetches") == {"l1_itlb_hits": 1, "ifetches": 1}


# ---- page walks and PWCs ---------------------------------------------------------------------------

A = 1 * GiB + 4 * (1 << 20) + 3 * PAGE
B = A + 5 * PAGE  # same 2 MiB as A
C = 1 * GiB + 10 * (1 << 20)  # same 1 GiB, another 2 MiB
D = 2 * GiB + PAGE  # same 512 GiB, another 1 GiB
E = SLOT + 1 * GiB  # another 512 GiB


def test_cold_walk_with_fault_retries(drive):
    d = drive(tiny())
    d.switch_to(0, 0)
    snap = d.totals()
    d.load(0, A)
    # walk 1: no PWC entries; the PML4E is not present -> 1 read, page fault (maps 1 anonymous page,
    # building the PDPT, PD and PT pages); walk 2: 4 reads, filling the PML4E/PDPTE/PDE caches.
    got = d.since(snap)
    assert pick(got, "walks", "walk_reads", "page_faults", "pages_mapped", "link_faults") == {
        "walks": 2,
        "walk_reads": 5,
        "page_faults": 1,
        "pages_mapped": 1,
        "link_faults": 0,
    }
    assert got["fault_cycles"] == FAULT + FAULT_PER_PAGE
    assert not any(k.startswith("pwc_hits") for k in got)
    # cold caches: the root entry comes from DRAM in walk 1 and from the L1D in walk 2 (it was filled
    # on the way back); the PDPTE, PDE and PTE lines of the new tables all come from DRAM.
    assert pick(got, "walk_reads_l1d", "walk_reads_l2", "walk_reads_llc", "walk_reads_dram") == {
        "walk_reads_l1d": 1,
        "walk_reads_l2": 0,
        "walk_reads_llc": 0,
        "walk_reads_dram": 4,
    }
    assert got["walk_cycles"] == 4 * 200 + 4
    # translation stall = STLB latency + walk cycles; fault cycles are charged on their own
    assert got["translation_cycles"] == 7 + 804
    assert got["cycles"] == 1 + 7 + 804 + FAULT + FAULT_PER_PAGE
    snap = d.totals()
    d.load(0, B)
    # B is not mapped yet: walk 1 starts at the PT via the PDE cache (1 read, not present) -> fault;
    # walk 2 hits the PDE cache again -> 1 read.
    assert pick(d.since(snap), "walks", "walk_reads", "pwc_hits_pd", "page_faults") == {
        "walks": 2,
        "walk_reads": 2,
        "pwc_hits_pd": 2,
        "page_faults": 1,
    }
    assert d.pt_pages() == [0, 1, 1, 1, 1, 0]  # one page per level: PT, PD, PDPT, the root


def _prefault_then_flush(d: Drive, vas) -> None:
    d.switch_to(0, 0)
    for va in vas:
        d.load(0, va)
    # lazy catch-up through tlb_gen flushes this PCID's TLB and PWC entries; the tables stay
    d.enter_lazy(0)
    d.bump_tlb_gen(0)
    d.switch_to(0, 0)
    assert d.total("lazy_catchup_flushes") == 1


def test_walk_reads_with_pwc_hits_at_each_level(drive):
    d = drive(tiny())
    _prefault_then_flush(d, [A, B, C, D, E])
    faults = d.total("page_faults")
    expect = [
        (A, 4, None),  # cold PWCs: PML4E, PDPTE, PDE, PTE
        (B, 1, "pwc_hits_pd"),  # same 2 MiB: PDE cache hit -> PTE only
        (C, 2, "pwc_hits_pdpt"),  # same 1 GiB: PDPTE cache hit -> PDE, PTE
        (D, 3, "pwc_hits_pml4"),  # same 512 GiB: PML4E cache hit -> PDPTE, PDE, PTE
        (E, 4, None),  # another 512 GiB: nothing cached
    ]
    for va, reads, hit in expect:
        snap = d.totals()
        d.load(0, va)
        got = d.since(snap)
        assert got["walks"] == 1 and got["walk_reads"] == reads, (hex(va), got)
        hits = {k: v for k, v in got.items() if k.startswith("pwc_hits")}
        assert hits == ({hit: 1} if hit else {}), (hex(va), got)
    assert d.total("page_faults") == faults


def test_five_level_walks(drive):
    d = drive(tiny(levels=5))
    F = A + SLOT  # same 256 TiB (PML5E), another 512 GiB
    G = A + (1 << 48)  # another PML5 entry
    _prefault_then_flush(d, [A, B, F, G])
    expect = [
        (A, 5, None),  # PML5E, PML4E, PDPTE, PDE, PTE
        (B, 1, "pwc_hits_pd"),
        (F, 4, "pwc_hits_pml5"),  # PML5E cached -> PML4E, PDPTE, PDE, PTE
        (G, 5, None),
    ]
    for va, reads, hit in expect:
        snap = d.totals()
        d.load(0, va)
        got = d.since(snap)
        assert got["walk_reads"] == reads, (hex(va), got)
        hits = {k: v for k, v in got.items() if k.startswith("pwc_hits")}
        assert hits == ({hit: 1} if hit else {}), (hex(va), got)
    # tables: 1 PML5 root; PML4: 2 (A/F share one, G another); PDPT: 3 (A, F, G); PD: 3; PT: 3
    assert d.pt_pages() == [0, 3, 3, 3, 2, 1]


def test_without_pwcs_every_walk_reads_every_level(drive):
    d = drive(tiny(pwc_structs=(), pwc_of_level=(-1,) * 6))
    _prefault_then_flush(d, [A, B])
    for va in (A, B):
        snap = d.totals()
        d.load(0, va)
        assert pick(d.since(snap), "walk_reads", "pwc_hits_pd") == {"walk_reads": 4, "pwc_hits_pd": 0}


# ---- ASIDs -----------------------------------------------------------------------------------------


def test_asid_slots_seven_processes_recycle(drive):
    d = drive(tiny(), n_procs=7)
    # boot: slot 0 = init_mm (ctx 1), next_asid = 1. Processes 0..4 take slots 1..5, process 5 wraps
    # to slot 0 (init_mm's: not a recycle), process 6 evicts process 0 from slot 1 (a recycle).
    d.switch_to(0, 0)
    d.load(0, BASE)  # an entry under PCID 2 for process 0
    for p in range(1, 7):
        d.switch_to(0, p)
    assert d.asid_slots() == (1, [7, 8, 3, 4, 5, 6])
    assert d.total("context_switches") == 7
    assert d.total("asid_slot_misses") == 7
    assert d.total("asid_slot_hits") == 0
    assert d.total("cr3_flushes") == 7
    assert d.total("cr3_writes_noflush") == 0
    assert d.total("asid_recycles") == 1
    assert d.proc(6, "asid_recycles") == 1
    cycles_of_load = d.clock() - 7 * (CS + CR3_FLUSH)
    # round-robin over 7 mms with 6 slots: every switch misses, takes the next slot, recycles, flushes
    for i in range(14):
        p = i % 7
        snap = d.totals()
        d.switch_to(0, p)
        assert pick(d.since(snap), "asid_slot_misses", "asid_recycles", "cr3_flushes", "asid_slot_hits") == {
            "asid_slot_misses": 1,
            "asid_recycles": 1,
            "cr3_flushes": 1,
            "asid_slot_hits": 0,
        }
        assert d.asid_slots()[0] == (i + 8) % 6  # switch number i + 7 takes slot (i + 7 + 1) % 6
        if p == 0 and i == 7:
            snap = d.totals()
            d.load(0, BASE)  # its PCID was flushed when taken: L1 and STLB miss, walk (no fault)
            assert pick(d.since(snap), "l1_dtlb_misses", "stlb_misses", "page_faults") == {
                "l1_dtlb_misses": 1,
                "stlb_misses": 1,
                "page_faults": 0,
            }
            cycles_of_load += d.since(snap)["cycles"]
    assert d.total("asid_slot_misses") == 21
    assert d.total("asid_recycles") == 15
    assert d.clock() == 21 * (CS + CR3_FLUSH) + cycles_of_load


def test_asid_slots_six_processes_hit_without_flush(drive):
    d = drive(tiny(), n_procs=6)
    d.switch_to(0, 0)
    d.load(0, BASE)
    load_cycles = d.clock() - (CS + CR3_FLUSH)
    for p in range(1, 6):
        d.switch_to(0, p)
    assert d.asid_slots() == (0, [7, 2, 3, 4, 5, 6])
    for p in range(6):  # second round: every mm finds its slot, generation current -> no flush
        d.switch_to(0, p)
        assert d.asid_slots()[0] == (p + 1) % 6
    assert d.total("context_switches") == 12
    assert d.total("asid_slot_misses") == 6
    assert d.total("asid_slot_hits") == 6
    assert d.total("cr3_flushes") == 6
    assert d.total("cr3_writes_noflush") == 6
    assert d.total("asid_recycles") == 0
    assert d.clock() == 6 * (CS + CR3_FLUSH) + 6 * (CS + CR3_NOFLUSH) + load_cycles
    d.switch_to(0, 0)
    snap = d.totals()
    d.load(0, BASE)  # process 0's PCID was never flushed: its L1 entry is still there
    assert d.since(snap).get("l1_dtlb_hits") == 1


def test_without_pcid_every_switch_flushes(drive):
    d = drive(tiny(pcid=False), n_procs=2)
    for p in (0, 1, 0, 1):
        d.switch_to(0, p)
        assert d.asid_slots()[0] == 0
    d.switch_to(0, 1)  # same mm again: not a switch, nothing written
    assert d.total("context_switches") == 5
    assert d.total("asid_slot_misses") == 4
    assert d.total("cr3_flushes") == 4
    assert d.total("cr3_writes_noflush") == 0
    assert d.clock() == 5 * CS + 4 * CR3_FLUSH


# ---- lazy TLB and tlb_gen ----------------------------------------------------------------------------


@pytest.mark.parametrize("bump", [True, False])
def test_lazy_cpu_catches_up_through_tlb_gen(drive, bump):
    d = drive(tiny())
    d.switch_to(0, 0)
    d.load(0, A)
    d.enter_lazy(0)
    if bump:
        d.bump_tlb_gen(0)
    t0, snap = d.clock(), d.totals()
    d.switch_to(0, 0)  # same mm: not a switch; flushes only if the slot's generation is behind
    got = d.since(snap)
    if bump:
        assert pick(got, "context_switches", "cr3_flushes", "lazy_catchup_flushes", "asid_slot_hits") == {
            "context_switches": 1,
            "cr3_flushes": 1,
            "lazy_catchup_flushes": 1,
            "asid_slot_hits": 0,
        }
        assert d.clock() - t0 == CS + CR3_FLUSH
    else:
        assert got == {"context_switches": 1, "cycles": CS}
        assert d.clock() - t0 == CS
    snap = d.totals()
    d.load(0, A)
    got = d.since(snap)
    if bump:  # TLB and PWC entries of the PCID are gone: full 4-read walk, no fault
        assert pick(got, "l1_dtlb_misses", "stlb_misses", "walk_reads", "page_faults") == {
            "l1_dtlb_misses": 1,
            "stlb_misses": 1,
            "walk_reads": 4,
            "page_faults": 0,
        }
    else:
        assert got.get("l1_dtlb_hits") == 1 and "walks" not in got
    # caught up: another lazy round trip without a bump does not flush
    d.enter_lazy(0)
    snap = d.totals()
    d.switch_to(0, 0)
    assert d.since(snap) == {"context_switches": 1, "cycles": CS}


@pytest.mark.parametrize("bump", [True, False])
def test_switch_back_to_mm_whose_generation_moved_on(drive, bump):
    d = drive(tiny(), n_procs=2)
    d.switch_to(0, 0)
    d.load(0, A)
    d.switch_to(0, 1)
    if bump:
        d.bump_tlb_gen(0)  # e.g. another CPU changed process 0's PTEs while it was switched out
    snap = d.totals()
    d.switch_to(0, 0)
    got = d.since(snap)
    if bump:  # slot hit, but its tlb_gen is behind the mm's -> flush that PCID
        assert pick(got, "asid_slot_hits", "cr3_flushes", "cr3_writes_noflush", "lazy_catchup_flushes") == {
            "asid_slot_hits": 1,
            "cr3_flushes": 1,
            "cr3_writes_noflush": 0,
            "lazy_catchup_flushes": 0,
        }
    else:
        assert pick(got, "asid_slot_hits", "cr3_flushes", "cr3_writes_noflush") == {
            "asid_slot_hits": 1,
            "cr3_flushes": 0,
            "cr3_writes_noflush": 1,
        }
    snap = d.totals()
    d.load(0, A)
    got = d.since(snap)
    assert got.get("l1_dtlb_hits", 0) == (0 if bump else 1)
    assert got.get("stlb_misses", 0) == (1 if bump else 0)


# ---- faults and fault-around -------------------------------------------------------------------------


def test_fault_around_maps_the_aligned_window(drive):
    shm = Region("shm", 1 * GiB, 32 * PAGE, kind="shmem", shared=True)
    d = drive(tiny(), regions=[shm])
    d.switch_to(0, 0)
    snap = d.totals()
    d.load(0, shm.start + 5 * PAGE)
    # read fault on shmem with 4 KiB pages: maps the aligned 16-page (64 KiB) window, pages 0..15
    got = d.since(snap)
    assert pick(got, "page_faults", "pages_mapped") == {"page_faults": 1, "pages_mapped": 16}
    assert got["fault_cycles"] == FAULT + 16 * FAULT_PER_PAGE
    for i in range(16):
        d.load(0, shm.start + i * PAGE)
    assert d.total("page_faults") == 1  # the rest of the window is present
    assert d.total("walks") == 2 + 15  # the first access walked twice (fault, retry); 15 new pages once
    d.load(0, shm.start + 16 * PAGE)  # the next window
    assert (d.total("page_faults"), d.total("pages_mapped")) == (2, 32)
    # all 32 pages sit under one PT page
    assert d.pt_pages() == [0, 1, 1, 1, 1, 0]


def test_write_fault_maps_one_page_then_read_fault_fills_the_rest(drive):
    f = Region("f", 2 * GiB, 16 * PAGE, kind="file", shared=True)
    d = drive(tiny(), regions=[f])
    d.switch_to(0, 0)
    d.store(0, f.start + 3 * PAGE)  # write fault: one page
    assert (d.total("page_faults"), d.total("pages_mapped")) == (1, 1)
    assert d.total("fault_cycles") == FAULT + FAULT_PER_PAGE
    d.load(0, f.start + 4 * PAGE)  # read fault: the window minus the page already present
    assert (d.total("page_faults"), d.total("pages_mapped")) == (2, 16)
    assert d.total("fault_cycles") == 2 * FAULT + 16 * FAULT_PER_PAGE
    for i in range(16):
        d.store(0, f.start + i * PAGE)
    assert d.total("page_faults") == 2


def test_anonymous_faults_map_one_page(drive):
    anon = Region("heap", 3 * GiB, 32 * PAGE, kind="anon")
    d = drive(tiny(), regions=[anon])
    d.switch_to(0, 0)
    for i in range(4):
        d.load(0, anon.start + i * PAGE)
    assert (d.total("page_faults"), d.total("pages_mapped")) == (4, 4)


@pytest.mark.parametrize(
    ("start", "pages", "touch", "mapped"),
    [
        # 20-page region: the window [16, 32) is clipped at the region's end -> pages 16..19
        (4 * GiB, 20, 18, 4),
        # region [4, 10) pages into a 64 KiB block: the window [0, 16) is clipped at both ends
        (5 * GiB + 4 * PAGE, 6, 1, 6),
    ],
)
def test_fault_around_window_is_clipped_to_the_region(drive, start, pages, touch, mapped):
    shm = Region("shm", start, pages * PAGE, kind="shmem", shared=True)
    d = drive(tiny(), regions=[shm])
    d.switch_to(0, 0)
    d.load(0, start + touch * PAGE)
    assert (d.total("page_faults"), d.total("pages_mapped")) == (1, mapped)


def test_fault_around_size_comes_from_params(drive):
    shm = Region("shm", 1 * GiB, 32 * PAGE, kind="shmem", shared=True)
    d = drive(tiny(fault_around_pages=4), regions=[shm])
    d.switch_to(0, 0)
    d.load(0, shm.start + 6 * PAGE)  # window [4, 8)
    assert d.total("pages_mapped") == 4


def test_huge_page_faults_map_one_huge_page(drive):
    big = Region("big", 3 * GiB, 2 * MiB2, page_size="2M", kind="shmem", shared=True)
    d = drive(tiny(), regions=[big])
    d.switch_to(0, 0)
    d.load(0, big.start + 12345)
    d.load(0, big.start + MiB2 - 8)  # same 2 MiB page: L1 hit
    assert (d.total("page_faults"), d.total("pages_mapped"), d.total("l1_dtlb_hits")) == (1, 1, 1)
    d.load(0, big.start + MiB2)
    assert d.total("page_faults") == 2
    snap = d.totals()
    d.load(0, big.start + 5)  # first 2 MiB page: L1 set (3 GiB >> 21) % 2 = 0, untouched since
    assert d.since(snap).get("l1_dtlb_hits") == 1
    assert d.pt_pages() == [0, 0, 1, 1, 1, 0]  # no PT page under a 2 MiB leaf


# ---- mshare ------------------------------------------------------------------------------------------


def _shm(start: int = SLOT, size: int = 4 * (1 << 20)) -> Region:
    return Region("shm", start, size, kind="shmem", shared=True)


def test_mshare_link_fault_then_shared_pages(drive):
    d = drive(tiny(pt_config="mshare"), n_procs=3, regions=[_shm()])
    X = SLOT
    d.switch_to(0, 0)
    snap = d.totals()
    d.store(0, X)
    # walk 1: P0's PML4E for the slot is not present (1 read) -> link fault: P0's PML4E now points
    # at the host's PUD page. walk 2: PML4E, PDPTE (host, not present) -> 2 reads, page fault in the
    # host's tables (store: 1 page). walk 3: PML4E cache hit -> PDPTE, PDE, PTE = 3 reads.
    got = d.since(snap)
    assert pick(got, "link_faults", "page_faults", "pages_mapped", "walks", "walk_reads", "pwc_hits_pml4") == {
        "link_faults": 1,
        "page_faults": 1,
        "pages_mapped": 1,
        "walks": 3,
        "walk_reads": 6,
        "pwc_hits_pml4": 1,
    }
    assert got["fault_cycles"] == LINK_FAULT + FAULT + FAULT_PER_PAGE
    for p in (1, 2):
        d.switch_to(0, p)
        snap = d.totals()
        d.store(p, X)
        # walk 1: own PML4E not present -> link fault; walk 2: 4 reads through the host's tables,
        # the page is already there: no page fault
        assert pick(d.since(snap), "link_faults", "page_faults", "walks", "walk_reads") == {
            "link_faults": 1,
            "page_faults": 0,
            "walks": 2,
            "walk_reads": 5,
        }
    # P1 faults in the next page; P0 and P2 then find it present
    d.switch_to(0, 1)
    d.store(1, X + PAGE)
    assert d.proc(1, "page_faults") == 1
    for p in (0, 2):
        d.switch_to(0, p)
        d.load(p, X + PAGE)
    assert [d.proc(p, "page_faults") for p in range(3)] == [1, 1, 0]
    assert [d.proc(p, "link_faults") for p in range(3)] == [1, 1, 1]
    # tables: 3 process roots + the host's root; one PDPT, PD, PT page (the host's) for everybody
    assert d.pt_pages() == [0, 1, 1, 1, 4, 0]


def test_private_every_process_faults_itself(drive):
    d = drive(tiny(), n_procs=3, regions=[_shm()])
    X = SLOT
    for p in range(3):
        d.switch_to(0, p)
        d.store(p, X)
        d.store(p, X + PAGE)
    assert [d.proc(p, "page_faults") for p in range(3)] == [2, 2, 2]
    assert d.total("link_faults") == 0
    # per process: root + PDPT + PD + PT
    assert d.pt_pages() == [0, 3, 3, 3, 3, 0]


@pytest.mark.parametrize(
    ("share_level", "region", "second"),
    [
        ("p4d", _shm(SLOT, SLOT + MiB2), 2 * SLOT),  # 512 GiB + 2 MiB: two PML4 slots
        ("pmd", _shm(1 * GiB, 2 * MiB2), 1 * GiB + MiB2),  # two 2 MiB (PMD) slots
    ],
)
def test_mshare_one_link_fault_per_slot(drive, share_level, region, second):
    d = drive(tiny(pt_config="mshare", share_level=share_level), n_procs=2, regions=[region])
    for p in range(2):
        d.switch_to(0, p)
        d.store(p, region.start)
        d.store(p, second)
        d.load(p, region.start + PAGE)  # same slot as the first: no further link fault
    assert [d.proc(p, "link_faults") for p in range(2)] == [2, 2]
    assert [d.proc(p, "page_faults") for p in range(2)] == [3, 0]


@pytest.mark.parametrize(
    ("pt_config", "share_level", "levels"),
    [
        ("private", "p4d", 4),
        ("mshare", "p4d", 4),
        ("mshare", "pud", 4),
        ("mshare", "pmd", 4),
        ("private", "p4d", 5),
        ("mshare", "p4d", 5),
    ],
)
def test_pt_pages_match_ptmem(drive, pt_config, share_level, levels):
    n, size = 3, 4 * (1 << 20)
    d = drive(tiny(pt_config=pt_config, share_level=share_level, levels=levels), n_procs=n, regions=[_shm()])
    for p in range(n):
        d.switch_to(0, p)
        for i in range(size // PAGE):
            d.load(p, SLOT + i * PAGE)
    # ptmem counts, per copy, each level's tables plus the root; in the shared case it counts the
    # host mm's copy of the unshared levels when host_mm is set, and the engine's host mm does own
    # a root (and the levels above the shared one) at every share level -> host_mm=True.
    r = ptmem(n, size, "4K", share_level, levels=levels, host_mm=True)
    want = r.private_pages if pt_config == "private" else r.shared_pages
    got = d.pt_pages()
    assert {LEVEL_NAMES[lv]: got[lv] for lv in range(1, levels + 1)} == want
    assert got[0] == 0 and (levels == 5 or got[5] == 0)
    # faults: fault-around maps 16 pages per read fault -> 1024 / 16 = 64 faults per copy of the PTEs
    faults = [d.proc(p, "page_faults") for p in range(n)]
    links = [d.proc(p, "link_faults") for p in range(n)]
    if pt_config == "private":
        assert faults == [64] * n and links == [0] * n
    else:
        assert faults == [64, 0, 0]
        assert links == [2 if share_level == "pmd" else 1] * n  # 4 MiB = two 2 MiB PMD slots


# ---- the coherence oracle ----------------------------------------------------------------------------


@pytest.mark.parametrize("oracle", [True, False])
def test_oracle_catches_planted_stale_l1_entry(drive, oracle):
    d = drive(tiny(oracle=oracle))
    d.switch_to(0, 0)
    d.load(0, A)
    assert d.plant_pte_change(0, A)
    t = d.clock()
    d.load(0, A + 16)  # L1 hit on the entry filled from the old PTE
    assert d.total("l1_dtlb_hits") == 1
    if oracle:
        assert d.total("stale_translations") == 1
        assert d.proc(0, "stale_translations") == 1
        assert d.stale_examples() == [(t, 0, 0, A + 16, 0)]  # (cycle, cpu, proc, va, where=L1)
    else:
        assert d.total("stale_translations") == 0
        assert d.stale_examples() == []


def test_oracle_catches_stale_stlb_entry_and_its_refill(drive):
    d = drive(tiny(l1d=(TLBStruct(ALL, 1, 1, False),), max_stale_examples=1))
    d.switch_to(0, 0)
    d.load(0, A)
    d.load(0, B)  # evicts A from the 1-entry L1; A stays in the STLB
    assert d.plant_pte_change(0, A)
    t = d.clock()
    d.load(0, A)  # STLB hit on a stale entry (where = 1), refilled into the L1 as is
    d.load(0, A)  # ... so the L1 hit is stale too
    assert d.total("stale_translations") == 2
    assert d.stale_examples() == [(t, 0, 0, A, 1)]  # only max_stale_examples = 1 kept


def test_plant_on_unmapped_address_is_refused(drive):
    d = drive(tiny())
    d.switch_to(0, 0)
    assert not d.plant_pte_change(0, A)
    d.load(0, A)
    assert not d.plant_pte_change(0, A + 2 * MiB2)  # PDPT entry present, PD entry not
    assert d.total("stale_translations") == 0


def test_fresh_walk_after_plant_is_not_stale(drive):
    d = drive(tiny())
    d.switch_to(0, 0)
    d.load(0, A)
    d.plant_pte_change(0, A)
    d.enter_lazy(0)
    d.bump_tlb_gen(0)
    d.switch_to(0, 0)  # flush
    d.load(0, A)
    assert d.total("stale_translations") == 0


# ---- determinism --------------------------------------------------------------------------------------


def _mixed_workload(seed: int) -> tuple[Workload, SimParams]:
    rng = np.random.default_rng(seed)
    regs = [_shm(SLOT, 64 * PAGE), Region("heap", 3 * GiB, 8 * MiB2, page_size="2M")]
    pool = np.array(
        [SLOT + i * PAGE + 8 * j for i in range(64) for j in range(3)]
        + [3 * GiB + i * MiB2 + 4096 * j for i in range(8) for j in range(4)]
        + [0x400000 + i * PAGE for i in range(16)],
        dtype=np.uint64,
    )
    procs = [
        Process(f"p{p}", ArrayTrace(rng.choice(pool, 3000), rng.choice(3, 3000).astype(np.uint8))) for p in range(8)
    ]
    params = tiny(
        n_cpus=2,
        pt_config="mshare",
        data_caches=True,
        scheduler="global",
        quantum_cycles=20_000,
        slice_accesses=32,
        warmup_accesses=1000,
        interval_accesses=2500,
    )
    return Workload(procs, regs), params


def _same(a: dict, b: dict) -> None:
    for k in ("cpu_counters", "proc_counters", "clocks", "pt_pages"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        assert a[k].dtype == b[k].dtype
    assert a["stale_examples"] == b["stale_examples"]
    assert [g for g, _ in a["intervals"]] == [g for g, _ in b["intervals"]]
    for (_, x), (_, y) in zip(a["intervals"], b["intervals"]):
        np.testing.assert_array_equal(x, y)


def test_runs_are_deterministic_and_chunking_is_invisible():
    wl, params = _mixed_workload(11)
    first = run_workload(wl, params)
    _same(first, run_workload(wl, params))
    _same(first, run_workload(wl, params, chunk_size=77))
    _same(first, run_workload(wl, params, chunk_size=1000))
    assert len(first["intervals"]) == 24000 // 2500
    tot = first["cpu_counters"].sum(axis=0)
    assert tot[INDEX["accesses"]] == 24000 - 1000  # warm-up subtracted
    assert tot[INDEX["context_switches"]] > 0 and tot[INDEX["asid_recycles"]] > 0
    # a fresh workload object with the same content gives the same numbers
    _same(first, run_workload(_mixed_workload(11)[0], params))


def test_reference_agrees_on_the_mixed_workload():
    wl, params = _mixed_workload(5)
    small = Workload(
        [Process(p.name, ArrayTrace(p.trace.addrs[:600], p.trace.kinds[:600])) for p in wl.processes], wl.regions
    )
    params = dataclasses.replace(params, warmup_accesses=300, interval_accesses=700)
    _same(run_workload(small, params, chunk_size=50), run_reference(small, params))


def test_address_beyond_the_virtual_address_space_is_refused():
    from mshare_hw.config.errors import ConfigError

    addrs = np.array([1 << 30, (1 << 48) + (1 << 30)], dtype=np.uint64)
    wl = Workload([Process("p0", ArrayTrace(addrs, np.ones(2, np.uint8)))])
    with pytest.raises(ConfigError, match=r"p0.*access #1 .*outside the 4-level user address space"):
        run_workload(wl, tiny())


def test_layout_beyond_what_cache_tags_can_tell_apart_is_refused():
    """The engine's caches keep 32-bit tags (line // sets + 1): with one-set caches, lines must stay below
    2^32 - 1, i.e. frames below (2^32 - 1) // 64 = 67,108,863 (256 GiB). A 512 GiB region is refused with a
    clear error instead of aliasing tags; 64-set caches can tell 16 TiB apart and accept it."""
    from mshare_hw.config.errors import ConfigError

    p = tiny(l1d_cache=SetAssoc(1, 1, 4), l2_cache=SetAssoc(1, 1, 14), llc=SetAssoc(1, 1, 40))
    assert p.max_frames == ((1 << 32) - 1) // 64
    trace = ArrayTrace(np.array([4 * SLOT], np.uint64), np.array([LOAD], np.uint8))
    big = Workload([Process("p", trace)], [Region("big", 4 * SLOT, SLOT)])
    with pytest.raises(ConfigError, match="physical memory"):
        build_layout(big, p)
    p64 = tiny(l1d_cache=SetAssoc(64, 1, 4), l2_cache=SetAssoc(64, 1, 14), llc=SetAssoc(64, 1, 40))
    assert p64.max_frames == (1 << 32) - 1
    build_layout(big, p64)
