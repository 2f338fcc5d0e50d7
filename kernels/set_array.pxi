# A set-associative structure's sets (SetArray, state.pxi): set-up, teardown, set index, replacement and
# invalidation, shared by the TLB arrays (tlb.pxi), the PWCs (pwc.pxi) and the data caches (caches.pxi).
# Mirrors mshare_hw/reference/set_array.py.
#
# Replacement (Sim params' TLBStruct/SetAssoc.replacement): LRU keeps scan.h's rank bytes (the hot path's
# SIMD code); tree-PLRU and random fill the lowest invalid way first, then the policy's victim. A machine
# with any non-LRU structure runs the any_blocks_t copy of the hot loop (set_shape), so the one-block
# copies never test the policy.

cdef enum:
    MAX_WAYS = 120  # LRU ranks are bytes compared as signed

cdef enum:                 # whose random stream: mshare_hw.names.REPLACEMENT_STREAMS
    RS_L1I
    RS_L1D
    RS_L2D
    RS_L2I
    RS_PWC
    RS_L1D_CACHE
    RS_L2_CACHE
    RS_LLC
    RS_NESTED_TLB
    RS_NESTED_PWC


cdef inline uint64_t splitmix64(uint64_t z) noexcept nogil:
    z += 0x9E3779B97F4A7C15ULL
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef uint64_t stream_seed(uint64_t seed, int kind, int index, int cpu) noexcept nogil:
    """The first state of a structure's random-replacement stream: the experiment's seed mixed with the
    structure kind (RS_*), its index among that kind's structures and its CPU (0 for the shared LLC);
    never 0 (xorshift's fixed point)."""
    cdef uint64_t x = splitmix64(splitmix64(splitmix64(seed ^ <uint64_t>kind) ^ <uint64_t>index) ^ <uint64_t>cpu)
    return x if x else 1


cdef void set_array_init(SetArray* a, int64_t sets, int ways, bint keys, str policy, uint64_t stream) except *:
    """`sets` sets of `ways` ways, all invalid: zero tags, LRU ranks in a valid order (0, 1, ...), padding
    ways ranked 127; a key per way when `keys` (TLBs, PWCs). `policy`: a REPLACEMENT_POLICIES name;
    `stream`: the random stream's first state (stream_seed)."""
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
    a.policy = codes(REPLACEMENT_POLICIES)[policy]
    if a.policy != RP_PLRU:  # a PLRU tree starts all 0
        for st in range(sets):
            for w in range(a.blocks * SCAN_BLOCK):
                a.ranks[st * a.blocks * SCAN_BLOCK + w] = w if w < ways else 127
    a.keys = <uint64_t*>_calloc(sets * ways, sizeof(uint64_t)) if keys else NULL
    a.leaves = 1  # leaves - 1 tree bits fit in a set's blocks * 16 rank bytes
    while a.leaves < ways:
        a.leaves *= 2
    a.rng = stream


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
    """Invalidate way `k` (counting ways over all sets): key and tag 0, ranked oldest in its set under LRU
    (a PLRU tree is left as it is: the next fill takes the invalid way anyway)."""
    cdef int64_t set_ = k // a.ways
    cdef int w = <int>(k - set_ * a.ways)
    a.keys[k] = 0
    a.tags[set_ * a.blocks * SCAN_BLOCK + w] = 0
    if a.policy == RP_LRU:
        ranks_drop(&a.ranks[set_ * a.blocks * SCAN_BLOCK], a.blocks, a.ways, w)


# ---- replacement -------------------------------------------------------------------------------------

cdef inline bint set_array_lru(SetArray* a, shape_t shape) noexcept nogil:
    """Whether `a` replaces by LRU; always so under the one-block shapes (see set_shape)."""
    if shape_t is any_blocks_t:
        return a.policy == RP_LRU
    else:
        return True


cdef inline void plru_touch(uint64_t* tree, int leaves, int way) noexcept nogil:
    """Tree-PLRU hit or fill of `way`: every node on its path points away from it (bit 1: the victim
    search goes right). Node n's children are 2n and 2n + 1; leaf node leaves + w is way w. Branch-free:
    a left child (even n) sets its parent's bit, a right child clears it; the path's bits are gathered in
    registers and stored once per word."""
    cdef int n = leaves + way
    cdef int p
    cdef uint64_t mask = 0, bits = 0
    if leaves <= 64:
        while n > 1:
            p = n >> 1
            mask |= <uint64_t>1 << p
            bits |= <uint64_t>(~n & 1) << p
            n = p
        tree[0] = (tree[0] & ~mask) | bits
        return
    while n > 1:
        p = n >> 1
        tree[p >> 6] = (tree[p >> 6] & ~(<uint64_t>1 << (p & 63))) | (<uint64_t>(~n & 1) << (p & 63))
        n = p


cdef inline int plru_victim(uint64_t* tree, int leaves, int ways) noexcept nogil:
    """Follow the bits from the root, never into a subtree of padding leaves (ways ... leaves - 1);
    branch-free steps."""
    cdef int n = 1, lo = 0, half = leaves >> 1, right
    while half:
        right = <int>((tree[n >> 6] >> (n & 63)) & 1) & (lo + half < ways)
        n = 2 * n + right
        lo += right * half
        half >>= 1
    return lo


cdef inline int random_way(SetArray* a) noexcept nogil:
    """A way drawn uniformly from the structure's xorshift64* stream (Vigna 2016), high 32 bits."""
    cdef uint64_t x = a.rng
    x ^= x >> 12
    x ^= x << 25
    x ^= x >> 27
    a.rng = x
    return <int>(((x * 0x2545F4914F6CDD1DULL) >> 32) % <uint64_t>a.ways)


cdef inline void set_array_touch(SetArray* a, uint64_t set_, int blocks, int way, shape_t shape) noexcept nogil:
    """A hit on `way` of set `set_` (`blocks`: the set's 16-way blocks under `shape`)."""
    if set_array_lru(a, shape):
        ranks_touch(&a.ranks[set_ * blocks * SCAN_BLOCK], blocks, way)
    elif a.policy == RP_PLRU:
        plru_touch(<uint64_t*>&a.ranks[set_ * blocks * SCAN_BLOCK], a.leaves, way)


cdef inline int set_array_victim(SetArray* a, uint64_t set_, int blocks, shape_t shape) noexcept nogil:
    """The way a fill of set `set_` takes, left most recent: an invalid way while the set has one (LRU:
    the oldest-ranked one; else the lowest), else the policy's victim."""
    cdef int w
    cdef uint64_t* tree = <uint64_t*>&a.ranks[set_ * blocks * SCAN_BLOCK]  # tree-PLRU's view of the set
    if set_array_lru(a, shape):
        return ranks_replace(&a.ranks[set_ * blocks * SCAN_BLOCK], blocks, a.ways)
    w = scan_tags(&a.tags[set_ * blocks * SCAN_BLOCK], blocks, 0)  # padding ways (>= ways) hold 0 too
    if w < 0 or w >= a.ways:
        w = plru_victim(tree, a.leaves, a.ways) if a.policy == RP_PLRU else random_way(a)
    if a.policy == RP_PLRU:
        plru_touch(tree, a.leaves, w)
    return w
