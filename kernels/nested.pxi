# Two-dimensional (nested) walks: the guest-physical -> host-physical translation of each guest table read
# and of the final data address under virtualization = "nested". Mirrors mshare_hw/reference/nested.py.
# Host physical = guest physical; the host page tables sit arithmetically in a reserved frame range
# (SimParams.host_table_base), so their entries are real lines in the same caches. Per CPU: a nested TLB
# (keyed by gPA >> host page shift) and one nested PWC per host level above the host leaf (keyed by gPA >>
# that level's entry span), tags only, replaced by the shared set arrays' policy; the guest never flushes them.

cdef enum:
    HOST_LEVELS = 4        # mshare_hw.engine.params.HOST_LEVELS
    NESTED_PWCS = 3        # host levels 2..4 (those above the host leaf level are used)


cdef inline int nested_find(SetArray* a, uint64_t tag, shape_t shape) noexcept nogil:
    """Whether `tag` is in `a` (NULL: no structure), touching it under the array's replacement policy."""
    cdef int w, blocks
    cdef uint64_t set_
    if a == NULL:
        return 0
    set_ = set_array_index(a, tag)
    blocks = tlb_blocks(shape, a.blocks)
    w = find_key(&a.tags[set_ * blocks * SCAN_BLOCK], &a.keys[set_ * a.ways], blocks, a.ways, pwc_key(0, 0, tag))
    if w < 0:
        return 0
    set_array_touch(a, set_, blocks, w, shape)
    return 1


cdef inline void nested_fill(SetArray* a, uint64_t tag, shape_t shape) noexcept nogil:
    """Into an invalid way of `tag`'s set while it has one, else the policy's victim (NULL: no structure)."""
    cdef int victim, blocks
    cdef uint64_t set_
    if a == NULL:
        return
    set_ = set_array_index(a, tag)
    blocks = tlb_blocks(shape, a.blocks)
    victim = set_array_victim(a, set_, blocks, shape)
    a.keys[set_ * a.ways + victim] = pwc_key(0, 0, tag)
    a.tags[set_ * blocks * SCAN_BLOCK + victim] = key_tag(a.keys[set_ * a.ways + victim])


cdef inline uint64_t host_entry_paddr(Sim* s, uint64_t gpa, int level) noexcept nogil:
    """The address of the level-`level` host entry mapping guest-physical `gpa`."""
    cdef uint64_t table = <uint64_t>s.host_base[level] + (gpa >> (12 + 9 * level))
    return table * 4096 + ((gpa >> entry_shift(level)) & 511) * 8


cdef inline SetArray* nested_pwc(Sim* s, int cpu, int level) noexcept nogil:
    if s.npwc == NULL:
        return NULL
    return &s.npwc[cpu * NESTED_PWCS + level - 2]


cdef int64_t nested_translate(Sim* s, int cpu, uint64_t gpa, shape_t shape) noexcept nogil:
    """Translate guest-physical `gpa` for a walk on `cpu`; returns the host reads' cycles."""
    cdef int64_t* row = s.row
    cdef SetArray* tlb = &s.ntlb[cpu] if s.ntlb != NULL else NULL
    cdef uint64_t page = gpa >> s.host_shift
    cdef int64_t cycles = 0
    cdef int level = HOST_LEVELS, lv, lat = 0
    if nested_find(tlb, page, shape):
        return 0
    cycles = s.nested_walk_cycles  # a host walk's own cost beyond its reads
    row[C_NESTED_WALK_CYCLES] += cycles
    row[C_WALK_CYCLES] += cycles
    for lv in range(s.host_leaf + 1, HOST_LEVELS + 1):
        if nested_find(nested_pwc(s, cpu, lv), gpa >> entry_shift(lv), shape):
            level = lv - 1
            break
    while True:
        cache_read(s, cpu, host_entry_paddr(s, gpa, level), &lat, shape)
        row[C_NESTED_WALK_READS] += 1
        row[C_NESTED_WALK_CYCLES] += lat
        row[C_WALK_CYCLES] += lat
        cycles += lat
        if level == s.host_leaf:
            break
        nested_fill(nested_pwc(s, cpu, level), gpa >> entry_shift(level), shape)
        level -= 1
    nested_fill(tlb, page, shape)
    return cycles


cdef void nested_init(Sim* s, params) except *:
    """The reserved host-table range and every CPU's nested TLB and PWCs (none unless nested)."""
    cdef int c, k
    cdef uint64_t seed = params.seed & 0xFFFFFFFFFFFFFFFF
    s.nested = params.virtualization == "nested"
    if not s.nested:
        return
    s.host_shift = params.host_page_shift
    s.host_leaf = 1 if s.host_shift == 12 else (2 if s.host_shift == 21 else 3)
    s.nested_walk_cycles = params.nested_walk_cycles
    for k in range(HOST_LEVELS + 1):
        s.host_base[k] = params.host_table_base[k]
    if params.nested_tlb is not None:
        s.ntlb = <SetArray*>_calloc(s.n_cpus, sizeof(SetArray))
        for c in range(s.n_cpus):
            set_array_init(&s.ntlb[c], params.nested_tlb.sets, params.nested_tlb.ways, True,
                           params.nested_tlb.replacement, stream_seed(seed, RS_NESTED_TLB, 0, c))
    if params.nested_pwc is not None:
        s.npwc = <SetArray*>_calloc(s.n_cpus * NESTED_PWCS, sizeof(SetArray))
        for k in range(s.n_cpus * NESTED_PWCS):
            set_array_init(&s.npwc[k], params.nested_pwc.sets, params.nested_pwc.ways, True,
                           params.nested_pwc.replacement,
                           stream_seed(seed, RS_NESTED_PWC, k % NESTED_PWCS, k // NESTED_PWCS))


cdef void nested_free(Sim* s) noexcept:
    cdef int k
    if s.ntlb != NULL:
        for k in range(s.n_cpus):
            set_array_free(&s.ntlb[k])
        free(s.ntlb)
        s.ntlb = NULL
    if s.npwc != NULL:
        for k in range(s.n_cpus * NESTED_PWCS):
            set_array_free(&s.npwc[k])
        free(s.npwc)
        s.npwc = NULL
