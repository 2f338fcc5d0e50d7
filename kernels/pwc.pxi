# Page-walk caches: non-leaf entries of level L >= 2, tagged by (level, PCID, VA >> entry span).
# Mirrors mshare_hw/reference/pwc.py.

cdef inline int entry_shift(int level) noexcept nogil:
    return 12 + 9 * (level - 1)


cdef inline PWCEntry* pwc_lookup(Sim* s, int cpu, int level, int pcid, uint64_t va) noexcept nogil:
    cdef int k = s.pwc_of_level[level]
    cdef int w
    cdef PWCArray* a
    cdef PWCEntry* e
    cdef uint64_t tag
    if k < 0:
        return NULL
    a = &s.pwc[cpu * s.n_pwc + k]
    tag = va >> entry_shift(level)
    if a.set_mask:
        e = &a.e[(tag & a.set_mask) * a.ways]
    else:
        e = &a.e[(tag % <uint64_t>a.sets) * a.ways]
    for w in range(a.ways):
        if e[w].level == level and e[w].tag == tag and e[w].pcid == pcid:
            a.tick += 1
            e[w].lru = a.tick
            return &e[w]
    return NULL


cdef inline void pwc_fill(Sim* s, int cpu, int level, int pcid, uint64_t va, int64_t child, int64_t loc,
                          int owner, uint64_t epoch) noexcept nogil:
    cdef int k = s.pwc_of_level[level]
    cdef int w, victim
    cdef PWCArray* a
    cdef PWCEntry* e
    cdef uint64_t tag, best
    if k < 0:
        return
    a = &s.pwc[cpu * s.n_pwc + k]
    tag = va >> entry_shift(level)
    if a.set_mask:
        e = &a.e[(tag & a.set_mask) * a.ways]
    else:
        e = &a.e[(tag % <uint64_t>a.sets) * a.ways]
    victim = -1
    for w in range(a.ways):
        if e[w].level == 0:
            victim = w
            break
    if victim < 0:
        victim = 0
        best = e[0].lru
        for w in range(1, a.ways):
            if e[w].lru < best:
                best = e[w].lru
                victim = w
    e[victim].level = level
    e[victim].pcid = pcid
    e[victim].tag = tag
    e[victim].child = child
    e[victim].loc = loc
    e[victim].owner = owner
    e[victim].epoch = epoch
    a.tick += 1
    e[victim].lru = a.tick


cdef int64_t pwc_flush(Sim* s, int cpu, int pcid, int64_t* removed) noexcept nogil:
    """Every entry of `pcid`, or of every PCID when pcid < 0."""
    cdef int k
    cdef int64_t i, n = 0
    cdef PWCArray* a
    for k in range(s.n_pwc):
        a = &s.pwc[cpu * s.n_pwc + k]
        for i in range(<int64_t>a.sets * a.ways):
            if a.e[i].level != 0 and (pcid < 0 or a.e[i].pcid == pcid):
                a.e[i].level = 0
                if removed != NULL:
                    removed[a.e[i].owner] += 1
                n += 1
    return n
