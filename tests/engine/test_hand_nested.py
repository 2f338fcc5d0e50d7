"""Hand-computed two-dimensional (nested) walks on both engines: a guest walk nested-translates every guest
entry's address and the data's (host physical = guest physical, 4-level host tables in a reserved frame
range); the nested TLB and PWCs cut host reads; guest flushes leave them alone. Conventions:
tests/engine/machines.py.

The caches here hold one line each (1 set x 1 way at every level), so a read hits the L1D exactly when it
reads the line the previous read read, and misses to DRAM otherwise: each read's latency follows from the
order of the reads.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from kernel_cases import KC, X, shm
from machines import A, pick, tiny

from mshare_hw.config.errors import ConfigError
from mshare_hw.engine.layout import build_layout
from mshare_hw.engine.params import SetAssoc
from mshare_hw.engine.shootdown import Kernel
from mshare_hw.workload.model import ArrayTrace, Process, Region, Workload

DRAM, L1D = 200, 4
STLB = 7  # tiny()'s l2_latency
ONE_LINE = {"l1d_cache": SetAssoc(1, 1, L1D), "l2_cache": SetAssoc(1, 1, 14), "llc": SetAssoc(1, 1, 40)}
NTLB, NPWC = SetAssoc(1, 32), SetAssoc(8, 4)  # the uarch files' ESTIMATE geometry: 32 entries FA, 32 x 4-way


def nested(host_shift: int = 12, structures: bool = True, **kw):
    return tiny(
        virtualization="nested",
        host_page_shift=host_shift,
        nested_tlb=NTLB if structures else None,
        nested_pwc=NPWC if structures else None,
        **ONE_LINE,
        **kw,
    )


def _prefault_then_flush_guest(d, va: int) -> None:
    """Map va, then flush the guest's TLB and PWC entries (lazy catch-up through tlb_gen)."""
    d.switch_to(0, 0)
    d.load(0, va)
    d.enter_lazy(0)
    d.bump_tlb_gen(0)
    d.switch_to(0, 0)
    assert d.total("lazy_catchup_flushes") == 1


COUNTS = ("walks", "walk_reads", "walk_reads_dram", "nested_walk_reads", "nested_walk_cycles", "walk_cycles")


@pytest.mark.parametrize(
    ("levels", "host_shift", "host_reads"),
    [
        (4, 12, 20),  # 4 guest entries + the data: 5 nested translations of 4 host reads
        (4, 21, 15),  # 2M host pages: the host leaf is level 2, 3 reads each
        (4, 30, 10),  # 1G host pages: 2 reads each
        (5, 12, 24),  # a 5-level guest on the 4-level host: 6 x 4
    ],
)
def test_walk_with_nothing_cached(drive, levels, host_shift, host_reads):
    """No nested TLB or PWC and cold guest TLB/PWC: 4x4 = 24 reads (Bhargava et al., ASPLOS 2008), 19 with
    2M host pages. Consecutive reads never read the same line (host L4, L3, L2, L1 entry, then the guest
    entry, ...; the previous access's last read was the data's host L1 entry), so every read is DRAM."""
    d = drive(nested(host_shift, structures=False, levels=levels))
    _prefault_then_flush_guest(d, A)
    snap = d.totals()
    d.load(0, A)
    reads = levels + host_reads
    got = d.since(snap)
    assert pick(got, *COUNTS) == {
        "walks": 1,
        "walk_reads": levels,
        "walk_reads_dram": levels,
        "nested_walk_reads": host_reads,
        "nested_walk_cycles": host_reads * DRAM,
        "walk_cycles": reads * DRAM,
    }
    assert got["translation_cycles"] == STLB + reads * DRAM
    assert got["cycles"] == 1 + STLB + reads * DRAM


def test_cold_walk_fills_and_uses_the_nested_pwc_and_tlb(drive):
    """The first access ever, 4K host pages, nested TLB and PWCs present but empty. The guest root is frame
    r (aligned to 512); the fault allocates the PDPT, PD and PT pages r+1..r+3 and the data frame r+4, all
    in one 2M and one 32 KiB host-L1 line's worth (8 entries) of guest-physical memory.
    Walk 1: root gPA: nested TLB miss, no PWC hit -> host L4, L3, L2, L1 entries (4 DRAM reads; fills the
    level-4/3/2 nested PWCs and the TLB); the root entry (DRAM) is not present -> fault.
    Walk 2: root gPA: nested TLB hit; the root entry's line is the one just read (L1D). PDPT, PD, PT pages
    and the data page: each a TLB miss and a level-2 nested PWC hit -> 1 host read (the host L1 entry,
    DRAM: the previous read was a guest entry), then the guest entry (DRAM)."""
    d = drive(nested(12))
    d.switch_to(0, 0)
    snap = d.totals()
    d.load(0, A)
    got = d.since(snap)
    walk1 = 5 * DRAM
    walk2 = L1D + 7 * DRAM
    assert pick(got, "walks", "page_faults", *COUNTS[1:]) == {
        "walks": 2,
        "page_faults": 1,
        "walk_reads": 1 + 4,
        "walk_reads_dram": 1 + 3,
        "nested_walk_reads": 4 + 4,
        "nested_walk_cycles": 8 * DRAM,
        "walk_cycles": walk1 + walk2,
    }
    assert got["translation_cycles"] == STLB + walk1 + walk2


def test_cold_walk_with_2m_host_pages(drive):
    """As above with 2M host pages: walk 1 reads host L4, L3, L2 for the root (fills the level-4/3 nested
    PWCs and the TLB with the 2M page); in walk 2 every guest-physical address lies in that 2M page: nested
    TLB hits, no host reads; the root entry's line is the one just read (L1D), the other three DRAM."""
    d = drive(nested(21))
    d.switch_to(0, 0)
    snap = d.totals()
    d.load(0, A)
    got = d.since(snap)
    assert pick(got, "walk_reads", "walk_reads_l1d", "nested_walk_reads", "walk_cycles") == {
        "walk_reads": 5,
        "walk_reads_l1d": 1,
        "nested_walk_reads": 3,
        "walk_cycles": 4 * DRAM + L1D + 3 * DRAM,
    }


W = 75  # a uarch's [nested] walk_cycles


@pytest.mark.parametrize(("host_shift", "host_walks"), [(12, 5), (21, 5)])
def test_walk_cycles_per_2d_walk_and_per_host_walk(drive, host_shift, host_walks):
    """walk_cycles is paid once per 2-D walk and once more per host walk (every nested translation here:
    no nested TLB or PWC): with nothing cached, the 4-level walk of test_walk_with_nothing_cached plus
    W x (1 + 5); the host walks' share goes to nested_walk_cycles too."""
    d = drive(nested(host_shift, structures=False, nested_walk_cycles=W))
    _prefault_then_flush_guest(d, A)
    snap = d.totals()
    d.load(0, A)
    host_reads = 20 if host_shift == 12 else 15
    got = d.since(snap)
    assert got["nested_walk_cycles"] == host_reads * DRAM + host_walks * W
    assert got["walk_cycles"] == (4 + host_reads) * DRAM + (1 + host_walks) * W
    assert got["translation_cycles"] == STLB + (4 + host_reads) * DRAM + (1 + host_walks) * W


def test_walk_cycles_with_the_nested_tlb_warm(drive):
    """test_cold_walk_with_2m_host_pages with walk_cycles: walk 1 is a 2-D walk with one host walk (the
    root's gPA), walk 2 a 2-D walk whose translations all hit the nested TLB: 3 W in all, 1 W of it host."""
    d = drive(nested(21, nested_walk_cycles=W))
    d.switch_to(0, 0)
    snap = d.totals()
    d.load(0, A)
    got = d.since(snap)
    assert pick(got, "walks", "nested_walk_reads", "nested_walk_cycles", "walk_cycles") == {
        "walks": 2,
        "nested_walk_reads": 3,
        "nested_walk_cycles": 3 * DRAM + W,
        "walk_cycles": 4 * DRAM + L1D + 3 * DRAM + 3 * W,
    }


def test_guest_invlpg_leaves_the_nested_tlb(drive):
    """A protect event on a mapped shm page: the guest's INVLPG drops the page's TLB entries and the PCID's
    PWC entries, not the nested TLB. The re-walk reads the 4 guest entries (each DRAM: the read before the
    first was the data's host L1 entry in the first walk) and no host entry: all five guest-physical pages
    are still in the 32-entry nested TLB."""
    d = drive(nested(12, pt_config="private", kernel_costs=dict(KC)), regions=[shm(processes=(0,))])
    Kernel(d.eng, d.params, d.layout)
    d.switch_to(0, 0)
    d.load(0, X)
    snap = d.totals()
    d.load(0, X)
    assert pick(d.since(snap), "l1_dtlb_hits", "walks") == {"l1_dtlb_hits": 1, "walks": 0}
    d.eng.execute_event("protect", 0, "shm", 0, 1, 0, 0)
    assert d.total("invlpg") == 1
    snap = d.totals()
    d.load(0, X)
    got = d.since(snap)
    assert pick(got, "walks", "walk_reads", "walk_reads_dram", "nested_walk_reads", "walk_cycles") == {
        "walks": 1,
        "walk_reads": 4,
        "walk_reads_dram": 4,
        "nested_walk_reads": 0,
        "walk_cycles": 4 * DRAM,
    }
    assert got["translation_cycles"] == STLB + 4 * DRAM


def test_host_tables_sit_above_every_guest_frame_and_guest_memory_stops_below_them():
    """The reserved range: level-1 host tables from max_frames up, one block per host level, each with room
    for every guest frame's table, the last ending within what the caches can tag. A workload whose
    frames would reach the range is refused when laid out (and accepted on bare metal)."""
    p = nested(12)
    base, guest = p.host_table_base, p.max_frames
    assert base[1] == guest
    for level in range(1, 4):
        assert base[level + 1] - base[level] >= -(-guest // 512**level)
    assert base[4] + 1 <= p.tag_frames
    size = (guest * 4096 + (1 << 21) - 1) >> 21 << 21
    wl = Workload(
        [Process("p", ArrayTrace(np.empty(0, np.uint64), np.empty(0, np.uint8)))],
        [Region("big", 1 << 39, size, page_size="2M")],
    )
    with pytest.raises(ConfigError, match="simulated physical memory"):
        build_layout(wl, p)
    build_layout(wl, dataclasses.replace(p, virtualization="none"))
