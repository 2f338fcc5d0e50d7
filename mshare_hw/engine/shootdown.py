"""Invalidation events and TLB coherence: Linux's flush paths and the mshare flush strategies.

An event changes PTEs of a page range and then makes the TLBs coherent. This module is the kernel side:
it runs when the engine stops at an event's time (a rare control event), and works through a handful
of machine primitives that both the Cython engine and the reference model provide (`MachineOps`), so
the same code drives both. Steps follow Linux 6.18's arch/x86/mm/tlb.c as summarised in
shared/reference/mshare_and_linux_tlb.md §2 (flush_tlb_mm_range, should_flush_tlb, flush_tlb_func,
arch_tlbbatch_*, flush_tlb_all) and the strategies of DESIGN.md §2.7.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mshare_hw.engine.layout import Layout, RegionSpan
from mshare_hw.engine.params import STRATEGIES, SimParams  # noqa: F401 (re-exported)

TLB_SINGLE_PAGE_FLUSH_CEILING = 33  # arch/x86/mm/tlb.c tlb_single_page_flush_ceiling
INIT_MM = -1
OP_ZAP, OP_PROTECT, OP_MIGRATE = 0, 1, 2
KINDS = ("zap", "protect", "migrate", "reclaim", "detach")
KIND_OP = {"zap": OP_ZAP, "protect": OP_PROTECT, "migrate": OP_MIGRATE, "reclaim": OP_ZAP, "detach": OP_ZAP}
TRIM_INTERVAL_CYCLES = 3_000_000_000  # trim_cpumask at most once per second (HZ), at 3 GHz (estimate)


@dataclass(frozen=True)
class Event:
    time: int  # cycles: happens once every running CPU's clock has reached it (or a global access count)
    kind: str
    proc: int  # initiating process
    region: str
    first_page: int  # page index inside the region (pages of the region's page size)
    n_pages: int


class MachineOps(Protocol):
    """The primitives an engine offers the kernel side. mm -1 is init_mm; hosts follow the processes."""

    def loaded_mm(self, cpu: int) -> int: ...
    def is_lazy(self, cpu: int) -> bool: ...
    def current_proc(self, cpu: int) -> int: ...
    def local_gen(self, cpu: int) -> int: ...
    def set_local_gen(self, cpu: int, gen: int) -> None: ...
    def mm_gen(self, mm: int) -> int: ...
    def bump_tlb_gen(self, mm: int) -> int: ...
    def cpumask(self, mm: int) -> list[int]: ...
    def cpumask_clear(self, mm: int, cpu: int) -> None: ...
    def pt_change(self, mm: int, va: int, n_pages: int, shift: int, op: int) -> int: ...

    def pt_change_span(self, mm: int, va: int, n_pages: int, shift: int, op: int) -> tuple[int, int, int]: ...
    def pt_unlink(self, mm: int, va: int, level: int) -> bool: ...
    def invlpg(self, cpu: int, va: int, removed: np.ndarray) -> None: ...
    def flush_pcid(self, cpu: int, pcid: int, removed: np.ndarray) -> None: ...
    def flush_all_pcids(self, cpu: int, removed: np.ndarray) -> None: ...
    def cpu_pcid(self, cpu: int) -> int: ...
    def cpu_clock(self, cpu: int) -> int: ...
    def switch_to_init(self, cpu: int) -> None: ...
    def charge(self, cpu: int, proc: int, counter: str, value: int) -> None: ...


@dataclass
class Flush:
    """What one flush_tlb_mm_range (or batch) asks of each CPU: `mm` None is a kernel/batch flush."""

    mm: int | None
    va: int
    n_pages: int
    shift: int
    new_gen: int
    full: bool
    freed: bool = False


class Kernel:
    def __init__(self, m: MachineOps, params: SimParams, layout: Layout, notifiers=None):
        self.m = m
        # mmu notifiers of secondary MMUs (mshare_hw.engine.secondary.SecondaryMMUs), None without devices
        self.notifiers = notifiers
        self._batching = False
        self.p = params
        self.layout = layout
        self.strategy = params.strategy
        self.c = params.kernel_costs
        self.n_cpus = params.n_cpus
        self.n_procs = layout.n_procs
        self.next_trim = [TRIM_INTERVAL_CYCLES] * (layout.n_procs + layout.n_hosts)
        self._removed = np.zeros(layout.n_procs, dtype=np.int64)  # filled by the engine's flush primitives
        self._mappers: frozenset[int] = frozenset()  # processes mapping the current event's region

    # -- bookkeeping -------------------------------------------------------------------------------
    def _charge(self, cpu: int, proc: int, counter: str, value: int) -> None:
        if value:
            self.m.charge(cpu, proc, counter, value)

    def _account_removed(self, cpu: int) -> None:
        """Entries a flush destroyed that belonged to processes not mapping the event's region."""
        counts = self._removed.tolist()  # a handful of processes: cheaper than numpy reductions
        if not any(counts):
            return
        for owner, n in enumerate(counts):
            if n and owner not in self._mappers:
                self.m.charge(cpu, owner, "collateral_entries_flushed", n)
        self._removed[:] = 0

    def _work(self, cpu: int, f: Flush) -> int:
        """flush_tlb_func on `cpu`; returns its cycles (flush instructions only)."""
        m = self.m
        loaded = m.loaded_mm(cpu)
        if f.mm is not None and f.mm != loaded:
            m.cpumask_clear(f.mm, cpu)
            return 0
        if loaded == INIT_MM:
            return 0
        if m.is_lazy(cpu):
            flushed = m.switch_to_init(cpu)
            self._charge(cpu, -1, "cr3_flushes" if flushed else "cr3_writes_noflush", 1)
            return self.c["cr3_flush_cycles"]
        local = m.local_gen(cpu)
        mm_gen = m.mm_gen(loaded)
        if f.new_gen and f.new_gen <= local:
            return 0
        if local == mm_gen:
            return 0
        proc = m.current_proc(cpu)
        if not f.full and f.new_gen == local + 1 and f.new_gen == mm_gen:
            for i in range(f.n_pages):
                m.invlpg(cpu, f.va + (i << f.shift), self._removed)
            self._charge(cpu, proc, "invlpg", f.n_pages)
            cost = f.n_pages * self.c["invlpg_cycles"]
        else:
            m.flush_pcid(cpu, m.cpu_pcid(cpu), self._removed)
            self._charge(cpu, proc, "full_flushes", 1)
            cost = self.c["cr3_flush_cycles"]
        m.set_local_gen(cpu, mm_gen)
        self._account_removed(cpu)
        return cost

    def _ipi_round(self, initiator: int, iproc: int, targets: list[int], work) -> int:
        """Interrupt `targets` (the initiator excluded), each runs `work(cpu)`; the initiator pays a base
        cost, a cost per target, and waits for the slowest responder. Returns the initiator's cycles."""
        slowest = 0
        for cpu in targets:
            cost = self.c["ipi_responder_cycles"] + work(cpu)
            proc = self.m.current_proc(cpu)
            self._charge(cpu, proc, "ipis_received", 1)
            self._charge(cpu, proc, "shootdown_cycles_responder", cost)
            self._charge(cpu, proc, "cycles", cost)
            slowest = max(slowest, cost)
        if not targets:
            return 0
        self._charge(initiator, iproc, "ipis_sent", len(targets))
        return self.c["ipi_initiator_base_cycles"] + self.c["ipi_per_target_cycles"] * len(targets) + slowest

    # -- mmu notifiers -------------------------------------------------------------------------------
    def _secondary_tlbs(self, iproc: int, mm: int, va: int, n_pages: int, shift: int) -> int:
        """mmu_notifier_arch_invalidate_secondary_tlbs(mm, ...); not from a batch's own flush (the batch
        called it per page in arch_tlbbatch_add_pending)."""
        if self.notifiers is None or self._batching:
            return 0
        return self.notifiers.arch_invalidate_secondary_tlbs(iproc, mm, va, n_pages, shift)

    def _range_start(self, iproc: int, mm: int, va: int, n_pages: int, shift: int) -> int:
        """mmu_notifier_invalidate_range_start(mm, ...) before PTEs change (its _end adds no work here)."""
        if self.notifiers is None:
            return 0
        return self.notifiers.invalidate_range_start(iproc, mm, va, n_pages, shift)

    def _batch_pending(self, iproc: int, mm: int, pages: int) -> int:
        """arch_tlbbatch_add_pending, once per unmapped page: the notifier with the whole range 0..-1."""
        if self.notifiers is None:
            return 0
        return sum(self.notifiers.arch_invalidate_secondary_tlbs(iproc, mm, 0, -1, 12) for _ in range(pages))

    # -- Linux's flush paths ------------------------------------------------------------------------
    def flush_tlb_mm_range(
        self, cpu: int, iproc: int, mm: int, va: int, n_pages: int, shift: int, freed: bool, now: int
    ) -> int:
        """Returns the initiator's cycles. Ends with the mm's secondary-TLB notifier, as Linux does."""
        cycles = self._flush_tlb_mm_range(cpu, iproc, mm, va, n_pages, shift, freed, now)
        return cycles + self._secondary_tlbs(iproc, mm, va, n_pages, shift)

    def _flush_tlb_mm_range(
        self, cpu: int, iproc: int, mm: int, va: int, n_pages: int, shift: int, freed: bool, now: int
    ) -> int:
        m = self.m
        gen = m.bump_tlb_gen(mm)
        full = n_pages > TLB_SINGLE_PAGE_FLUSH_CEILING
        f = Flush(mm, va, n_pages, shift, gen, full, freed)
        mask = m.cpumask(mm)
        if any(t != cpu for t in mask):
            # flush_tlb_multi(mm_cpumask): should_trim_cpumask() is asked only here, at most once a second;
            # on_each_cpu_(cond_)mask runs flush_tlb_func on the selected CPUs, this one included
            trim = now >= self.next_trim[mm]
            if trim:
                self.next_trim[mm] = now + TRIM_INTERVAL_CYCLES
            chosen = [t for t in mask if freed or (not m.is_lazy(t) and (m.loaded_mm(t) == mm or trim))]
            cycles = self._ipi_round(cpu, iproc, [t for t in chosen if t != cpu], lambda t: self._work(t, f))
            if cpu in chosen:
                cycles += self._work(cpu, f)
            return cycles
        if m.loaded_mm(cpu) == mm:
            return self._work(cpu, f)
        return 0

    def flush_batch(self, cpu: int, iproc: int, mms: list[int]) -> int:
        """Reclaim's arch_tlbbatch_flush: gens were bumped per mm; one IPI round to the union of their
        cpumasks (lazy CPUs skipped), each CPU flushes its loaded mm in full if that mm moved on."""
        m = self.m
        union: set[int] = set()
        for mm in mms:
            m.bump_tlb_gen(mm)
            union.update(m.cpumask(mm))
        if self.p.invlpgb:
            return self.invlpgb_flush_all_nonglobals(cpu, iproc)
        f = Flush(None, 0, 0, 12, 0, True)
        targets = [t for t in sorted(union) if t != cpu and not m.is_lazy(t)]
        cycles = self._ipi_round(cpu, iproc, targets, lambda t: self._work(t, f))
        if cpu in union:
            cycles += self._work(cpu, f)
        return cycles

    def flush_tlb_all(self, cpu: int, iproc: int) -> int:
        """IPI to every online CPU; each flushes every PCID and the global entries (INVPCID type 2).
        A kernel using INVLPGB does one invlpgb_flush_all() + TLBSYNC instead."""
        if self.p.invlpgb:
            return self.invlpgb_flush_all_nonglobals(cpu, iproc)  # no global entries are modelled

        def everything(t: int) -> int:
            self.m.flush_all_pcids(t, self._removed)
            proc = self.m.current_proc(t)
            self._charge(t, proc, "invpcid", 1)
            self._charge(t, proc, "full_flushes", 1)
            self._account_removed(t)
            return self.c["invpcid_cycles"]

        targets = [t for t in range(self.n_cpus) if t != cpu]
        return self._ipi_round(cpu, iproc, targets, everything) + everything(cpu)

    def invlpgb_flush_all_nonglobals(self, cpu: int, iproc: int) -> int:
        """AMD broadcast: one INVLPGB removes every non-global entry on every CPU, then TLBSYNC."""
        for t in range(self.n_cpus):
            self.m.flush_all_pcids(t, self._removed)
            self._account_removed(t)
        self._charge(cpu, iproc, "invlpgb", 1)
        self._charge(cpu, iproc, "tlbsync", 1)
        self._charge(cpu, iproc, "full_flushes", 1)
        return self.c["invlpgb_cycles"] + self.c["tlbsync_cycles"]

    # -- the shared configuration's strategies -------------------------------------------------------
    def shared_flush(
        self, cpu: int, iproc: int, host: int, sharers: tuple[int, ...], va: int, n_pages: int, shift: int, now: int
    ) -> int:
        m = self.m
        s = self.strategy
        # The series' first step is always the ordinary flush of the host mm; its cpumask is empty.
        cycles = self.flush_tlb_mm_range(cpu, iproc, host, va, n_pages, shift, False, now)
        if s == "host_mm_only":
            return cycles
        if s == "flush_all":
            return cycles + self.flush_tlb_all(cpu, iproc)
        if s == "per_sharer":
            for mm in sharers:
                cycles += self.flush_tlb_mm_range(cpu, iproc, mm, va, n_pages, shift, False, now)
            return cycles
        full = n_pages > TLB_SINGLE_PAGE_FLUSH_CEILING
        if s == "host_cpumask":
            mask = sorted({t for mm in sharers for t in m.cpumask(mm)})
            sharer_set = set(sharers)

            def loaded_pcid_only(t: int) -> int:
                if m.loaded_mm(t) not in sharer_set:
                    return 0
                return self._flush_loaded(t, va, n_pages, shift, full)

            targets = [t for t in mask if t != cpu and not m.is_lazy(t)]
            cycles += self._ipi_round(cpu, iproc, targets, loaded_pcid_only)
            if cpu in mask and not m.is_lazy(cpu):
                cycles += loaded_pcid_only(cpu)
            return cycles
        if s == "union_batch":
            union: set[int] = set()
            gens = {}
            for mm in sharers:
                gens[mm] = m.bump_tlb_gen(mm)
                union.update(m.cpumask(mm))

            def catch_up(t: int) -> int:
                loaded = m.loaded_mm(t)
                if loaded not in gens:
                    return 0
                local, mm_gen = m.local_gen(t), m.mm_gen(loaded)
                if local == mm_gen:
                    return 0
                f = Flush(loaded, va, n_pages, shift, gens[loaded], full or local + 1 != mm_gen)
                return self._work(t, f)

            targets = [t for t in sorted(union) if t != cpu and not m.is_lazy(t)]
            cycles += self._ipi_round(cpu, iproc, targets, catch_up)
            if cpu in union and not m.is_lazy(cpu):
                cycles += catch_up(cpu)
            return cycles
        if s == "broadcast":
            # Single-threaded sharers are never loaded (non-lazily) on 4+ CPUs at once, so Linux gives
            # them no global ASID; without one, INVLPGB can only flush every non-global entry.
            return cycles + self.invlpgb_flush_all_nonglobals(cpu, iproc)
        raise ValueError(f"unknown strategy {s!r}")

    def _flush_loaded(self, t: int, va: int, n_pages: int, shift: int, full: bool) -> int:
        """Flush the PCID loaded on `t` (INVLPG per page, or in full) without touching any tlb_gen."""
        m = self.m
        proc = m.current_proc(t)
        if full:
            m.flush_pcid(t, m.cpu_pcid(t), self._removed)
            self._charge(t, proc, "full_flushes", 1)
            cost = self.c["cr3_flush_cycles"]
        else:
            for i in range(n_pages):
                m.invlpg(t, va + (i << shift), self._removed)
            self._charge(t, proc, "invlpg", n_pages)
            cost = n_pages * self.c["invlpg_cycles"]
        self._account_removed(t)
        return cost

    # -- events --------------------------------------------------------------------------------------
    def _change(self, mm: int, va: int, n: int, shift: int, op: int) -> tuple[int, int, int] | None:
        """Change n pages' present PTEs in mm's tables; like the mmu_gather, remember the span of the
        entries actually changed. Returns (first va, pages spanned, pages changed), None if none was."""
        first, last, count = self.m.pt_change_span(mm, va, n, shift, op)
        if not count:
            return None
        return va + (first << shift), last - first + 1, count

    def initiator_cpu(self, proc: int, running: list[int]) -> int:
        for cpu, cur in enumerate(running):
            if cur == proc:
                return cpu
        return self.layout.home_cpu[proc]

    def execute(self, ev: Event, now: int, running: list[int]) -> None:
        span: RegionSpan = self.layout.spans[ev.region]
        shift = span.shift
        n_region_pages = (span.end - span.start) >> shift
        first = min(ev.first_page, n_region_pages - 1)
        n = max(1, min(ev.n_pages, n_region_pages - first))
        va = span.start + (first << shift)
        cpu = self.initiator_cpu(ev.proc, running)
        proc = ev.proc
        op = KIND_OP[ev.kind]
        self._mappers = frozenset(span.mappers)
        m = self.m
        cycles = 0
        batched = ev.kind in ("reclaim", "migrate")  # try_to_unmap/try_to_migrate with TTU_BATCH_FLUSH
        if span.host >= 0:
            host = self.n_procs + span.host
            if ev.kind == "detach":
                cycles += self._range_start(proc, proc, span.start, n_region_pages, shift)
                slot = 1 << self.p.slot_shift
                for s_va in range(span.start // slot * slot, span.end, slot):
                    m.pt_unlink(proc, s_va, self.p.link_level)
                cycles += self.flush_tlb_mm_range(cpu, proc, proc, span.start, n_region_pages, shift, True, now)
            else:
                cycles += self._range_start(proc, host, va, n, shift)
                changed = self._change(host, va, n, shift, op)
                if changed is not None:
                    c_va, c_n, c_count = changed
                    if batched:
                        # the batch's per-page notifier calls; the flushes below call none of their own
                        cycles += self._batch_pending(proc, host, c_count)
                        self._batching = True
                    if batched and self.strategy == "flush_all":
                        # arch_tlbbatch_add_pending on the host mm fires its notifier once per page
                        cycles += self.flush_tlb_mm_range(cpu, proc, host, c_va, c_n, shift, False, now)
                        for _ in range(c_count):
                            cycles += self.flush_tlb_all(cpu, proc)
                    else:
                        count = TLB_SINGLE_PAGE_FLUSH_CEILING + 1 if batched else c_n
                        cycles += self.shared_flush(cpu, proc, host, span.mappers, c_va, count, shift, now)
                    self._batching = False
        else:
            mms = list(span.mappers) if span.shared else [proc]
            if ev.kind == "detach":
                cycles += self._range_start(proc, proc, span.start, n_region_pages, shift)
                self._change(proc, span.start, n_region_pages, shift, OP_ZAP)
                cycles += self.flush_tlb_mm_range(cpu, proc, proc, span.start, n_region_pages, shift, True, now)
            elif batched:
                touched = []
                for mm in mms:
                    cycles += self._range_start(proc, mm, va, n, shift)
                    changed = self._change(mm, va, n, shift, op)
                    if changed is not None:
                        touched.append(mm)
                        cycles += self._batch_pending(proc, mm, changed[2])
                if touched:
                    cycles += self.flush_batch(cpu, proc, touched)
            else:
                for mm in mms:
                    cycles += self._range_start(proc, mm, va, n, shift)
                    changed = self._change(mm, va, n, shift, op)
                    if changed is not None:
                        cycles += self.flush_tlb_mm_range(cpu, proc, mm, changed[0], changed[1], shift, False, now)
        self._charge(cpu, proc, "shootdown_cycles_initiator", cycles)
        self._charge(cpu, proc, "cycles", cycles)


NO_EVENT = 1 << 62


class EventLoop:
    """Feeds an engine its events: the next event's time, and firing it through the kernel side."""

    def __init__(
        self,
        events,
        engine: MachineOps,
        params: SimParams,
        layout: Layout,
        by_accesses: bool = False,
        notifiers=None,
    ):
        self.events = iter(events)
        self.by_accesses = by_accesses  # event times are global access counts, not cycles
        self.kernel = Kernel(engine, params, layout, notifiers)
        self.n_cpus = params.n_cpus
        self.pending: Event | None = next(self.events, None)
        self.fired = 0

    def next_time(self) -> int:
        return self.pending.time if self.pending is not None else NO_EVENT

    def fire(self, engine: MachineOps) -> None:
        ev = self.pending
        assert ev is not None
        running = [engine.current_proc(c) for c in range(self.n_cpus)]
        now = ev.time
        if self.by_accesses:
            now = engine.cpu_clock(self.kernel.initiator_cpu(ev.proc, running))
        self.kernel.execute(ev, now, running)
        self.fired += 1
        nxt = next(self.events, None)
        if nxt is not None and nxt.time < ev.time:
            raise ValueError(f"events out of time order: {nxt.time} after {ev.time}")
        self.pending = nxt
