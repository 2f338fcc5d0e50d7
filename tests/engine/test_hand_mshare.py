"""Hand-computed cases on both engines: mshare link faults and shared page tables.
Conventions: tests/engine/machines.py."""

from __future__ import annotations

import pytest
from machines import FAULT, FAULT_PER_PAGE, LINK_FAULT, PAGE, SLOT, GiB, MiB2, pick, shm_region, tiny

from mshare_hw.analysis.ptmem import LEVEL_NAMES, ptmem

# ---- mshare ------------------------------------------------------------------------------------------


def test_mshare_link_fault_then_shared_pages(drive):
    d = drive(tiny(pt_config="mshare"), n_procs=3, regions=[shm_region()])
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
    d = drive(tiny(), n_procs=3, regions=[shm_region()])
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
        ("p4d", shm_region(SLOT, SLOT + MiB2), 2 * SLOT),  # 512 GiB + 2 MiB: two PML4 slots
        ("pmd", shm_region(1 * GiB, 2 * MiB2), 1 * GiB + MiB2),  # two 2 MiB (PMD) slots
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
    d = drive(tiny(pt_config=pt_config, share_level=share_level, levels=levels), n_procs=n, regions=[shm_region()])
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
