# Page-walk caches: non-leaf entries of level L >= 2, tagged by (level, PCID, VA >> entry span).
# Mirrors mshare_hw/reference/pwc.py. As in the TLBs, a lookup compares 32-bit hashes of the packed keys
# a block at a time (scan.h's find_key), the payload is read only on a hit, and replacement is set_array.pxi's
# (LRU: rank bytes per set, invalidated ways ranked oldest).

cdef inline int entry_shift(int level) noexcept nogil:
    return 12 + 9 * (level - 1)


cdef inline uint64_t pwc_key(int level, int pcid, uint64_t tag) noexcept nogil:
    # tag < 2^45 (57-bit VA >> 12 at least), level in bits 45-47, PCID (12 bits) in 48-59, valid bit 63
    return (<uint64_t>1 << 63) | (<uint64_t>pcid << 48) | (<uint64_t>level << 45) | tag


cdef void pwc_init(PWCArray* a, spec, uint64_t stream) except *:
    """A PWC of spec.sets sets of spec.ways ways (spec: params.SetAssoc), empty; `stream`: stream_seed."""
    set_array_init(&a.sa, spec.sets, spec.ways, True, spec.replacement, stream)
    a.e = <PWCEntry*>_calloc(<int64_t>spec.sets * spec.ways, sizeof(PWCEntry))


cdef void pwcs_free(PWCArray* pwcs, int n) noexcept:
    """n PWCs and their array (NULL: nothing)."""
    cdef int i
    if pwcs == NULL:
        return
    for i in range(n):
        set_array_free(&pwcs[i].sa)
        free(pwcs[i].e)
    free(pwcs)


cdef inline PWCEntry* pwc_lookup(Sim* s, int cpu, int level, int pcid, uint64_t va, shape_t shape) noexcept nogil:
    cdef int k = s.pwc_of_level[level]
    cdef int w, blocks
    cdef PWCArray* a
    cdef uint64_t tag, key, base, set_
    if k < 0:
        return NULL
    a = &s.pwc[cpu * s.n_pwc + k]
    tag = va >> entry_shift(level)
    key = pwc_key(level, pcid, tag)
    set_ = set_array_index(&a.sa, tag)
    base = set_ * a.sa.ways
    blocks = tlb_blocks(shape, a.sa.blocks)
    w = find_key(&a.sa.tags[set_ * blocks * SCAN_BLOCK], &a.sa.keys[base], blocks, a.sa.ways, key)
    if w < 0:
        return NULL
    set_array_touch(&a.sa, set_, blocks, w, shape)
    return &a.e[base + w]


cdef inline void pwc_fill(Sim* s, int cpu, int level, int pcid, uint64_t va, int64_t child, int64_t loc,
                          int owner, uint64_t epoch, shape_t shape) noexcept nogil:
    """Into an invalid way of the set while it has one, else the policy's victim (set_array_victim)."""
    cdef int k = s.pwc_of_level[level]
    cdef int victim, blocks
    cdef PWCArray* a
    cdef PWCEntry* e
    cdef uint64_t tag, base, set_
    if k < 0:
        return
    a = &s.pwc[cpu * s.n_pwc + k]
    tag = va >> entry_shift(level)
    set_ = set_array_index(&a.sa, tag)
    base = set_ * a.sa.ways
    blocks = tlb_blocks(shape, a.sa.blocks)
    victim = set_array_victim(&a.sa, set_, blocks, shape)
    a.sa.keys[base + victim] = pwc_key(level, pcid, tag)
    a.sa.tags[set_ * blocks * SCAN_BLOCK + victim] = key_tag(a.sa.keys[base + victim])
    e = &a.e[base + victim]
    e.pcid = pcid
    e.child = child
    e.loc = loc
    e.owner = owner
    e.epoch = epoch


cdef int64_t pwc_flush(Sim* s, int cpu, int pcid, int64_t* removed) noexcept nogil:
    """Every entry of `pcid`, or of every PCID when pcid < 0."""
    cdef int k
    cdef int64_t i, n = 0
    cdef PWCArray* a
    for k in range(s.n_pwc):
        a = &s.pwc[cpu * s.n_pwc + k]
        for i in range(<int64_t>a.sa.sets * a.sa.ways):
            if a.sa.keys[i] != 0 and (pcid < 0 or a.e[i].pcid == pcid):
                set_array_drop(&a.sa, i)
                if removed != NULL:
                    removed[a.e[i].owner] += 1
                n += 1
    return n
