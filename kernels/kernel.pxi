# The kernel side of invalidation events in C (DESIGN.md §2.6/§2.7): an event's PTE changes, Linux 6.18's
# flush paths as summarised in shared/reference/mshare_and_linux_tlb.md §2 (flush_tlb_mm_range with
# should_trim_cpumask, flush_tlb_multi/should_flush_tlb, flush_tlb_func, flush_tlb_all, arch_tlbbatch_*,
# INVLPGB) and the mshare flush strategies. mshare_hw.engine.shootdown configures it (Engine.set_kernel)
# and hands it each event (Engine.execute_event): one call per event from Python, whatever the number of
# CPUs. Secondary MMUs' mmu notifiers stay Python objects, called back from here. Mirrors
# mshare_hw/reference/kernel.py step for step (the differential tests hold the two to identical counters).

cdef enum:
    FLUSH_ANY_MM = -2      # a kernel/batch flush: flush_tlb_func with no mm (whatever is loaded catches up)

cdef enum:                 # kernel costs (cycles): mshare_hw.names.KERNEL_COSTS
    KC_CR3_FLUSH_CYCLES
    KC_INVLPG_CYCLES
    KC_INVPCID_CYCLES
    KC_IPI_INITIATOR_BASE_CYCLES
    KC_IPI_PER_TARGET_CYCLES
    KC_IPI_RESPONDER_CYCLES
    KC_INVLPGB_CYCLES
    KC_TLBSYNC_CYCLES
    N_KCOSTS

cdef enum:                 # the work each CPU of an IPI round does
    W_FLUSH_FUNC           # flush_tlb_func with the round's flush
    W_EVERYTHING           # flush_tlb_all: INVPCID type 2
    W_LOADED_PCID          # host_cpumask: the loaded PCID if it belongs to a sharer, no tlb_gen
    W_CATCH_UP             # union_batch: a sharer's loaded PCID catches up to its tlb_gen

cdef enum:                 # flush strategies for shared page tables: mshare_hw.names.STRATEGIES
    S_HOST_MM_ONLY
    S_FLUSH_ALL
    S_HOST_CPUMASK
    S_PER_SHARER
    S_UNION_BATCH
    S_BROADCAST

cdef enum:                 # event kinds: mshare_hw.names.EVENT_KINDS
    EK_ZAP
    EK_PROTECT
    EK_MIGRATE
    EK_RECLAIM
    EK_DETACH

cdef enum:                 # pt_change_range's op: the PTE change of each kind
    PT_OP_ZAP = 0          # cleared (zap, reclaim, detach)
    PT_OP_PROTECT = 1      # rewritten in place
    PT_OP_MIGRATE = 2      # pointed at a new frame


ctypedef struct EventCtx:
    int64_t* removed       # per process: entries the current flush destroyed (zeroed once accounted)
    uint8_t* mapper        # per process: maps the current event's region (its losses are not collateral)
    uint8_t* sharer        # per mm: in the current round's sharer set (W_LOADED_PCID, W_CATCH_UP)
    uint8_t* union_mask    # per CPU: the OR of the current round's cpumasks
    int* targets           # per CPU: the current round's responders
    int64_t cost[N_KCOSTS]
    # the current round's flush (W_FLUSH_FUNC, W_LOADED_PCID, W_CATCH_UP)
    int mm
    uint64_t va
    int64_t n_pages
    int shift
    uint64_t new_gen
    int full
    # the kernel side's configuration (Engine.set_kernel) and state
    int configured
    int strategy
    int invlpgb            # the kernel uses INVLPGB for flush_tlb_all and reclaim's batches
    int slot_shift         # log2 of the VA one mshare link entry covers
    int link_level         # level of the per-process entry that links to the shared table
    int64_t ceiling        # tlb_single_page_flush_ceiling
    int64_t trim_interval  # should_trim_cpumask says yes at most once per this many cycles per mm
    int64_t* next_trim     # per mm
    int batching           # inside a batched unmap (the flushes call no notifier of their own)
    int n_regions
    uint64_t* reg_start
    uint64_t* reg_end
    int* reg_shift
    int* reg_shared
    int* reg_host          # host mm index (shared page tables), else -1
    int* reg_map_off       # per region: its mappers are reg_map[reg_map_off[r]:reg_map_off[r + 1]]
    int* reg_map
    int* mms               # scratch: the mms one event changes (n_procs)
    int* home_cpu          # per process: the CPU an event initiates on when no CPU runs the process


cdef inline void ev_charge(Sim* s, int cpu, int proc, int k, int64_t value) noexcept nogil:
    """Engine.charge: a counter of a CPU (and of a process if proc >= 0); cycles also move its clock."""
    s.cpu_ctr[cpu * N_COUNTERS + k] += value
    if proc >= 0:
        s.proc_ctr[proc * N_COUNTERS + k] += value
    if k == C_CYCLES:
        s.clock[cpu] += value


cdef inline int ev_current_proc(Sim* s, int cpu) noexcept nogil:
    return s.cpu_current[cpu] if s.cpu_running[cpu] else -1


cdef void ev_invlpg(Sim* s, int cpu, uint64_t va, int64_t* removed) noexcept nogil:
    """INVLPG: va's entries in the loaded PCID (and global ones), and every PWC entry of that PCID."""
    cdef int pcid = s.cpu_state[cpu].asid + 1
    tlb_invlpg(&s.l1i[cpu], pcid, va, removed)
    tlb_invlpg(&s.l1d[cpu], pcid, va, removed)
    tlb_invlpg(&s.l2d[cpu], pcid, va, removed)
    if s.split_l2:
        tlb_invlpg(&s.l2i[cpu], pcid, va, removed)
    pwc_flush(s, cpu, pcid, removed)


cdef inline void ev_tlb_flush_all(TLBLevel* lv, int64_t* removed) noexcept nogil:
    """tlb_flush_all, skipped when the level holds no valid entry (its arrays' n_valid, which lookups rely
    on too): flush_tlb_all once per unmapped page, as a batched migration under flush_all does, then scans
    empty TLBs only once."""
    cdef int i, code
    for i in range(lv.n):
        for code in range(4):
            if lv.arrays[i].n_valid[code]:
                tlb_flush_all(lv, removed)
                return


cdef void ev_flush_all_pcids(Sim* s, int cpu, int64_t* removed) noexcept nogil:
    """Every non-global TLB entry of every PCID and the whole PWC (INVPCID type 2/3, INVLPGB all)."""
    ev_tlb_flush_all(&s.l1i[cpu], removed)
    ev_tlb_flush_all(&s.l1d[cpu], removed)
    ev_tlb_flush_all(&s.l2d[cpu], removed)
    if s.split_l2:
        ev_tlb_flush_all(&s.l2i[cpu], removed)
    pwc_flush(s, cpu, -1, removed)


cdef void ev_account_removed(Sim* s, EventCtx* e, int cpu) noexcept nogil:
    """Entries a flush on `cpu` destroyed that belonged to processes not mapping the event's region."""
    cdef int owner
    for owner in range(s.n_procs):
        if e.removed[owner]:
            if not e.mapper[owner]:
                ev_charge(s, cpu, owner, C_COLLATERAL_ENTRIES_FLUSHED, e.removed[owner])
            e.removed[owner] = 0


cdef int64_t ev_flush_pages(Sim* s, EventCtx* e, int cpu, uint64_t va, int64_t n_pages, int shift,
                            int full) noexcept nogil:
    """Flush the loaded PCID: INVLPG per page, or in full (a CR3 write). Returns the cycles."""
    cdef CpuTlbState* st = &s.cpu_state[cpu]
    cdef int proc = ev_current_proc(s, cpu)
    cdef int64_t i, cost
    if not full:
        for i in range(n_pages):
            ev_invlpg(s, cpu, va + (<uint64_t>i << shift), e.removed)
        ev_charge(s, cpu, proc, C_INVLPG, n_pages)
        cost = n_pages * e.cost[KC_INVLPG_CYCLES]
    else:
        flush_pcid(s, cpu, st.asid + 1, e.removed)
        ev_charge(s, cpu, proc, C_FULL_FLUSHES, 1)
        cost = e.cost[KC_CR3_FLUSH_CYCLES]
    ev_account_removed(s, e, cpu)
    return cost


cdef int64_t ev_flush_tlb_func(Sim* s, EventCtx* e, int cpu, int mm, uint64_t va, int64_t n_pages, int shift,
                               uint64_t new_gen, int full) noexcept nogil:
    """flush_tlb_func on `cpu`: leave the cpumask of an mm not loaded; a lazy CPU switches to init_mm;
    else catch the loaded PCID up to its mm's tlb_gen (INVLPG per page only when this flush is the one
    step behind, else a full flush). Returns its cycles (flush instructions only)."""
    cdef CpuTlbState* st = &s.cpu_state[cpu]
    cdef int loaded = st.loaded_mm
    cdef int f
    cdef uint64_t local, mm_gen
    cdef int64_t cost
    if mm != FLUSH_ANY_MM and mm != loaded:
        s.mm_cpumask[mm * s.n_cpus + cpu] = 0
        return 0
    if loaded == INIT_MM:
        return 0
    if st.is_lazy:
        f = asid_switch_mm(s, cpu, INIT_MM)
        if f & SW_FLUSH:
            flush_pcid(s, cpu, st.asid + 1, NULL)
        ev_charge(s, cpu, -1, C_CR3_FLUSHES if f & SW_FLUSH else C_CR3_WRITES_NOFLUSH, 1)
        return e.cost[KC_CR3_FLUSH_CYCLES]
    local = st.ctx_gens[st.asid]
    mm_gen = s.mm_tlb_gen[loaded]
    if new_gen and new_gen <= local:
        return 0
    if local == mm_gen:
        return 0
    cost = ev_flush_pages(s, e, cpu, va, n_pages, shift, full or new_gen != local + 1 or new_gen != mm_gen)
    st.ctx_gens[st.asid] = mm_gen
    return cost


cdef int64_t ev_work(Sim* s, EventCtx* e, int kind, int cpu) noexcept nogil:
    """What one CPU of an IPI round (or the initiator itself) does; returns its cycles."""
    cdef int loaded, proc
    cdef uint64_t local, mm_gen
    if kind == W_FLUSH_FUNC:
        return ev_flush_tlb_func(s, e, cpu, e.mm, e.va, e.n_pages, e.shift, e.new_gen, e.full)
    if kind == W_EVERYTHING:
        ev_flush_all_pcids(s, cpu, e.removed)
        proc = ev_current_proc(s, cpu)
        ev_charge(s, cpu, proc, C_INVPCID, 1)
        ev_charge(s, cpu, proc, C_FULL_FLUSHES, 1)
        ev_account_removed(s, e, cpu)
        return e.cost[KC_INVPCID_CYCLES]
    loaded = s.cpu_state[cpu].loaded_mm
    if loaded < 0 or not e.sharer[loaded]:
        return 0
    if kind == W_LOADED_PCID:
        return ev_flush_pages(s, e, cpu, e.va, e.n_pages, e.shift, e.full)
    # W_CATCH_UP: the round bumped every sharer's tlb_gen once, so the loaded one's is the round's gen
    local = s.cpu_state[cpu].ctx_gens[s.cpu_state[cpu].asid]
    mm_gen = s.mm_tlb_gen[loaded]
    if local == mm_gen:
        return 0
    return ev_flush_tlb_func(s, e, cpu, loaded, e.va, e.n_pages, e.shift, mm_gen, e.full or local + 1 != mm_gen)


cdef int64_t ev_ipi_round(Sim* s, EventCtx* e, int initiator, int iproc, int n_targets, int kind) noexcept nogil:
    """Interrupt e.targets[:n_targets] (the initiator excluded); each does the work `kind`. The initiator pays
    a base cost, a cost per target, and waits for the slowest responder. Returns the initiator's cycles."""
    cdef int i, t, proc
    cdef int64_t cost, slowest = 0
    for i in range(n_targets):
        t = e.targets[i]
        cost = e.cost[KC_IPI_RESPONDER_CYCLES] + ev_work(s, e, kind, t)
        proc = ev_current_proc(s, t)
        ev_charge(s, t, proc, C_IPIS_RECEIVED, 1)
        ev_charge(s, t, proc, C_SHOOTDOWN_CYCLES_RESPONDER, cost)
        ev_charge(s, t, proc, C_CYCLES, cost)
        if cost > slowest:
            slowest = cost
    if n_targets == 0:
        return 0
    ev_charge(s, initiator, iproc, C_IPIS_SENT, n_targets)
    return e.cost[KC_IPI_INITIATOR_BASE_CYCLES] + e.cost[KC_IPI_PER_TARGET_CYCLES] * n_targets + slowest


cdef inline void ev_set_flush(EventCtx* e, int mm, uint64_t va, int64_t n_pages, int shift, uint64_t new_gen,
                              int full) noexcept nogil:
    e.mm = mm
    e.va = va
    e.n_pages = n_pages
    e.shift = shift
    e.new_gen = new_gen
    e.full = full


cdef int64_t ev_flush_tlb_mm_range(Sim* s, EventCtx* e, int cpu, int iproc, int mm, uint64_t va, int64_t n_pages,
                                   int shift, int full, int freed, int trim, int* remote) noexcept nogil:
    """flush_tlb_mm_range after the caller's trim decision: bump mm's tlb_gen; if another CPU is in mm's
    cpumask, flush_tlb_multi (should_flush_tlb: every CPU of the cpumask when page tables were freed, else
    those not lazy that have mm loaded, or all of those not lazy when trimming), the initiator included if
    chosen; else flush locally if mm is loaded. *remote: another CPU was in the cpumask."""
    cdef int t, n = 0, own = 0
    cdef uint8_t* mask = &s.mm_cpumask[mm * s.n_cpus]
    cdef CpuTlbState* st
    cdef int64_t cycles
    s.mm_tlb_gen[mm] += 1
    ev_set_flush(e, mm, va, n_pages, shift, s.mm_tlb_gen[mm], full)
    remote[0] = 0
    for t in range(s.n_cpus):
        if mask[t] and t != cpu:
            remote[0] = 1
    if not remote[0]:
        if s.cpu_state[cpu].loaded_mm == mm:
            return ev_work(s, e, W_FLUSH_FUNC, cpu)
        return 0
    for t in range(s.n_cpus):
        st = &s.cpu_state[t]
        if mask[t] and (freed or (not st.is_lazy and (st.loaded_mm == mm or trim))):
            if t == cpu:
                own = 1
            else:
                e.targets[n] = t
                n += 1
    cycles = ev_ipi_round(s, e, cpu, iproc, n, W_FLUSH_FUNC)
    if own:
        cycles += ev_work(s, e, W_FLUSH_FUNC, cpu)
    return cycles


cdef int64_t ev_invlpgb_flush_all_nonglobals(Sim* s, EventCtx* e, int cpu, int iproc) noexcept nogil:
    """AMD broadcast: one INVLPGB removes every non-global entry on every CPU, then TLBSYNC."""
    cdef int t
    for t in range(s.n_cpus):
        ev_flush_all_pcids(s, t, e.removed)
        ev_account_removed(s, e, t)
    ev_charge(s, cpu, iproc, C_INVLPGB, 1)
    ev_charge(s, cpu, iproc, C_TLBSYNC, 1)
    ev_charge(s, cpu, iproc, C_FULL_FLUSHES, 1)
    return e.cost[KC_INVLPGB_CYCLES] + e.cost[KC_TLBSYNC_CYCLES]


cdef int64_t ev_flush_tlb_all(Sim* s, EventCtx* e, int cpu, int iproc) noexcept nogil:
    """flush_tlb_all: IPI every other online CPU; each, and the initiator, flushes every PCID (INVPCID 2)."""
    cdef int t, n = 0
    for t in range(s.n_cpus):
        if t != cpu:
            e.targets[n] = t
            n += 1
    return ev_ipi_round(s, e, cpu, iproc, n, W_EVERYTHING) + ev_work(s, e, W_EVERYTHING, cpu)


cdef int ev_union_targets(Sim* s, EventCtx* e, int cpu) noexcept nogil:
    """The responders of a round over e.union_mask: its CPUs but the initiator, in order, lazy ones skipped."""
    cdef int t, n = 0
    for t in range(s.n_cpus):
        if e.union_mask[t] and t != cpu and not s.cpu_state[t].is_lazy:
            e.targets[n] = t
            n += 1
    return n


cdef void ev_union_add(Sim* s, EventCtx* e, int mm) noexcept nogil:
    cdef int t
    for t in range(s.n_cpus):
        if s.mm_cpumask[mm * s.n_cpus + t]:
            e.union_mask[t] = 1


cdef void ev_union_clear(Sim* s, EventCtx* e) noexcept nogil:
    cdef int t
    for t in range(s.n_cpus):
        e.union_mask[t] = 0


cdef int64_t ev_tlbbatch_flush(Sim* s, EventCtx* e, int cpu, int iproc, const int* mms, int n_mms) noexcept nogil:
    """arch_tlbbatch_add_pending for each of `mms` (bump its tlb_gen, OR its cpumask into the batch), then
    arch_tlbbatch_flush: with INVLPGB one flush of every non-global entry, else one IPI round to the batch's
    CPUs (lazy ones skipped), where each CPU, and the initiator if in the batch, fully flushes its loaded mm
    if that moved on. Returns the initiator's cycles."""
    cdef int i, n, own
    cdef int64_t cycles
    for i in range(n_mms):
        s.mm_tlb_gen[mms[i]] += 1
        ev_union_add(s, e, mms[i])
    if e.invlpgb:
        ev_union_clear(s, e)
        return ev_invlpgb_flush_all_nonglobals(s, e, cpu, iproc)
    ev_set_flush(e, FLUSH_ANY_MM, 0, 0, 12, 0, 1)
    n = ev_union_targets(s, e, cpu)
    own = e.union_mask[cpu]
    ev_union_clear(s, e)
    cycles = ev_ipi_round(s, e, cpu, iproc, n, W_FLUSH_FUNC)
    if own:
        cycles += ev_work(s, e, W_FLUSH_FUNC, cpu)
    return cycles


cdef int64_t ev_flush_sharers(Sim* s, EventCtx* e, int cpu, int iproc, const int* sharers, int n_sharers,
                              uint64_t va, int64_t n_pages, int shift, int full, int catch_up) noexcept nogil:
    """One IPI round to the OR of the sharers' cpumasks (lazy CPUs skipped; the initiator flushes itself if in
    it and not lazy). catch_up 0 (host_cpumask): each flushes its loaded PCID if a sharer's, without touching
    any tlb_gen. catch_up 1 (union_batch): first bump every sharer's tlb_gen; each CPU with a sharer loaded
    catches up (flush_tlb_func: INVLPG per page if one step behind, else full). Returns the initiator's
    cycles."""
    cdef int i, n, own, kind = W_CATCH_UP if catch_up else W_LOADED_PCID
    cdef int64_t cycles
    for i in range(n_sharers):
        if catch_up:
            s.mm_tlb_gen[sharers[i]] += 1
        ev_union_add(s, e, sharers[i])
        e.sharer[sharers[i]] = 1
    ev_set_flush(e, -1, va, n_pages, shift, 0, full)
    n = ev_union_targets(s, e, cpu)
    own = e.union_mask[cpu]
    ev_union_clear(s, e)
    cycles = ev_ipi_round(s, e, cpu, iproc, n, kind)
    if own and not s.cpu_state[cpu].is_lazy:
        cycles += ev_work(s, e, kind, cpu)
    for i in range(n_sharers):
        e.sharer[sharers[i]] = 0
    return cycles


# -- page-table changes ---------------------------------------------------------------------------------
cdef int64_t ev_pt_change_span(Sim* s, int mm, uint64_t va, int64_t n_pages, int shift, int op, int64_t* first,
                               int64_t* last) noexcept nogil:
    """pt_change_range page by page, like the mmu_gather: *first, *last: the indices of the first and last
    page whose present PTE changed (-1 if none); returns how many did."""
    cdef int64_t i, count = 0
    first[0] = -1
    last[0] = -1
    for i in range(n_pages):
        if pt_change_range(s, mm, va + (<uint64_t>i << shift), 1, shift, op):
            count += 1
            last[0] = i
            if first[0] < 0:
                first[0] = i
    return count


cdef int ev_pt_unlink(Sim* s, int mm, uint64_t va, int level) noexcept nogil:
    """Clear the entry at `level` on va's path in mm's tree (a detach's p4d_clear); 0 if there was none."""
    cdef int64_t t = s.roots[mm], loc, ent
    cdef int lv = s.levels
    while lv > level:
        ent = s.pt[t * PT_ENTRIES + pt_index(va, lv)]
        if not (ent & 1) or (ent & 2):
            return 0
        t = ent >> 2
        lv -= 1
    loc = t * PT_ENTRIES + pt_index(va, level)
    if not (s.pt[loc] & 1):
        return 0
    pt_set_entry(s, loc, 0)
    return 1


# -- the kernel side: Linux's paths with mmu notifiers, the strategies, one event ---------------------
# `notifiers` is the run's SecondaryMMUs (mshare_hw.engine.secondary) or None; its methods return the
# initiator's cycles.

cdef int64_t k_range_start(object notifiers, int iproc, int mm, uint64_t va, int64_t n_pages, int shift) except? -1:
    """mmu_notifier_invalidate_range_start(mm, ...) before PTEs change (its _end adds no work here)."""
    if notifiers is None:
        return 0
    return notifiers.invalidate_range_start(iproc, mm, va, n_pages, shift)


cdef int64_t k_batch_pending(object notifiers, int iproc, int mm, int64_t pages) except? -1:
    """arch_tlbbatch_add_pending, once per unmapped page: the notifier with the whole range 0..-1."""
    cdef int64_t i, cycles = 0
    if notifiers is None:
        return 0
    for i in range(pages):
        cycles += notifiers.arch_invalidate_secondary_tlbs(iproc, mm, 0, -1, 12)
    return cycles


cdef int64_t k_flush_tlb_mm_range(Sim* s, EventCtx* e, object notifiers, int cpu, int iproc, int mm, uint64_t va,
                                  int64_t n_pages, int shift, int freed, int64_t now) except? -1:
    """flush_tlb_mm_range: should_trim_cpumask() is asked only when another CPU is in mm's cpumask, and says
    yes at most once per trim interval per mm. Ends with the mm's secondary-TLB notifier, as Linux does (not
    from a batch's own flush: the batch called it per page in arch_tlbbatch_add_pending). Returns the
    initiator's cycles."""
    cdef int remote
    cdef int trim = now >= e.next_trim[mm]
    cdef int64_t cycles = ev_flush_tlb_mm_range(s, e, cpu, iproc, mm, va, n_pages, shift, n_pages > e.ceiling,
                                                freed, trim, &remote)
    if remote and trim:
        e.next_trim[mm] = now + e.trim_interval
    if notifiers is not None and not e.batching:
        cycles += notifiers.arch_invalidate_secondary_tlbs(iproc, mm, va, n_pages, shift)
    return cycles


cdef int64_t k_flush_tlb_all(Sim* s, EventCtx* e, int cpu, int iproc) noexcept nogil:
    """flush_tlb_all, or with INVLPGB one invlpgb_flush_all() + TLBSYNC (no global entries are modelled)."""
    if e.invlpgb:
        return ev_invlpgb_flush_all_nonglobals(s, e, cpu, iproc)
    return ev_flush_tlb_all(s, e, cpu, iproc)


cdef int64_t k_shared_flush(Sim* s, EventCtx* e, object notifiers, int cpu, int iproc, int host, int region,
                            uint64_t va, int64_t n_pages, int shift, int64_t now) except? -1:
    """The strategy's flushes after a change in a shared (mshare) page table. Returns the initiator's cycles."""
    cdef int i
    cdef const int* sharers = &e.reg_map[e.reg_map_off[region]]
    cdef int n_sharers = e.reg_map_off[region + 1] - e.reg_map_off[region]
    # the series' first step is always the ordinary flush of the host mm; its cpumask is empty
    cdef int64_t cycles = k_flush_tlb_mm_range(s, e, notifiers, cpu, iproc, host, va, n_pages, shift, 0, now)
    if e.strategy == S_HOST_MM_ONLY:
        return cycles
    if e.strategy == S_FLUSH_ALL:
        return cycles + k_flush_tlb_all(s, e, cpu, iproc)
    if e.strategy == S_PER_SHARER:
        for i in range(n_sharers):
            cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, iproc, sharers[i], va, n_pages, shift, 0, now)
        return cycles
    if e.strategy == S_HOST_CPUMASK or e.strategy == S_UNION_BATCH:
        # host_cpumask: the CPUs that ran a sharer flush their loaded PCID if a sharer's, no tlb_gen;
        # union_batch: every sharer's tlb_gen bumped, one round, loaded sharers catch up
        return cycles + ev_flush_sharers(s, e, cpu, iproc, sharers, n_sharers, va, n_pages, shift,
                                         n_pages > e.ceiling, e.strategy == S_UNION_BATCH)
    # broadcast: single-threaded sharers are never loaded (non-lazily) on 4+ CPUs at once, so Linux gives
    # them no global ASID; without one, INVLPGB can only flush every non-global entry
    return cycles + ev_invlpgb_flush_all_nonglobals(s, e, cpu, iproc)


cdef inline int k_initiator(Sim* s, EventCtx* e, int proc) noexcept nogil:
    """The CPU an event by `proc` initiates on: the first CPU running it, else its home CPU."""
    cdef int cpu
    for cpu in range(s.n_cpus):
        if ev_current_proc(s, cpu) == proc:
            return cpu
    return e.home_cpu[proc]


cdef int k_execute(Sim* s, EventCtx* e, object notifiers, int kind, int proc, int region, int64_t first_page,
                   int64_t n_pages, int64_t now, int cpu) except -1:
    """One event, initiated by `proc` on `cpu`: change the PTEs of the page range (clipped to the region) in
    every page table that holds them, flush the way the configuration does, charge the initiator."""
    cdef uint64_t start = e.reg_start[region], end = e.reg_end[region], va, s_va, slot
    cdef int shift = e.reg_shift[region], host = e.reg_host[region], i, mm, n_mms = 0, n_touched
    cdef int op = PT_OP_MIGRATE if kind == EK_MIGRATE else (PT_OP_PROTECT if kind == EK_PROTECT else PT_OP_ZAP)
    cdef int batched = kind == EK_RECLAIM or kind == EK_MIGRATE
    cdef int64_t n_region_pages = <int64_t>((end - start) >> shift)
    cdef int64_t first = min(first_page, n_region_pages - 1)
    cdef int64_t n = max(1, min(n_pages, n_region_pages - first))
    cdef int64_t c_first, c_last, c_count, cycles = 0
    cdef uint64_t c_va
    va = start + (<uint64_t>first << shift)
    memset(e.mapper, 0, s.n_procs)
    for i in range(e.reg_map_off[region], e.reg_map_off[region + 1]):
        e.mapper[e.reg_map[i]] = 1
    if host >= 0:
        host += s.n_procs
        if kind == EK_DETACH:
            cycles += k_range_start(notifiers, proc, proc, start, n_region_pages, shift)
            slot = (<uint64_t>1) << e.slot_shift
            s_va = start // slot * slot
            while s_va < end:
                ev_pt_unlink(s, proc, s_va, e.link_level)
                s_va += slot
            cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, proc, start, n_region_pages, shift, 1, now)
        else:
            cycles += k_range_start(notifiers, proc, host, va, n, shift)
            # like the mmu_gather: the span of the entries actually changed
            c_count = ev_pt_change_span(s, host, va, n, shift, op, &c_first, &c_last)
            if c_count:
                c_va = va + (<uint64_t>c_first << shift)
                if batched:
                    # the batch's per-page notifier calls; the flushes below call none of their own
                    cycles += k_batch_pending(notifiers, proc, host, c_count)
                    e.batching = 1
                if batched and e.strategy == S_FLUSH_ALL:
                    # arch_tlbbatch_add_pending on the host mm fires its notifier once per page
                    cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, host, c_va, c_last - c_first + 1,
                                                   shift, 0, now)
                    for i in range(c_count):
                        cycles += k_flush_tlb_all(s, e, cpu, proc)
                else:
                    cycles += k_shared_flush(s, e, notifiers, cpu, proc, host, region, c_va,
                                             e.ceiling + 1 if batched else c_last - c_first + 1, shift, now)
                e.batching = 0
    else:
        if kind == EK_DETACH:
            cycles += k_range_start(notifiers, proc, proc, start, n_region_pages, shift)
            ev_pt_change_span(s, proc, start, n_region_pages, shift, PT_OP_ZAP, &c_first, &c_last)
            cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, proc, start, n_region_pages, shift, 1, now)
        else:
            # the mms holding the PTEs: every mapper of a shared region (the rmap walk), else the initiator's
            if e.reg_shared[region]:
                for i in range(e.reg_map_off[region], e.reg_map_off[region + 1]):
                    e.mms[n_mms] = e.reg_map[i]
                    n_mms += 1
            else:
                e.mms[0] = proc
                n_mms = 1
            if batched:
                n_touched = 0  # the mms whose PTEs changed, packed to the front of e.mms
                for i in range(n_mms):
                    mm = e.mms[i]
                    cycles += k_range_start(notifiers, proc, mm, va, n, shift)
                    c_count = ev_pt_change_span(s, mm, va, n, shift, op, &c_first, &c_last)
                    if c_count:
                        e.mms[n_touched] = mm
                        n_touched += 1
                        cycles += k_batch_pending(notifiers, proc, mm, c_count)
                if n_touched:
                    cycles += ev_tlbbatch_flush(s, e, cpu, proc, e.mms, n_touched)
            else:
                for i in range(n_mms):
                    mm = e.mms[i]
                    cycles += k_range_start(notifiers, proc, mm, va, n, shift)
                    c_count = ev_pt_change_span(s, mm, va, n, shift, op, &c_first, &c_last)
                    if c_count:
                        cycles += k_flush_tlb_mm_range(s, e, notifiers, cpu, proc, mm,
                                                       va + (<uint64_t>c_first << shift), c_last - c_first + 1,
                                                       shift, 0, now)
    ev_charge(s, cpu, proc, C_SHOOTDOWN_CYCLES_INITIATOR, cycles)
    ev_charge(s, cpu, proc, C_CYCLES, cycles)
    return 0


# -- set-up and teardown (Engine.__init__, Engine.set_kernel, Engine.__dealloc__) ------------------------
cdef void kernel_init(EventCtx* e, Sim* s) except *:
    """The per-event work arrays; unconfigured."""
    e.removed = <int64_t*>_calloc(s.n_procs, sizeof(int64_t))
    e.mapper = <uint8_t*>_calloc(s.n_procs, sizeof(uint8_t))
    e.sharer = <uint8_t*>_calloc(s.n_mms, sizeof(uint8_t))
    e.union_mask = <uint8_t*>_calloc(s.n_cpus, sizeof(uint8_t))
    e.targets = <int*>_calloc(s.n_cpus, sizeof(int))


cdef object kernel_configure(EventCtx* e, Sim* s, int strategy, bint invlpgb, int slot_shift, int link_level,
                             costs, int64_t single_page_flush_ceiling, int64_t trim_interval, regions,
                             home_cpu) except *:
    """Configure the kernel side (arguments checked by Engine.set_kernel); reset the trim times. Returns
    {region name: index}."""
    cdef int i, j, k, n_map = sum(len(r[6]) for r in regions)
    kernel_free_config(e)
    e.strategy = strategy
    e.invlpgb = invlpgb
    e.slot_shift = slot_shift
    e.link_level = link_level
    for i in range(N_KCOSTS):
        e.cost[i] = costs[i]
    e.ceiling = single_page_flush_ceiling
    e.trim_interval = trim_interval
    e.next_trim = <int64_t*>_calloc(s.n_mms, sizeof(int64_t))
    for i in range(s.n_mms):
        e.next_trim[i] = trim_interval
    e.n_regions = len(regions)
    e.reg_start = <uint64_t*>_calloc(e.n_regions, sizeof(uint64_t))
    e.reg_end = <uint64_t*>_calloc(e.n_regions, sizeof(uint64_t))
    e.reg_shift = <int*>_calloc(e.n_regions, sizeof(int))
    e.reg_shared = <int*>_calloc(e.n_regions, sizeof(int))
    e.reg_host = <int*>_calloc(e.n_regions, sizeof(int))
    e.reg_map_off = <int*>_calloc(e.n_regions + 1, sizeof(int))
    e.reg_map = <int*>_calloc(n_map, sizeof(int))
    e.mms = <int*>_calloc(s.n_procs + 1, sizeof(int))
    e.home_cpu = <int*>_calloc(s.n_procs, sizeof(int))
    for i in range(s.n_procs):
        e.home_cpu[i] = home_cpu[i]
    names = {}
    k = 0
    for i, (name, start, end, shift, shared, host, mappers) in enumerate(regions):
        names[name] = i
        e.reg_start[i] = start
        e.reg_end[i] = end
        e.reg_shift[i] = shift
        e.reg_shared[i] = shared
        e.reg_host[i] = host
        e.reg_map_off[i] = k
        for j in mappers:
            e.reg_map[k] = j
            k += 1
    e.reg_map_off[e.n_regions] = k
    e.configured = 1
    return names


cdef void kernel_free_config(EventCtx* e) noexcept:
    cdef size_t ptr
    for ptr in (<size_t>e.next_trim, <size_t>e.reg_start, <size_t>e.reg_end, <size_t>e.reg_shift,
                <size_t>e.reg_shared, <size_t>e.reg_host, <size_t>e.reg_map_off, <size_t>e.reg_map,
                <size_t>e.mms, <size_t>e.home_cpu):
        free(<void*>ptr)
    e.next_trim = NULL
    e.reg_start = e.reg_end = NULL
    e.reg_shift = e.reg_shared = e.reg_host = e.reg_map_off = e.reg_map = e.mms = e.home_cpu = NULL
    e.configured = 0


cdef void kernel_free(EventCtx* e) noexcept:
    cdef size_t ptr
    kernel_free_config(e)
    for ptr in (<size_t>e.removed, <size_t>e.mapper, <size_t>e.sharer, <size_t>e.union_mask, <size_t>e.targets):
        free(<void*>ptr)
