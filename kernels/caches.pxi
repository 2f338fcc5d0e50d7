# Physically indexed L1D / L2 per CPU and a shared LLC, fill on the way back. Mirrors
# mshare_hw/reference/caches.py. A set is blocks of 16 ways: 16 tags and 16 LRU rank bytes (scan.h compares
# a block in a few SSE2 instructions). Under LRU a miss replaces the way of rank ways - 1, which is an
# untouched (invalid) way while the set has one, so the set's contents follow the reference's "first
# invalid way, else least recently used"; other policies: set_array.pxi. Data caches are never invalidated.

cdef enum:
    LV_L1D = 0
    LV_L2 = 1
    LV_LLC = 2
    LV_DRAM = 3


cdef void cache_init(Cache* c, spec, uint64_t stream) except *:
    """A cache of spec.sets sets of spec.ways ways (spec: params.SetAssoc), empty; `stream`: stream_seed."""
    set_array_init(&c.sa, spec.sets, spec.ways, False, spec.replacement, stream)
    c.latency = spec.latency


cdef void caches_free(Cache* caches, int n) noexcept:
    """n caches and their array (NULL: nothing)."""
    cdef int i
    if caches == NULL:
        return
    for i in range(n):
        set_array_free(&caches[i].sa)
    free(caches)


cdef inline bint cache_touch(Cache* c, uint64_t line, shape_t shape) noexcept nogil:
    """Look `line` up and leave it most recent in its set (filling it on a miss); True on a hit.
    `shape`: see shape_t."""
    cdef uint64_t set_
    cdef uint32_t tag
    cdef int blocks = cache_blocks(shape, c.sa.blocks)
    cdef int w
    if cache_pow2(shape, c.sa.set_bits):
        set_ = line & c.sa.set_mask
        tag = <uint32_t>(line >> c.sa.set_bits) + 1
    else:
        set_ = line % <uint64_t>c.sa.sets
        tag = <uint32_t>(line // <uint64_t>c.sa.sets) + 1
    if set_array_lru(&c.sa, shape):
        return set_touch(&c.sa.tags[set_ * blocks * SCAN_BLOCK], &c.sa.ranks[set_ * blocks * SCAN_BLOCK], blocks,
                         c.sa.ways, tag)
    w = scan_tags(&c.sa.tags[set_ * blocks * SCAN_BLOCK], blocks, tag)
    if w >= 0:
        set_array_touch(&c.sa, set_, blocks, w, shape)
        return True
    c.sa.tags[set_ * blocks * SCAN_BLOCK + set_array_victim(&c.sa, set_, blocks, shape)] = tag
    return False


cdef inline void cache_prefetch_set(Cache* c, uint64_t line, shape_t shape) noexcept nogil:
    """Start loading the host lines of `line`'s set (no effect on the model)."""
    cdef int blocks = cache_blocks(shape, c.sa.blocks)
    cdef uint64_t set_ = line & c.sa.set_mask if cache_pow2(shape, c.sa.set_bits) else line % <uint64_t>c.sa.sets
    prefetch(&c.sa.tags[set_ * blocks * SCAN_BLOCK])
    prefetch(&c.sa.ranks[set_ * blocks * SCAN_BLOCK])


cdef inline int cache_read_data(Sim* s, int cpu, uint64_t paddr, int* latency, shape_t shape) noexcept nogil:
    """cache_read for a data line, which mostly misses the L1D: the host starts loading the L2 and LLC
    sets' lines while the L1D is probed."""
    cdef uint64_t line = paddr >> 6
    cache_prefetch_set(&s.l2_cache[cpu], line, shape)
    cache_prefetch_set(&s.llc, line, shape)
    return cache_read(s, cpu, paddr, latency, shape)


cdef inline int cache_read(Sim* s, int cpu, uint64_t paddr, int* latency, shape_t shape) noexcept nogil:
    """Returns the level that served the line and stores its latency. Every level the line missed in is
    filled: a miss in one cache's set leaves the others untouched, so filling at probe time is the same as
    filling on the way back."""
    cdef uint64_t line = paddr >> 6
    cdef Cache* l1 = &s.l1d_cache[cpu]
    cdef Cache* l2 = &s.l2_cache[cpu]
    if cache_touch(l1, line, shape):
        latency[0] = l1.latency
        return LV_L1D
    if cache_touch(l2, line, shape):
        latency[0] = l2.latency
        return LV_L2
    if cache_touch(&s.llc, line, shape):
        latency[0] = s.llc.latency
        return LV_LLC
    latency[0] = s.dram_latency
    return LV_DRAM
