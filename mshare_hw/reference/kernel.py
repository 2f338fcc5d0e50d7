"""The kernel side of invalidation events in plain Python: an event's PTE changes, Linux 6.18's flush paths
(arch/x86/mm/tlb.c: flush_tlb_mm_range with should_trim_cpumask, flush_tlb_multi/should_flush_tlb,
flush_tlb_func, flush_tlb_all, arch_tlbbatch_*, INVLPGB) and the mshare flush strategies.

Mirrors kernels/kernel.pxi step for step; mshare_hw.engine.shootdown configures it (set_kernel) and hands
it each event (execute_event). A mixin of ReferenceMachine, whose small primitives (loaded_mm, invlpg,
flush_pcid, switch_to_init, charge, ...) it builds on. Every flush charges what it does (instructions,
IPIs, the responders' cycles, entries destroyed of processes not mapping the event's region) and returns
the initiator's cycles.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mshare_hw.engine.layout import RegionSpan
from mshare_hw.names import KERNEL_COSTS, STRATEGIES

FLUSH_ANY_MM = -2  # a kernel/batch flush: flush_tlb_func with no mm (whatever is loaded catches up)
KIND_OP = {"zap": 0, "protect": 1, "migrate": 2, "reclaim": 0, "detach": 0}  # pt_change_range's op
OP_ZAP = 0
BATCHED = ("reclaim", "migrate")  # try_to_unmap/try_to_migrate with TTU_BATCH_FLUSH


@dataclass(frozen=True)
class Flush:
    """What flush_tlb_func is asked: `mm` FLUSH_ANY_MM is a kernel/batch flush; new_gen 0: no gen given."""

    mm: int
    va: int
    n_pages: int
    shift: int
    new_gen: int
    full: bool


class KernelSide:
    def init_kernel_side(self, n_procs: int) -> None:
        self._configured = False
        self._removed = [0] * n_procs  # per owner: entries the current flush destroyed
        self._mappers: frozenset[int] = frozenset()  # processes mapping the event's region
        self._batching = False  # inside a batched unmap (the flushes call no notifier of their own)

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
    ) -> None:
        """Configure the kernel side (mshare_hw.engine.shootdown.Kernel does): the flush strategy, whether the
        kernel uses INVLPGB, the mshare link entries' span and level, the kernel costs in KERNEL_COSTS
        order, Linux's constants, the regions events name ((name, start, end, shift, shared, host,
        mappers) each), each process's home CPU and the secondary MMUs' mmu notifiers (or None). Resets
        the trim times."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}")
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

    def _account_removed(self, cpu: int) -> None:
        """Entries a flush on `cpu` destroyed that belonged to processes not mapping the event's region."""
        for owner, n in enumerate(self._removed):
            if n:
                if owner not in self._mappers:
                    self.charge(cpu, owner, "collateral_entries_flushed", n)
                self._removed[owner] = 0

    # -- one CPU's work ------------------------------------------------------------------------------
    def _flush_pages(self, cpu: int, va: int, n_pages: int, shift: int, full: bool) -> int:
        """Flush the loaded PCID: INVLPG per page, or in full (a CR3 write). Returns the cycles."""
        proc = self.current_proc(cpu)
        if not full:
            for i in range(n_pages):
                self.invlpg(cpu, va + (i << shift), self._removed)
            self.charge(cpu, proc, "invlpg", n_pages)
            cost = n_pages * self._kcost["invlpg_cycles"]
        else:
            self.flush_pcid(cpu, self.cpu_pcid(cpu), self._removed)
            self.charge(cpu, proc, "full_flushes", 1)
            cost = self._kcost["cr3_flush_cycles"]
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
        local = self.local_gen(cpu)
        mm_gen = self.mm_gen(loaded)
        if f.new_gen and f.new_gen <= local:
            return 0
        if local == mm_gen:
            return 0
        one_step = f.new_gen == local + 1 and f.new_gen == mm_gen
        cost = self._flush_pages(cpu, f.va, f.n_pages, f.shift, f.full or not one_step)
        st = self.cpu_state[cpu]
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

    def _ipi_round(self, initiator: int, iproc: int, targets: list[int], work) -> int:
        """Interrupt `targets` (the initiator excluded), each runs `work(cpu)`; the initiator pays a base
        cost, a cost per target, and waits for the slowest responder. Returns the initiator's cycles."""
        slowest = 0
        for cpu in targets:
            cost = self._kcost["ipi_responder_cycles"] + work(cpu)
            proc = self.current_proc(cpu)
            self.charge(cpu, proc, "ipis_received", 1)
            self.charge(cpu, proc, "shootdown_cycles_responder", cost)
            self.charge(cpu, proc, "cycles", cost)
            slowest = max(slowest, cost)
        if not targets:
            return 0
        self.charge(initiator, iproc, "ipis_sent", len(targets))
        kc = self._kcost
        return kc["ipi_initiator_base_cycles"] + kc["ipi_per_target_cycles"] * len(targets) + slowest

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
        mask = self.cpumask(mm)
        if not any(t != cpu for t in mask):
            return (self._flush_tlb_func(cpu, f) if self.loaded_mm(cpu) == mm else 0), False
        chosen = [t for t in mask if freed or (not self.is_lazy(t) and (self.loaded_mm(t) == mm or trim))]
        cycles = self._ipi_round(cpu, iproc, [t for t in chosen if t != cpu], lambda t: self._flush_tlb_func(t, f))
        if cpu in chosen:
            cycles += self._flush_tlb_func(cpu, f)
        return cycles, True

    def flush_tlb_mm_range(
        self, cpu: int, iproc: int, mm: int, va: int, n_pages: int, shift: int, freed: bool, now: int
    ) -> int:
        """flush_tlb_mm_range(mm) from `cpu` for process iproc at time `now`: should_trim_cpumask() is asked
        only when another CPU is in mm's cpumask, and says yes at most once per trim interval per mm. Ends
        with mm's secondary-TLB notifier, as Linux does (not from a batch's own flush: the batch called it
        per page in arch_tlbbatch_add_pending). Returns the initiator's cycles (not charged)."""
        self._check_configured()
        trim = now >= self._next_trim[mm]
        cycles, remote = self._flush_tlb_multi(cpu, iproc, mm, va, n_pages, shift, freed, trim)
        if remote and trim:
            self._next_trim[mm] = now + self._trim_interval
        if self._notifiers is not None and not self._batching:
            cycles += self._notifiers.arch_invalidate_secondary_tlbs(iproc, mm, va, n_pages, shift)
        return cycles

    def _flush_tlb_all(self, cpu: int, iproc: int) -> int:
        """flush_tlb_all: IPI every other online CPU; each, and the initiator, flushes every PCID (INVPCID
        type 2). With INVLPGB one invlpgb_flush_all() + TLBSYNC instead (no global entries are modelled)."""
        if self._invlpgb:
            return self._invlpgb_flush_all_nonglobals(cpu, iproc)
        targets = [t for t in range(self.p.n_cpus) if t != cpu]
        return self._ipi_round(cpu, iproc, targets, self._everything) + self._everything(cpu)

    def _invlpgb_flush_all_nonglobals(self, cpu: int, iproc: int) -> int:
        """AMD broadcast: one INVLPGB removes every non-global entry on every CPU, then TLBSYNC."""
        for t in range(self.p.n_cpus):
            self.flush_all_pcids(t, self._removed)
            self._account_removed(t)
        self.charge(cpu, iproc, "invlpgb", 1)
        self.charge(cpu, iproc, "tlbsync", 1)
        self.charge(cpu, iproc, "full_flushes", 1)
        return self._kcost["invlpgb_cycles"] + self._kcost["tlbsync_cycles"]

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
        cycles = self._ipi_round(cpu, iproc, targets, lambda t: self._flush_tlb_func(t, f))
        if cpu in union:
            cycles += self._flush_tlb_func(cpu, f)
        return cycles

    # -- the shared configuration's strategies -------------------------------------------------------
    def _flush_sharers(
        self, cpu: int, iproc: int, sharers: tuple[int, ...], va: int, n_pages: int, shift: int, catch_up: bool
    ) -> int:
        """One IPI round to the OR of the sharers' cpumasks (lazy CPUs skipped; the initiator flushes itself if
        in it and not lazy). catch_up False (host_cpumask): each flushes its loaded PCID if a sharer's, without
        touching any tlb_gen. catch_up True (union_batch): first bump every sharer's tlb_gen; each CPU with a
        sharer loaded catches up (flush_tlb_func: INVLPG per page if one step behind, else full)."""
        union: set[int] = set()
        for mm in sharers:
            if catch_up:
                self.bump_tlb_gen(mm)
            union.update(self.cpumask(mm))
        f = Flush(-1, va, n_pages, shift, 0, n_pages > self._ceiling)
        members = frozenset(sharers)
        step = self._catch_up if catch_up else self._loaded_pcid_only
        targets = [t for t in sorted(union) if t != cpu and not self.is_lazy(t)]
        cycles = self._ipi_round(cpu, iproc, targets, lambda t: step(t, members, f))
        if cpu in union and not self.is_lazy(cpu):
            cycles += step(cpu, members, f)
        return cycles

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
        # broadcast: single-threaded sharers are never loaded (non-lazily) on 4+ CPUs at once, so Linux gives
        # them no global ASID; without one, INVLPGB can only flush every non-global entry
        return cycles + self._invlpgb_flush_all_nonglobals(cpu, iproc)

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
        cycles = 0
        batched = kind in BATCHED
        if span.host >= 0:
            host = len(self._removed) + span.host
            if kind == "detach":
                cycles += self._range_start(proc, proc, span.start, n_region_pages, shift)
                slot = 1 << self._slot_shift
                for s_va in range(span.start // slot * slot, span.end, slot):
                    self.pt_unlink(proc, s_va, self._link_level)
                cycles += self.flush_tlb_mm_range(cpu, proc, proc, span.start, n_region_pages, shift, True, now)
            else:
                cycles += self._range_start(proc, host, va, n, shift)
                # like the mmu_gather: the span of the entries actually changed
                c_first, c_last, c_count = self.pt_change_span(host, va, n, shift, op)
                if c_count:
                    c_va, c_n = va + (c_first << shift), c_last - c_first + 1
                    if batched:
                        # the batch's per-page notifier calls; the flushes below call none of their own
                        cycles += self._batch_pending(proc, host, c_count)
                        self._batching = True
                    if batched and self._strategy == "flush_all":
                        # arch_tlbbatch_add_pending on the host mm fires its notifier once per page
                        cycles += self.flush_tlb_mm_range(cpu, proc, host, c_va, c_n, shift, False, now)
                        for _ in range(c_count):
                            cycles += self._flush_tlb_all(cpu, proc)
                    else:
                        count = self._ceiling + 1 if batched else c_n
                        cycles += self._shared_flush(cpu, proc, host, span.mappers, c_va, count, shift, now)
                    self._batching = False
        elif kind == "detach":
            cycles += self._range_start(proc, proc, span.start, n_region_pages, shift)
            self.pt_change_span(proc, span.start, n_region_pages, shift, OP_ZAP)
            cycles += self.flush_tlb_mm_range(cpu, proc, proc, span.start, n_region_pages, shift, True, now)
        else:
            # the mms holding the PTEs: every mapper of a shared region (the rmap walk), else the initiator's
            mms = span.mappers if span.shared else (proc,)
            if batched:
                touched = []
                for mm in mms:
                    cycles += self._range_start(proc, mm, va, n, shift)
                    c_count = self.pt_change_span(mm, va, n, shift, op)[2]
                    if c_count:
                        touched.append(mm)
                        cycles += self._batch_pending(proc, mm, c_count)
                if touched:
                    cycles += self._tlbbatch_flush(cpu, proc, touched)
            else:
                for mm in mms:
                    cycles += self._range_start(proc, mm, va, n, shift)
                    c_first, c_last, c_count = self.pt_change_span(mm, va, n, shift, op)
                    if c_count:
                        c_va, c_n = va + (c_first << shift), c_last - c_first + 1
                        cycles += self.flush_tlb_mm_range(cpu, proc, mm, c_va, c_n, shift, False, now)
        self.charge(cpu, proc, "shootdown_cycles_initiator", cycles)
        self.charge(cpu, proc, "cycles", cycles)
