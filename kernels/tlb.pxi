# Set-associative TLBs tagged by (PCID, VPN, page size), LRU. Mirrors mshare_hw/reference/tlb.py.
# Each array keeps one packed key per way (scanned on lookup), LRU rank bytes per set (scan.h; an
# invalidated way becomes the oldest, so fills take invalid ways first, as the reference does) and the
# payload apart, so a 12-way set scan touches 96 bytes. User entries are never global (kernel entries are
# not modelled), so the key match is exact; the payload's is_global flag is kept for the flush primitives.

cdef inline uint64_t tlb_size_bits(int shift) noexcept nogil:
    # vpn < 2^45 (57-bit VA), page size code 1..3 in bits 45-46, PCID (12 bits) in 47-58, valid bit 63
    return (<uint64_t>1 << 63) | (<uint64_t>((shift - 3) // 9) << 45)


cdef inline uint64_t tlb_key(uint64_t vpn, int shift, int pcid) noexcept nogil:
    return tlb_size_bits(shift) | (<uint64_t>pcid << 47) | vpn


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
    cdef uint64_t vpn, key, base, set_
    cdef uint64_t pcid_bits = <uint64_t>pcid << 47
    cdef uint64_t* keys
    for i in range(lv.n):
        a = &lv.arrays[i]
        for s in range(a.n_shifts):
            if a.n_valid[s] == 0:
                continue
            shift = a.shifts[s]
            vpn = va >> shift
            key = a.size_bits[s] | pcid_bits | vpn
            set_ = tlb_set_index(a, vpn)
            base = set_ * a.ways
            keys = &a.keys[base]
            for w in range(a.ways):
                if keys[w] == key:
                    ranks_touch(&a.ranks[set_ * a.blocks * SCAN_BLOCK], a.blocks, w)
                    return &a.e[base + w]
    return NULL


cdef inline int tlb_key_shift(uint64_t key) noexcept nogil:
    return 3 + 9 * <int>((key >> 45) & 3)


cdef inline void tlb_fill(TLBLevel* lv, TLBEntry* src) noexcept nogil:
    """Into the array that caches src's page size (if any), replacing the oldest way of the set: an invalid
    one while the set has one, else the least recently used."""
    cdef int code = (src.shift - 3) // 9
    cdef int i = lv.fill_array[code]
    cdef int s, victim
    cdef TLBArray* a
    cdef uint64_t set_, base
    if i < 0:
        return
    a = &lv.arrays[i]
    s = lv.fill_slot[code]
    set_ = tlb_set_index(a, src.vpn)
    base = set_ * a.ways
    victim = ranks_replace(&a.ranks[set_ * a.blocks * SCAN_BLOCK], a.blocks, a.ways)
    if a.keys[base + victim] != 0:
        tlb_count(a, tlb_key_shift(a.keys[base + victim]), -1)
    a.n_valid[s] += 1
    a.e[base + victim] = src[0]
    a.keys[base + victim] = tlb_key(src.vpn, src.shift, src.pcid)


cdef inline void tlb_drop(TLBArray* a, int64_t k, int64_t* removed) noexcept nogil:
    cdef int64_t set_ = k // a.ways
    tlb_count(a, a.e[k].shift, -1)
    a.e[k].shift = 0
    a.keys[k] = 0
    ranks_drop(&a.ranks[set_ * a.blocks * SCAN_BLOCK], a.blocks, a.ways, <int>(k - set_ * a.ways))
    if removed != NULL:
        removed[a.e[k].owner] += 1


cdef int64_t tlb_flush_pcid(TLBLevel* lv, int pcid, int64_t* removed) noexcept nogil:
    """Every non-global entry of `pcid` (a CR3 write without NOFLUSH, INVPCID type 1)."""
    cdef int i
    cdef int64_t k, n = 0
    cdef TLBArray* a
    for i in range(lv.n):
        a = &lv.arrays[i]
        for k in range(<int64_t>a.sets * a.ways):
            if a.keys[k] != 0 and a.e[k].pcid == pcid and not a.e[k].is_global:
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
        for k in range(<int64_t>a.sets * a.ways):
            if a.keys[k] != 0:
                tlb_drop(a, k, removed)


cdef void tlb_invlpg(TLBLevel* lv, int pcid, uint64_t va, int64_t* removed) noexcept nogil:
    """The entries that map `va`, at any page size, in `pcid` or global (INVLPG's TLB part)."""
    cdef int i, s, w, shift
    cdef TLBArray* a
    cdef uint64_t vpn, base
    for i in range(lv.n):
        a = &lv.arrays[i]
        for s in range(a.n_shifts):
            shift = a.shifts[s]
            vpn = va >> shift
            base = tlb_set_index(a, vpn) * a.ways
            for w in range(a.ways):
                if (a.keys[base + w] != 0 and a.e[base + w].shift == shift and a.e[base + w].vpn == vpn
                        and (a.e[base + w].pcid == pcid or a.e[base + w].is_global)):
                    tlb_drop(a, base + w, removed)
