# Coherence oracle: a hit on an entry whose page-table entry changed since the fill is stale.
# Mirrors mshare_hw/reference/oracle.py.

cdef enum:
    WHERE_L1 = 0
    WHERE_L2 = 1
    WHERE_PWC = 2


cdef inline void oracle_record(Sim* s, int cpu, int proc, uint64_t va, int where) noexcept nogil:
    cdef int64_t* x
    s.row[C_STALE_TRANSLATIONS] += 1
    if s.n_examples < s.max_examples:
        x = &s.examples[s.n_examples * 5]
        x[0] = <int64_t>s.clock[cpu]
        x[1] = cpu
        x[2] = proc
        x[3] = <int64_t>va
        x[4] = where
        s.n_examples += 1
