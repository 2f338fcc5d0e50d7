"""Hand-computed cases on both engines: Linux's hugetlb PMD-table sharing (pt_config = "hugetlb_pmd_share").
A MAP_SHARED hugetlb region (2 MiB pages) shares, between the processes mapping it, the PMD table of each
whole PUD-aligned 1 GiB span (want_pmd_share / huge_pmd_share in mm/hugetlb.c); each process keeps its
own PGD and PUD pages. Events unshare (huge_pmd_unshare: the mm's PUD entry cleared, 6.18's
tlb_remove_table_sync_one IPI to every other CPU, a flush of that mm's whole 1 GiB) where the table is
still used by another mm, and change PTEs where it is not.
Conventions: tests/engine/machines.py and tests/engine/kernel_cases.py.
"""

from __future__ import annotations

import pytest
from kernel_cases import BASE, CR3F, INVLPG, PER, RESP, RUNNERS, X, go, hammer, machine, procs, zaps
from machines import FAULT, FAULT_PER_PAGE, GiB, MiB2, pick, tiny

from mshare_hw.config.errors import ConfigError
from mshare_hw.engine.layout import build_layout
from mshare_hw.workload.model import Region, Workload


def huge(start: int = GiB, size: int = GiB, processes=None) -> Region:
    return Region("pool", start, size, kind="shmem", shared=True, page_size="2M", processes=processes)


# ---- faults: one PMD table for every process -------------------------------------------------------------


@pytest.mark.parametrize("pt_config", ["private", "hugetlb_pmd_share"])
def test_two_processes_share_one_pmd_table(drive, pt_config):
    """P0 then P1 store to the first 2 MiB page of a 1 GiB-aligned, 1 GiB region of 2 MiB pages."""
    d = drive(tiny(pt_config=pt_config), n_procs=2, regions=[huge()])
    d.switch_to(0, 0)
    snap = d.totals()
    d.store(0, GiB)
    # P0, walk 1: its PML4E is not present (1 read) -> fault: PDPT page and PD page allocated, the PDE maps
    # the page (1 page). Walk 2: PML4E, PDPTE, PDE = 3 reads. Alike in both configurations (nobody to share).
    assert pick(d.since(snap), "walks", "walk_reads", "page_faults", "pages_mapped", "pmd_shares") == {
        "walks": 2,
        "walk_reads": 4,
        "page_faults": 1,
        "pages_mapped": 1,
        "pmd_shares": 0,
    }
    d.switch_to(0, 1)
    snap = d.totals()
    d.store(1, GiB)
    got = d.since(snap)
    if pt_config == "hugetlb_pmd_share":
        # P1, walk 1: its own PML4E not present (1 read) -> fault: huge_pte_alloc allocates P1's PDPT page,
        # huge_pmd_share finds P0's PD page and points P1's PDPTE at it (1 share); the PDE is present: the
        # fault maps nothing (a page fault all the same: fault_cycles, no per-page cost). Walk 2: P1's PML4E,
        # P1's PDPTE, the shared PDE = 3 reads.
        assert pick(got, "walks", "walk_reads", "page_faults", "pages_mapped", "pmd_shares") == {
            "walks": 2,
            "walk_reads": 4,
            "page_faults": 1,
            "pages_mapped": 0,
            "pmd_shares": 1,
        }
        assert got["fault_cycles"] == FAULT
        # tables: 2 roots (PML4), 2 PDPT pages, ONE PD page: 5 pages = 20 KiB of page tables
        assert d.pt_pages() == [0, 0, 1, 2, 2, 0]
    else:
        # private: P1 builds its own PDPT and PD pages and maps the page into its own PDE
        assert pick(got, "walks", "walk_reads", "page_faults", "pages_mapped", "pmd_shares") == {
            "walks": 2,
            "walk_reads": 4,
            "page_faults": 1,
            "pages_mapped": 1,
            "pmd_shares": 0,
        }
        assert got["fault_cycles"] == FAULT + FAULT_PER_PAGE
        assert d.pt_pages() == [0, 0, 2, 2, 2, 0]


def test_shared_pmd_entries_are_one_cache_line(drive):
    """The shared PD page has one frame, so P0 and P1 read the same PDE lines."""
    d = drive(tiny(pt_config="hugetlb_pmd_share"), n_procs=2, regions=[huge()])
    for p in (0, 1):
        d.switch_to(0, p)
        d.store(p, GiB)
    d.switch_to(0, 0)
    d.store(0, GiB + 4 * MiB2)  # P0 maps page 2: its PDE lies in the same 64-byte line as pages 0-7's
    d.switch_to(0, 1)
    snap = d.totals()
    d.load(1, GiB + 4 * MiB2)
    # P1: a PWC hit on its own PDPTE (whose child is the shared PD page), then 1 read of the shared PDE: present
    # (P0 mapped it), no fault; its line was last read by P0's walk on this CPU: an L1D hit.
    got = d.since(snap)
    assert pick(got, "walks", "walk_reads", "walk_reads_l1d", "pwc_hits_pdpt", "page_faults") == {
        "walks": 1,
        "walk_reads": 1,
        "walk_reads_l1d": 1,
        "pwc_hits_pdpt": 1,
        "page_faults": 0,
    }


def test_only_whole_aligned_gib_spans_are_shared(drive):
    """A 2 GiB region from 1 GiB + 2 MiB: only [2 GiB, 3 GiB) is a whole PUD-aligned span of it. Its
    partial spans [1 GiB + 2 MiB, 2 GiB) and [3 GiB, 3 GiB + 2 MiB) keep private PMD tables."""
    d = drive(tiny(pt_config="hugetlb_pmd_share"), n_procs=2, regions=[huge(GiB + MiB2, 2 * GiB)])
    for p in (0, 1):
        d.switch_to(0, p)
        d.store(p, GiB + MiB2)  # partial span: each process allocates and fills its own PD page
        d.store(p, 2 * GiB)  # whole span: P0 allocates its PD page, P1 shares it
        d.store(p, 3 * GiB)  # partial span
    # P0: 3 faults, 3 pages. P1: 3 faults, the shared span's page already mapped by P0 -> 2 pages, 1 share.
    assert [d.proc(p, "page_faults") for p in (0, 1)] == [3, 3]
    assert [d.proc(p, "pages_mapped") for p in (0, 1)] == [3, 2]
    assert [d.proc(p, "pmd_shares") for p in (0, 1)] == [0, 1]
    # tables: PML4 2, PDPT 2 (1 GiB .. 4 GiB is one PDPT page per process), PD: 2 per process for the
    # partial spans + 1 shared = 5
    assert d.pt_pages() == [0, 0, 5, 2, 2, 0]


@pytest.mark.parametrize(
    "region, what",
    [
        (Region("pool", GiB, GiB, kind="shmem", shared=True, page_size="4K"), "4K pages"),
        (huge(GiB + MiB2, GiB), "no whole aligned GiB"),
        (Region("pool", GiB, GiB, kind="shmem", shared=False, page_size="2M"), "private"),
    ],
)
def test_nothing_to_share_is_refused(region, what):
    """PMD sharing applies to MAP_SHARED hugetlb mappings over whole PUD-aligned spans only: a workload with
    none would run exactly as `private`, so the configuration is refused, naming the reason."""
    wl = Workload(procs((0, hammer(GiB, 1))), [region])
    with pytest.raises(ConfigError, match="no shared 2M-page region covers a whole PUD-aligned 1 GiB span"):
        build_layout(wl, tiny(pt_config="hugetlb_pmd_share"))


# ---- events: unshare, then change the PTEs of the last user ----------------------------------------------


def _two_sharers(n_cpus: int = 3, processes=None, n: int = 12000) -> Workload:
    """P0 (CPU0) and P1 (CPU1) store to page 0 of a 1 GiB hugetlb region at X (PUD-aligned) over and over;
    with 3 CPUs CPU2 has nothing to run. P0 faults first (CPU0 runs first at equal clocks) and allocates the
    PD page; P1 shares it."""
    return Workload(procs((0, hammer(X, n)), (1, hammer(X, n))), [huge(X, GiB, processes=processes)])


@RUNNERS
@pytest.mark.parametrize("kind", ["zap", "protect", "migrate", "reclaim"])
def test_event_unshares_the_initiators_mm_and_changes_the_last_users_pte(run, kind):
    p = machine(3, "hugetlb_pmd_share")
    res = go(run, _two_sharers(), p, zaps([6000], kind=kind, region="pool"))
    assert res.fired == 1
    # The rmap walk (hole punch, mprotect in each mapper, or try_to_unmap/try_to_migrate of the one folio)
    # visits P0's mm, then P1's.
    # P0: the PD page has two users -> huge_pmd_unshare: P0's PDPTE cleared (1 unshare, counted to CPU0);
    #   tlb_remove_table_sync_one: an IPI to every other online CPU (CPU1 runs P1, CPU2 idles), nothing to
    #   flush: BASE + 2 PER + max(RESP, RESP). Then P0's flush covers the whole PUD span: 512 2 MiB pages >
    #   33 -> a full flush; P0's cpumask is {0}, the initiator's: local, CR3F.
    # P1: the table now has one user -> its PTE changes in place; flush_tlb_mm_range(P1, 1 page): cpumask {1}
    #   -> one IPI round to CPU1, INVLPG: BASE + PER + RESP + INVLPG.
    sync = BASE + 2 * PER + RESP
    p1_round = BASE + PER + RESP + INVLPG
    assert res.cpu("pmd_unshares") == [1, 0, 0]
    assert res.cpu("ipis_sent") == [3, 0, 0]
    assert res.cpu("ipis_received") == [0, 2, 1]
    assert res.cpu("full_flushes") == [1, 0, 0]
    assert res.cpu("invlpg") == [0, 1, 0]
    assert res.cpu("shootdown_cycles_initiator") == [sync + CR3F + p1_round, 0, 0]
    assert res.cpu("shootdown_cycles_responder") == [0, RESP + p1_round - BASE - PER, RESP]
    assert res.total("stale_translations") == 0
    # afterwards P0 faults again (its PDPTE is gone) and re-shares the PD page P1 still uses (2 shares in
    # all: P1's first fault and this one); a zapped or reclaimed page is mapped once more by whoever faults
    # first, a protected or migrated one stays present (rewritten in place, or pointing at its new frame)
    assert res.total("pmd_shares") == 2
    assert res.proc("page_faults")[0] == 2
    assert res.total("pages_mapped") == (2 if kind in ("zap", "reclaim") else 1)


@RUNNERS
def test_sole_user_zaps_without_unsharing(run):
    """Only P0 maps the region: its PD page has one user, huge_pmd_unshare declines, the PTE is zapped and
    flushed locally (one INVLPG), no IPI at all."""
    p = machine(3, "hugetlb_pmd_share")
    res = go(run, _two_sharers(processes=(0,)), p, zaps([6000], region="pool"))
    assert res.fired == 1
    assert res.total("pmd_unshares") == 0
    assert res.total("ipis_sent") == 0
    assert res.cpu("invlpg") == [1, 0, 0]
    assert res.cpu("shootdown_cycles_initiator") == [INVLPG, 0, 0]


@RUNNERS
def test_detach_unshares_only_the_initiators_view(run):
    """P0 unmaps its view (munmap): __unmap_hugepage_range over its vma unshares the PD page (the sync IPI
    to CPU1 and CPU2), then the flush of the whole region with freed tables: P0's cpumask {0} -> local, 512
    pages -> full. P1 keeps the table, its PTE and its TLB entry: no flush reaches it."""
    p = machine(3, "hugetlb_pmd_share")
    res = go(run, _two_sharers(), p, zaps([6000], kind="detach", region="pool"))
    assert res.fired == 1
    assert res.cpu("pmd_unshares") == [1, 0, 0]
    assert res.cpu("ipis_sent") == [2, 0, 0]
    assert res.cpu("ipis_received") == [0, 1, 1]
    assert res.cpu("full_flushes") == [1, 0, 0]
    assert res.total("invlpg") == 0
    assert res.cpu("shootdown_cycles_initiator") == [BASE + 2 * PER + RESP + CR3F, 0, 0]
    # P0 re-shares on its next touch; the page is still present: mapped once in all (by P0 at the start)
    assert res.total("pmd_shares") == 2
    assert res.total("pages_mapped") == 1
    assert res.total("stale_translations") == 0


@RUNNERS
def test_partial_span_events_are_private(run):
    """The region starts 2 MiB past X: its first GiB is not a whole aligned span, so each process has its own
    PD page there. A zap of page 0 changes both processes' PTEs and flushes each mm, as private page tables
    do: P0's locally (INVLPG), P1's by one IPI round; nothing to unshare, no table-sync IPI."""
    p = machine(3, "hugetlb_pmd_share")
    wl = Workload(procs((0, hammer(X + MiB2, 12000)), (1, hammer(X + MiB2, 12000))), [huge(X + MiB2, 2 * GiB)])
    res = go(run, wl, p, zaps([6000], region="pool"))
    assert res.fired == 1
    assert res.total("pmd_shares") == 0 and res.total("pmd_unshares") == 0
    assert res.cpu("ipis_sent") == [1, 0, 0]
    assert res.cpu("ipis_received") == [0, 1, 0]
    assert res.cpu("invlpg") == [1, 1, 0]
    assert res.cpu("shootdown_cycles_initiator") == [INVLPG + BASE + PER + RESP + INVLPG, 0, 0]
    # each process faults the page in again into its own PD page
    assert res.proc("pages_mapped") == [2, 2]
