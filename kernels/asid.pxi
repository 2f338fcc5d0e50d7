# Linux's per-CPU dynamic ASIDs (choose_new_asid / switch_mm_irqs_off), six slots, PCID = ASID + 1.
# Mirrors mshare_hw/reference/asid.py.

cdef enum:
    INIT_MM = -1
    INIT_MM_CTX_ID = 1
    SW_SWITCHED = 1
    SW_FLUSH = 2
    SW_SLOT_HIT = 4
    SW_RECYCLED = 8
    SW_LAZY_CATCHUP = 16
    SW_GLOBAL = 32         # loaded under the mm's global ASID (no slot looked up)


cdef inline bint is_global_asid(int asid) noexcept nogil:
    return asid >= N_DYN_ASIDS


cdef inline void cpu_tlb_init(CpuTlbState* st) noexcept nogil:
    cdef int i
    st.loaded_mm = INIT_MM
    st.asid = 0
    st.is_lazy = 0
    st.next_asid = 1
    for i in range(N_DYN_ASIDS):
        st.ctx_ids[i] = 0
        st.ctx_gens[i] = 0
    st.ctx_ids[0] = INIT_MM_CTX_ID


cdef int asid_switch_mm(Sim* s, int cpu, int mm) noexcept nogil:
    """Returns SW_* flags describing what the switch did."""
    cdef CpuTlbState* st = &s.cpu_state[cpu]
    cdef int was_lazy = st.is_lazy
    cdef int slot, asid, flush, hit, recycled
    cdef uint64_t gen = s.mm_tlb_gen[mm] if mm >= 0 else 0
    cdef int64_t ctx_id = s.mm_ctx_id[mm] if mm >= 0 else INIT_MM_CTX_ID
    cdef int gasid = s.mm_global_asid[mm] if mm >= 0 else 0
    st.is_lazy = 0
    if st.loaded_mm == mm:
        # needs_global_asid_reload: the mm got a global ASID since this CPU loaded it
        if gasid and st.asid != gasid:
            st.asid = gasid
            return SW_SWITCHED | SW_GLOBAL
        if is_global_asid(st.asid):  # kept up to date by INVLPGB
            return SW_SLOT_HIT
        if was_lazy and st.ctx_gens[st.asid] < gen:
            st.ctx_gens[st.asid] = gen
            return SW_FLUSH | SW_SLOT_HIT | SW_LAZY_CATCHUP
        return SW_SLOT_HIT
    if mm >= 0:
        s.mm_cpumask[mm * s.n_cpus + cpu] = 1
    recycled = 0
    if not s.pcid_enabled:
        asid = 0
        flush = 1
        hit = 0
    elif gasid:
        st.loaded_mm = mm
        st.asid = gasid
        return SW_SWITCHED | SW_GLOBAL
    else:
        asid = -1
        for slot in range(N_DYN_ASIDS):
            if st.ctx_ids[slot] == ctx_id:
                asid = slot
                break
        if asid >= 0:
            hit = 1
            flush = st.ctx_gens[asid] < gen
        else:
            asid = st.next_asid
            st.next_asid += 1
            if st.next_asid >= N_DYN_ASIDS:
                st.next_asid = 0
            hit = 0
            flush = 1
            recycled = st.ctx_ids[asid] > INIT_MM_CTX_ID
    if flush:
        st.ctx_ids[asid] = ctx_id
        st.ctx_gens[asid] = gen
    st.loaded_mm = mm
    st.asid = asid
    return SW_SWITCHED | (SW_FLUSH if flush else 0) | (SW_SLOT_HIT if hit else 0) | (SW_RECYCLED if recycled else 0)


cdef void asid_init(Sim* s) except *:
    """Each mm's context id and tlb_gen, empty cpumasks; every CPU in init_mm with fresh ASID slots."""
    cdef int i, c
    s.mm_ctx_id = <int64_t*>_calloc(s.n_mms, sizeof(int64_t))
    s.mm_tlb_gen = <uint64_t*>_calloc(s.n_mms, sizeof(uint64_t))
    s.mm_cpumask = <uint8_t*>_calloc(s.n_mms * s.n_cpus, sizeof(uint8_t))
    s.mm_global_asid = <int*>_calloc(s.n_mms, sizeof(int))
    s.mm_transition = <uint8_t*>_calloc(s.n_mms, sizeof(uint8_t))
    s.next_global_asid = N_DYN_ASIDS
    for i in range(s.n_mms):
        s.mm_ctx_id[i] = INIT_MM_CTX_ID + 1 + i
    s.cpu_state = <CpuTlbState*>_calloc(s.n_cpus, sizeof(CpuTlbState))
    for c in range(s.n_cpus):
        cpu_tlb_init(&s.cpu_state[c])


cdef void asid_free(Sim* s) noexcept:
    cdef size_t ptr
    for ptr in (<size_t>s.mm_ctx_id, <size_t>s.mm_tlb_gen, <size_t>s.mm_cpumask, <size_t>s.cpu_state,
                <size_t>s.mm_global_asid, <size_t>s.mm_transition, <size_t>s.mm_of):
        free(<void*>ptr)
