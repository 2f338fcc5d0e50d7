"""Hand-computed cases on both engines: ASID slots, lazy TLB and tlb_gen. Conventions: tests/engine/machines.py."""

from __future__ import annotations

import pytest
from machines import BASE, CR3_FLUSH, CR3_NOFLUSH, CS, A, pick, tiny

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
