# Set-associative TLBs tagged by (PCID, VPN, page size), LRU. Mirrors mshare_hw/reference/tlb.py.

cdef inline uint64_t tlb_set_index(TLBArray* a, uint64_t vpn) noexcept nogil:
    if a.xor_index:
        return (vpn ^ (vpn >> a.set_bits)) & a.set_mask
    if a.set_mask:
        return vpn & a.set_mask
    return vpn % <uint64_t>a.sets


cdef inline void tlb_count(TLBArray* a, int shift, int64_t delta) noexcept nogil:
    cdef int s
    for s in range(a.n_shifts):
        if a.shifts[s] == shift:
            a.n_valid[s] += delta
            return


cdef inline TLBEntry* tlb_lookup(TLBLevel* lv, int pcid, uint64_t va) noexcept nogil:
    cdef int i, s, w, shift
    cdef TLBArray* a
    cdef TLBEntry* e
    cdef uint64_t vpn
    for i in range(lv.n):
        a = &lv.arrays[i]
        for s in range(a.n_shifts):
            if a.n_valid[s] == 0:
                continue
            shift = a.shifts[s]
            vpn = va >> shift
            e = &a.e[tlb_set_index(a, vpn) * a.ways]
            for w in range(a.ways):
                if e[w].vpn == vpn and e[w].shift == shift and (e[w].pcid == pcid or e[w].is_global):
                    a.tick += 1
                    e[w].lru = a.tick
                    return &e[w]
    return NULL


cdef inline void tlb_fill(TLBLevel* lv, TLBEntry* src) noexcept nogil:
    cdef int i, s, w, victim
    cdef TLBArray* a
    cdef TLBEntry* e
    cdef uint64_t best
    for i in range(lv.n):
        a = &lv.arrays[i]
        for s in range(a.n_shifts):
            if a.shifts[s] == src.shift:
                e = &a.e[tlb_set_index(a, src.vpn) * a.ways]
                victim = -1
                for w in range(a.ways):
                    if e[w].shift == 0:
                        victim = w
                        break
                if victim < 0:
                    victim = 0
                    best = e[0].lru
                    for w in range(1, a.ways):
                        if e[w].lru < best:
                            best = e[w].lru
                            victim = w
                    tlb_count(a, e[victim].shift, -1)
                a.n_valid[s] += 1
                e[victim] = src[0]
                a.tick += 1
                e[victim].lru = a.tick
                return


cdef inline void tlb_drop(TLBArray* a, TLBEntry* e, int64_t* removed) noexcept nogil:
    tlb_count(a, e.shift, -1)
    e.shift = 0
    if removed != NULL:
        removed[e.owner] += 1


cdef int64_t tlb_flush_pcid(TLBLevel* lv, int pcid, int64_t* removed) noexcept nogil:
    """Every non-global entry of `pcid` (a CR3 write without NOFLUSH, INVPCID type 1)."""
    cdef int i
    cdef int64_t k, n = 0
    cdef TLBArray* a
    for i in range(lv.n):
        a = &lv.arrays[i]
        for k in range(<int64_t>a.sets * a.ways):
            if a.e[k].shift != 0 and a.e[k].pcid == pcid and not a.e[k].is_global:
                tlb_drop(a, &a.e[k], removed)
                n += 1
    return n


cdef void tlb_flush_all(TLBLevel* lv, int64_t* removed) noexcept nogil:
    """Every entry of every PCID (INVPCID type 2; INVLPGB flush-all on a part without global pages)."""
    cdef int i
    cdef int64_t k
    cdef TLBArray* a
    for i in range(lv.n):
        a = &lv.arrays[i]
        for k in range(<int64_t>a.sets * a.ways):
            if a.e[k].shift != 0:
                tlb_drop(a, &a.e[k], removed)


cdef void tlb_invlpg(TLBLevel* lv, int pcid, uint64_t va, int64_t* removed) noexcept nogil:
    """The entries that map `va`, at any page size, in `pcid` or global (INVLPG's TLB part)."""
    cdef int i, s, w, shift
    cdef TLBArray* a
    cdef TLBEntry* e
    cdef uint64_t vpn
    for i in range(lv.n):
        a = &lv.arrays[i]
        for s in range(a.n_shifts):
            shift = a.shifts[s]
            vpn = va >> shift
            e = &a.e[tlb_set_index(a, vpn) * a.ways]
            for w in range(a.ways):
                if e[w].shift == shift and e[w].vpn == vpn and (e[w].pcid == pcid or e[w].is_global):
                    tlb_drop(a, &e[w], removed)
