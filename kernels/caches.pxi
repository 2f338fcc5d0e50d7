# Physically indexed L1D / L2 per CPU and a shared LLC, LRU, fill on the way back.
# Mirrors mshare_hw/reference/caches.py. A probe that misses remembers the way a fill of the same set
# would take (first invalid way, else least recently used): the set cannot change between the probe
# and the fill, so this is the reference's fill choice with one scan instead of two.

cdef enum:
    LV_L1D = 0
    LV_L2 = 1
    LV_LLC = 2
    LV_DRAM = 3


cdef inline CacheWay* cache_probe(Cache* c, uint64_t line) noexcept nogil:
    """On a hit refresh the way's LRU stamp and return NULL; on a miss return the victim way."""
    cdef CacheWay* ws
    cdef CacheWay* victim = NULL
    cdef int w
    if c.set_mask:
        ws = &c.w[(line & c.set_mask) * c.ways]
    else:
        ws = &c.w[(line % <uint64_t>c.sets) * c.ways]
    for w in range(c.ways):
        if ws[w].line == line:
            c.tick += 1
            ws[w].lru = c.tick
            return NULL
    for w in range(c.ways):
        if ws[w].line == INVALID_LINE:
            return &ws[w]
        if victim == NULL or ws[w].lru < victim.lru:
            victim = &ws[w]
    return victim


cdef inline void cache_fill_at(Cache* c, CacheWay* way, uint64_t line) noexcept nogil:
    c.tick += 1
    way.line = line
    way.lru = c.tick


cdef inline int cache_read(Sim* s, int cpu, uint64_t paddr, int* latency) noexcept nogil:
    """Returns the level that served the line and stores its latency."""
    cdef uint64_t line = paddr >> 6
    cdef Cache* l1 = &s.l1d_cache[cpu]
    cdef Cache* l2 = &s.l2_cache[cpu]
    cdef CacheWay* v1
    cdef CacheWay* v2
    cdef CacheWay* v3
    v1 = cache_probe(l1, line)
    if v1 == NULL:
        latency[0] = l1.latency
        return LV_L1D
    v2 = cache_probe(l2, line)
    if v2 == NULL:
        cache_fill_at(l1, v1, line)
        latency[0] = l2.latency
        return LV_L2
    v3 = cache_probe(&s.llc, line)
    if v3 == NULL:
        cache_fill_at(l2, v2, line)
        cache_fill_at(l1, v1, line)
        latency[0] = s.llc.latency
        return LV_LLC
    cache_fill_at(&s.llc, v3, line)
    cache_fill_at(l2, v2, line)
    cache_fill_at(l1, v1, line)
    latency[0] = s.dram_latency
    return LV_DRAM
