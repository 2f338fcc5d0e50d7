# The timing modes' per-CPU state and the overlap mode's interval-style core model: a ring of the load
# queue's completion times, the L1D miss buffers' and page walkers' free times. Mirrors
# mshare_hw/reference/timing.py.

cdef enum:                 # how an access was translated (the overlap model times each path)
    TR_L1                  # L1 TLB hit
    TR_STLB                # L2 TLB hit
    TR_WALK                # page walk


cdef void timing_init(Sim* s, params, dependent) except *:
    """The timing mode, the core's limits and the per-process `dependent` flags (empty: none)."""
    cdef int i, n = s.n_cpus
    s.timing = codes(TIMING_MODES)[params.timing]
    s.load_queue = max(1, params.load_queue)
    s.l1d_miss_buffers = max(1, params.l1d_miss_buffers)
    s.page_walkers = max(1, params.page_walkers)
    s.dependent = <uint8_t*>_calloc(s.n_procs, sizeof(uint8_t))
    for i in range(len(dependent)):
        s.dependent[i] = bool(dependent[i])
    s.lq = <uint64_t*>_calloc(n * s.load_queue, sizeof(uint64_t))
    s.lq_next = <int*>_calloc(n, sizeof(int))
    s.mshr = <uint64_t*>_calloc(n * s.l1d_miss_buffers, sizeof(uint64_t))
    s.walker = <uint64_t*>_calloc(n * s.page_walkers, sizeof(uint64_t))
    s.outstanding = <uint64_t*>_calloc(n, sizeof(uint64_t))


cdef void timing_free(Sim* s) noexcept:
    cdef size_t ptr
    for ptr in (<size_t>s.dependent, <size_t>s.lq, <size_t>s.lq_next, <size_t>s.mshr, <size_t>s.walker,
                <size_t>s.outstanding):
        free(<void*>ptr)


cdef inline int earliest(uint64_t* free_at, int n) noexcept nogil:
    """The unit that is free first (ties: the lowest)."""
    cdef int i, best = 0
    for i in range(1, n):
        if free_at[i] < free_at[best]:
            best = i
    return best


cdef inline int64_t timing_drain(Sim* s, int cpu) noexcept nogil:
    """A serialising point: `cpu`'s clock waits for every access still outstanding. Returns the cycles it
    moved (0 outside the overlap mode)."""
    cdef uint64_t before = s.clock[cpu]
    if s.outstanding[cpu] <= before:
        return 0
    s.clock[cpu] = s.outstanding[cpu]
    return <int64_t>(s.outstanding[cpu] - before)


cdef inline int64_t timing_overlap(Sim* s, int cpu, int path, int64_t walk_cycles, int served,
                                   int latency) noexcept nogil:
    """An independent data access in the overlap mode, translated by `path` (TR_*; a walk's reads took
    walk_cycles) and served by cache level `served` after `latency` cycles. The clock (the issue time)
    moves past the access's issue; its completion goes into the load queue. Returns the clock's move."""
    cdef uint64_t issue = s.clock[cpu], t, t_tr, done
    cdef uint64_t* lq = &s.lq[cpu * s.load_queue]
    cdef uint64_t* units
    cdef int slot = s.lq_next[cpu], u
    t = issue if issue >= lq[slot] else lq[slot]  # a full load queue waits for its oldest entry
    if path == TR_L1:
        t_tr = t
    elif path == TR_STLB:
        t_tr = t + <uint64_t>s.l2_latency
    else:
        units = &s.walker[cpu * s.page_walkers]
        u = earliest(units, s.page_walkers)
        t_tr = t + <uint64_t>s.l2_latency
        if units[u] > t_tr:
            t_tr = units[u]
        t_tr += <uint64_t>walk_cycles
        units[u] = t_tr
    if served == LV_L1D:
        done = t_tr + <uint64_t>latency
    else:
        units = &s.mshr[cpu * s.l1d_miss_buffers]
        u = earliest(units, s.l1d_miss_buffers)
        done = (t_tr if t_tr >= units[u] else units[u]) + <uint64_t>latency
        units[u] = done
    lq[slot] = done
    s.lq_next[cpu] = slot + 1 if slot + 1 < s.load_queue else 0
    if done > s.outstanding[cpu]:
        s.outstanding[cpu] = done
    s.clock[cpu] = t + <uint64_t>s.access_cycles
    return <int64_t>(s.clock[cpu] - issue)
