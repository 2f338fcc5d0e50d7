"""Hand-computed cases on both engines: the coherence oracle. Conventions: tests/engine/machines.py."""

from __future__ import annotations

import pytest
from machines import ALL, A, B, MiB2, tiny

from mshare_hw.engine.params import TLBStruct

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
