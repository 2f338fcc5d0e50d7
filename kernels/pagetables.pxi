# Radix page tables of every mm in one store, in frames from a deterministic bump allocator.
# An entry: 0 = not present, else target << 2 | leaf << 1 | 1. Entries live in one int64 array (a leaf
# table is 4 KiB of host memory, as on hardware); beside them, the epoch of each entry's last write.
# The reference gives every PTE a version instead; "written after the fill's epoch" and "version changed
# since the fill" are the same test, because any write to a present entry moves the epoch.
# Mirrors mshare_hw/reference/pagetables.py.

from libc.stdlib cimport realloc
from libc.string cimport memset

cdef enum:
    PT_ENTRIES = 512
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


cdef int64_t pt_new_table(Sim* s, int level, int mm) noexcept nogil:
    cdef int64_t t, cap
    cdef void* p
    if s.n_tables == s.cap_tables:
        cap = s.cap_tables * 2 if s.cap_tables else 64
        p = realloc(s.pt, cap * PT_ENTRIES * sizeof(int64_t))
        if p == NULL:
            s.error = ERR_NOMEM
            return -1
        s.pt = <int64_t*>p
        p = realloc(s.pt_written, cap * PT_ENTRIES * sizeof(uint64_t))
        if p == NULL:
            s.error = ERR_NOMEM
            return -1
        s.pt_written = <uint64_t*>p
        p = realloc(s.table_level, cap * sizeof(int32_t))
        if p == NULL:
            s.error = ERR_NOMEM
            return -1
        s.table_level = <int32_t*>p
        p = realloc(s.table_frame, cap * sizeof(int64_t))
        if p == NULL:
            s.error = ERR_NOMEM
            return -1
        s.table_frame = <int64_t*>p
        p = realloc(s.table_mm, cap * sizeof(int32_t))
        if p == NULL:
            s.error = ERR_NOMEM
            return -1
        s.table_mm = <int32_t*>p
        s.cap_tables = cap
    t = s.n_tables
    s.n_tables += 1
    memset(&s.pt[t * PT_ENTRIES], 0, PT_ENTRIES * sizeof(int64_t))
    memset(&s.pt_written[t * PT_ENTRIES], 0, PT_ENTRIES * sizeof(uint64_t))
    s.table_level[t] = level
    s.table_frame[t] = pt_alloc_frame(s)
    s.table_mm[t] = mm
    s.pages_per_level[level] += 1
    return t


cdef inline uint64_t pt_entry_paddr(Sim* s, int64_t loc) noexcept nogil:
    return <uint64_t>s.table_frame[loc >> 9] * 4096 + <uint64_t>(loc & 511) * 8  # loc >= 0, 512 per table


cdef inline void pt_set_entry(Sim* s, int64_t loc, int64_t value) noexcept nogil:
    if s.pt[loc] & 1:
        s.pte_epoch += 1
    s.pt[loc] = value
    s.pt_written[loc] = s.pte_epoch


cdef int64_t pt_descend(Sim* s, int64_t root, uint64_t va, int level) noexcept nogil:
    """The table at `level` on va's path from `root`, creating missing tables (owned by the parent's mm)."""
    cdef int64_t t = root, loc, e, child
    cdef int lv = s.levels
    while lv > level:
        loc = t * PT_ENTRIES + pt_index(va, lv)
        e = s.pt[loc]
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
            e = s.pt[loc]
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
        ent = s.pt[loc]
        if not (ent & 1) or (ent & 2):
            level[0] = lv
            return loc
        t = ent >> 2
        lv -= 1


cdef void pt_roots_init(Sim* s) except *:
    """Each mm's root table (mms in order, so their frames are the same run to run); a thread's slot aliases
    its process's root (s.mm_of is set)."""
    cdef int i
    s.roots = <int64_t*>_calloc(s.n_mms, sizeof(int64_t))
    for i in range(s.n_mms):
        if i < s.n_procs and s.mm_of[i] != i:
            continue
        s.roots[i] = pt_new_table(s, s.levels, i)
        if s.error:
            raise MemoryError()
    for i in range(s.n_procs):
        s.roots[i] = s.roots[s.mm_of[i]]


cdef void pt_free(Sim* s) noexcept:
    cdef size_t ptr
    for ptr in (<size_t>s.pt, <size_t>s.pt_written, <size_t>s.table_level, <size_t>s.table_frame,
                <size_t>s.table_mm, <size_t>s.roots):
        free(<void*>ptr)
