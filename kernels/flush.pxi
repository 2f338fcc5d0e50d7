# Linux 6.18's TLB flush paths (arch/x86/mm/tlb.c) in C: one CPU's flush work (flush_tlb_func, INVLPG,
# INVPCID), IPI rounds (flush_tlb_multi with should_flush_tlb), flush_tlb_mm_range with should_trim_cpumask,
# flush_tlb_all, INVLPGB (by global ASID, by address in every PCID, of every non-global entry),
# arch_tlbbatch_flush, and the sharers' rounds the mshare strategies use. Every
# flush charges what it does (instructions, IPIs, the responders' cycles, entries destroyed of processes
# not mapping the event's region) and returns the initiator's cycles. Mirrors mshare_hw/reference/flush.py.

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
            if not e.mapper[s.mm_of[owner]]:
                ev_charge(s, cpu, owner, C_COLLATERAL_ENTRIES_FLUSHED, e.removed[owner])
            e.removed[owner] = 0


cdef int64_t ev_flush_pages(Sim* s, EventCtx* e, int cpu, uint64_t va, int64_t n_pages, int shift,
                            int full) noexcept nogil:
    """Flush the loaded PCID: INVLPG per page (flush_tlb_one_user), or in full (flush_tlb_local: a CR3 write).
    Under PTI the user accesses' entries live in the user PCID: each page also takes an INVPCID
    single-address flush of it (native_flush_tlb_one_user), and a full flush marks it for a flush at the
    return to user (invalidate_user_asid). The model tags user entries with one PCID per ASID, so either way
    the same entries go. Returns the cycles."""
    cdef CpuTlbState* st = &s.cpu_state[cpu]
    cdef int proc = ev_current_proc(s, cpu)
    cdef int64_t i, cost
    if not full:
        for i in range(n_pages):
            ev_invlpg(s, cpu, va + (<uint64_t>i << shift), e.removed)
        ev_charge(s, cpu, proc, C_INVLPG, n_pages)
        cost = n_pages * e.cost[KC_INVLPG_CYCLES]
        if s.pti:
            ev_charge(s, cpu, proc, C_INVPCID, n_pages)
            cost += n_pages * e.cost[KC_INVPCID_CYCLES]
    else:
        flush_pcid(s, cpu, st.asid + 1, e.removed)
        ev_charge(s, cpu, proc, C_FULL_FLUSHES, 1)
        cost = e.cost[KC_CR3_FLUSH_CYCLES]
        if s.pti:
            cost += pti_user_flush(s, cpu, proc)
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
    if s.mm_global_asid[loaded] and st.asid != s.mm_global_asid[loaded]:
        # a straggler of the mm's move to its global ASID reloads CR3 under it (no flush)
        asid_switch_mm(s, cpu, loaded)
        ev_charge(s, cpu, ev_current_proc(s, cpu), C_CR3_WRITES_NOFLUSH, 1)
        return s.cr3_noflush_cycles
    if is_global_asid(st.asid):  # INVLPGB keeps a global ASID up to date
        return 0
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
    if kind == W_NOTHING:
        return 0
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


cdef int64_t ev_ipi_round(Sim* s, EventCtx* e, int initiator, int iproc, int n_targets, int kind,
                          int own) noexcept nogil:
    """Interrupt e.targets[:n_targets] (the initiator excluded); each does the work `kind`; then the initiator
    does it too if `own`. As in smp_call_function_many_cond (kernel/smp.c), the initiator sends the IPIs, runs
    its own flush while the responders run theirs, then waits for them (csd_lock_wait): it pays a base cost,
    a cost per target, and the longer of its own flush and the slowest responder. Returns the initiator's
    cycles."""
    cdef int i, t, proc
    cdef int64_t cost, wait, slowest = 0, local = 0
    for i in range(n_targets):
        t = e.targets[i]
        cost = e.cost[KC_IPI_RESPONDER_CYCLES] + ev_work(s, e, kind, t)
        wait = cost
        proc = ev_current_proc(s, t)
        if s.pti and proc >= 0:
            # an interrupt from user mode: CR3 switches at entry and exit (none for an idle CPU, already in the
            # kernel); the exit comes after the responder has released the initiator
            cost += pti_crossing(s, t, proc)
            wait = cost - s.cr3_noflush_cycles
        ev_charge(s, t, proc, C_IPIS_RECEIVED, 1)
        ev_charge(s, t, proc, C_SHOOTDOWN_CYCLES_RESPONDER, cost)
        ev_charge(s, t, proc, C_CYCLES, cost)
        if wait > slowest:
            slowest = wait
    if own:
        local = ev_work(s, e, kind, initiator)
    if n_targets == 0:
        return local
    ev_charge(s, initiator, iproc, C_IPIS_SENT, n_targets)
    return (e.cost[KC_IPI_INITIATOR_BASE_CYCLES] + e.cost[KC_IPI_PER_TARGET_CYCLES] * n_targets
            + (local if local > slowest else slowest))


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
    s.mm_tlb_gen[mm] += 1
    ev_set_flush(e, mm, va, n_pages, shift, s.mm_tlb_gen[mm], full)
    remote[0] = 0
    if s.mm_global_asid[mm]:
        return ev_broadcast_tlb_flush(s, e, cpu, iproc, freed)
    return ev_flush_tlb_multi_round(s, e, cpu, iproc, freed, trim, 1, remote)


cdef int64_t ev_flush_tlb_multi_round(Sim* s, EventCtx* e, int cpu, int iproc, int freed, int trim, int local_only,
                                      int* remote) noexcept nogil:
    """flush_tlb_multi over e.mm's cpumask with the round's flush (with `local_only`, flush_tlb_mm_range's
    shortcut: a cpumask of the initiator alone flushes locally if the mm is loaded). Every CPU of the cpumask
    is interrupted when page tables were freed or the mm moves to its global ASID (native_flush_tlb_multi).
    *remote: another CPU was in the cpumask."""
    cdef int t, n = 0, own = 0, mm = e.mm
    cdef uint8_t* mask = &s.mm_cpumask[mm * s.n_cpus]
    cdef int every = freed or s.mm_transition[mm]
    cdef CpuTlbState* st
    remote[0] = 0
    for t in range(s.n_cpus):
        if mask[t] and t != cpu:
            remote[0] = 1
    if local_only and not remote[0]:
        if s.cpu_state[cpu].loaded_mm == mm:
            return ev_work(s, e, W_FLUSH_FUNC, cpu)
        return 0
    for t in range(s.n_cpus):
        st = &s.cpu_state[t]
        if mask[t] and (every or (not st.is_lazy and (st.loaded_mm == mm or trim))):
            if t == cpu:
                own = 1
            else:
                e.targets[n] = t
                n += 1
    return ev_ipi_round(s, e, cpu, iproc, n, W_FLUSH_FUNC, own)


# -- global ASIDs (Linux 6.18 with INVLPGB) -----------------------------------------------------------------
cdef void ev_consider_global_asid(Sim* s, EventCtx* e, int cpu, int iproc, int mm, int64_t now) noexcept nogil:
    """consider_global_asid, after a flush_tlb_multi of mm: with INVLPGB, in one jiffy of 32 for the
    initiating task (`(pid & 0x1f) == (jiffies & 0x1f)`, pid = its process index), an mm active on more than
    3 CPUs (mm_active_cpus_exceeds: in the cpumask with it loaded, not lazy) gets a global ASID."""
    cdef int t, in_mask = 0, active = 0
    cdef CpuTlbState* st
    if not (e.invlpgb and s.pcid_enabled) or mm >= s.n_procs:
        return
    if (iproc & 0x1F) != ((now // e.jiffy_cycles) & 0x1F):
        return
    for t in range(s.n_cpus):
        if s.mm_cpumask[mm * s.n_cpus + t]:
            in_mask += 1
            st = &s.cpu_state[t]
            if st.loaded_mm == mm and not st.is_lazy:
                active += 1
    if in_mask <= GLOBAL_ASID_MIN_CPUS or active <= GLOBAL_ASID_MIN_CPUS or s.mm_global_asid[mm]:
        return
    # use_global_asid: the next free global ASID; CPUs running mm move to it when they next flush or switch
    # to it (the transition)
    s.mm_global_asid[mm] = s.next_global_asid
    s.next_global_asid += 1
    s.mm_transition[mm] = 1
    ev_charge(s, cpu, iproc, C_GLOBAL_ASID_ASSIGNMENTS, 1)


cdef void ev_invlpg_pcid(Sim* s, int cpu, int pcid, uint64_t va, int pwc, int64_t* removed) noexcept nogil:
    """INVLPGB's work on one CPU: va's entries in `pcid` (ANY_PCID: every PCID), and that PCID's PWC entries
    if `pwc` (tables freed; else INVLPGB_FINAL_ONLY spares them)."""
    tlb_invlpg(&s.l1i[cpu], pcid, va, removed)
    tlb_invlpg(&s.l1d[cpu], pcid, va, removed)
    tlb_invlpg(&s.l2d[cpu], pcid, va, removed)
    if s.split_l2:
        tlb_invlpg(&s.l2i[cpu], pcid, va, removed)
    if pwc:
        pwc_flush(s, cpu, pcid, removed)


cdef int64_t ev_broadcast_tlb_flush(Sim* s, EventCtx* e, int cpu, int iproc, int freed) noexcept nogil:
    """broadcast_tlb_flush of the round's flush (e.mm has a global ASID): INVLPGB by that ASID on every CPU, one
    for the whole PCID (more than the ceiling) or one per invlpgb_count_max pages (one per page above 2 MiB
    strides), leaf entries only unless tables were freed; then finish_asid_transition; then TLBSYNC. Returns
    the initiator's cycles."""
    cdef int t, pcid = s.mm_global_asid[e.mm] + 1
    cdef int64_t i, per, n_invlpgb
    if e.full:
        n_invlpgb = 1
        for t in range(s.n_cpus):
            flush_pcid(s, t, pcid, e.removed)
            ev_account_removed(s, e, t)
        ev_charge(s, cpu, iproc, C_FULL_FLUSHES, 1)
    else:
        per = 1
        if e.shift <= 21:
            per = e.n_pages if e.n_pages < e.invlpgb_count_max else e.invlpgb_count_max
        n_invlpgb = (e.n_pages + per - 1) // per
        for t in range(s.n_cpus):
            for i in range(e.n_pages):
                ev_invlpg_pcid(s, t, pcid, e.va + (<uint64_t>i << e.shift), freed, e.removed)
            ev_account_removed(s, e, t)
    ev_charge(s, cpu, iproc, C_INVLPGB, n_invlpgb)
    ev_charge(s, cpu, iproc, C_TLBSYNC, 1)
    return (n_invlpgb * e.cost[KC_INVLPGB_CYCLES] + e.cost[KC_TLBSYNC_CYCLES]
            + ev_finish_asid_transition(s, e, cpu, iproc, freed))


cdef int64_t ev_finish_asid_transition(Sim* s, EventCtx* e, int cpu, int iproc, int freed) noexcept nogil:
    """While e.mm moves to its global ASID: if a CPU running it still uses another ASID, one flush_tlb_multi
    round to the whole cpumask (the stragglers reload under the global ASID); once none does, the transition
    is over."""
    cdef int t, mm = e.mm, remote
    if not s.mm_transition[mm]:
        return 0
    for t in range(s.n_cpus):
        if (s.mm_cpumask[mm * s.n_cpus + t] and s.cpu_state[t].loaded_mm == mm
                and s.cpu_state[t].asid != s.mm_global_asid[mm]):
            return ev_flush_tlb_multi_round(s, e, cpu, iproc, freed, 0, 0, &remote)
    s.mm_transition[mm] = 0
    return 0


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


cdef int64_t ev_invlpgb_flush_addr(Sim* s, EventCtx* e, int cpu, int iproc, uint64_t va, int64_t n_pages,
                                   int shift) noexcept nogil:
    """broadcast_va: INVLPGB by virtual address with no PCID or ASID given, so in every PCID on every CPU (AMD
    APM vol. 3, INVLPGB; Linux's invlpgb_flush_addr_nosync), leaf entries only (INVLPGB_FINAL_ONLY: no page
    table was freed), one per invlpgb_count_max pages (one per page above 2 MiB strides, which the
    instruction's PMD stride bit cannot express), then TLBSYNC; as broadcast_tlb_flush counts its INVLPGBs.
    More pages than the ceiling become, as in flush_tlb_kernel_range, a flush of every non-global entry.
    Returns the initiator's cycles."""
    cdef int t
    cdef int64_t i, per = 1, n_invlpgb
    if n_pages > e.ceiling:
        return ev_invlpgb_flush_all_nonglobals(s, e, cpu, iproc)
    if shift <= 21:
        per = n_pages if n_pages < e.invlpgb_count_max else e.invlpgb_count_max
    n_invlpgb = (n_pages + per - 1) // per
    for t in range(s.n_cpus):
        for i in range(n_pages):
            ev_invlpg_pcid(s, t, ANY_PCID, va + (<uint64_t>i << shift), 0, e.removed)
        ev_account_removed(s, e, t)
    ev_charge(s, cpu, iproc, C_INVLPGB, n_invlpgb)
    ev_charge(s, cpu, iproc, C_TLBSYNC, 1)
    return n_invlpgb * e.cost[KC_INVLPGB_CYCLES] + e.cost[KC_TLBSYNC_CYCLES]


cdef int64_t ev_flush_tlb_all(Sim* s, EventCtx* e, int cpu, int iproc) noexcept nogil:
    """flush_tlb_all: IPI every other online CPU; each, and the initiator, flushes every PCID (INVPCID 2)."""
    cdef int t, n = 0
    for t in range(s.n_cpus):
        if t != cpu:
            e.targets[n] = t
            n += 1
    return ev_ipi_round(s, e, cpu, iproc, n, W_EVERYTHING, 1)


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
    return ev_ipi_round(s, e, cpu, iproc, n, W_FLUSH_FUNC, own)


cdef int64_t ev_flush_sharers(Sim* s, EventCtx* e, int cpu, int iproc, const int* sharers, int n_sharers,
                              uint64_t va, int64_t n_pages, int shift, int full, int catch_up) noexcept nogil:
    """One IPI round to the OR of the sharers' cpumasks (lazy CPUs skipped; the initiator flushes itself if in
    it and not lazy). catch_up 0 (host_cpumask): each flushes its loaded PCID if a sharer's, without touching
    any tlb_gen. catch_up 1 (union_batch): first bump every sharer's tlb_gen; each CPU with a sharer loaded
    catches up (flush_tlb_func: INVLPG per page if one step behind, else full). Returns the initiator's
    cycles."""
    cdef int i, n, own, kind = W_CATCH_UP if catch_up else W_LOADED_PCID
    cdef int64_t cycles = 0
    for i in range(n_sharers):
        if catch_up:
            s.mm_tlb_gen[sharers[i]] += 1
            if s.mm_global_asid[sharers[i]]:  # kept up to date by INVLPGB, not by the round
                ev_set_flush(e, sharers[i], va, n_pages, shift, s.mm_tlb_gen[sharers[i]], full)
                cycles += ev_broadcast_tlb_flush(s, e, cpu, iproc, 0)
                continue
        ev_union_add(s, e, sharers[i])
        e.sharer[sharers[i]] = 1
    ev_set_flush(e, -1, va, n_pages, shift, 0, full)
    n = ev_union_targets(s, e, cpu)
    own = e.union_mask[cpu]
    ev_union_clear(s, e)
    cycles += ev_ipi_round(s, e, cpu, iproc, n, kind, own and not s.cpu_state[cpu].is_lazy)
    for i in range(n_sharers):
        e.sharer[sharers[i]] = 0
    return cycles
