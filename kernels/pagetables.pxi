# Radix page tables of every mm in one store, in frames from a deterministic bump allocator.
# An entry: 0 = not present, else target << 2 | leaf << 1 | 1; its location (`loc`) is table * 512 + index,
# wherever it is held. Beside each entry, the epoch of its last write. The reference gives every PTE a
# version instead; "written after the fill's epoch" and "version changed since the fill" are the same test,
# because any write to a present entry moves the epoch.
# Host memory follows the entries written, not the simulated table pages (whose frames are still allocated,
# so walks read the same lines and pt_bytes counts them all): a table's entries live in one hash of
# locations (ph, ~50 bytes an entry) until PT_DENSE_AT of them are written, then in a dense block of 512
# (8 KiB with their epochs), read by one indexed load. A run over a few dense tables (a walk-heavy working
# set) reads dense blocks; 1,500 private trees over a 300 GiB region, mostly one entry per leaf table,
# stay in the hash.
# Mirrors mshare_hw/reference/pagetables.py (whose dicts are sparse by nature).

from libc.stdlib cimport realloc
from libc.string cimport memset

cdef enum:
    PT_ENTRIES = 512
    PT_DENSE_AT = 128      # a table's entries move to a dense block once this many are written (the memory
                           # break-even: 128 hash entries at ~0.5 load take ~6 KiB against the block's 8 KiB)
    PH_MIN_SLOTS = 4096
    ERR_NOMEM = 1
    ERR_WALK = 2
    ERR_HUGE_CONFLICT = 3
    ERR_PHYS = 4


cdef inline int pt_index(uint64_t va, int level) noexcept nogil:
    return <int>((va >> (12 + 9 * (level - 1))) & 511)


cdef inline int64_t pt_encode(int64_t target, int leaf) noexcept nogil:
    return (target << 2) | (2 if leaf else 0) | 1


cdef inline int64_t pt_alloc_frame(Sim* s) noexcept nogil:
    cdef int64_t f = s.next_frame
    s.next_frame += 1
    if s.next_frame > s.max_frames:
        s.error = ERR_PHYS
    return f


cdef inline void* _grow(void* p, int64_t n, size_t size, Sim* s) noexcept nogil:
    """realloc to n items, or NULL with s.error = ERR_NOMEM (p still valid)."""
    cdef void* q = realloc(p, n * size)
    if q == NULL:
        s.error = ERR_NOMEM
    return q


cdef int64_t pt_new_table(Sim* s, int level, int mm) noexcept nogil:
    cdef int64_t t, cap
    cdef void* p
    if s.n_tables == s.cap_tables:
        cap = s.cap_tables * 2 if s.cap_tables else 64
        p = _grow(s.table_level, cap, sizeof(int32_t), s)
        if p == NULL:
            return -1
        s.table_level = <int32_t*>p
        p = _grow(s.table_frame, cap, sizeof(int64_t), s)
        if p == NULL:
            return -1
        s.table_frame = <int64_t*>p
        p = _grow(s.table_mm, cap, sizeof(int32_t), s)
        if p == NULL:
            return -1
        s.table_mm = <int32_t*>p
        p = _grow(s.table_dense, cap, sizeof(int32_t), s)
        if p == NULL:
            return -1
        s.table_dense = <int32_t*>p
        p = _grow(s.table_count, cap, sizeof(int32_t), s)
        if p == NULL:
            return -1
        s.table_count = <int32_t*>p
        s.cap_tables = cap
    t = s.n_tables
    s.n_tables += 1
    s.table_level[t] = level
    s.table_frame[t] = pt_alloc_frame(s)
    s.table_mm[t] = mm
    s.table_dense[t] = -1
    s.table_count[t] = 0
    s.pages_per_level[level] += 1
    return t


# -- where an entry is held: a dense block, else the hash ----------------------------------------------
cdef inline uint64_t ph_home(Sim* s, int64_t loc) noexcept nogil:
    return (<uint64_t>loc * <uint64_t>0x9E3779B97F4A7C15) >> s.ph_shift  # Fibonacci hashing


cdef inline PTSlot* ph_find(Sim* s, int64_t loc) noexcept nogil:
    """loc's slot in the hash, or NULL if it was never written there."""
    cdef uint64_t i = ph_home(s, loc)
    cdef int64_t key = loc + 1
    cdef PTSlot* sl
    while True:
        sl = &s.ph[i]
        if sl.key == key:
            return sl
        if sl.key == 0:
            return NULL
        i = (i + 1) & <uint64_t>s.ph_mask


cdef int ph_alloc(Sim* s, int64_t slots) noexcept nogil:
    """A new empty hash of `slots` (a power of two) slots, the sparse tables' keys of the old one moved
    into it (a dense table's keys are dropped: they are read from its block). -1 when out of memory."""
    cdef PTSlot* old = s.ph
    cdef int64_t n_old = s.ph_mask + 1 if old != NULL else 0, k
    cdef PTSlot* fresh = <PTSlot*>calloc(slots, sizeof(PTSlot))
    cdef uint64_t i
    cdef int shift = 64
    if fresh == NULL:
        s.error = ERR_NOMEM
        return -1
    while (<int64_t>1 << (64 - shift)) < slots:
        shift -= 1
    s.ph = fresh
    s.ph_mask = slots - 1
    s.ph_shift = shift
    s.ph_used = 0
    for k in range(n_old):
        if old[k].key != 0 and s.table_dense[(old[k].key - 1) >> 9] < 0:
            i = ph_home(s, old[k].key - 1)
            while s.ph[i].key != 0:
                i = (i + 1) & <uint64_t>s.ph_mask
            s.ph[i] = old[k]
            s.ph_used += 1
    free(old)
    return 0


cdef PTSlot* ph_insert(Sim* s, int64_t loc) noexcept nogil:
    """loc's slot in the hash, added (entry 0, never written) if absent; NULL when out of memory."""
    cdef uint64_t i
    cdef int64_t key = loc + 1
    cdef PTSlot* sl
    if (s.ph_used + 1) * 10 > (s.ph_mask + 1) * 7:  # at most 70% full: short probe runs
        if ph_alloc(s, (s.ph_mask + 1) * 2) < 0:
            return NULL
    i = ph_home(s, loc)
    while True:
        sl = &s.ph[i]
        if sl.key == key:
            return sl
        if sl.key == 0:
            sl.key = key
            sl.value = 0
            sl.written = 0
            s.ph_used += 1
            s.table_count[loc >> 9] += 1
            return sl
        i = (i + 1) & <uint64_t>s.ph_mask


cdef int pt_densify(Sim* s, int64_t t) noexcept nogil:
    """Move table t's entries from the hash into a new dense block (their keys stay in the hash, unread,
    until it next grows). -1 when out of memory."""
    cdef int64_t d, cap, i
    cdef void* p
    cdef PTSlot* sl
    if s.n_dense == s.cap_dense:
        cap = s.cap_dense * 2 if s.cap_dense else 16
        p = _grow(s.pt, cap * PT_ENTRIES, sizeof(int64_t), s)
        if p == NULL:
            return -1
        s.pt = <int64_t*>p
        p = _grow(s.pt_written, cap * PT_ENTRIES, sizeof(uint64_t), s)
        if p == NULL:
            return -1
        s.pt_written = <uint64_t*>p
        s.cap_dense = cap
    d = s.n_dense
    s.n_dense += 1
    memset(&s.pt[d * PT_ENTRIES], 0, PT_ENTRIES * sizeof(int64_t))
    memset(&s.pt_written[d * PT_ENTRIES], 0, PT_ENTRIES * sizeof(uint64_t))
    for i in range(PT_ENTRIES):
        sl = ph_find(s, t * PT_ENTRIES + i)
        if sl != NULL:
            s.pt[d * PT_ENTRIES + i] = sl.value
            s.pt_written[d * PT_ENTRIES + i] = sl.written
    s.table_dense[t] = <int32_t>d
    return 0


cdef inline int64_t pt_get(Sim* s, int64_t loc) noexcept nogil:
    """The entry at loc (0 if never written)."""
    cdef int32_t d = s.table_dense[loc >> 9]
    cdef PTSlot* sl
    if d >= 0:
        return s.pt[(<int64_t>d << 9) | (loc & 511)]
    sl = ph_find(s, loc)
    return sl.value if sl != NULL else 0


cdef inline uint64_t pt_get_written(Sim* s, int64_t loc) noexcept nogil:
    """The epoch of the last write to the entry at loc (0 if never written)."""
    cdef int32_t d = s.table_dense[loc >> 9]
    cdef PTSlot* sl
    if d >= 0:
        return s.pt_written[(<int64_t>d << 9) | (loc & 511)]
    sl = ph_find(s, loc)
    return sl.written if sl != NULL else 0


cdef inline void pt_prefetch(Sim* s, int64_t loc) noexcept nogil:
    """Start the host load of a dense entry (a hashed one is found by a probe anyway)."""
    cdef int32_t d = s.table_dense[loc >> 9]
    if d >= 0:
        prefetch(&s.pt[(<int64_t>d << 9) | (loc & 511)])


cdef inline uint64_t pt_entry_paddr(Sim* s, int64_t loc) noexcept nogil:
    return <uint64_t>s.table_frame[loc >> 9] * 4096 + <uint64_t>(loc & 511) * 8  # loc >= 0, 512 per table


cdef void pt_set_entry(Sim* s, int64_t loc, int64_t value) noexcept nogil:
    cdef int64_t t = loc >> 9, i
    cdef PTSlot* sl
    if s.table_dense[t] < 0:
        sl = ph_insert(s, loc)
        if sl == NULL:
            return
        if s.table_count[t] < PT_DENSE_AT:
            if sl.value & 1:
                s.pte_epoch += 1
            sl.value = value
            sl.written = s.pte_epoch
            return
        if pt_densify(s, t) < 0:
            return
    i = (<int64_t>s.table_dense[t] << 9) | (loc & 511)
    if s.pt[i] & 1:
        s.pte_epoch += 1
    s.pt[i] = value
    s.pt_written[i] = s.pte_epoch


cdef int64_t pt_descend(Sim* s, int64_t root, uint64_t va, int level) noexcept nogil:
    """The table at `level` on va's path from `root`, creating missing tables (owned by the parent's mm)."""
    cdef int64_t t = root, loc, e, child
    cdef int lv = s.levels
    while lv > level:
        loc = t * PT_ENTRIES + pt_index(va, lv)
        e = pt_get(s, loc)
        if not (e & 1):
            child = pt_new_table(s, lv - 1, s.table_mm[t])
            if child < 0:
                return -1
            pt_set_entry(s, loc, pt_encode(child, 0))
            t = child
        else:
            if e & 2:
                s.error = ERR_HUGE_CONFLICT
                return -1
            t = e >> 2
        lv -= 1
    return t


cdef int64_t pt_alloc_frames(Sim* s, int shift) noexcept nogil:
    """A naturally aligned block of frames for one page of size 1 << shift."""
    cdef int64_t n = (<int64_t>1) << (shift - 12)
    cdef int64_t f = (s.next_frame + n - 1) // n * n
    s.next_frame = f + n
    if s.next_frame > s.max_frames:
        s.error = ERR_PHYS
    return f


cdef int64_t pt_change_range(Sim* s, int mm, uint64_t va, int64_t n_pages, int shift, int op) noexcept nogil:
    """Change the present leaf PTEs of n_pages pages from va in mm's tree: 0 clear (zap), 1 rewrite in
    place (protect), 2 point at a new frame (migrate). Returns how many were present."""
    cdef int64_t i, t, loc, e, count = 0
    cdef int level
    cdef uint64_t page
    for i in range(n_pages):
        page = va + (<uint64_t>i << shift)
        t = s.roots[mm]
        level = s.levels
        while True:
            loc = t * PT_ENTRIES + pt_index(page, level)
            e = pt_get(s, loc)
            if not (e & 1):
                break
            if e & 2:
                if op == 0:
                    pt_set_entry(s, loc, 0)
                elif op == 1:
                    pt_set_entry(s, loc, e)
                else:
                    pt_set_entry(s, loc, pt_encode(pt_alloc_frames(s, 12 + 9 * (level - 1)), 1))
                count += 1
                break
            t = e >> 2
            level -= 1
    return count


cdef int64_t pt_find(Sim* s, int mm, uint64_t va, int* level, int64_t* path) noexcept nogil:
    """Descend mm's tree along va without side effects: the location of va's leaf entry, or of the first
    non-present entry on the way; *level: that entry's level; `path` (NULL, or room for 5): the locations
    read, top level first."""
    cdef int64_t t = s.roots[mm], loc, ent
    cdef int lv = s.levels, n = 0
    while True:
        loc = t * PT_ENTRIES + pt_index(va, lv)
        if path != NULL:
            path[n] = loc
        n += 1
        ent = pt_get(s, loc)
        if not (ent & 1) or (ent & 2):
            level[0] = lv
            return loc
        t = ent >> 2
        lv -= 1


cdef void pt_roots_init(Sim* s) except *:
    """Each mm's root table (mms in order, so their frames are the same run to run)."""
    cdef int i
    s.roots = <int64_t*>_calloc(s.n_mms, sizeof(int64_t))
    if ph_alloc(s, PH_MIN_SLOTS) < 0:
        raise MemoryError()
    for i in range(s.n_mms):
        s.roots[i] = pt_new_table(s, s.levels, i)
        if s.error:
            raise MemoryError()


cdef void pt_free(Sim* s) noexcept:
    cdef size_t ptr
    for ptr in (<size_t>s.pt, <size_t>s.pt_written, <size_t>s.ph, <size_t>s.table_dense, <size_t>s.table_count,
                <size_t>s.table_level, <size_t>s.table_frame, <size_t>s.table_mm, <size_t>s.roots):
        free(<void*>ptr)
