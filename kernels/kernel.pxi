# The kernel side of invalidation events in C: an event's PTE changes, Linux's flush paths with their mmu
# notifiers, the mshare flush strategies and the set-up of the kernel side's state (EventCtx, state.pxi);
# the flush paths themselves are in flush.pxi. mshare_hw.engine.shootdown configures it (Engine.set_kernel)
# and hands it each event (Engine.execute_event): one call per event from Python, whatever the number of
# CPUs. Secondary MMUs' mmu notifiers stay Python objects, called back from here. Mirrors
# mshare_hw/reference/kernel.py step for step (the differential tests hold the two to identical counters).

# -- page-table changes ---------------------------------------------------------------------------------
cdef int64_t ev_pt_change_span(Sim* s, int mm, uint64_t va, int64_t n_pages, int shift, int op, int64_t* first,
                               int64_t* last) noexcept nogil:
    """pt_change_range page by page, like the mmu_gather: *first, *last: the indices of the first and last
    page whose present PTE changed (-1 if none); returns how many did."""
    cdef int64_t i, count = 0
    first[0] = -1
    last[0] = -1
    for i in range(n_pages):
        if pt_change_range(s, mm, va + (<uint64_t>i << shift), 1, shift, op):
            count += 1
            last[0] = i
            if first[0] < 0:
                first[0] = i
    return count


cdef int ev_pt_unlink(Sim* s, int mm, uint64_t va, int level) noexcept nogil:
    """Clear the entry at `level` on va's path in mm's tree (a detach's p4d_clear); 0 if there was none."""
    cdef int64_t t = s.roots[mm], loc, ent
    cdef int lv = s.levels
    while lv > level:
        ent = pt_get(s, t * PT_ENTRIES + pt_index(va, lv))
        if not (ent & 1) or (ent & 2):
            return 0
        t = ent >> 2
        lv -= 1
    loc = t * PT_ENTRIES + pt_index(va, level)
    if not (pt_get(s, loc) & 1):
        return 0
    pt_set_entry(s, loc, 0)
    return 1


cdef int64_t ev_pt_locate(Sim* s, int mm, uint64_t va, int level) noexcept nogil:
    """The location of the entry at `level` on va's path in mm's tree, or -1 if an entry above it is not
    present (or a leaf)."""
    cdef int64_t t = s.roots[mm], ent
    cdef int lv = s.levels
    while lv > level:
        ent = pt_get(s, t * PT_ENTRIES + pt_index(va, lv))
        if not (ent & 1) or (ent & 2):
            return -1
        t = ent >> 2
        lv -= 1
    return t * PT_ENTRIES + pt_index(va, level)


# -- the kernel side: Linux's paths with mmu notifiers, the strategies, one event ---------------------
# `notifiers` is the run's SecondaryMMUs (mshare_hw.engine.secondary) or None; its methods return the
# initiator's cycles.

cdef int64_t k_range_start(object notifiers, int iproc, int mm, uint64_t va, int64_t n_pages, int shift) except? -1:
    """mmu_notifier_invalidate_range_start(mm, ...) before PTEs change (its _end adds no work here)."""
    if notifiers is None:
        return 0
    return notifiers.invalidate_range_start(iproc, mm, va, n_pages, shift)


cdef int64_t k_batch_pending(object notifiers, int iproc, int mm, int64_t pages) except? -1:
    """arch_tlbbatch_add_pending, once per unmapped page: the notifier with the whole range 0..-1."""
    cdef int64_t i, cycles = 0
    if notifiers is None:
        return 0
    for i in range(pages):
        cycles += notifiers.arch_invalidate_secondary_tlbs(iproc, mm, 0, -1, 12)
    return cycles


cdef int64_t k_flush_tlb_mm_range(Sim* s, EventCtx* e, object notifiers, int cpu, int iproc, int mm, uint64_t va,
                                  int64_t n_pages, int shift, int freed, int64_t now) except? -1:
    """flush_tlb_mm_range: should_trim_cpumask() is asked only when another CPU is in mm's cpumask, and says
    yes at most once per trim interval per mm. Ends with the mm's secondary-TLB notifier, as Linux does (a
    batch called it per page in arch_tlbbatch_add_pending and never calls this). Returns the initiator's
    cycles."""
    cdef int remote
    cdef int trim = now >= e.next_trim[mm]
    cdef int64_t cycles = ev_flush_tlb_mm_range(s, e, cpu, iproc, mm, va, n_pages, shift, n_pages > e.ceiling,
                                                freed, trim, &remote)
    if remote and trim:
        e.next_trim[mm] = now + e.trim_interval
    if remote:
        ev_consider_global_asid(s, e, cpu, iproc, mm, now)
    if notifiers is not None:
        cycles += notifiers.arch_invalidate_secondary_tlbs(iproc, mm, va, n_pages, shift)
    return cycles


cdef int64_t k_flush_tlb_all(Sim* s, EventCtx* e, int cpu, int iproc) noexcept nogil:
    """flush_tlb_all, or with INVLPGB one invlpgb_flush_all() + TLBSYNC (no global entries are modelled)."""
    if e.invlpgb:
        return ev_invlpgb_flush_all_nonglobals(s, e, cpu, iproc)
    return ev_flush_tlb_all(s, e, cpu, iproc)


cdef int64_t k_shared_flush(Sim* s, EventCtx* e, object notifiers, int cpu, int iproc, int host, int region,
                            uint64_t va, int64_t n_pages, int shift, int64_t now) except? -1:
    """The strategy's flushes after a change in a shared (mshare) page table. Returns the initiator's cycles."""
    cdef int i
    cdef const int* sharers = &e.reg_map[e.reg_map_off[region]]
    cdef int n_sharers = e.reg_map_off[region + 1] - e.reg_map_off[region]
    # the series' first step is always the ordinary flush of the host mm; its cpumask is empty
    cdef int64_t cycles = k_flush_tlb_mm_range(s, e, notifiers, cpu, iproc, host, va, n_pages, shift, 0, now)
    if e.strategy == S_HOST_MM_ONLY:
        return cycles
    if e.strategy == S_FLUSH_ALL:
        return cycles + k_flush_tlb_all(s, e, cpu, iproc)
    if e.strategy == S_PER_SHARER:
        for i in range(n_sharers):
            cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, iproc, sharers[i], va, n_pages, shift, 0, now)
        return cycles
    if e.strategy == S_HOST_CPUMASK or e.strategy == S_UNION_BATCH:
        # host_cpumask: the CPUs that ran a sharer flush their loaded PCID if a sharer's, no tlb_gen;
        # union_batch: every sharer's tlb_gen bumped, one round, loaded sharers catch up
        return cycles + ev_flush_sharers(s, e, cpu, iproc, sharers, n_sharers, va, n_pages, shift,
                                         n_pages > e.ceiling, e.strategy == S_UNION_BATCH)
    if e.strategy == S_BROADCAST_VA:
        # every sharer maps the region at the same virtual addresses: INVLPGB by address in every PCID
        return cycles + ev_invlpgb_flush_addr(s, e, cpu, iproc, va, n_pages, shift)
    # broadcast: single-threaded sharers are never loaded (non-lazily) on 4+ CPUs at once, so Linux gives
    # them no global ASID; without one, INVLPGB can only flush every non-global entry
    return cycles + ev_invlpgb_flush_all_nonglobals(s, e, cpu, iproc)


# -- hugetlb regions (pt_config hugetlb_pmd_share) ------------------------------------------------------
cdef enum:
    HPAGE_SHIFT = 21       # hugetlb regions: shared regions of 2 MiB pages
    PUD_SHIFT = 30         # the span of one PUD entry: what one shared PMD table maps


cdef int64_t k_huge_pmd_unshare(Sim* s, EventCtx* e, int cpu, int iproc, int mm, uint64_t va) noexcept nogil:
    """huge_pmd_unshare (mm/hugetlb.c, 6.18) for va in mm: if mm's PUD entry links to a shareable span's PMD
    table that another mm also uses, clear it (pud_clear) and drop mm's use of the table, then
    tlb_remove_table_sync_one(): an IPI to every other online CPU, waited for, with nothing to flush. Returns
    the initiator's cycles, or -1 if the table was not shared (the caller changes its PTEs)."""
    cdef int span = sim_pmd_span(s, mm, va), t, n = 0
    cdef int64_t loc
    if span < 0 or s.pmd_users[span] < 2:
        return -1
    loc = ev_pt_locate(s, mm, va, 3)
    if loc < 0 or pt_get(s, loc) != pt_encode(s.pmd_table[span], 0):
        return -1
    pt_set_entry(s, loc, 0)
    s.pmd_users[span] -= 1
    ev_charge(s, cpu, iproc, C_PMD_UNSHARES, 1)
    for t in range(s.n_cpus):
        if t != cpu:
            e.targets[n] = t
            n += 1
    return ev_ipi_round(s, e, cpu, iproc, n, W_NOTHING, 0)


cdef int64_t k_hugetlb_change(Sim* s, EventCtx* e, int cpu, int iproc, int mm, uint64_t va, int64_t n_pages, int op,
                              int64_t* lo, int64_t* hi) noexcept nogil:
    """The PTE changes of one hugetlb path in mm (__unmap_hugepage_range, hugetlb_change_protection, or
    try_to_unmap_one/try_to_migrate_one for one folio) over n_pages 2 MiB pages from va: a page whose PMD table
    mm shares with another mm unshares that table and skips to the next PUD span (the flush then covers the
    whole span); any other present PTE changes (op). Returns the initiator's cycles; *lo, *hi: the range to
    flush (-1, -1: none)."""
    cdef int64_t i = 0, c, cycles = 0
    cdef uint64_t page, g, pud = (<uint64_t>1) << PUD_SHIFT
    lo[0] = -1
    hi[0] = -1
    while i < n_pages:
        page = va + (<uint64_t>i << HPAGE_SHIFT)
        c = k_huge_pmd_unshare(s, e, cpu, iproc, mm, page)
        if c >= 0:
            cycles += c
            g = page & ~(pud - 1)
            if lo[0] < 0 or <int64_t>g < lo[0]:
                lo[0] = <int64_t>g
            if <int64_t>(g + pud) > hi[0]:
                hi[0] = <int64_t>(g + pud)
            i = <int64_t>((g + pud - va) >> HPAGE_SHIFT)
            continue
        if pt_change_range(s, mm, page, 1, HPAGE_SHIFT, op):
            if lo[0] < 0 or <int64_t>page < lo[0]:
                lo[0] = <int64_t>page
            if <int64_t>(page + ((<uint64_t>1) << HPAGE_SHIFT)) > hi[0]:
                hi[0] = <int64_t>(page + ((<uint64_t>1) << HPAGE_SHIFT))
        i += 1
    return cycles


cdef int64_t k_hugetlb_event(Sim* s, EventCtx* e, object notifiers, int kind, int cpu, int proc, int mm, int region,
                             uint64_t va, int64_t n, int64_t now) except? -1:
    """An event on a hugetlb region (a MAP_SHARED hugetlbfs mapping of every mapper): zap a hole punch (each
    mapper's __unmap_hugepage_range, one flush per mm), protect each mapper's hugetlb_change_protection,
    migrate/reclaim the rmap walks one folio at a time, never batched, detach the initiator's munmap (a flush
    of the whole region with freed tables). Every path unshares where mm's PMD table is still used by another
    mm. Returns the initiator's cycles (see mshare_hw/reference/kernel.py, _hugetlb_event)."""
    cdef uint64_t start = e.reg_start[region], end = e.reg_end[region], p_va
    cdef int op = PT_OP_MIGRATE if kind == EK_MIGRATE else (PT_OP_PROTECT if kind == EK_PROTECT else PT_OP_ZAP)
    cdef int64_t cycles = 0, lo, hi, j, n_region = <int64_t>((end - start) >> HPAGE_SHIFT)
    cdef int i, m
    if kind == EK_DETACH:
        cycles += k_range_start(notifiers, proc, mm, start, n_region, HPAGE_SHIFT)
        cycles += k_hugetlb_change(s, e, cpu, proc, mm, start, n_region, PT_OP_ZAP, &lo, &hi)
        return cycles + k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, mm, start, n_region, HPAGE_SHIFT, 1, now)
    if kind == EK_RECLAIM or kind == EK_MIGRATE:
        for j in range(n):
            p_va = va + (<uint64_t>j << HPAGE_SHIFT)
            for i in range(e.reg_map_off[region], e.reg_map_off[region + 1]):
                m = e.reg_map[i]
                cycles += k_range_start(notifiers, proc, m, p_va, 1, HPAGE_SHIFT)
                cycles += k_hugetlb_change(s, e, cpu, proc, m, p_va, 1, op, &lo, &hi)
                if lo >= 0:
                    cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, m, <uint64_t>lo,
                                                   (hi - lo) >> HPAGE_SHIFT, HPAGE_SHIFT, 0, now)
        return cycles
    for i in range(e.reg_map_off[region], e.reg_map_off[region + 1]):
        m = e.reg_map[i]
        cycles += k_range_start(notifiers, proc, m, va, n, HPAGE_SHIFT)
        cycles += k_hugetlb_change(s, e, cpu, proc, m, va, n, op, &lo, &hi)
        if lo >= 0:
            cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, m, <uint64_t>lo, (hi - lo) >> HPAGE_SHIFT,
                                           HPAGE_SHIFT, 0, now)
    return cycles


cdef inline int k_should_defer(Sim* s, int cpu, int mm) noexcept nogil:
    """arch_tlbbatch_should_defer(mm) on `cpu`: a batched unmap defers mm's flush only when another CPU is in
    mm's cpumask."""
    cdef int t
    for t in range(s.n_cpus):
        if t != cpu and s.mm_cpumask[mm * s.n_cpus + t]:
            return 1
    return 0


cdef inline int k_initiator(Sim* s, EventCtx* e, int proc) noexcept nogil:
    """The CPU an event by `proc` initiates on: the first CPU running it, else its home CPU."""
    cdef int cpu
    for cpu in range(s.n_cpus):
        if ev_current_proc(s, cpu) == proc:
            return cpu
    return e.home_cpu[proc]


cdef int k_execute(Sim* s, EventCtx* e, object notifiers, int kind, int proc, int region, int64_t first_page,
                   int64_t n_pages, int64_t now, int cpu) except -1:
    """One event, initiated by `proc` on `cpu`: change the PTEs of the page range (clipped to the region) in
    every page table that holds them, flush the way the configuration does, charge the initiator."""
    cdef uint64_t start = e.reg_start[region], end = e.reg_end[region], va, s_va, slot, first_slot
    cdef int shift = e.reg_shift[region], host = e.reg_host[region], i, mm, n_mms = 0, n_touched
    cdef int own_mm = s.mm_of[proc]  # the initiator's mm (its process's, for a thread)
    cdef int op = PT_OP_MIGRATE if kind == EK_MIGRATE else (PT_OP_PROTECT if kind == EK_PROTECT else PT_OP_ZAP)
    cdef int batched = kind == EK_RECLAIM or kind == EK_MIGRATE
    cdef int64_t n_region_pages = <int64_t>((end - start) >> shift)
    cdef int64_t first = min(first_page, n_region_pages - 1)
    cdef int64_t n = max(1, min(n_pages, n_region_pages - first))
    cdef int64_t c_first, c_last, c_count, j, cycles = 0
    cdef uint64_t c_va
    va = start + (<uint64_t>first << shift)
    memset(e.mapper, 0, s.n_procs)
    for i in range(e.reg_map_off[region], e.reg_map_off[region + 1]):
        e.mapper[e.reg_map[i]] = 1
    if host >= 0:
        host += s.n_procs
        if kind == EK_DETACH:
            cycles += k_range_start(notifiers, proc, own_mm, start, n_region_pages, shift)
            slot = (<uint64_t>1) << e.slot_shift
            first_slot = start // slot * slot
            s_va = first_slot
            while s_va < end:
                ev_pt_unlink(s, own_mm, s_va, e.link_level)
                s_va += slot
            if e.detach_flush == DF_P4D_STRIDE:
                # the posted series: p4d_clear + tlb_flush_p4d_range on the mmu_gather, whose flush is
                # flush_tlb_mm_range(mm, start, end, P4D_SHIFT, freed_tables = false): one "page" of the link
                # entry's span per slot, no table freed (the shared tables live on)
                cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, own_mm, first_slot,
                                               <int64_t>((end - first_slot + slot - 1) // slot), e.slot_shift, 0,
                                               now)
            else:
                cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, own_mm, start, n_region_pages, shift,
                                               1, now)
        else:
            cycles += k_range_start(notifiers, proc, host, va, n, shift)
            # like the mmu_gather: the span of the entries actually changed
            if batched:
                # the host mm is never loaded, its cpumask is empty: arch_tlbbatch_should_defer says no, so
                # each page's PTE is cleared and flushed at once, through the strategy
                for j in range(n):
                    c_va = va + (<uint64_t>j << shift)
                    if pt_change_range(s, host, c_va, 1, shift, op):
                        cycles += k_shared_flush(s, e, notifiers, cpu, proc, host, region, c_va, 1, shift, now)
            else:
                c_count = ev_pt_change_span(s, host, va, n, shift, op, &c_first, &c_last)
                if c_count:
                    c_va = va + (<uint64_t>c_first << shift)
                    cycles += k_shared_flush(s, e, notifiers, cpu, proc, host, region, c_va, c_last - c_first + 1,
                                             shift, now)
    elif s.pt_config == PTC_HUGETLB_PMD_SHARE and e.reg_shared[region] and shift == HPAGE_SHIFT:
        cycles += k_hugetlb_event(s, e, notifiers, kind, cpu, proc, own_mm, region, va, n, now)
    else:
        if kind == EK_DETACH:
            cycles += k_range_start(notifiers, proc, own_mm, start, n_region_pages, shift)
            ev_pt_change_span(s, own_mm, start, n_region_pages, shift, PT_OP_ZAP, &c_first, &c_last)
            cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, own_mm, start, n_region_pages, shift, 1,
                                           now)
        else:
            # the mms holding the PTEs: every mapper of a shared region (the rmap walk), else the initiator's
            if e.reg_shared[region]:
                for i in range(e.reg_map_off[region], e.reg_map_off[region + 1]):
                    e.mms[n_mms] = e.reg_map[i]
                    n_mms += 1
            else:
                e.mms[0] = own_mm
                n_mms = 1
            if batched:
                n_touched = 0  # the mms whose PTEs changed, packed to the front of e.mms
                for i in range(n_mms):
                    mm = e.mms[i]
                    cycles += k_range_start(notifiers, proc, mm, va, n, shift)
                    if k_should_defer(s, cpu, mm):
                        c_count = ev_pt_change_span(s, mm, va, n, shift, op, &c_first, &c_last)
                        if c_count:
                            e.mms[n_touched] = mm
                            n_touched += 1
                            cycles += k_batch_pending(notifiers, proc, mm, c_count)
                        continue
                    # not deferred: each page's PTE is cleared and flushed at once (ptep_clear_flush /
                    # flush_tlb_range, one folio at a time): a local flush if mm is loaded here, else none
                    for j in range(n):
                        c_va = va + (<uint64_t>j << shift)
                        if pt_change_range(s, mm, c_va, 1, shift, op):
                            cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, mm, c_va, 1, shift, 0, now)
                if n_touched:
                    cycles += ev_tlbbatch_flush(s, e, cpu, proc, e.mms, n_touched)
            else:
                for i in range(n_mms):
                    mm = e.mms[i]
                    cycles += k_range_start(notifiers, proc, mm, va, n, shift)
                    c_count = ev_pt_change_span(s, mm, va, n, shift, op, &c_first, &c_last)
                    if c_count:
                        cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, mm,
                                                       va + (<uint64_t>c_first << shift), c_last - c_first + 1,
                                                       shift, 0, now)
    if s.pti:  # the initiating system call's kernel entry and exit
        cycles += pti_crossing(s, cpu, proc)
    ev_charge(s, cpu, proc, C_SHOOTDOWN_CYCLES_INITIATOR, cycles)
    ev_charge(s, cpu, proc, C_CYCLES, cycles)
    return 0


# -- set-up and teardown (Engine.__init__, Engine.set_kernel, Engine.__dealloc__) ------------------------
cdef void kernel_init(EventCtx* e, Sim* s) except *:
    """The per-event work arrays; unconfigured."""
    e.removed = <int64_t*>_calloc(s.n_procs, sizeof(int64_t))
    e.mapper = <uint8_t*>_calloc(s.n_procs, sizeof(uint8_t))
    e.sharer = <uint8_t*>_calloc(s.n_mms, sizeof(uint8_t))
    e.union_mask = <uint8_t*>_calloc(s.n_cpus, sizeof(uint8_t))
    e.targets = <int*>_calloc(s.n_cpus, sizeof(int))


cdef object kernel_configure(EventCtx* e, Sim* s, int strategy, int detach_flush, bint invlpgb, int slot_shift,
                             int link_level, costs, int64_t single_page_flush_ceiling, int64_t trim_interval,
                             regions, home_cpu) except *:
    """Configure the kernel side (arguments checked by Engine.set_kernel); reset the trim times. Returns
    {region name: index}."""
    cdef int i, j, k, n_map = sum(len(r[6]) for r in regions)
    kernel_free_config(e)
    e.strategy = strategy
    e.detach_flush = detach_flush
    e.invlpgb = invlpgb
    e.slot_shift = slot_shift
    e.link_level = link_level
    for i in range(N_KCOSTS):
        e.cost[i] = costs[i]
    e.ceiling = single_page_flush_ceiling
    e.trim_interval = trim_interval
    e.next_trim = <int64_t*>_calloc(s.n_mms, sizeof(int64_t))
    for i in range(s.n_mms):
        e.next_trim[i] = trim_interval
    e.n_regions = len(regions)
    e.reg_start = <uint64_t*>_calloc(e.n_regions, sizeof(uint64_t))
    e.reg_end = <uint64_t*>_calloc(e.n_regions, sizeof(uint64_t))
    e.reg_shift = <int*>_calloc(e.n_regions, sizeof(int))
    e.reg_shared = <int*>_calloc(e.n_regions, sizeof(int))
    e.reg_host = <int*>_calloc(e.n_regions, sizeof(int))
    e.reg_map_off = <int*>_calloc(e.n_regions + 1, sizeof(int))
    e.reg_map = <int*>_calloc(n_map, sizeof(int))
    e.mms = <int*>_calloc(s.n_procs + 1, sizeof(int))
    e.home_cpu = <int*>_calloc(s.n_procs, sizeof(int))
    for i in range(s.n_procs):
        e.home_cpu[i] = home_cpu[i]
    names = {}
    k = 0
    for i, (name, start, end, shift, shared, host, mappers) in enumerate(regions):
        names[name] = i
        e.reg_start[i] = start
        e.reg_end[i] = end
        e.reg_shift[i] = shift
        e.reg_shared[i] = shared
        e.reg_host[i] = host
        e.reg_map_off[i] = k
        for j in mappers:
            e.reg_map[k] = j
            k += 1
    e.reg_map_off[e.n_regions] = k
    e.configured = 1
    return names


cdef void kernel_free_config(EventCtx* e) noexcept:
    cdef size_t ptr
    for ptr in (<size_t>e.next_trim, <size_t>e.reg_start, <size_t>e.reg_end, <size_t>e.reg_shift,
                <size_t>e.reg_shared, <size_t>e.reg_host, <size_t>e.reg_map_off, <size_t>e.reg_map,
                <size_t>e.mms, <size_t>e.home_cpu):
        free(<void*>ptr)
    e.next_trim = NULL
    e.reg_start = e.reg_end = NULL
    e.reg_shift = e.reg_shared = e.reg_host = e.reg_map_off = e.reg_map = e.mms = e.home_cpu = NULL
    e.configured = 0


cdef void kernel_free(EventCtx* e) noexcept:
    cdef size_t ptr
    kernel_free_config(e)
    for ptr in (<size_t>e.removed, <size_t>e.mapper, <size_t>e.sharer, <size_t>e.union_mask, <size_t>e.targets):
        free(<void*>ptr)
