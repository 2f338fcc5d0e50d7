# The layout's region and slot tables (mshare_hw.engine.layout.Layout), by process (CSR: process p's rows are
# reg_*[reg_off[p]:reg_off[p + 1]], its slots slot_*[slot_off[p]:slot_off[p + 1]]), read by the fault handler.

cdef void layout_init(Sim* s, layout) except *:
    cdef int64_t k = 0, j = 0
    n_rows = sum(len(r) for r in layout.regions)
    n_slots = sum(len(x) for x in layout.slots)
    s.reg_off = <int64_t*>_calloc(s.n_procs + 1, sizeof(int64_t))
    s.reg_start = <uint64_t*>_calloc(n_rows, sizeof(uint64_t))
    s.reg_end = <uint64_t*>_calloc(n_rows, sizeof(uint64_t))
    s.reg_shift = <int32_t*>_calloc(n_rows, sizeof(int32_t))
    s.reg_fa = <int32_t*>_calloc(n_rows, sizeof(int32_t))
    s.reg_host = <int32_t*>_calloc(n_rows, sizeof(int32_t))
    s.reg_frame = <int64_t*>_calloc(n_rows, sizeof(int64_t))
    s.slot_off = <int64_t*>_calloc(s.n_procs + 1, sizeof(int64_t))
    s.slot_start = <uint64_t*>_calloc(n_slots, sizeof(uint64_t))
    s.slot_end = <uint64_t*>_calloc(n_slots, sizeof(uint64_t))
    s.slot_host = <int32_t*>_calloc(n_slots, sizeof(int32_t))
    for p in range(s.n_procs):
        s.reg_off[p] = k
        for r in layout.regions[p]:
            s.reg_start[k] = r.start
            s.reg_end[k] = r.end
            s.reg_shift[k] = r.shift
            s.reg_fa[k] = r.fault_around
            s.reg_host[k] = r.host
            s.reg_frame[k] = r.frame_base
            k += 1
        s.slot_off[p] = j
        for x in layout.slots[p]:
            s.slot_start[j] = x.start
            s.slot_end[j] = x.end
            s.slot_host[j] = x.host
            j += 1
    s.reg_off[s.n_procs] = k
    s.slot_off[s.n_procs] = j
    # hugetlb PMD sharing's shareable PUD spans (layout.pmd_slots, empty in other configurations)
    n_pmds = sum(len(x) for x in layout.pmd_slots)
    s.pmds_off = <int64_t*>_calloc(s.n_procs + 1, sizeof(int64_t))
    s.pmds_start = <uint64_t*>_calloc(n_pmds, sizeof(uint64_t))
    s.pmds_end = <uint64_t*>_calloc(n_pmds, sizeof(uint64_t))
    s.pmds_sid = <int32_t*>_calloc(n_pmds, sizeof(int32_t))
    s.n_pmd_spans = layout.n_pmd_spans
    s.pmd_table = <int64_t*>_calloc(s.n_pmd_spans, sizeof(int64_t))
    s.pmd_users = <int32_t*>_calloc(s.n_pmd_spans, sizeof(int32_t))
    for k in range(s.n_pmd_spans):
        s.pmd_table[k] = -1
    j = 0
    for p in range(s.n_procs):
        s.pmds_off[p] = j
        if layout.pmd_slots:
            for x in layout.pmd_slots[p]:
                s.pmds_start[j] = x.start
                s.pmds_end[j] = x.end
                s.pmds_sid[j] = x.host
                j += 1
    s.pmds_off[s.n_procs] = j


cdef void layout_free(Sim* s) noexcept:
    cdef size_t ptr
    for ptr in (<size_t>s.reg_off, <size_t>s.reg_start, <size_t>s.reg_end, <size_t>s.reg_shift, <size_t>s.reg_fa,
                <size_t>s.reg_host, <size_t>s.reg_frame, <size_t>s.slot_off, <size_t>s.slot_start,
                <size_t>s.slot_end, <size_t>s.slot_host, <size_t>s.pmds_off, <size_t>s.pmds_start,
                <size_t>s.pmds_end, <size_t>s.pmds_sid, <size_t>s.pmd_table, <size_t>s.pmd_users):
        free(<void*>ptr)
