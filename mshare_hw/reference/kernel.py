"""The kernel side of invalidation events in plain Python: an event's PTE changes, Linux 6.18's flush paths
(arch/x86/mm/tlb.c: flush_tlb_mm_range with should_trim_cpumask, flush_tlb_multi/should_flush_tlb,
flush_tlb_func, flush_tlb_all, arch_tlbbatch_*, INVLPGB), the mshare flush strategies, and mm/hugetlb.c's
unshare paths for hugetlb PMD sharing (pt_config hugetlb_pmd_share).

Mirrors kernels/kernel.pxi step for step; Linux's flush paths are in flush.py (flush.pxi).
mshare_hw.engine.shootdown configures it (set_kernel) and hands it each event (execute_event). A mixin of
ReferenceMachine, whose small primitives (loaded_mm, invlpg, flush_pcid, switch_to_init, charge, ...) it
builds on.
"""

from __future__ import annotations

from mshare_hw.engine.layout import RegionSpan
from mshare_hw.names import DETACH_FLUSHES, KERNEL_COSTS, STRATEGIES
from mshare_hw.reference.asid import N_DYN_ASIDS
from mshare_hw.reference.flush import FlushPaths
from mshare_hw.reference.pagetables import encode

KIND_OP = {"zap": 0, "protect": 1, "migrate": 2, "reclaim": 0, "detach": 0}  # pt_change_range's op
OP_ZAP = 0
BATCHED = ("reclaim", "migrate")  # try_to_unmap/try_to_migrate with TTU_BATCH_FLUSH
HPAGE_SHIFT = 21  # hugetlb regions (pt_config hugetlb_pmd_share): shared regions of 2 MiB pages
PUD_SIZE = 1 << 30  # the span of one PUD entry: what one shared PMD table maps


class KernelSide(FlushPaths):
    def init_kernel_side(self, n_procs: int) -> None:
        self._configured = False
        self._removed = [0] * n_procs  # per owner: entries the current flush destroyed
        self._mappers: frozenset[int] = frozenset()  # processes mapping the event's region
        self._next_global_asid = N_DYN_ASIDS  # allocate_global_asid: from TLB_NR_DYN_ASIDS upwards

    def set_kernel(
        self,
        *,
        strategy: str,
        invlpgb: bool,
        slot_shift: int,
        link_level: int,
        costs,
        single_page_flush_ceiling: int,
        trim_interval: int,
        regions,
        home_cpu,
        notifiers,
        invlpgb_count_max: int,
        jiffy_cycles: int,
        detach_flush: str = "range",
    ) -> None:
        """Configure the kernel side (mshare_hw.engine.shootdown.Kernel does): the flush strategy, whether the
        kernel uses INVLPGB, the mshare link entries' span and level, the kernel costs in KERNEL_COSTS
        order, Linux's constants, the regions events name ((name, start, end, shift, shared, host,
        mappers) each), each process's home CPU and the secondary MMUs' mmu notifiers (or None), the pages
        one INVLPGB may cover, the cycles of a jiffy (the global-ASID check) and how an mshare detach
        flushes (DETACH_FLUSHES). Resets the trim times."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}")
        if detach_flush not in DETACH_FLUSHES:
            raise ValueError(f"unknown detach_flush {detach_flush!r}")
        if len(costs) != len(KERNEL_COSTS):
            raise ValueError(f"expected {len(KERNEL_COSTS)} kernel costs, got {len(costs)}")
        if len(home_cpu) != len(self._removed) or any(not 0 <= c < self.p.n_cpus for c in home_cpu):
            raise ValueError("home_cpu: one CPU in range per process expected")
        spans = {}
        for name, start, end, shift, shared, host, mappers in regions:
            if not (host == -1 or 0 <= host < len(self.mms) - len(self._removed)):
                raise ValueError(f"region {name!r}: host {host} out of range")
            if any(not 0 <= p < len(self._removed) for p in mappers):
                raise ValueError(f"region {name!r}: a mapper is out of range")
            spans[name] = RegionSpan(start, end, shift, bool(shared), host, tuple(mappers))
        self._strategy = strategy
        self._detach_flush = detach_flush
        self._invlpgb = bool(invlpgb)
        self._slot_shift = slot_shift
        self._link_level = link_level
        self._kcost = {k: int(c) for k, c in zip(KERNEL_COSTS, costs)}
        self._ceiling = single_page_flush_ceiling
        self._trim_interval = trim_interval
        self._next_trim = [trim_interval] * len(self.mms)
        self._spans = spans
        self._home_cpu = tuple(home_cpu)
        self._notifiers = notifiers
        if invlpgb_count_max < 1 or jiffy_cycles < 1:
            raise ValueError("invlpgb_count_max and jiffy_cycles must be positive")
        self._invlpgb_count_max = int(invlpgb_count_max)
        self._jiffy_cycles = int(jiffy_cycles)
        self._configured = True

    def _check_configured(self) -> None:
        if not self._configured:
            raise RuntimeError("the kernel side is not configured (set_kernel)")

    def initiator_cpu(self, proc: int) -> int:
        """The CPU an event by `proc` initiates on: the first CPU running it, else its home CPU."""
        self._check_configured()
        if not 0 <= proc < len(self._removed):
            raise IndexError(f"process {proc} out of range")
        for cpu in range(self.p.n_cpus):
            if self.current_proc(cpu) == proc:
                return cpu
        return self._home_cpu[proc]

    def flush_tlb_mm_range(
        self, cpu: int, iproc: int, mm: int, va: int, n_pages: int, shift: int, freed: bool, now: int
    ) -> int:
        """flush_tlb_mm_range(mm) from `cpu` for process iproc at time `now`: should_trim_cpumask() is asked
        only when another CPU is in mm's cpumask, and says yes at most once per trim interval per mm. Ends
        with mm's secondary-TLB notifier, as Linux does (not from a batch's own flush: the batch called it
        per page in arch_tlbbatch_add_pending, and never calls this). Returns the initiator's cycles (not
        charged)."""
        self._check_configured()
        trim = now >= self._next_trim[mm]
        cycles, remote = self._flush_tlb_multi(cpu, iproc, mm, va, n_pages, shift, freed, trim)
        if remote and trim:
            self._next_trim[mm] = now + self._trim_interval
        if remote:
            self._consider_global_asid(cpu, iproc, mm, now)
        if self._notifiers is not None:
            cycles += self._notifiers.arch_invalidate_secondary_tlbs(iproc, mm, va, n_pages, shift)
        return cycles

    def should_defer(self, cpu: int, mm: int) -> bool:
        """arch_tlbbatch_should_defer(mm) on `cpu`: a batched unmap defers mm's flush only when another CPU is
        in mm's cpumask."""
        return any(t != cpu for t in self.cpumask(mm))

    # -- the shared configuration's strategies -------------------------------------------------------
    def _shared_flush(
        self, cpu: int, iproc: int, host: int, sharers: tuple[int, ...], va: int, n_pages: int, shift: int, now: int
    ) -> int:
        """The strategy's flushes after a change in a shared (mshare) page table."""
        s = self._strategy
        # the series' first step is always the ordinary flush of the host mm; its cpumask is empty
        cycles = self.flush_tlb_mm_range(cpu, iproc, host, va, n_pages, shift, False, now)
        if s == "host_mm_only":
            return cycles
        if s == "flush_all":
            return cycles + self._flush_tlb_all(cpu, iproc)
        if s == "per_sharer":
            for mm in sharers:
                cycles += self.flush_tlb_mm_range(cpu, iproc, mm, va, n_pages, shift, False, now)
            return cycles
        if s in ("host_cpumask", "union_batch"):
            # host_cpumask: the CPUs that ran a sharer flush their loaded PCID if a sharer's, no tlb_gen;
            # union_batch: every sharer's tlb_gen bumped, one round, loaded sharers catch up
            return cycles + self._flush_sharers(cpu, iproc, sharers, va, n_pages, shift, s == "union_batch")
        if s == "broadcast_va":
            # every sharer maps the region at the same virtual addresses: INVLPGB by address in every PCID
            return cycles + self._invlpgb_flush_addr(cpu, iproc, va, n_pages, shift)
        # broadcast: single-threaded sharers are never loaded (non-lazily) on 4+ CPUs at once, so Linux gives
        # them no global ASID; without one, INVLPGB can only flush every non-global entry
        return cycles + self._invlpgb_flush_all_nonglobals(cpu, iproc)

    # -- hugetlb regions (pt_config hugetlb_pmd_share) -------------------------------------------------
    def _huge_pmd_unshare(self, cpu: int, iproc: int, mm: int, va: int) -> int:
        """huge_pmd_unshare (mm/hugetlb.c, 6.18) for va in mm: if mm's PUD entry links to a shareable span's PMD
        table that another mm also uses, clear it (pud_clear) and drop mm's use of the table, then
        tlb_remove_table_sync_one(): an IPI to every other online CPU, waited for, with nothing to flush.
        Returns the initiator's cycles, or -1 if the table was not shared (the caller changes its PTEs)."""
        span = self.pmd_span(mm, va)
        if span < 0 or self.pmd_users[span] < 2:
            return -1
        loc = self.pt.locate(self.roots[mm], va, 3)
        if loc < 0 or self.pt.entries[loc] != encode(self.pmd_table[span], False):
            return -1
        self.pt.set_entry(loc, 0)
        self.pmd_users[span] -= 1
        self.charge(cpu, iproc, "pmd_unshares", 1)
        return self._ipi_round(cpu, iproc, [t for t in range(self.p.n_cpus) if t != cpu], lambda t: 0)

    def _hugetlb_change(self, cpu: int, iproc: int, mm: int, va: int, n_pages: int, op: int) -> tuple[int, int, int]:
        """The PTE changes of one hugetlb path in mm (__unmap_hugepage_range, hugetlb_change_protection, or
        try_to_unmap_one/try_to_migrate_one for one folio) over n_pages 2 MiB pages from va: a page whose PMD
        table mm shares with another mm unshares that table and skips to the next PUD span (the flush must then
        cover the whole span: tlb_flush_pmd_range(tlb, address & PUD_MASK, PUD_SIZE)); any other present PTE
        changes (op). Returns (the initiator's cycles, start and end of the range to flush; -1, -1: none)."""
        lo = hi = -1
        cycles = 0
        i = 0
        while i < n_pages:
            page = va + (i << HPAGE_SHIFT)
            c = self._huge_pmd_unshare(cpu, iproc, mm, page)
            if c >= 0:
                cycles += c
                g = page & ~(PUD_SIZE - 1)
                lo, hi = (g if lo < 0 else min(lo, g)), max(hi, g + PUD_SIZE)
                i = (g + PUD_SIZE - va) >> HPAGE_SHIFT
                continue
            if self.pt_change(mm, page, 1, HPAGE_SHIFT, op):
                lo, hi = (page if lo < 0 else min(lo, page)), max(hi, page + (1 << HPAGE_SHIFT))
            i += 1
        return cycles, lo, hi

    def _hugetlb_event(
        self, kind: str, cpu: int, proc: int, mm: int, span: RegionSpan, va: int, n: int, now: int
    ) -> int:
        """An event on a hugetlb region (a MAP_SHARED hugetlbfs mapping of every mapper): `zap` is a hole punch
        (hugetlb_vmdelete_list: __unmap_hugepage_range in each mapper's vma, one flush per mm), `protect` a
        protection change in each mapper (hugetlb_change_protection), `migrate` and `reclaim` the rmap walks
        of try_to_migrate_one / try_to_unmap_one, one folio at a time and never batched (huge_ptep_clear_flush,
        or flush_tlb_range of the PUD span after an unshare), `detach` the initiator's munmap (its vma's
        __unmap_hugepage_range, then free_pgtables: a flush of the whole region with freed tables). Every path
        unshares (huge_pmd_unshare) where mm's PMD table is still used by another mm, rather than change the
        shared PTEs. Returns the initiator's cycles."""
        shift = HPAGE_SHIFT
        op = KIND_OP[kind]
        cycles = 0
        if kind == "detach":
            n_region = (span.end - span.start) >> shift
            cycles += self._range_start(proc, mm, span.start, n_region, shift)
            cycles += self._hugetlb_change(cpu, proc, mm, span.start, n_region, OP_ZAP)[0]
            return cycles + self.flush_tlb_mm_range(cpu, proc, mm, span.start, n_region, shift, True, now)
        if kind in BATCHED:
            for i in range(n):
                p_va = va + (i << shift)
                for m in span.mappers:
                    cycles += self._range_start(proc, m, p_va, 1, shift)
                    c, lo, hi = self._hugetlb_change(cpu, proc, m, p_va, 1, op)
                    cycles += c
                    if lo >= 0:
                        cycles += self.flush_tlb_mm_range(cpu, proc, m, lo, (hi - lo) >> shift, shift, False, now)
            return cycles
        for m in span.mappers:
            cycles += self._range_start(proc, m, va, n, shift)
            c, lo, hi = self._hugetlb_change(cpu, proc, m, va, n, op)
            cycles += c
            if lo >= 0:
                cycles += self.flush_tlb_mm_range(cpu, proc, m, lo, (hi - lo) >> shift, shift, False, now)
        return cycles

    # -- one event -----------------------------------------------------------------------------------
    def _range_start(self, iproc: int, mm: int, va: int, n_pages: int, shift: int) -> int:
        """mmu_notifier_invalidate_range_start(mm, ...) before PTEs change (its _end adds no work here)."""
        if self._notifiers is None:
            return 0
        return self._notifiers.invalidate_range_start(iproc, mm, va, n_pages, shift)

    def _batch_pending(self, iproc: int, mm: int, pages: int) -> int:
        """arch_tlbbatch_add_pending, once per unmapped page: the notifier with the whole range 0..-1."""
        if self._notifiers is None:
            return 0
        return sum(self._notifiers.arch_invalidate_secondary_tlbs(iproc, mm, 0, -1, 12) for _ in range(pages))

    def execute_event(
        self, kind: str, proc: int, region: str, first_page: int, n_pages: int, now: int, cpu: int = -1
    ) -> None:
        """One invalidation event of `kind` by process `proc` on `cpu` (-1: initiator_cpu(proc)) at time `now`,
        over n_pages pages of `region` from its page first_page (clipped to the region): PTEs change in
        every page table holding them, then the configured flushes; the initiator is charged its cycles."""
        self._check_configured()
        if not (0 <= proc < len(self._removed) and -1 <= cpu < self.p.n_cpus):
            raise IndexError(f"process {proc} or cpu {cpu} out of range")
        if cpu < 0:
            cpu = self.initiator_cpu(proc)
        span = self._spans[region]
        op = KIND_OP[kind]
        shift = span.shift
        n_region_pages = (span.end - span.start) >> shift
        first = min(first_page, n_region_pages - 1)
        n = max(1, min(n_pages, n_region_pages - first))
        va = span.start + (first << shift)
        self._mappers = frozenset(span.mappers)
        mm = self.mm_of[proc]  # the initiator's mm (its process's, for a thread)
        cycles = 0
        batched = kind in BATCHED
        if span.host >= 0:
            host = len(self._removed) + span.host
            if kind == "detach":
                cycles += self._range_start(proc, mm, span.start, n_region_pages, shift)
                slot = 1 << self._slot_shift
                first_slot = span.start // slot * slot
                for s_va in range(first_slot, span.end, slot):
                    self.pt_unlink(mm, s_va, self._link_level)
                if self._detach_flush == "p4d_stride":
                    # the posted series: p4d_clear + tlb_flush_p4d_range on the mmu_gather, whose flush is
                    # flush_tlb_mm_range(mm, start, end, P4D_SHIFT, freed_tables = false): one "page" of the
                    # link entry's span per slot, no table freed (the shared tables live on)
                    n_slots = -(-(span.end - first_slot) // slot)
                    cycles += self.flush_tlb_mm_range(cpu, proc, mm, first_slot, n_slots, self._slot_shift, False, now)
                else:
                    cycles += self.flush_tlb_mm_range(cpu, proc, mm, span.start, n_region_pages, shift, True, now)
            else:
                cycles += self._range_start(proc, host, va, n, shift)
                # like the mmu_gather: the span of the entries actually changed
                if batched:
                    # the host mm is never loaded, its cpumask is empty: arch_tlbbatch_should_defer says no,
                    # so each page's PTE is cleared and flushed at once, through the strategy
                    for i in range(n):
                        p_va = va + (i << shift)
                        if self.pt_change(host, p_va, 1, shift, op):
                            cycles += self._shared_flush(cpu, proc, host, span.mappers, p_va, 1, shift, now)
                else:
                    c_first, c_last, c_count = self.pt_change_span(host, va, n, shift, op)
                    if c_count:
                        c_va, c_n = va + (c_first << shift), c_last - c_first + 1
                        cycles += self._shared_flush(cpu, proc, host, span.mappers, c_va, c_n, shift, now)
        elif self.p.pt_config == "hugetlb_pmd_share" and span.shared and shift == HPAGE_SHIFT:
            cycles += self._hugetlb_event(kind, cpu, proc, mm, span, va, n, now)
        elif kind == "detach":
            cycles += self._range_start(proc, mm, span.start, n_region_pages, shift)
            self.pt_change_span(mm, span.start, n_region_pages, shift, OP_ZAP)
            cycles += self.flush_tlb_mm_range(cpu, proc, mm, span.start, n_region_pages, shift, True, now)
        else:
            # the mms holding the PTEs: every mapper of a shared region (the rmap walk), else the initiator's
            mms = span.mappers if span.shared else (mm,)
            if batched:
                touched = []
                for mm in mms:
                    cycles += self._range_start(proc, mm, va, n, shift)
                    if self.should_defer(cpu, mm):
                        c_count = self.pt_change_span(mm, va, n, shift, op)[2]
                        if c_count:
                            touched.append(mm)
                            cycles += self._batch_pending(proc, mm, c_count)
                        continue
                    # not deferred: each page's PTE is cleared and flushed at once (ptep_clear_flush /
                    # flush_tlb_range, one folio at a time): a local flush if mm is loaded here, else none
                    for i in range(n):
                        p_va = va + (i << shift)
                        if self.pt_change(mm, p_va, 1, shift, op):
                            cycles += self.flush_tlb_mm_range(cpu, proc, mm, p_va, 1, shift, False, now)
                if touched:
                    cycles += self._tlbbatch_flush(cpu, proc, touched)
            else:
                for mm in mms:
                    cycles += self._range_start(proc, mm, va, n, shift)
                    c_first, c_last, c_count = self.pt_change_span(mm, va, n, shift, op)
                    if c_count:
                        c_va, c_n = va + (c_first << shift), c_last - c_first + 1
                        cycles += self.flush_tlb_mm_range(cpu, proc, mm, c_va, c_n, shift, False, now)
        if self.p.pti:  # the initiating system call's kernel entry and exit
            cycles += self.pti_crossing(cpu, proc)
        self.charge(cpu, proc, "shootdown_cycles_initiator", cycles)
        self.charge(cpu, proc, "cycles", cycles)
