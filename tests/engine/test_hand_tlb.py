"""Hand-computed cases on both engines: the L1 and L2 TLBs. Conventions: tests/engine/machines.py."""

from __future__ import annotations

from machines import ALL, BASE, IFETCH, PAGE, pick, tiny

from mshare_hw.engine.params import TLBStruct

# ---- TLBs ------------------------------------------------------------------------------------------


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
