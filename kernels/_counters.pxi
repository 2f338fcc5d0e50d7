# Counter columns; the order must equal mshare_hw.counters.COUNTERS (a test checks it).

cdef enum:
    C_ACCESSES
    C_IFETCHES
    C_LOADS
    C_STORES
    C_L1_ITLB_HITS
    C_L1_ITLB_MISSES
    C_L1_DTLB_HITS
    C_L1_DTLB_MISSES
    C_STLB_HITS
    C_STLB_MISSES
    C_PWC_HITS_PD
    C_PWC_HITS_PDPT
    C_PWC_HITS_PML4
    C_PWC_HITS_PML5
    C_WALKS
    C_WALK_READS
    C_WALK_READS_L1D
    C_WALK_READS_L2
    C_WALK_READS_LLC
    C_WALK_READS_DRAM
    C_WALK_CYCLES
    C_TRANSLATION_CYCLES
    C_PAGE_FAULTS
    C_LINK_FAULTS
    C_PAGES_MAPPED
    C_FAULT_CYCLES
    C_DATA_L1D_HITS
    C_DATA_L2_HITS
    C_DATA_LLC_HITS
    C_DATA_DRAM_READS
    C_CONTEXT_SWITCHES
    C_ASID_SLOT_HITS
    C_ASID_SLOT_MISSES
    C_ASID_RECYCLES
    C_CR3_WRITES_NOFLUSH
    C_CR3_FLUSHES
    C_LAZY_CATCHUP_FLUSHES
    C_IPIS_SENT
    C_IPIS_RECEIVED
    C_INVLPG
    C_INVPCID
    C_INVLPGB
    C_TLBSYNC
    C_FULL_FLUSHES
    C_SHOOTDOWN_CYCLES_INITIATOR
    C_SHOOTDOWN_CYCLES_RESPONDER
    C_COLLATERAL_ENTRIES_FLUSHED
    C_STALE_TRANSLATIONS
    C_CYCLES
    N_COUNTERS

COUNTER_NAMES = (
    "accesses", "ifetches", "loads", "stores", "l1_itlb_hits", "l1_itlb_misses", "l1_dtlb_hits",
    "l1_dtlb_misses", "stlb_hits", "stlb_misses", "pwc_hits_pd", "pwc_hits_pdpt", "pwc_hits_pml4",
    "pwc_hits_pml5", "walks", "walk_reads", "walk_reads_l1d", "walk_reads_l2", "walk_reads_llc",
    "walk_reads_dram", "walk_cycles", "translation_cycles", "page_faults", "link_faults",
    "pages_mapped", "fault_cycles", "data_l1d_hits", "data_l2_hits", "data_llc_hits",
    "data_dram_reads", "context_switches", "asid_slot_hits", "asid_slot_misses", "asid_recycles",
    "cr3_writes_noflush", "cr3_flushes", "lazy_catchup_flushes", "ipis_sent", "ipis_received",
    "invlpg", "invpcid", "invlpgb", "tlbsync", "full_flushes", "shootdown_cycles_initiator",
    "shootdown_cycles_responder", "collateral_entries_flushed", "stale_translations", "cycles",
)
