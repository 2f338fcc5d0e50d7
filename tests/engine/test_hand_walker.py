"""Hand-computed cases on both engines: page walks, PWCs, faults and fault-around.
Conventions: tests/engine/machines.py."""

from __future__ import annotations

import pytest
from machines import FAULT, FAULT_PER_PAGE, PAGE, SLOT, A, B, C, D, Drive, E, GiB, MiB2, pick, tiny

from mshare_hw.workload.model import Region

# ---- page walks and PWCs ---------------------------------------------------------------------------


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
