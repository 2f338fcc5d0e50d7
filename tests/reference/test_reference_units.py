"""Unit tests of the reference model's building blocks (the executable spec), on hand values."""

from __future__ import annotations

import pytest

from mshare_hw.engine.params import SetAssoc, TLBStruct
from mshare_hw.reference import asid
from mshare_hw.reference.caches import DRAM, L1D, L2, LLC, Cache, CacheHierarchy
from mshare_hw.reference.pagetables import PageTables, encode, index, is_leaf, present, target
from mshare_hw.reference.pwc import PWCArray, PWCEntry
from mshare_hw.reference.tlb import TLBArray, TLBEntry, TLBLevel


def entry(vpn: int, shift: int = 12, pcid: int = 1, is_global: bool = False) -> TLBEntry:
    return TLBEntry(
        vpn=vpn, shift=shift, pcid=pcid, pfn=1000 + vpn, pte_loc=0, pte_version=0, owner=0, is_global=is_global
    )


# ---- TLB -------------------------------------------------------------------------------------------


def test_tlb_lru_victim():
    a = TLBArray(TLBStruct((12,), 1, 2, False))
    a.fill(entry(1))
    a.fill(entry(2))
    assert a.lookup(1, 1 << 12) is not None  # touch 1: 2 is now LRU
    a.fill(entry(3))
    assert a.lookup(1, 2 << 12) is None
    assert a.lookup(1, 1 << 12) is not None and a.lookup(1, 3 << 12) is not None
    a.fill(entry(4))  # 1 touched before 3's lookup -> 1 is LRU now
    assert a.lookup(1, 1 << 12) is None
    assert a.lookup(1, 3 << 12) is not None and a.lookup(1, 4 << 12) is not None


def test_tlb_fills_free_way_before_evicting():
    a = TLBArray(TLBStruct((12,), 2, 2, False))
    for vpn in (0, 2):  # both set 0
        a.fill(entry(vpn))
    a.fill(entry(1))  # set 1
    assert all(a.lookup(1, v << 12) is not None for v in (0, 1, 2))
    a.flush_pcid(1)
    a.fill(entry(4))
    assert a.entries[0] is not None and a.entries[0].vpn == 4  # the first free way of set 0


@pytest.mark.parametrize(
    ("sets", "vpn", "want"),
    [
        # (vpn ^ (vpn >> set_bits)) & (sets - 1)
        (4, 0b1101, 2),  # 13 ^ 3 = 14 = 0b1110 -> 2
        (4, 0b0110, 3),  # 6 ^ 1 = 7 -> 3
        (4, 0b0100, 1),  # 4 ^ 1 = 5 -> 1
        (4, 0b0011, 3),  # 3 ^ 0 = 3 -> 3
        (16, 0x1234, 7),  # 0x1234 ^ 0x123 = 0x1117 -> 7
        (2, 0b10, 1),  # 2 ^ 1 = 3 -> 1
        (1, 12345, 0),  # one set: always 0
    ],
)
def test_xor_set_index(sets, vpn, want):
    a = TLBArray(TLBStruct((12,), sets, 1, True))
    assert a.set_index(vpn) == want


@pytest.mark.parametrize(("sets", "vpn", "want"), [(4, 13, 1), (3, 13, 1), (3, 5, 2), (1, 7, 0), (2, 6, 0)])
def test_modulo_set_index(sets, vpn, want):
    assert TLBArray(TLBStruct((12,), sets, 1, False)).set_index(vpn) == want


def test_tlb_tags_pcid_page_size_and_global():
    lv = TLBLevel((TLBStruct((12,), 2, 2, False), TLBStruct((21, 30), 1, 2, False)))
    lv.fill(entry(5, 12, pcid=1))
    lv.fill(entry(3, 21, pcid=1))  # the 2 MiB page at 6 MiB
    lv.fill(entry(1, 30, pcid=2, is_global=True))  # the 1 GiB page at 1 GiB, global
    assert lv.arrays[1].entries.count(None) == 0  # both big-page entries went to the second array
    assert lv.lookup(1, (5 << 12) + 7).vpn == 5
    assert lv.lookup(2, 5 << 12) is None  # another PCID
    assert lv.lookup(1, 6 << 20 | 12345).shift == 21
    assert lv.lookup(1, (1 << 30) + 5).shift == 30  # global: any PCID
    assert lv.flush_pcid(2) == 0  # globals survive a PCID flush
    assert lv.flush_pcid(1) == 2
    assert lv.lookup(1, 5 << 12) is None


def test_tlb_level_without_a_structure_for_the_size_drops_the_fill():
    lv = TLBLevel((TLBStruct((12,), 1, 1, False),))
    lv.fill(entry(1, 21))
    assert lv.lookup(1, 1 << 21) is None


# ---- PWC -------------------------------------------------------------------------------------------


def test_pwc_entries_are_tagged_by_level():
    a = PWCArray(1, 2)  # one structure for two levels, like AMD's unified PWC
    a.fill(PWCEntry(level=2, pcid=1, tag=7, child=10, loc=0, version=0, owner=0))
    assert a.lookup(3, 1, 7) is None
    assert a.lookup(2, 1, 7).child == 10
    a.fill(PWCEntry(level=3, pcid=1, tag=7, child=11, loc=0, version=0, owner=0))
    a.fill(PWCEntry(level=4, pcid=1, tag=7, child=12, loc=0, version=0, owner=0))  # evicts level 2 (LRU)
    assert a.lookup(2, 1, 7) is None and a.lookup(3, 1, 7).child == 11
    assert a.flush(1) == 2


# ---- caches ----------------------------------------------------------------------------------------


def test_cache_fill_and_lru_eviction():
    c = Cache(SetAssoc(2, 2, 4))
    for line in (0, 2):  # set 0
        assert not c.access(line)
        c.fill(line)
    assert c.access(0)  # 2 becomes LRU
    c.fill(4)
    assert not c.access(2)
    assert c.access(0) and c.access(4)
    c.fill(1)  # set 1 untouched by set 0's traffic
    assert c.access(1) and c.access(0)


def test_cache_non_power_of_two_sets():
    c = Cache(SetAssoc(3, 1, 4))
    c.fill(1)
    c.fill(4)  # 4 % 3 = 1: evicts 1
    assert not c.access(1) and c.access(4)
    c.fill(5)  # set 2
    assert c.access(4) and c.access(5)


def test_hierarchy_levels_and_fill_on_the_way_back():
    h = CacheHierarchy(2, SetAssoc(1, 1, 4), SetAssoc(1, 2, 12), SetAssoc(1, 4, 40), 200)
    a, b, c = 0, 64, 128  # three lines
    assert h.read(0, a) == (DRAM, 200)
    assert h.read(0, a + 8) == (L1D, 4)  # same line
    assert h.read(0, b) == (DRAM, 200)  # evicts a from the 1-line L1D; L2 holds a, b
    assert h.read(0, a) == (L2, 12)
    assert h.read(1, a) == (LLC, 40)  # the other CPU's private caches are cold; the LLC is shared
    h.read(0, c)  # L2 of CPU 0 (2 ways): a was used after b -> evicts b
    assert h.read(0, b) == (LLC, 40)


# ---- page tables -----------------------------------------------------------------------------------


def test_entry_encoding_and_index():
    e = encode(77, True)
    assert present(e) and is_leaf(e) and target(e) == 77
    assert not is_leaf(encode(3, False)) and not present(0)
    va = (5 << 39) | (6 << 30) | (7 << 21) | (8 << 12) | 9
    assert [index(va, lv) for lv in (4, 3, 2, 1)] == [5, 6, 7, 8]


def test_descend_builds_tables_owned_by_the_parent_mm():
    pt = PageTables(4, dyn_frame_start=1000)
    root = pt.new_table(4, mm=3)
    leaf_table = pt.descend(root, 1 << 30, 1)
    assert pt.pages_per_level == [0, 1, 1, 1, 1, 0]
    assert pt.table_mm == [3, 3, 3, 3]
    assert pt.table_frame == [1000, 1001, 1002, 1003]
    assert pt.descend(root, (1 << 30) + 4096, 1) == leaf_table  # nothing new
    loc = root * 512 + index(1 << 30, 4)
    assert pt.versions[loc] == 1
    assert pt.entry_paddr(loc) == 1000 * 4096 + 0 * 8  # index 0 of the root for VA 1 GiB


# ---- ASIDs (switch_mm) -----------------------------------------------------------------------------


def mms(n: int) -> list[asid.MmState]:
    return [asid.MmState(ctx_id=2 + i) for i in range(n)]


def test_switch_mm_round_robin_from_boot():
    st = asid.CpuTlbState()
    m = mms(7)
    outs = [asid.switch_mm(st, 0, i, m[i], True) for i in range(7)]
    assert [o.flush for o in outs] == [True] * 7
    assert [o.slot_hit for o in outs] == [False] * 7
    assert [o.recycled for o in outs] == [False] * 6 + [True]  # slot 0 held init_mm: no recycle
    assert st.ctx_ids == [7, 8, 3, 4, 5, 6]
    assert st.asid == 1 and st.next_asid == 2
    assert all(0 in mm.cpumask for mm in m)


def test_switch_mm_slot_hit_flushes_only_when_generation_is_behind():
    st = asid.CpuTlbState()
    a, b = mms(2)
    asid.switch_mm(st, 0, 0, a, True)
    asid.switch_mm(st, 0, 1, b, True)
    o = asid.switch_mm(st, 0, 0, a, True)
    assert (o.switched, o.slot_hit, o.flush) == (True, True, False)
    asid.switch_mm(st, 0, 1, b, True)
    a.tlb_gen = 3
    o = asid.switch_mm(st, 0, 0, a, True)
    assert (o.slot_hit, o.flush, o.lazy_catchup) == (True, True, False)
    assert st.ctx_gens[st.asid] == 3


def test_switch_mm_same_mm_and_lazy_catchup():
    st = asid.CpuTlbState()
    (a,) = mms(1)
    asid.switch_mm(st, 1, 0, a, True)
    o = asid.switch_mm(st, 1, 0, a, True)
    assert (o.switched, o.flush) == (False, False)
    asid.enter_lazy(st)
    assert st.is_lazy
    o = asid.switch_mm(st, 1, 0, a, True)  # lazy, but nothing changed
    assert (o.switched, o.flush, o.lazy_catchup) == (False, False, False)
    assert not st.is_lazy
    asid.enter_lazy(st)
    a.tlb_gen += 1
    o = asid.switch_mm(st, 1, 0, a, True)
    assert (o.switched, o.flush, o.lazy_catchup) == (False, True, True)
    assert st.ctx_gens[st.asid] == 1
    a.tlb_gen += 1  # not lazy: a same-mm switch does not look at the generation
    o = asid.switch_mm(st, 1, 0, a, True)
    assert o.flush is False


def test_switch_mm_without_pcid_always_flushes_asid_0():
    st = asid.CpuTlbState()
    a, b = mms(2)
    for mm_id, mm in ((0, a), (1, b), (0, a)):
        o = asid.switch_mm(st, 0, mm_id, mm, False)
        assert (o.flush, o.slot_hit, o.recycled) == (True, False, False)
        assert st.asid == 0 and st.ctx_ids[0] == mm.ctx_id
