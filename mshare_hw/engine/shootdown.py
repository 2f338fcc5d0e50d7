"""Invalidation events and TLB coherence: Linux's flush paths and the mshare flush strategies.

An event changes PTEs of a page range and then makes the TLBs coherent. The engine stops at an event's
time (a rare control event) and returns to Python; this module picks the event up and hands it back to
the engine's kernel side, which follows Linux 6.18's arch/x86/mm/tlb.c (flush_tlb_mm_range,
should_trim_cpumask, should_flush_tlb, flush_tlb_func, arch_tlbbatch_*, flush_tlb_all). Both engines have
that kernel side (`MachineOps`): kernels/kernel.pxi in the Cython engine, mshare_hw/reference/kernel.py in
the reference model, held to identical counters by the differential tests. An event thus costs Python one
call into the engine whatever the number of CPUs. This module keeps what is policy: Linux's constants, the
kernel costs, strategy and detach flush handed to the engine, the initiating CPU, the event loop.
"""

from __future__ import annotations

from typing import Protocol

from mshare_hw.engine.event_draws import event_iter
from mshare_hw.engine.layout import Layout
from mshare_hw.engine.params import SimParams
from mshare_hw.names import KERNEL_COSTS
from mshare_hw.workload.events import Event

TLB_SINGLE_PAGE_FLUSH_CEILING = 33  # arch/x86/mm/tlb.c tlb_single_page_flush_ceiling
TRIM_INTERVAL_CYCLES = 3_000_000_000  # trim_cpumask at most once per second (HZ), at 3 GHz (estimate)
# A jiffy at HZ = 1000 (CONFIG_HZ_1000; distributions build 250 to 1000: ESTIMATE) and 3 GHz: the clock of
# consider_global_asid's sampling, `(current->pid & 0x1f) == (jiffies & 0x1f)` (arch/x86/mm/tlb.c, 6.18)
JIFFY_CYCLES = 3_000_000
# The pages one INVLPGB may cover (Linux's invlpgb_count_max = CPUID 0x80000008 EDX[15:0] + 1,
# arch/x86/kernel/cpu/amd.c) is the part's: the uarch file's features.invlpgb_count_max (SimParams).


class MachineOps(Protocol):
    """What an engine offers the kernel side. mm -1 is init_mm; host mms follow the processes."""

    def set_kernel(self, **config) -> None:
        """Configure the kernel side: the keywords Kernel passes (Engine.set_kernel documents them)."""

    def execute_event(
        self, kind: str, proc: int, region: str, first_page: int, n_pages: int, now: int, cpu: int = -1
    ) -> None: ...
    def flush_tlb_mm_range(
        self, cpu: int, iproc: int, mm: int, va: int, n_pages: int, shift: int, freed: bool, now: int
    ) -> int: ...
    def initiator_cpu(self, proc: int) -> int: ...
    def cpu_clock(self, cpu: int) -> int: ...


class Kernel:
    """Configures an engine's kernel side from the machine (params) and the regions (layout), and hands it
    events. `notifiers`: the secondary MMUs' mmu notifiers (mshare_hw.engine.secondary.SecondaryMMUs),
    None without devices."""

    def __init__(self, m: MachineOps, params: SimParams, layout: Layout, notifiers=None):
        self.m = m
        self.home_cpu = layout.home_cpu
        m.set_kernel(
            strategy=params.strategy,
            detach_flush=params.detach_flush,
            invlpgb=params.invlpgb,
            slot_shift=params.slot_shift,
            link_level=params.link_level,
            costs=[params.kernel_costs[k] for k in KERNEL_COSTS],
            single_page_flush_ceiling=TLB_SINGLE_PAGE_FLUSH_CEILING,
            trim_interval=TRIM_INTERVAL_CYCLES,
            regions=[(name, s.start, s.end, s.shift, s.shared, s.host, s.mappers) for name, s in layout.spans.items()],
            home_cpu=layout.home_cpu,
            notifiers=notifiers,
            invlpgb_count_max=params.invlpgb_count_max,
            jiffy_cycles=JIFFY_CYCLES,
        )

    def execute(self, ev: Event, now: int, running: list[int]) -> None:
        """Change the event's PTEs and make the TLBs coherent, initiated on the first CPU of `running` (the
        process each CPU runs, -1 for none) that runs ev.proc, else on its home CPU."""
        cpu = running.index(ev.proc) if ev.proc in running else self.home_cpu[ev.proc]
        self.m.execute_event(ev.kind, ev.proc, ev.region, ev.first_page, ev.n_pages, now, cpu)

    def flush_tlb_mm_range(
        self, cpu: int, iproc: int, mm: int, va: int, n_pages: int, shift: int, freed: bool, now: int
    ) -> int:
        """Linux's flush_tlb_mm_range(mm) alone; returns the initiator's cycles."""
        return self.m.flush_tlb_mm_range(cpu, iproc, mm, va, n_pages, shift, freed, now)


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
        self.events = event_iter(events)
        self.by_accesses = by_accesses  # event times are global access counts, not cycles
        self.kernel = Kernel(engine, params, layout, notifiers)  # configures the engine's kernel side
        self.pending: Event | None = next(self.events, None)
        self.fired = 0

    def next_time(self) -> int:
        return self.pending.time if self.pending is not None else NO_EVENT

    def fire(self, engine: MachineOps) -> None:
        """Execute the pending event on `engine` (initiated where its process runs, else on its home CPU) and
        draw the next one."""
        ev = self.pending
        assert ev is not None
        time, kind, proc, region, first_page, n_pages = ev
        if self.by_accesses:  # the event happens at the initiator's clock
            cpu = engine.initiator_cpu(proc)
            engine.execute_event(kind, proc, region, first_page, n_pages, engine.cpu_clock(cpu), cpu)
        else:
            engine.execute_event(kind, proc, region, first_page, n_pages, time)
        self.fired += 1
        nxt = next(self.events, None)
        if nxt is not None and nxt.time < time:
            raise ValueError(f"events out of time order: {nxt.time} after {time}")
        self.pending = nxt
