# Run queues (ring buffers) and the choice of the next CPU: always the running CPU with the lowest
# clock, ties to the lowest number; sleeps and wake-ups; the run loop. Mirrors
# mshare_hw/reference/scheduler.py.

cdef enum:
    ST_DONE = 0
    ST_NEED_INPUT = 1
    ST_CHECKPOINT = 2
    ST_ERROR = 3
    ST_EVENT = 4

cdef enum:                 # schedulers: mshare_hw.names.SCHEDULERS
    SCHED_PINNED
    SCHED_GLOBAL


cdef uint64_t NO_WAKE = (<uint64_t>1) << 62  # wake time of a process that is not sleeping


cdef inline int queue_of(Sim* s, int cpu) noexcept nogil:
    return cpu if s.pinned else 0


cdef inline void queue_push(Sim* s, int q, int proc) noexcept nogil:
    s.queue_buf[q * s.queue_cap + (s.queue_head[q] + s.queue_count[q]) % s.queue_cap] = proc
    s.queue_count[q] += 1


cdef inline int queue_pop(Sim* s, int q) noexcept nogil:
    cdef int proc
    if s.queue_count[q] == 0:
        return -1
    proc = s.queue_buf[q * s.queue_cap + s.queue_head[q]]
    s.queue_head[q] = (s.queue_head[q] + 1) % s.queue_cap
    s.queue_count[q] -= 1
    return proc


cdef inline void add2(Sim* s, int cpu, int proc, int k, int64_t v) noexcept nogil:
    s.cpu_ctr[cpu * N_COUNTERS + k] += v
    s.proc_ctr[proc * N_COUNTERS + k] += v


cdef inline int64_t pti_crossing(Sim* s, int cpu, int proc) noexcept nogil:
    """Under PTI, a kernel entry and the return to user each switch CR3 (SWITCH_TO_KERNEL_CR3 and
    SWITCH_TO_USER_CR3, arch/x86/entry/calling.h), without a flush. Counts the two switches to (cpu, proc);
    returns their cycles."""
    s.cpu_ctr[cpu * N_COUNTERS + C_PTI_CR3_SWITCHES] += 2
    if proc >= 0:
        s.proc_ctr[proc * N_COUNTERS + C_PTI_CR3_SWITCHES] += 2
    return 2 * s.cr3_noflush_cycles


cdef inline int64_t pti_user_flush(Sim* s, int cpu, int proc) noexcept nogil:
    """invalidate_user_asid() under PTI: the loaded ASID's user PCID is flushed at the next return to user,
    whose CR3 write then flushes. The model's TLB entries of user accesses already went with the kernel-side
    flush, so this only counts and charges the flushing write's extra cycles."""
    s.cpu_ctr[cpu * N_COUNTERS + C_PTI_USER_FLUSHES] += 1
    if proc >= 0:
        s.proc_ctr[proc * N_COUNTERS + C_PTI_USER_FLUSHES] += 1
    return s.cr3_flush_cycles - s.cr3_noflush_cycles if s.cr3_flush_cycles > s.cr3_noflush_cycles else 0


cdef int64_t flush_pcid(Sim* s, int cpu, int pcid, int64_t* removed) noexcept nogil:
    cdef int64_t n = tlb_flush_pcid(&s.l1i[cpu], pcid, removed) + tlb_flush_pcid(&s.l1d[cpu], pcid, removed)
    n += tlb_flush_pcid(&s.l2d[cpu], pcid, removed)
    if s.split_l2:
        n += tlb_flush_pcid(&s.l2i[cpu], pcid, removed)
    return n + pwc_flush(s, cpu, pcid, removed)


cdef void sim_switch_to(Sim* s, int cpu, int proc) noexcept nogil:
    cdef int f = asid_switch_mm(s, cpu, s.mm_of[proc])
    cdef int64_t cost = s.context_switch_cycles
    add2(s, cpu, proc, C_CONTEXT_SWITCHES, 1)
    if f & SW_SWITCHED and not f & SW_GLOBAL:
        add2(s, cpu, proc, C_ASID_SLOT_HITS if f & SW_SLOT_HIT else C_ASID_SLOT_MISSES, 1)
        if f & SW_RECYCLED:
            add2(s, cpu, proc, C_ASID_RECYCLES, 1)
    if f & SW_FLUSH:
        flush_pcid(s, cpu, s.cpu_state[cpu].asid + 1, NULL)
        add2(s, cpu, proc, C_CR3_FLUSHES, 1)
        if f & SW_LAZY_CATCHUP:
            add2(s, cpu, proc, C_LAZY_CATCHUP_FLUSHES, 1)
        cost += s.cr3_flush_cycles
    elif f & SW_SWITCHED:
        add2(s, cpu, proc, C_CR3_WRITES_NOFLUSH, 1)
        cost += s.cr3_noflush_cycles
    if s.pti:
        # the switch happens inside the kernel, entered from the outgoing process and left to the incoming one;
        # a flushing switch (load_new_mm_cr3 -> invalidate_user_asid) flushes the user PCID at that exit
        cost += pti_crossing(s, cpu, proc)
        if f & SW_FLUSH:
            cost += pti_user_flush(s, cpu, proc)
    s.clock[cpu] += cost
    add2(s, cpu, proc, C_CYCLES, cost)


cdef inline void sched_end_slice(Sim* s, int cpu, int proc) noexcept nogil:
    """The end of a slice: `cpu` waits for its accesses in flight, counted to (cpu, proc)."""
    cdef int64_t moved = timing_drain(s, cpu)
    if moved:
        add2(s, cpu, proc, C_CYCLES, moved)


cdef void sched_drain_running(Sim* s) noexcept nogil:
    cdef int cpu
    for cpu in range(s.n_cpus):
        if s.cpu_running[cpu]:
            sched_end_slice(s, cpu, s.cpu_current[cpu])


cdef void sched_begin(Sim* s, int cpu, int proc) noexcept nogil:
    s.cpu_running[cpu] = 1
    s.cpu_current[cpu] = proc
    s.last_cpu[proc] = cpu
    sim_switch_to(s, cpu, proc)
    s.quantum_end[cpu] = s.clock[cpu] + s.quantum


cdef void sched_start(Sim* s) noexcept nogil:
    cdef int cpu, proc
    for cpu in range(s.n_cpus):
        proc = queue_pop(s, queue_of(s, cpu))
        if proc >= 0:
            sched_begin(s, cpu, proc)


cdef void sched_on_done(Sim* s, int cpu) noexcept nogil:
    cdef int proc = queue_pop(s, queue_of(s, cpu))
    if proc >= 0:
        sched_begin(s, cpu, proc)
    else:
        s.cpu_running[cpu] = 0
        s.cpu_current[cpu] = -1
        s.cpu_state[cpu].is_lazy = 1


cdef inline int64_t sched_next_sleep_pos(Sim* s, int proc) noexcept nogil:
    """The absolute trace position at which `proc` sleeps next (NO_WAKE: none left)."""
    cdef int64_t i = s.sleep_idx[proc]
    return s.sleep_pos[i] if i < s.sleep_off[proc + 1] else <int64_t>NO_WAKE


cdef int sched_earliest_wake(Sim* s) noexcept nogil:
    """The sleeping process that wakes first (ties: lowest number), -1 if none."""
    cdef int p, best = -1
    for p in range(s.n_procs):
        if s.wake_time[p] != NO_WAKE and (best < 0 or s.wake_time[p] < s.wake_time[best]):
            best = p
    return best


cdef void sched_on_sleep(Sim* s, int cpu, int proc) noexcept nogil:
    """`proc` blocks on `cpu` at its next sleep position: it leaves the CPU until its wake time."""
    cdef int64_t cycles = s.sleep_cyc[s.sleep_idx[proc]]
    s.sleep_idx[proc] += 1
    s.wake_time[proc] = s.clock[cpu] + cycles
    if s.wake_time[proc] < s.next_wake:
        s.next_wake = s.wake_time[proc]
    add2(s, cpu, proc, C_SLEEPS, 1)
    add2(s, cpu, proc, C_SLEEP_CYCLES, cycles)
    sched_on_done(s, cpu)


cdef void sched_wake(Sim* s, int proc) noexcept nogil:
    """`proc`'s wake time has come: queue it, and if an idle CPU can run it, run it there from then."""
    cdef uint64_t t = s.wake_time[proc]
    cdef int c, cpu, p
    s.wake_time[proc] = NO_WAKE
    p = sched_earliest_wake(s)
    s.next_wake = s.wake_time[p] if p >= 0 else NO_WAKE
    if s.pinned:
        cpu = s.home_cpu[proc]
        if s.cpu_running[cpu]:
            cpu = -1
    else:
        cpu = s.last_cpu[proc]
        if cpu < 0 or s.cpu_running[cpu]:
            cpu = -1
            for c in range(s.n_cpus):
                if not s.cpu_running[c]:
                    cpu = c
                    break
    if cpu < 0:
        queue_push(s, queue_of(s, s.home_cpu[proc]), proc)
        return
    if s.clock[cpu] < t:
        s.clock[cpu] = t
    sched_begin(s, cpu, proc)


cdef void sched_on_quantum(Sim* s, int cpu) noexcept nogil:
    cdef int q = queue_of(s, cpu)
    if s.queue_count[q] > 0:
        queue_push(s, q, s.cpu_current[cpu])
        sched_begin(s, cpu, queue_pop(s, q))
    else:
        s.quantum_end[cpu] = s.clock[cpu] + s.quantum


cdef inline int sched_next_cpu(Sim* s) noexcept nogil:
    cdef int c, best = -1
    for c in range(s.n_cpus):
        if s.cpu_running[c] and (best < 0 or s.clock[c] < s.clock[best]):
            best = c
    return best


cdef inline int64_t sim_slice(Sim* s, int cpu, int proc, uint64_t* addrs, uint8_t* kinds, int64_t lim, int pcid,
                             uint64_t stop, shape_t shape) noexcept nogil:
    """Up to `lim` accesses of `proc` on `cpu`, stopping early at clock `stop` or an error; returns how
    many ran. Compiled once per shape_t."""
    cdef int64_t i, n = 0
    for i in range(lim):
        sim_access(s, cpu, proc, addrs[i], kinds[i], pcid, shape)
        if s.error:
            break
        n += 1
        if s.clock[cpu] >= stop:
            break
    return n


cdef int sim_run(Sim* s) noexcept nogil:
    cdef int cpu, proc, k, pcid
    cdef int64_t lim, n, i, pos, sleep_at
    cdef uint64_t qend, stop, now
    cdef uint64_t* addrs
    cdef uint8_t* kinds
    cdef int64_t* row = s.row
    while True:
        if s.cur_cpu < 0:
            cpu = sched_next_cpu(s)
            now = s.clock[cpu] if cpu >= 0 else NO_WAKE
            if s.next_wake != NO_WAKE and s.next_wake <= now:
                if s.next_wake >= s.next_event_time:
                    return ST_EVENT
                sched_wake(s, sched_earliest_wake(s))
                continue
            if cpu < 0:
                return ST_DONE
            if s.clock[cpu] >= s.next_event_time:
                return ST_EVENT
            s.cur_cpu = cpu
            s.slice_done = 0
        cpu = s.cur_cpu
        proc = s.cpu_current[cpu]
        if s.trace_pos[proc] == s.trace_len[proc]:
            if not s.trace_final[proc]:
                s.need_proc = proc
                return ST_NEED_INPUT
            sched_end_slice(s, cpu, proc)
            sched_on_done(s, cpu)
            s.cur_cpu = -1
            continue
        pos = s.trace_pos[proc]
        sleep_at = sched_next_sleep_pos(s, proc) - s.trace_base[proc]  # in the current chunk's positions
        if pos == sleep_at:
            sched_end_slice(s, cpu, proc)
            sched_on_sleep(s, cpu, proc)
            s.cur_cpu = -1
            continue
        if s.clock[cpu] >= s.quantum_end[cpu]:
            sched_end_slice(s, cpu, proc)
            sched_on_quantum(s, cpu)
            s.cur_cpu = -1
            continue
        if s.clock[cpu] >= s.next_event_time or s.clock[cpu] >= s.next_wake or s.slice_done >= s.slice_len:
            sched_end_slice(s, cpu, proc)
            s.cur_cpu = -1
            continue
        lim = s.slice_len - s.slice_done
        if s.trace_len[proc] - pos < lim:
            lim = s.trace_len[proc] - pos
        if s.next_checkpoint - s.global_accesses < lim:
            lim = s.next_checkpoint - s.global_accesses
        if sleep_at - pos < lim:
            lim = sleep_at - pos
        addrs = s.trace_addrs[proc] + pos
        kinds = s.trace_kinds[proc] + pos
        stop = s.quantum_end[cpu]
        if s.next_event_time < stop:
            stop = s.next_event_time
        if s.next_wake < stop:
            stop = s.next_wake
        pcid = s.cpu_state[cpu].asid + 1  # context switches happen between slices only
        if s.shape == SHAPE_ALL:
            n = sim_slice(s, cpu, proc, addrs, kinds, lim, pcid, stop, <one_block_t>0)
        elif s.shape == SHAPE_CACHES:
            n = sim_slice(s, cpu, proc, addrs, kinds, lim, pcid, stop, <cache_block_t>0)
        else:
            n = sim_slice(s, cpu, proc, addrs, kinds, lim, pcid, stop, <any_blocks_t>0)
        s.trace_pos[proc] = pos + n
        s.slice_done += n
        s.global_accesses += n
        row_finish(row)
        for k in range(N_COUNTERS):
            if row[k]:
                s.cpu_ctr[cpu * N_COUNTERS + k] += row[k]
                s.proc_ctr[proc * N_COUNTERS + k] += row[k]
                row[k] = 0
        if s.error:
            return ST_ERROR
        if s.global_accesses == s.next_checkpoint:
            return ST_CHECKPOINT


cdef void sched_init(Sim* s, home_cpu, sleeps) except *:
    """Every CPU idle at clock 0, each process queued on its home CPU's queue (pinned) or the one queue, no
    trace input yet, its sleeps (Layout.sleeps) ahead. s.n_cpus, s.n_procs and s.pinned are set."""
    cdef int c, i, n_cpus = s.n_cpus, n_procs = s.n_procs
    cdef int64_t j, n_sleeps = sum(len(x) for x in sleeps)
    s.cpu_running = <int*>_calloc(n_cpus, sizeof(int))
    s.cpu_current = <int*>_calloc(n_cpus, sizeof(int))
    s.quantum_end = <uint64_t*>_calloc(n_cpus, sizeof(uint64_t))
    s.clock = <uint64_t*>_calloc(n_cpus, sizeof(uint64_t))
    for c in range(n_cpus):
        s.cpu_current[c] = -1
    n_queues = n_cpus if s.pinned else 1
    s.queue_cap = n_procs + 1
    s.queue_buf = <int*>_calloc(n_queues * s.queue_cap, sizeof(int))
    s.queue_head = <int*>_calloc(n_queues, sizeof(int))
    s.queue_count = <int*>_calloc(n_queues, sizeof(int))
    for i in range(n_procs):
        queue_push(s, home_cpu[i] if s.pinned else 0, i)
    s.home_cpu = <int*>_calloc(n_procs, sizeof(int))
    for i in range(n_procs):
        s.home_cpu[i] = home_cpu[i]
    s.sleep_off = <int64_t*>_calloc(n_procs + 1, sizeof(int64_t))
    s.sleep_pos = <int64_t*>_calloc(n_sleeps + 1, sizeof(int64_t))
    s.sleep_cyc = <int64_t*>_calloc(n_sleeps + 1, sizeof(int64_t))
    s.sleep_idx = <int64_t*>_calloc(n_procs, sizeof(int64_t))
    s.wake_time = <uint64_t*>_calloc(n_procs, sizeof(uint64_t))
    s.last_cpu = <int*>_calloc(n_procs, sizeof(int))
    s.next_wake = NO_WAKE
    j = 0
    for i in range(n_procs):
        s.sleep_off[i] = j
        s.sleep_idx[i] = j
        s.wake_time[i] = NO_WAKE
        s.last_cpu[i] = -1
        for pos, cyc in (sleeps[i] if i < len(sleeps) else ()):
            s.sleep_pos[j] = pos
            s.sleep_cyc[j] = cyc
            j += 1
    s.sleep_off[n_procs] = j

    s.trace_addrs = <uint64_t**>_calloc(n_procs, sizeof(uint64_t*))
    s.trace_kinds = <uint8_t**>_calloc(n_procs, sizeof(uint8_t*))
    s.trace_len = <int64_t*>_calloc(n_procs, sizeof(int64_t))
    s.trace_pos = <int64_t*>_calloc(n_procs, sizeof(int64_t))
    s.trace_base = <int64_t*>_calloc(n_procs, sizeof(int64_t))
    s.trace_final = <int*>_calloc(n_procs, sizeof(int))


cdef void sched_free(Sim* s) noexcept:
    cdef size_t ptr
    for ptr in (<size_t>s.cpu_running, <size_t>s.cpu_current, <size_t>s.quantum_end, <size_t>s.clock,
                <size_t>s.queue_buf, <size_t>s.queue_head, <size_t>s.queue_count, <size_t>s.trace_addrs,
                <size_t>s.trace_kinds, <size_t>s.trace_len, <size_t>s.trace_pos, <size_t>s.trace_final,
                <size_t>s.trace_base, <size_t>s.home_cpu, <size_t>s.sleep_off, <size_t>s.sleep_pos,
                <size_t>s.sleep_cyc, <size_t>s.sleep_idx, <size_t>s.wake_time, <size_t>s.last_cpu):
        free(<void*>ptr)
