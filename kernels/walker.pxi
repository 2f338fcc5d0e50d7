# One access: L1 TLB, L2 TLB, page walk (PWCs, then cached entry reads, each nested-translated first under
# nested virtualization, and the data's address after the leaf), faults, fills, data read.
# Mirrors mshare_hw/reference/walker.py.

cdef enum:
    WALK_ATTEMPTS = 4


cdef inline int64_t sim_walk(Sim* s, int cpu, int proc, uint64_t va, int pcid, int64_t* out,
                             shape_t shape) noexcept nogil:
    """Returns the walk's read cycles. out = [fault, table, level, _] or [ok, leaf loc, pfn, leaf level]."""
    cdef int64_t* row = s.row
    cdef int64_t table = s.roots[proc], loc, ent, child, cycles = 0
    cdef int level = s.levels, lv, served, lat = 0
    cdef PWCEntry* pe
    row[C_WALKS] += 1
    if s.nested:  # a 2-D walk's own cost beyond its reads
        cycles = s.nested_walk_cycles
        row[C_WALK_CYCLES] += cycles
    for lv in range(2, s.levels + 1):
        pe = pwc_lookup(s, cpu, lv, pcid, va, shape)
        if pe != NULL:
            row[C_PWC_HITS_PD + lv - 2] += 1
            if s.oracle and pe.epoch != s.pte_epoch and pt_get_written(s, pe.loc) > pe.epoch:
                oracle_record(s, cpu, proc, va, WHERE_PWC)
            table = pe.child
            level = lv - 1
            break
    while True:
        loc = table * PT_ENTRIES + pt_index(va, level)
        prefetch(&s.pt[loc])  # the host load of the entry overlaps the cache model's lookup
        if s.nested:
            cycles += nested_translate(s, cpu, pt_entry_paddr(s, loc), shape)
        served = cache_read(s, cpu, pt_entry_paddr(s, loc), &lat, shape)
        row[C_WALK_READS_L1D + served] += 1
        row[C_WALK_CYCLES] += lat
        cycles += lat
        ent = s.pt[loc]
        if not (ent & 1):
            if not s.table_dense[table]:  # a sparse table: its entries are in the hash (pagetables.pxi)
                ent = ph_value(s, loc)
            if not (ent & 1):
                out[0] = 1
                out[1] = table
                out[2] = level
                return cycles
        if ent & 2:
            if s.nested:  # the data page's guest-physical address
                cycles += nested_translate(s, cpu, <uint64_t>(ent >> 2) * 4096
                                           + (va & ((<uint64_t>1 << entry_shift(level)) - 1)), shape)
            out[0] = 0
            out[1] = loc
            out[2] = ent >> 2
            out[3] = level
            return cycles
        child = ent >> 2
        pwc_fill(s, cpu, level, pcid, va, child, loc, proc, s.pte_epoch, shape)
        table = child
        level -= 1


cdef inline void charge(Sim* s, int cpu, int64_t cycles) noexcept nogil:
    """Serial work (a fault handler): waits for the accesses in flight, then takes `cycles`."""
    s.row[C_CYCLES] += timing_drain(s, cpu) + cycles
    s.clock[cpu] += cycles


cdef int sim_pmd_span(Sim* s, int proc, uint64_t va) noexcept nogil:
    """The PUD span (hugetlb PMD sharing) of proc's that holds va, or -1."""
    cdef int64_t k
    for k in range(s.pmds_off[proc], s.pmds_off[proc + 1]):
        if s.pmds_start[k] <= va < s.pmds_end[k]:
            return s.pmds_sid[k]
    return -1


cdef int sim_huge_pmd_share(Sim* s, int mm, uint64_t va, int span) noexcept nogil:
    """huge_pte_alloc for a fault in a shareable PUD span (mm/hugetlb.c): pud_alloc in mm; if its PUD entry is
    none, huge_pmd_share() links it to the span's PMD table if another mm has one (counted in pmd_shares),
    else pmd_alloc() gives mm a table of its own, which later faulters will share. -1 on an error."""
    cdef int64_t t = pt_descend(s, s.roots[mm], va, 3), loc, table
    if t < 0:
        return -1
    loc = t * PT_ENTRIES + pt_index(va, 3)
    if pt_get(s, loc) & 1:
        return 0
    if s.pmd_table[span] >= 0:
        pt_set_entry(s, loc, pt_encode(s.pmd_table[span], 0))
        s.pmd_users[span] += 1
        s.row[C_PMD_SHARES] += 1
        return 0
    table = pt_new_table(s, 2, mm)
    if table < 0:
        return -1
    pt_set_entry(s, loc, pt_encode(table, 0))
    s.pmd_table[span] = table
    s.pmd_users[span] = 1
    return 0


cdef void sim_fault(Sim* s, int cpu, int proc, uint64_t va, int kind, int64_t table, int level) noexcept nogil:
    cdef int64_t* row = s.row
    cdef int64_t k, t, shared, loc, frame, mapped = 0, cost, root
    cdef int host = -1, shift = 12, leaf_level, fa = 0, pmd_span
    cdef int64_t region = -1
    cdef uint64_t span, lo, hi, page, rstart = 0, rend = 0
    if s.link_level:
        for k in range(s.slot_off[proc], s.slot_off[proc + 1]):
            if s.slot_start[k] <= va < s.slot_end[k]:
                host = s.slot_host[k]
                break
    if host >= 0 and s.table_mm[table] == s.mm_of[proc] and level >= s.link_level:
        t = pt_descend(s, s.roots[proc], va, s.link_level)
        if t < 0:
            return
        shared = pt_descend(s, s.roots[s.n_procs + host], va, s.link_level - 1)
        if shared < 0:
            return
        pt_set_entry(s, t * PT_ENTRIES + pt_index(va, s.link_level), pt_encode(shared, 0))
        row[C_LINK_FAULTS] += 1
        row[C_FAULT_CYCLES] += s.link_fault_cycles
        charge(s, cpu, s.link_fault_cycles)
        return
    if s.pt_config == PTC_HUGETLB_PMD_SHARE:
        # hugetlb PMD sharing: a shared PMD table belongs to whichever mm allocated it; the fault descends
        # through the faulting mm's own PUD entry, linked first if the span is shareable (huge_pmd_share)
        root = s.roots[s.mm_of[proc]]
        pmd_span = sim_pmd_span(s, proc, va)
        if pmd_span >= 0 and sim_huge_pmd_share(s, s.mm_of[proc], va, pmd_span) < 0:
            return
    else:
        root = s.roots[s.table_mm[table]]
    for k in range(s.reg_off[proc], s.reg_off[proc + 1]):
        if s.reg_start[k] <= va < s.reg_end[k]:
            region = k
            shift = s.reg_shift[k]
            fa = s.reg_fa[k]
            rstart = s.reg_start[k]
            rend = s.reg_end[k]
            break
    leaf_level = 1 if shift == 12 else (2 if shift == 21 else 3)
    if region >= 0 and fa and kind != AK_STORE:
        span = (<uint64_t>s.fault_around_pages) << 12
        lo = va & ~(span - 1)
        hi = lo + span
        if lo < rstart:
            lo = rstart
        if hi > rend:
            hi = rend
    else:
        lo = va & ~((<uint64_t>1 << shift) - 1)
        hi = lo + 1
    page = lo
    while page < hi:
        t = pt_descend(s, root, page, leaf_level)
        if t < 0:
            return
        loc = t * PT_ENTRIES + pt_index(page, leaf_level)
        if not (pt_get(s, loc) & 1):
            if region >= 0:
                frame = s.reg_frame[region] + <int64_t>((page - rstart) >> 12)
            else:
                frame = pt_alloc_frame(s)
            pt_set_entry(s, loc, pt_encode(frame, 1))
            mapped += 1
        page += 4096
    cost = s.fault_cycles + s.fault_per_page_cycles * mapped
    row[C_PAGE_FAULTS] += 1
    row[C_PAGES_MAPPED] += mapped
    row[C_FAULT_CYCLES] += cost
    charge(s, cpu, cost)


cdef inline void sim_access(Sim* s, int cpu, int proc, uint64_t va, int kind, int pcid,
                            shape_t shape) noexcept nogil:
    """One access by `cpu` running `proc` with `pcid` loaded. Counts into s.row but for two counters that
    row_finish derives when the row is committed (accesses, walk_reads). `shape`: the type s.shape names
    (shape_t)."""
    cdef int64_t* row = s.row
    cdef int64_t cost, stall = 0, w
    cdef int attempt, served, lat = 0, path = TR_L1
    cdef int64_t out[4]
    cdef TLBLevel* l1
    cdef TLBLevel* l2
    cdef TLBEntry* e
    cdef TLBEntry fresh
    cdef uint64_t key = 0
    if kind == AK_IFETCH:
        row[C_IFETCHES] += 1
        cost = s.ifetch_cycles
        l1 = &s.l1i[cpu]
    else:
        row[C_IFETCHES + kind] += 1  # the counters of ACCESS_KINDS follow C_IFETCHES in their order
        cost = s.access_cycles
        l1 = &s.l1d[cpu]
    e = tlb_lookup(l1, pcid, va, &key, shape)
    if e != NULL:
        row[C_L1_ITLB_HITS if kind == AK_IFETCH else C_L1_DTLB_HITS] += 1
        if s.oracle and e.epoch != s.pte_epoch and pt_get_written(s, e.pte_loc) > e.epoch:
            oracle_record(s, cpu, proc, va, WHERE_L1)
    else:
        row[C_L1_ITLB_MISSES if kind == AK_IFETCH else C_L1_DTLB_MISSES] += 1
        l2 = &s.l2i[cpu] if kind == AK_IFETCH else &s.l2d[cpu]
        stall = s.l2_latency
        e = tlb_lookup(l2, pcid, va, &key, shape)
        if e != NULL:
            row[C_STLB_HITS] += 1
            path = TR_STLB
            if s.oracle and e.epoch != s.pte_epoch and pt_get_written(s, e.pte_loc) > e.epoch:
                oracle_record(s, cpu, proc, va, WHERE_L2)
            tlb_fill(l1, e, key, shape)
        else:
            row[C_STLB_MISSES] += 1
            path = TR_WALK
            for attempt in range(WALK_ATTEMPTS + 1):
                if attempt == WALK_ATTEMPTS:
                    s.error = ERR_WALK
                    return
                w = sim_walk(s, cpu, proc, va, pcid, out, shape)
                stall += w
                if not out[0]:
                    break
                sim_fault(s, cpu, proc, va, kind, out[1], <int>out[2])
                if s.error:
                    return
                if s.pti:  # the fault's kernel entry and exit (pti_crossing, counted in this row)
                    row[C_PTI_CR3_SWITCHES] += 2
                    row[C_FAULT_CYCLES] += 2 * s.cr3_noflush_cycles
                    charge(s, cpu, 2 * s.cr3_noflush_cycles)
            fresh.shift = <uint8_t>entry_shift(<int>out[3])
            fresh.vpn = va >> fresh.shift
            fresh.pcid = pcid
            fresh.pfn = <uint64_t>out[2]
            fresh.pte_loc = out[1]
            fresh.epoch = s.pte_epoch
            fresh.owner = proc
            fresh.is_global = 0
            key = tlb_key(fresh.vpn, <int>out[3], pcid)
            tlb_fill(l2, &fresh, key, shape)
            tlb_fill(l1, &fresh, key, shape)
            e = &fresh
        row[C_TRANSLATION_CYCLES] += stall
        cost += stall
    if s.data_caches and kind != AK_IFETCH:
        served = cache_read_data(s, cpu, e.pfn * 4096 + (va & ((<uint64_t>1 << e.shift) - 1)), &lat, shape)
        row[C_DATA_L1D_HITS + served] += 1
        if s.timing != TM_TRANSLATION:
            row[C_DATA_CYCLES] += lat
            if s.timing == TM_OVERLAP and not s.dependent[proc]:
                row[C_CYCLES] += timing_overlap(s, cpu, path, stall - s.l2_latency, served, lat)
                return
            cost += lat - s.access_cycles  # the load-to-use latency replaces the base cost
    s.clock[cpu] += cost
    row[C_CYCLES] += cost


cdef inline void row_finish(int64_t* row) noexcept nogil:
    """The counters sim_access leaves to the commit: every access is an ifetch, load or store, and every
    walk read is served by exactly one level."""
    row[C_ACCESSES] = row[C_IFETCHES] + row[C_LOADS] + row[C_STORES]
    row[C_WALK_READS] = row[C_WALK_READS_L1D] + row[C_WALK_READS_L2] + row[C_WALK_READS_LLC] + row[C_WALK_READS_DRAM]

