# Physically indexed L1D / L2 per CPU and a shared LLC, LRU, fill on the way back.
# Mirrors mshare_hw/reference/caches.py.

cdef enum:
    LV_L1D = 0
    LV_L2 = 1
    LV_LLC = 2
    LV_DRAM = 3


cdef inline bint cache_access(Cache* c, uint64_t line) noexcept nogil:
    cdef uint64_t base
    cdef int w
    if c.set_mask:
        base = (line & c.set_mask) * c.ways
    else:
        base = (line % <uint64_t>c.sets) * c.ways
    for w in range(c.ways):
        if c.lines[base + w] == line:
            c.tick += 1
            c.lru[base + w] = c.tick
            return True
    return False


cdef inline void cache_fill(Cache* c, uint64_t line) noexcept nogil:
    cdef uint64_t base, best
    cdef int w, victim = -1
    if c.set_mask:
        base = (line & c.set_mask) * c.ways
    else:
        base = (line % <uint64_t>c.sets) * c.ways
    for w in range(c.ways):
        if c.lines[base + w] == INVALID_LINE:
            victim = w
            break
    if victim < 0:
        victim = 0
        best = c.lru[base]
        for w in range(1, c.ways):
            if c.lru[base + w] < best:
                best = c.lru[base + w]
                victim = w
    c.tick += 1
    c.lines[base + victim] = line
    c.lru[base + victim] = c.tick


cdef inline int cache_read(Sim* s, int cpu, uint64_t paddr, int* latency) noexcept nogil:
    """Returns the level that served the line and stores its latency."""
    cdef uint64_t line = paddr >> 6
    cdef Cache* l1 = &s.l1d_cache[cpu]
    cdef Cache* l2 = &s.l2_cache[cpu]
    if cache_access(l1, line):
        latency[0] = l1.latency
        return LV_L1D
    if cache_access(l2, line):
        cache_fill(l1, line)
        latency[0] = l2.latency
        return LV_L2
    if cache_access(&s.llc, line):
        cache_fill(l2, line)
        cache_fill(l1, line)
        latency[0] = s.llc.latency
        return LV_LLC
    cache_fill(&s.llc, line)
    cache_fill(l2, line)
    cache_fill(l1, line)
    latency[0] = s.dram_latency
    return LV_DRAM
