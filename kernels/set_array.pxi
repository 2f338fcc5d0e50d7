# A set-associative structure's sets (SetArray, state.pxi): set-up, teardown, set index and invalidation,
# shared by the TLB arrays (tlb.pxi), the PWCs (pwc.pxi) and the data caches (caches.pxi). Mirrors
# mshare_hw/reference/set_array.py.

cdef enum:
    MAX_WAYS = 120  # LRU ranks are bytes compared as signed

cdef void set_array_init(SetArray* a, int64_t sets, int ways, bint keys) except *:
    """`sets` sets of `ways` ways, all invalid: zero tags, LRU ranks in a valid order (0, 1, ...), padding
    ways ranked 127; a key per way when `keys` (TLBs, PWCs)."""
    cdef int64_t st, w, n
    if not 1 <= ways <= MAX_WAYS:
        raise ValueError(f"a TLB or cache set has 1 to {MAX_WAYS} ways, not {ways}")
    a.sets = sets
    a.ways = ways
    a.blocks = (ways + SCAN_BLOCK - 1) // SCAN_BLOCK
    a.pow2 = _is_pow2(sets)
    a.set_mask = sets - 1 if a.pow2 else 0
    a.set_bits = -1
    if a.pow2:
        a.set_bits = 0
        while (<int64_t>1 << a.set_bits) < sets:
            a.set_bits += 1
    n = sets * a.blocks * SCAN_BLOCK
    a.tags = <uint32_t*>_aligned_calloc(n * sizeof(uint32_t))
    a.ranks = <uint8_t*>_aligned_calloc(n)
    for st in range(sets):
        for w in range(a.blocks * SCAN_BLOCK):
            a.ranks[st * a.blocks * SCAN_BLOCK + w] = w if w < ways else 127
    a.keys = <uint64_t*>_calloc(sets * ways, sizeof(uint64_t)) if keys else NULL


cdef void set_array_free(SetArray* a) noexcept:
    free(a.keys)
    free(a.tags)
    free(a.ranks)
    a.keys = NULL
    a.tags = NULL
    a.ranks = NULL


cdef inline uint64_t set_array_index(SetArray* a, uint64_t x) noexcept nogil:
    """The set of `x` (a VPN, a PWC tag) under modulo indexing."""
    if a.pow2:
        return x & a.set_mask
    return x % <uint64_t>a.sets


cdef inline void set_array_drop(SetArray* a, int64_t k) noexcept nogil:
    """Invalidate way `k` (counting ways over all sets): key and tag 0, ranked oldest in its set."""
    cdef int64_t set_ = k // a.ways
    cdef int w = <int>(k - set_ * a.ways)
    a.keys[k] = 0
    a.tags[set_ * a.blocks * SCAN_BLOCK + w] = 0
    ranks_drop(&a.ranks[set_ * a.blocks * SCAN_BLOCK], a.blocks, a.ways, w)
