# Physically indexed L1D / L2 per CPU and a shared LLC, LRU, fill on the way back.
# Mirrors mshare_hw/reference/caches.py. Each set is a list of 32-bit tags kept in recency order (most
# recent first), so a probe touches one or two host cache lines and LRU needs no stamps: a hit moves its
# tag to the front, a miss drops the last tag (an invalid one while the set is not full, which is the
# reference's "first invalid way, else least recently used" as far as the set's contents go) and puts
# the new tag in front. Data caches are never invalidated, so the tags only ever enter at the front.

from libc.string cimport memmove

cdef enum:
    LV_L1D = 0
    LV_L2 = 1
    LV_LLC = 2
    LV_DRAM = 3


cdef inline bint cache_touch(Cache* c, uint64_t line) noexcept nogil:
    """Look `line` up and leave it most recent in its set; True on a hit."""
    cdef uint32_t* tags
    cdef uint32_t tag
    cdef int w, last = c.ways - 1
    if c.set_bits >= 0:
        tags = &c.tags[(line & c.set_mask) * c.ways]
        tag = <uint32_t>(line >> c.set_bits) + 1
    else:
        tags = &c.tags[(line % <uint64_t>c.sets) * c.ways]
        tag = <uint32_t>(line // <uint64_t>c.sets) + 1
    if tags[0] == tag:
        return True
    for w in range(1, c.ways):
        if tags[w] == tag:
            memmove(&tags[1], &tags[0], w * sizeof(uint32_t))
            tags[0] = tag
            return True
    memmove(&tags[1], &tags[0], last * sizeof(uint32_t))
    tags[0] = tag
    return False


cdef inline int cache_read(Sim* s, int cpu, uint64_t paddr, int* latency) noexcept nogil:
    """Returns the level that served the line and stores its latency. Every level the line missed in is
    filled: a miss in one cache's set leaves the others untouched, so filling at probe time is the same as
    filling on the way back."""
    cdef uint64_t line = paddr >> 6
    cdef Cache* l1 = &s.l1d_cache[cpu]
    cdef Cache* l2 = &s.l2_cache[cpu]
    if cache_touch(l1, line):
        latency[0] = l1.latency
        return LV_L1D
    if cache_touch(l2, line):
        latency[0] = l2.latency
        return LV_L2
    if cache_touch(&s.llc, line):
        latency[0] = s.llc.latency
        return LV_LLC
    latency[0] = s.dram_latency
    return LV_DRAM
