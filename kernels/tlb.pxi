# Set-associative TLBs tagged by (PCID, VPN, page size). Mirrors mshare_hw/reference/tlb.py.
# Each array keeps one packed key per way, a 32-bit hash of it per way in 16-way blocks (compared a block
# at a time on lookup, the key confirms a match), the replacement state (set_array.pxi: LRU rank bytes per
# set, an invalidated way becoming the oldest, so fills take invalid ways first, as the reference does) and the payload apart.
# User entries are never global (kernel entries are not modelled), so the key match is exact; the
# payload's is_global flag is kept for the flush primitives.

cdef inline int tlb_code(int shift) noexcept nogil:
    """Page-size code: 1 for 4K, 2 for 2M, 3 for 1G."""
    return (shift - 3) // 9


cdef inline uint64_t tlb_key(uint64_t vpn, int code, int pcid) noexcept nogil:
    # vpn < 2^45 (57-bit VA), page size code 1..3 in bits 45-46, PCID (12 bits) in 47-58, valid bit 63
    return (<uint64_t>1 << 63) | (<uint64_t>pcid << 47) | (<uint64_t>code << 45) | vpn


cdef inline int tlb_key_code(uint64_t key) noexcept nogil:
    return <int>((key >> 45) & 3)


cdef inline uint64_t tlb_set_index(TLBArray* a, uint64_t vpn) noexcept nogil:
    if a.xor_index:
        return (vpn ^ (vpn >> a.sa.set_bits)) & a.sa.set_mask
    return set_array_index(&a.sa, vpn)


cdef void tlb_level_init(TLBLevel* lv, specs, int kind, int cpu, uint64_t seed) except *:
    """A TLB level of the arrays `specs` (params.TLBStruct each), empty. Lookups probe (array, page size)
    pairs in spec order; the first array holding a page size fills it. Array i of the level of kind
    `kind` (RS_*) on `cpu` draws random replacement from stream_seed(seed, kind, i, cpu)."""
    cdef int i, j, code
    lv.n = len(specs)
    lv.arrays = <TLBArray*>_calloc(lv.n, sizeof(TLBArray))
    lv.n_probes = 0
    lv.live = 0
    for i, spec in enumerate(specs):
        set_array_init(&lv.arrays[i].sa, spec.sets, spec.ways, True, spec.replacement,
                       stream_seed(seed, kind, i, cpu))
        lv.arrays[i].e = <TLBEntry*>_calloc(<int64_t>spec.sets * spec.ways, sizeof(TLBEntry))
        lv.arrays[i].xor_index = spec.xor_index
        lv.arrays[i].n_shifts = len(spec.shifts)
        lv.arrays[i].live = &lv.live
        for j, sh in enumerate(spec.shifts):
            lv.arrays[i].shifts[j] = sh
            if lv.n_probes == MAX_PROBES:
                raise ValueError(f"a TLB level holds at most {MAX_PROBES} (array, page size) pairs")
            lv.probe_array[lv.n_probes] = i
            lv.probe_code[lv.n_probes] = tlb_code(sh)
            lv.arrays[i].probe_bits[tlb_code(sh)] |= <uint32_t>1 << lv.n_probes
            lv.n_probes += 1
    for code in range(4):
        lv.fill_array[code] = -1
    for i in reversed(range(lv.n)):
        for j in range(lv.arrays[i].n_shifts):
            lv.fill_array[tlb_code(lv.arrays[i].shifts[j])] = i


cdef void tlb_levels_free(TLBLevel* levels, int n) noexcept:
    """n TLB levels (one per CPU) and their array (NULL: nothing)."""
    cdef int c, i
    if levels == NULL:
        return
    for c in range(n):
        if levels[c].arrays != NULL:
            for i in range(levels[c].n):
                set_array_free(&levels[c].arrays[i].sa)
                free(levels[c].arrays[i].e)
            free(levels[c].arrays)
    free(levels)


cdef inline void tlb_count(TLBArray* a, int code, int delta) noexcept nogil:
    """n_valid[code] += delta, and the level's live probe mask with it."""
    if a.n_valid[code] == 0:
        a.live[0] |= a.probe_bits[code]
    a.n_valid[code] += delta
    if a.n_valid[code] == 0:
        a.live[0] &= ~a.probe_bits[code]


cdef inline TLBEntry* tlb_lookup(TLBLevel* lv, int pcid, uint64_t va, uint64_t* key_out,
                                 shape_t shape) noexcept nogil:
    """The entry mapping `va` in `pcid`, or NULL; probes only (array, page size) pairs holding a valid
    entry (lv.live), in the level's probe order. On a hit key_out receives the entry's key. `shape`:
    see shape_t."""
    cdef int p, code, w, blocks
    cdef uint32_t todo = lv.live
    cdef TLBArray* a
    cdef uint64_t vpn, key, set_
    while todo:
        p = lowest_bit(todo)
        todo &= todo - 1
        a = &lv.arrays[lv.probe_array[p]]
        code = lv.probe_code[p]
        vpn = va >> (3 + 9 * code)
        key = tlb_key(vpn, code, pcid)
        set_ = tlb_set_index(a, vpn)
        blocks = tlb_blocks(shape, a.sa.blocks)
        w = find_key(&a.sa.tags[set_ * blocks * SCAN_BLOCK], &a.sa.keys[set_ * a.sa.ways], blocks, a.sa.ways, key)
        if w >= 0:
            set_array_touch(&a.sa, set_, blocks, w, shape)
            key_out[0] = key
            return &a.e[set_ * a.sa.ways + w]
    return NULL


cdef inline void tlb_fill(TLBLevel* lv, TLBEntry* src, uint64_t key, shape_t shape) noexcept nogil:
    """Into the array that caches src's page size (if any), replacing an invalid way of the set while it
    has one, else the policy's victim (set_array_victim). `key` is src's tlb_key."""
    cdef int code = tlb_key_code(key)
    cdef int i = lv.fill_array[code]
    cdef int victim, blocks
    cdef TLBArray* a
    cdef uint64_t set_, k, old
    if i < 0:
        return
    a = &lv.arrays[i]
    blocks = tlb_blocks(shape, a.sa.blocks)
    set_ = tlb_set_index(a, src.vpn)
    victim = set_array_victim(&a.sa, set_, blocks, shape)
    k = set_ * a.sa.ways + victim
    old = a.sa.keys[k]
    if old == 0:
        tlb_count(a, code, 1)
    elif tlb_key_code(old) != code:  # a victim of the same page size leaves the counts as they are
        tlb_count(a, tlb_key_code(old), -1)
        tlb_count(a, code, 1)
    a.e[k] = src[0]
    a.sa.keys[k] = key
    a.sa.tags[set_ * blocks * SCAN_BLOCK + victim] = key_tag(key)


cdef inline void tlb_drop(TLBArray* a, int64_t k, int64_t* removed) noexcept nogil:
    tlb_count(a, tlb_key_code(a.sa.keys[k]), -1)
    a.e[k].shift = 0
    set_array_drop(&a.sa, k)
    if removed != NULL:
        removed[a.e[k].owner] += 1


cdef int64_t tlb_flush_pcid(TLBLevel* lv, int pcid, int64_t* removed) noexcept nogil:
    """Every non-global entry of `pcid` (a CR3 write without NOFLUSH, INVPCID type 1)."""
    cdef int i
    cdef int64_t k, n = 0
    cdef TLBArray* a
    for i in range(lv.n):
        a = &lv.arrays[i]
        for k in range(<int64_t>a.sa.sets * a.sa.ways):
            if a.sa.keys[k] != 0 and a.e[k].pcid == pcid and not a.e[k].is_global:
                tlb_drop(a, k, removed)
                n += 1
    return n


cdef void tlb_flush_all(TLBLevel* lv, int64_t* removed) noexcept nogil:
    """Every entry of every PCID (INVPCID type 2; INVLPGB flush-all on a part without global pages)."""
    cdef int i
    cdef int64_t k
    cdef TLBArray* a
    for i in range(lv.n):
        a = &lv.arrays[i]
        for k in range(<int64_t>a.sa.sets * a.sa.ways):
            if a.sa.keys[k] != 0:
                tlb_drop(a, k, removed)


cdef void tlb_invlpg(TLBLevel* lv, int pcid, uint64_t va, int64_t* removed) noexcept nogil:
    """The entries that map `va`, at any page size, in `pcid` (ANY_PCID: every PCID) or global (INVLPG's TLB
    part)."""
    cdef int i, s, w, shift
    cdef TLBArray* a
    cdef uint64_t vpn, base
    for i in range(lv.n):
        a = &lv.arrays[i]
        for s in range(a.n_shifts):
            shift = a.shifts[s]
            vpn = va >> shift
            base = tlb_set_index(a, vpn) * a.sa.ways
            for w in range(a.sa.ways):
                if (a.sa.keys[base + w] != 0 and a.e[base + w].shift == shift and a.e[base + w].vpn == vpn
                        and (a.e[base + w].pcid == pcid or a.e[base + w].is_global or pcid < 0)):
                    tlb_drop(a, base + w, removed)
