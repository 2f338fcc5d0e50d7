"""Counter names, in the column order both engines use.

The Cython engine declares the same list as a C enum (kernels/_counters.pxi); a test checks that the
two agree, so a reader can index either engine's counter table with these names.
"""

from __future__ import annotations

COUNTERS: tuple[str, ...] = (
    "accesses",
    "ifetches",
    "loads",
    "stores",
    "l1_itlb_hits",
    "l1_itlb_misses",
    "l1_dtlb_hits",
    "l1_dtlb_misses",
    "stlb_hits",
    "stlb_misses",
    "pwc_hits_pd",
    "pwc_hits_pdpt",
    "pwc_hits_pml4",
    "pwc_hits_pml5",
    "walks",
    "walk_reads",
    "walk_reads_l1d",
    "walk_reads_l2",
    "walk_reads_llc",
    "walk_reads_dram",
    "walk_cycles",
    "translation_cycles",
    "page_faults",
    "link_faults",
    "pages_mapped",
    "fault_cycles",
    "data_l1d_hits",
    "data_l2_hits",
    "data_llc_hits",
    "data_dram_reads",
    "context_switches",
    "asid_slot_hits",
    "asid_slot_misses",
    "asid_recycles",
    "cr3_writes_noflush",
    "cr3_flushes",
    "lazy_catchup_flushes",
    "ipis_sent",
    "ipis_received",
    "invlpg",
    "invpcid",
    "invlpgb",
    "tlbsync",
    "full_flushes",
    "shootdown_cycles_initiator",
    "shootdown_cycles_responder",
    "collateral_entries_flushed",
    "stale_translations",
    "cycles",
    # appended after the first results format: earlier files lack them
    "data_cycles",
    "nested_walk_reads",
    "nested_walk_cycles",
    "sleeps",  # a process blocked (sleeping clients): counted to it and the CPU it left
    "sleep_cycles",  # how long those sleeps were (not cycles of the CPU: it runs another process or idles)
    "global_asid_assignments",  # consider_global_asid gave an mm a global ASID (INVLPGB parts)
    # appended with PTI (machine.pti): CR3 switches at kernel entry and exit, deferred user-PCID flushes
    "pti_cr3_switches",
    "pti_user_flushes",
    # appended with hugetlb PMD sharing (pt_config hugetlb_pmd_share): a fault's huge_pmd_share() linked the mm's
    # PUD entry to another mm's PMD table; huge_pmd_unshare() cleared it again (an event in that mm)
    "pmd_shares",
    "pmd_unshares",
)

INDEX: dict[str, int] = {name: i for i, name in enumerate(COUNTERS)}
N_COUNTERS = len(COUNTERS)

# Page-table levels, numbered as in the Intel SDM: 1 = PT (4 KiB leaves), 2 = PD, 3 = PDPT, 4 = PML4,
# 5 = PML5 (LA57). Linux names: PTE, PMD, PUD, P4D/PGD.
LEVEL_NAMES = {1: "pt", 2: "pd", 3: "pdpt", 4: "pml4", 5: "pml5"}
