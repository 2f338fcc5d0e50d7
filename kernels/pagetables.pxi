# Radix page tables of every mm in one store, in frames from a deterministic bump allocator.
# An entry: 0 = not present, else target << 2 | leaf << 1 | 1; its location (`loc`) is table * 512 + index,
# wherever it is held. Beside each entry, the epoch of its last write. The reference gives every PTE a
# version instead; "written after the fill's epoch" and "version changed since the fill" are the same test,
# because any write to a present entry moves the epoch.
# Host memory follows the entries written, not the simulated table pages (whose frames are still allocated,
# so walks read the same lines and pt_bytes counts them all). A sparse table's entries live in hashes: a leaf
# table's in runs of 8 (ph; a 16-page fault-around fills two: ~20-40 bytes an entry), an upper table's one
# to a slot (pu: mostly one entry per run, pointing at a leaf table), their last-write epochs apart and only
# where not 0 (pw: no event, no epoch). Once PT_DENSE_SLOTS runs (PT_DENSE_UPPER entries) of a table are
# written, its entries move to its 4 KiB slice of `pt`, an array indexed by location in a mapping reserved
# for every table but backed by the host only where a dense table wrote (a sparse table's slice reads as
# zeros, from the host's zero page). So a walk reads pt[loc] as before, and only a non-present entry of a
# sparse table sends it to the hashes. A walk-heavy working set's full tables are dense; 1,500 private trees
# over a 300 GiB region, a few entries per leaf table, stay in the hashes.
# Mirrors mshare_hw/reference/pagetables.py (whose dicts are sparse by nature).

from libc.stdlib cimport realloc
from libc.string cimport memcpy
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_NORESERVE, MAP_PRIVATE, PROT_READ, PROT_WRITE, mmap, munmap

cdef enum:
    PT_ENTRIES = 512
    PT_DENSE_SLOTS = 16    # a table's entries move to pt once they fill this many runs of 8 (the memory
                           # break-even: 16 slots of 72 bytes at ~0.5 load take ~2.3 KiB, a dense table 4-8 KiB)
    PT_DENSE_UPPER = 128   # an upper table's (one entry a slot of 16 bytes: ~4 KiB at ~0.5 load)
    PH_MIN_SLOTS = 16      # per segment
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


cdef void* pt_reserve(size_t nbytes) noexcept nogil:
    """Zero-filled address space the host backs only where it is written; NULL when refused."""
    cdef void* p = mmap(NULL, nbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
    return NULL if p == MAP_FAILED else p


cdef int pt_grow_tables(Sim* s) noexcept nogil:
    """Room for twice the tables: their fields, and `pt`/`pt_written` mappings into which the dense tables'
    slices are copied. -1 when out of memory."""
    cdef int64_t cap = s.cap_tables * 2 if s.cap_tables else 4096, t
    cdef void* p
    cdef int64_t* pt
    cdef uint64_t* written
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
    p = _grow(s.table_dense, cap, sizeof(uint8_t), s)
    if p == NULL:
        return -1
    s.table_dense = <uint8_t*>p
    p = _grow(s.table_count, cap, sizeof(int32_t), s)
    if p == NULL:
        return -1
    s.table_count = <int32_t*>p
    pt = <int64_t*>pt_reserve(cap * PT_ENTRIES * sizeof(int64_t))
    written = <uint64_t*>pt_reserve(cap * PT_ENTRIES * sizeof(uint64_t))
    if pt == NULL or written == NULL:
        if pt != NULL:
            munmap(pt, cap * PT_ENTRIES * sizeof(int64_t))
        if written != NULL:
            munmap(written, cap * PT_ENTRIES * sizeof(uint64_t))
        s.error = ERR_NOMEM
        return -1
    if s.pt != NULL:
        for t in range(s.n_tables):
            if s.table_dense[t]:
                memcpy(&pt[t * PT_ENTRIES], &s.pt[t * PT_ENTRIES], PT_ENTRIES * sizeof(int64_t))
                memcpy(&written[t * PT_ENTRIES], &s.pt_written[t * PT_ENTRIES], PT_ENTRIES * sizeof(uint64_t))
        munmap(s.pt, s.cap_tables * PT_ENTRIES * sizeof(int64_t))
        munmap(s.pt_written, s.cap_tables * PT_ENTRIES * sizeof(uint64_t))
    s.pt = pt
    s.pt_written = written
    s.cap_tables = cap
    return 0


cdef int64_t pt_new_table(Sim* s, int level, int mm) noexcept nogil:
    cdef int64_t t
    if s.n_tables == s.cap_tables and pt_grow_tables(s) < 0:
        return -1
    t = s.n_tables
    s.n_tables += 1
    s.table_level[t] = level
    s.table_frame[t] = pt_alloc_frame(s)
    s.table_mm[t] = mm
    s.table_dense[t] = 0
    s.table_count[t] = 0
    s.pages_per_level[level] += 1
    return t


# -- where an entry is held: a dense table's slice of pt, else the hashes ------------------------------
cdef inline PTHash* pth_segment(PTHash* segs, int64_t key) noexcept nogil:
    return &segs[(<uint64_t>key * <uint64_t>0x9E3779B97F4A7C15) >> (64 - PTH_SEG_BITS)]  # as pth_find (state.pxi)


cdef inline uint64_t pth_home(PTHash* h, int64_t key) noexcept nogil:
    return ((<uint64_t>key * <uint64_t>0x9E3779B97F4A7C15) << PTH_SEG_BITS) >> h.shift


cdef int pth_alloc(Sim* s, PTHash* h, int64_t slots, int width, int table_shift) noexcept nogil:
    """`h` made a new empty hash of `slots` (a power of two) slots of `width` words, the keys of sparse
    tables moved into it from the old one (a dense table's are dropped: pt holds its entries); a key's
    table is (key - 1) >> table_shift. -1 when out of memory."""
    cdef int64_t* old = h.slots
    cdef int64_t n_old = h.mask + 1 if old != NULL else 0, k, key, j
    cdef int64_t* fresh = <int64_t*>calloc(slots * width, sizeof(int64_t))
    cdef int64_t* sl
    cdef uint64_t i
    cdef int shift = 64
    if fresh == NULL:
        s.error = ERR_NOMEM
        return -1
    while (<int64_t>1 << (64 - shift)) < slots:
        shift -= 1  # home slots: the hash's log2(slots) bits after the segment's
    h.slots = fresh
    h.mask = slots - 1
    h.shift = shift
    h.width = width
    h.used = 0
    for k in range(n_old):
        key = old[k * width]
        if key != 0 and not s.table_dense[(key - 1) >> table_shift]:
            i = pth_home(h, key)
            while h.slots[i * width] != 0:
                i = (i + 1) & <uint64_t>h.mask
            sl = &h.slots[i * width]
            for j in range(width):
                sl[j] = old[k * width + j]
            h.used += 1
    free(old)
    return 0


cdef int64_t* pth_insert(Sim* s, PTHash* segs, int64_t key, int table_shift, int* added) noexcept nogil:
    """key's slot, added (its words after the key 0; *added = 1) if absent; NULL when out of memory."""
    cdef uint64_t i
    cdef int64_t* sl
    cdef int j
    cdef PTHash* h = pth_segment(segs, key)
    if (h.used + 1) * 10 > (h.mask + 1) * 7:  # at most 70% full: short probe runs
        if pth_alloc(s, h, (h.mask + 1) * 2, h.width, table_shift) < 0:
            return NULL
    i = pth_home(h, key)
    while True:
        sl = &h.slots[i * h.width]
        if sl[0] == key:
            return sl
        if sl[0] == 0:
            sl[0] = key
            for j in range(1, h.width):
                sl[j] = 0
            h.used += 1
            added[0] = 1
            return sl
        i = (i + 1) & <uint64_t>h.mask


cdef void pt_densify(Sim* s, int64_t t) noexcept nogil:
    """Move table t's entries (and epochs) from the hashes into its slices of pt and pt_written (their keys
    stay in the hashes, unread, until they next grow)."""
    cdef int64_t i, j
    cdef int64_t* sl
    if s.table_level[t] == 1:
        for i in range(PT_ENTRIES // 8):
            sl = pth_find(s.ph, (t * PT_ENTRIES >> 3) + i + 1)
            if sl != NULL:
                for j in range(8):
                    s.pt[t * PT_ENTRIES + i * 8 + j] = sl[1 + j]
    else:
        for i in range(PT_ENTRIES):
            sl = pth_find(s.pu, t * PT_ENTRIES + i + 1)
            if sl != NULL:
                s.pt[t * PT_ENTRIES + i] = sl[1]
    if s.pw_used:
        for i in range(PT_ENTRIES):
            sl = pth_find(s.pw, t * PT_ENTRIES + i + 1)
            if sl != NULL:
                s.pt_written[t * PT_ENTRIES + i] = <uint64_t>sl[1]
    s.table_dense[t] = 1


cdef inline int64_t ph_value(Sim* s, int64_t loc) noexcept nogil:
    """A sparse table's entry (out of line: pt_sparse_value, state.pxi)."""
    return pt_sparse_value(s.ph, s.pu, s.table_level, loc)


cdef inline uint64_t ph_written(Sim* s, int64_t loc) noexcept nogil:
    cdef int64_t* sl
    if not s.pw_used:
        return 0
    sl = pth_find(s.pw, loc + 1)
    return <uint64_t>sl[1] if sl != NULL else 0


cdef inline int64_t pt_get(Sim* s, int64_t loc) noexcept nogil:
    """The entry at loc (0 if never written): a dense table's from pt, a zero from the hash."""
    cdef int64_t e = s.pt[loc]
    if e == 0 and not s.table_dense[loc >> 9]:
        return ph_value(s, loc)
    return e


cdef inline uint64_t pt_get_written(Sim* s, int64_t loc) noexcept nogil:
    """The epoch of the last write to the entry at loc (0 if never written)."""
    if s.table_dense[loc >> 9]:
        return s.pt_written[loc]
    return ph_written(s, loc)


cdef inline uint64_t pt_entry_paddr(Sim* s, int64_t loc) noexcept nogil:
    return <uint64_t>s.table_frame[loc >> 9] * 4096 + <uint64_t>(loc & 511) * 8  # loc >= 0, 512 per table


cdef void pt_set_entry(Sim* s, int64_t loc, int64_t value) noexcept nogil:
    cdef int64_t t = loc >> 9
    cdef int64_t* sl
    cdef int added = 0
    cdef int64_t* e
    cdef int leaf
    if not s.table_dense[t]:
        leaf = s.table_level[t] == 1
        if leaf:
            sl = pth_insert(s, s.ph, (loc >> 3) + 1, 6, &added)
        else:
            sl = pth_insert(s, s.pu, loc + 1, 9, &added)
        if sl == NULL:
            return
        e = sl + 1 + (loc & 7) if leaf else sl + 1
        s.table_count[t] += added
        if s.table_count[t] < (PT_DENSE_SLOTS if leaf else PT_DENSE_UPPER):
            if e[0] & 1:
                s.pte_epoch += 1
            e[0] = value
            if s.pte_epoch:  # an epoch of 0 need not be kept: every earlier write had 0 as well
                added = 0
                sl = pth_insert(s, s.pw, loc + 1, 9, &added)
                if sl == NULL:
                    return
                s.pw_used += added
                sl[1] = <int64_t>s.pte_epoch
            return
        pt_densify(s, t)
    if s.pt[loc] & 1:
        s.pte_epoch += 1
    s.pt[loc] = value
    if s.pte_epoch:  # while epochs are 0, every entry's is (no write, no host page)
        s.pt_written[loc] = s.pte_epoch


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
    """Each mm's root table (mms in order, so their frames are the same run to run); a thread's slot aliases
    its process's root (s.mm_of is set)."""
    cdef int i
    s.roots = <int64_t*>_calloc(s.n_mms, sizeof(int64_t))
    s.ph = <PTHash*>_calloc(1 << PTH_SEG_BITS, sizeof(PTHash))
    s.pw = <PTHash*>_calloc(1 << PTH_SEG_BITS, sizeof(PTHash))
    s.pu = <PTHash*>_calloc(1 << PTH_SEG_BITS, sizeof(PTHash))
    for i in range(1 << PTH_SEG_BITS):
        if (pth_alloc(s, &s.ph[i], PH_MIN_SLOTS, 9, 6) < 0 or pth_alloc(s, &s.pw[i], PH_MIN_SLOTS, 2, 9) < 0
                or pth_alloc(s, &s.pu[i], PH_MIN_SLOTS, 2, 9) < 0):
            raise MemoryError()
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
    cdef int i
    if s.pt != NULL:
        munmap(s.pt, s.cap_tables * PT_ENTRIES * sizeof(int64_t))
        munmap(s.pt_written, s.cap_tables * PT_ENTRIES * sizeof(uint64_t))
    for i in range(1 << PTH_SEG_BITS):
        if s.ph != NULL:
            free(s.ph[i].slots)
        if s.pw != NULL:
            free(s.pw[i].slots)
        if s.pu != NULL:
            free(s.pu[i].slots)
    for ptr in (<size_t>s.ph, <size_t>s.pw, <size_t>s.pu, <size_t>s.table_dense, <size_t>s.table_count, <size_t>s.table_level,
                <size_t>s.table_frame, <size_t>s.table_mm, <size_t>s.roots):
        free(<void*>ptr)
