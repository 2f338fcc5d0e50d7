"""Linux 6.18's TLB flush paths (arch/x86/mm/tlb.c) in plain Python: one CPU's flush work (flush_tlb_func,
INVLPG, INVPCID), IPI rounds (flush_tlb_multi with should_flush_tlb), flush_tlb_mm_range's flush after
the trim decision, flush_tlb_all, INVLPGB (by global ASID, by address in every PCID, of every non-global
entry), arch_tlbbatch_flush, and the sharers' rounds the mshare strategies use. Mirrors kernels/flush.pxi.

Every flush charges what it does (instructions, IPIs, the responders' cycles, entries destroyed of
processes not mapping the event's region) and returns the initiator's cycles. A mixin of KernelSide
(kernel.py), whose configuration (costs, strategy, trim state) it reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mshare_hw.reference.asid import is_global_asid, switch_mm
from mshare_hw.reference.tlb import ANY_PCID

FLUSH_ANY_MM = -2  # a kernel/batch flush: flush_tlb_func with no mm (whatever is loaded catches up)
GLOBAL_ASID_MIN_CPUS = 3  # consider_global_asid: mm_active_cpus_exceeds(mm, 3), i.e. 4 or more CPUs


@dataclass(frozen=True)
class Flush:
    """What flush_tlb_func is asked: `mm` FLUSH_ANY_MM is a kernel/batch flush; new_gen 0: no gen given."""

    mm: int
    va: int
    n_pages: int
    shift: int
    new_gen: int
    full: bool


class FlushPaths:
    def _account_removed(self, cpu: int) -> None:
        """Entries a flush on `cpu` destroyed that belonged to processes not mapping the event's region."""
        for owner, n in enumerate(self._removed):
            if n:
                if self.mm_of[owner] not in self._mappers:
                    self.charge(cpu, owner, "collateral_entries_flushed", n)
                self._removed[owner] = 0

    # -- one CPU's work ------------------------------------------------------------------------------
    def _flush_pages(self, cpu: int, va: int, n_pages: int, shift: int, full: bool) -> int:
        """Flush the loaded PCID: INVLPG per page (flush_tlb_one_user), or in full (flush_tlb_local: a CR3
        write). Under PTI the user accesses' entries live in the user PCID: each page also takes an INVPCID
        single-address flush of it (native_flush_tlb_one_user), and a full flush marks it for a flush at the
        return to user (invalidate_user_asid). The model tags user entries with one PCID per ASID, so either
        way the same entries go. Returns the cycles."""
        proc = self.current_proc(cpu)
        if not full:
            for i in range(n_pages):
                self.invlpg(cpu, va + (i << shift), self._removed)
            self.charge(cpu, proc, "invlpg", n_pages)
            cost = n_pages * self._kcost["invlpg_cycles"]
            if self.p.pti:
                self.charge(cpu, proc, "invpcid", n_pages)
                cost += n_pages * self._kcost["invpcid_cycles"]
        else:
            self.flush_pcid(cpu, self.cpu_pcid(cpu), self._removed)
            self.charge(cpu, proc, "full_flushes", 1)
            cost = self._kcost["cr3_flush_cycles"]
            if self.p.pti:
                cost += self.pti_user_flush(cpu, proc)
        self._account_removed(cpu)
        return cost

    def _flush_tlb_func(self, cpu: int, f: Flush) -> int:
        """flush_tlb_func on `cpu`: leave the cpumask of an mm not loaded; a lazy CPU switches to init_mm;
        else catch the loaded PCID up to its mm's tlb_gen (INVLPG per page only when this flush is the one
        step behind, else a full flush). Returns its cycles (flush instructions only)."""
        loaded = self.loaded_mm(cpu)
        if f.mm != FLUSH_ANY_MM and f.mm != loaded:
            self.mms[f.mm].cpumask.discard(cpu)
            return 0
        if loaded < 0:
            return 0
        if self.is_lazy(cpu):
            flushed = self.switch_to_init(cpu)
            self.charge(cpu, -1, "cr3_flushes" if flushed else "cr3_writes_noflush", 1)
            return self._kcost["cr3_flush_cycles"]
        st = self.cpu_state[cpu]
        if self.mms[loaded].global_asid and st.asid != self.mms[loaded].global_asid:
            # a straggler of the mm's move to its global ASID reloads CR3 under it (no flush)
            switch_mm(st, cpu, loaded, self.mms[loaded], self.p.pcid)
            self.charge(cpu, self.current_proc(cpu), "cr3_writes_noflush", 1)
            return self.p.cr3_noflush_cycles
        if is_global_asid(st.asid):  # INVLPGB keeps a global ASID up to date
            return 0
        local = self.local_gen(cpu)
        mm_gen = self.mm_gen(loaded)
        if f.new_gen and f.new_gen <= local:
            return 0
        if local == mm_gen:
            return 0
        one_step = f.new_gen == local + 1 and f.new_gen == mm_gen
        cost = self._flush_pages(cpu, f.va, f.n_pages, f.shift, f.full or not one_step)
        st.ctx_gens[st.asid] = mm_gen
        return cost

    def _everything(self, cpu: int) -> int:
        """flush_tlb_all's work on one CPU: INVPCID type 2."""
        self.flush_all_pcids(cpu, self._removed)
        proc = self.current_proc(cpu)
        self.charge(cpu, proc, "invpcid", 1)
        self.charge(cpu, proc, "full_flushes", 1)
        self._account_removed(cpu)
        return self._kcost["invpcid_cycles"]

    def _loaded_pcid_only(self, cpu: int, sharers: frozenset[int], f: Flush) -> int:
        """host_cpumask: flush the loaded PCID if it belongs to a sharer, without touching any tlb_gen."""
        if self.loaded_mm(cpu) not in sharers:
            return 0
        return self._flush_pages(cpu, f.va, f.n_pages, f.shift, f.full)

    def _catch_up(self, cpu: int, sharers: frozenset[int], f: Flush) -> int:
        """union_batch: a sharer's loaded PCID catches up to its tlb_gen (which the round bumped once)."""
        loaded = self.loaded_mm(cpu)
        if loaded not in sharers:
            return 0
        local, mm_gen = self.local_gen(cpu), self.mm_gen(loaded)
        if local == mm_gen:
            return 0
        return self._flush_tlb_func(cpu, Flush(loaded, f.va, f.n_pages, f.shift, mm_gen, f.full or local + 1 != mm_gen))

    def _ipi_round(self, initiator: int, iproc: int, targets: list[int], work, local=None) -> int:
        """Interrupt `targets` (the initiator excluded), each runs `work(cpu)`; then `local()` (the initiator's
        own flush, if any) runs. As in smp_call_function_many_cond (kernel/smp.c), the initiator sends the
        IPIs, runs its own flush while the responders run theirs, then waits for them (csd_lock_wait): it
        pays a base cost, a cost per target, and the longer of its own flush and the slowest responder.
        Returns the initiator's cycles."""
        slowest = 0
        for cpu in targets:
            cost = wait = self._kcost["ipi_responder_cycles"] + work(cpu)
            proc = self.current_proc(cpu)
            if self.p.pti and proc >= 0:
                # an interrupt from user mode: CR3 switches at entry and exit (none for an idle CPU, already
                # in the kernel); the exit comes after the responder has released the initiator
                cost += self.pti_crossing(cpu, proc)
                wait = cost - self.p.cr3_noflush_cycles
            self.charge(cpu, proc, "ipis_received", 1)
            self.charge(cpu, proc, "shootdown_cycles_responder", cost)
            self.charge(cpu, proc, "cycles", cost)
            slowest = max(slowest, wait)
        own = local() if local is not None else 0
        if not targets:
            return own
        self.charge(initiator, iproc, "ipis_sent", len(targets))
        kc = self._kcost
        return kc["ipi_initiator_base_cycles"] + kc["ipi_per_target_cycles"] * len(targets) + max(own, slowest)

    # -- Linux's flush paths ------------------------------------------------------------------------
    def _flush_tlb_multi(
        self, cpu: int, iproc: int, mm: int, va: int, n_pages: int, shift: int, freed: bool, trim: bool
    ) -> tuple[int, bool]:
        """flush_tlb_mm_range after the trim decision: bump mm's tlb_gen; if another CPU is in mm's cpumask,
        flush_tlb_multi (should_flush_tlb: every CPU of the cpumask when page tables were freed, else those
        not lazy that have mm loaded, or all of those not lazy when trimming), the initiator included if
        chosen; else flush locally if mm is loaded. Returns (the initiator's cycles, whether another CPU
        was in the cpumask)."""
        f = Flush(mm, va, n_pages, shift, self.bump_tlb_gen(mm), n_pages > self._ceiling)
        if self.mms[mm].global_asid:
            return self._broadcast_tlb_flush(cpu, iproc, f, freed), False
        return self._flush_tlb_multi_round(cpu, iproc, f, freed, trim, local_only=True)

    def _flush_tlb_multi_round(
        self, cpu: int, iproc: int, f: Flush, freed: bool, trim: bool, local_only: bool
    ) -> tuple[int, bool]:
        """flush_tlb_multi over f.mm's cpumask (with `local_only`, flush_tlb_mm_range's shortcut: a cpumask of
        the initiator alone flushes locally if the mm is loaded). Every CPU of the cpumask is interrupted when
        page tables were freed or the mm moves to its global ASID (native_flush_tlb_multi)."""
        mm = f.mm
        mask = self.cpumask(mm)
        if local_only and not any(t != cpu for t in mask):
            return (self._flush_tlb_func(cpu, f) if self.loaded_mm(cpu) == mm else 0), False
        every = freed or self.mms[mm].transition
        chosen = [t for t in mask if every or (not self.is_lazy(t) and (self.loaded_mm(t) == mm or trim))]
        local = (lambda: self._flush_tlb_func(cpu, f)) if cpu in chosen else None
        targets = [t for t in chosen if t != cpu]
        return self._ipi_round(cpu, iproc, targets, lambda t: self._flush_tlb_func(t, f), local), True

    def _flush_tlb_all(self, cpu: int, iproc: int) -> int:
        """flush_tlb_all: IPI every other online CPU; each, and the initiator, flushes every PCID (INVPCID
        type 2). With INVLPGB one invlpgb_flush_all() + TLBSYNC instead (no global entries are modelled)."""
        if self._invlpgb:
            return self._invlpgb_flush_all_nonglobals(cpu, iproc)
        targets = [t for t in range(self.p.n_cpus) if t != cpu]
        return self._ipi_round(cpu, iproc, targets, self._everything, lambda: self._everything(cpu))

    # -- global ASIDs (Linux 6.18 with INVLPGB) ------------------------------------------------------
    def _consider_global_asid(self, cpu: int, iproc: int, mm: int, now: int) -> None:
        """consider_global_asid, after a flush_tlb_multi of mm: with INVLPGB, in one jiffy of 32 for the
        initiating task (`(pid & 0x1f) == (jiffies & 0x1f)`, pid = its process index), an mm active on more
        than 3 CPUs (mm_active_cpus_exceeds: in the cpumask with it loaded, not lazy) gets a global ASID."""
        if not (self._invlpgb and self.p.pcid) or mm >= len(self._removed):
            return
        if (iproc & 0x1F) != ((now // self._jiffy_cycles) & 0x1F):
            return
        mask = self.cpumask(mm)
        if len(mask) <= GLOBAL_ASID_MIN_CPUS:
            return
        active = sum(1 for t in mask if self.loaded_mm(t) == mm and not self.is_lazy(t))
        if active > GLOBAL_ASID_MIN_CPUS and not self.mms[mm].global_asid:
            # use_global_asid: the next free global ASID; CPUs running mm move to it when they next flush or
            # switch to it (the transition)
            self.mms[mm].global_asid = self._next_global_asid
            self._next_global_asid += 1
            self.mms[mm].transition = True
            self.charge(cpu, iproc, "global_asid_assignments", 1)

    def _broadcast_tlb_flush(self, cpu: int, iproc: int, f: Flush, freed: bool) -> int:
        """broadcast_tlb_flush: INVLPGB by f.mm's global ASID on every CPU, one for the whole PCID (more than
        the ceiling) or one per invlpgb_count_max pages (one per page above 2 MiB strides), leaf entries only
        unless tables were freed; then finish_asid_transition; then TLBSYNC. Returns the initiator's cycles."""
        pcid = self.mms[f.mm].global_asid + 1
        if f.full:
            n_invlpgb = 1
            for t in range(self.p.n_cpus):
                self.flush_pcid(t, pcid, self._removed)
                self._account_removed(t)
            self.charge(cpu, iproc, "full_flushes", 1)
        else:
            per = min(f.n_pages, self._invlpgb_count_max) if f.shift <= 21 else 1
            n_invlpgb = -(-f.n_pages // per)
            for t in range(self.p.n_cpus):
                for i in range(f.n_pages):
                    self.invlpg_pcid(t, pcid, f.va + (i << f.shift), freed, self._removed)
                self._account_removed(t)
        self.charge(cpu, iproc, "invlpgb", n_invlpgb)
        self.charge(cpu, iproc, "tlbsync", 1)
        cycles = n_invlpgb * self._kcost["invlpgb_cycles"] + self._kcost["tlbsync_cycles"]
        return cycles + self._finish_asid_transition(cpu, iproc, f, freed)

    def _finish_asid_transition(self, cpu: int, iproc: int, f: Flush, freed: bool) -> int:
        """While f.mm moves to its global ASID: if a CPU running it still uses another ASID, one
        flush_tlb_multi round to the whole cpumask (the stragglers reload under the global ASID); once none
        does, the transition is over."""
        mm = self.mms[f.mm]
        if not mm.transition:
            return 0
        for t in sorted(mm.cpumask):
            if self.loaded_mm(t) == f.mm and self.cpu_state[t].asid != mm.global_asid:
                return self._flush_tlb_multi_round(cpu, iproc, f, freed, False, local_only=False)[0]
        mm.transition = False
        return 0

    def _invlpgb_flush_all_nonglobals(self, cpu: int, iproc: int) -> int:
        """AMD broadcast: one INVLPGB removes every non-global entry on every CPU, then TLBSYNC."""
        for t in range(self.p.n_cpus):
            self.flush_all_pcids(t, self._removed)
            self._account_removed(t)
        self.charge(cpu, iproc, "invlpgb", 1)
        self.charge(cpu, iproc, "tlbsync", 1)
        self.charge(cpu, iproc, "full_flushes", 1)
        return self._kcost["invlpgb_cycles"] + self._kcost["tlbsync_cycles"]

    def _invlpgb_flush_addr(self, cpu: int, iproc: int, va: int, n_pages: int, shift: int) -> int:
        """broadcast_va: INVLPGB by virtual address with no PCID or ASID given, so in every PCID on every CPU
        (AMD APM vol. 3, INVLPGB; Linux's invlpgb_flush_addr_nosync), leaf entries only (INVLPGB_FINAL_ONLY:
        no page table was freed), one per invlpgb_count_max pages (one per page above 2 MiB strides, which
        the instruction's PMD stride bit cannot express), then TLBSYNC; as broadcast_tlb_flush counts its
        INVLPGBs. More pages than the ceiling become, as in flush_tlb_kernel_range, a flush of every
        non-global entry. Returns the initiator's cycles."""
        if n_pages > self._ceiling:
            return self._invlpgb_flush_all_nonglobals(cpu, iproc)
        per = min(n_pages, self._invlpgb_count_max) if shift <= 21 else 1
        n_invlpgb = -(-n_pages // per)
        for t in range(self.p.n_cpus):
            for i in range(n_pages):
                self.invlpg_pcid(t, ANY_PCID, va + (i << shift), False, self._removed)
            self._account_removed(t)
        self.charge(cpu, iproc, "invlpgb", n_invlpgb)
        self.charge(cpu, iproc, "tlbsync", 1)
        return n_invlpgb * self._kcost["invlpgb_cycles"] + self._kcost["tlbsync_cycles"]

    def _tlbbatch_flush(self, cpu: int, iproc: int, mms: Iterable[int]) -> int:
        """arch_tlbbatch_add_pending for each of `mms` (bump its tlb_gen, OR its cpumask into the batch), then
        arch_tlbbatch_flush: with INVLPGB one flush of every non-global entry, else one IPI round to the
        batch's CPUs (lazy ones skipped), where each CPU, and the initiator if in the batch, fully flushes its
        loaded mm if that moved on. Returns the initiator's cycles."""
        union: set[int] = set()
        for mm in mms:
            self.bump_tlb_gen(mm)
            union.update(self.cpumask(mm))
        if self._invlpgb:
            return self._invlpgb_flush_all_nonglobals(cpu, iproc)
        f = Flush(FLUSH_ANY_MM, 0, 0, 12, 0, True)
        targets = [t for t in sorted(union) if t != cpu and not self.is_lazy(t)]
        local = (lambda: self._flush_tlb_func(cpu, f)) if cpu in union else None
        return self._ipi_round(cpu, iproc, targets, lambda t: self._flush_tlb_func(t, f), local)

    # -- the sharers' rounds of the mshare strategies ------------------------------------------------
    def _flush_sharers(
        self, cpu: int, iproc: int, sharers: tuple[int, ...], va: int, n_pages: int, shift: int, catch_up: bool
    ) -> int:
        """One IPI round to the OR of the sharers' cpumasks (lazy CPUs skipped; the initiator flushes itself if
        in it and not lazy). catch_up False (host_cpumask): each flushes its loaded PCID if a sharer's, without
        touching any tlb_gen. catch_up True (union_batch): first bump every sharer's tlb_gen; each CPU with a
        sharer loaded catches up (flush_tlb_func: INVLPG per page if one step behind, else full)."""
        union: set[int] = set()
        cycles = 0
        members = set()
        for mm in sharers:
            if catch_up:
                gen = self.bump_tlb_gen(mm)
                if self.mms[mm].global_asid:  # kept up to date by INVLPGB, not by the round
                    f = Flush(mm, va, n_pages, shift, gen, n_pages > self._ceiling)
                    cycles += self._broadcast_tlb_flush(cpu, iproc, f, False)
                    continue
            members.add(mm)
            union.update(self.cpumask(mm))
        f = Flush(-1, va, n_pages, shift, 0, n_pages > self._ceiling)
        step = self._catch_up if catch_up else self._loaded_pcid_only
        targets = [t for t in sorted(union) if t != cpu and not self.is_lazy(t)]
        frozen = frozenset(members)
        local = (lambda: step(cpu, frozen, f)) if cpu in union and not self.is_lazy(cpu) else None
        return cycles + self._ipi_round(cpu, iproc, targets, lambda t: step(t, frozen, f), local)
