"""The reference machine: the Cython engine's counterpart (kernels/_engine.pyx) in plain Python, with its
exact semantics, one access at a time.

ReferenceMachine holds the state (TLBs, PWCs, caches, page tables, ASIDs, clocks, counters) and the
single-step API the tests and the kernel side use; the walker (walker.py), the nested walks (nested.py),
the run loop (scheduler.py) and the kernel side (kernel.py) are its mixins, as walker.pxi, nested.pxi,
scheduler.pxi and kernel.pxi are parts of the Cython engine.
"""

from __future__ import annotations

import numpy as np

from mshare_hw.counters import INDEX, N_COUNTERS
from mshare_hw.engine.layout import Layout
from mshare_hw.engine.params import SimParams
from mshare_hw.reference import asid as asid_mod
from mshare_hw.reference.caches import CacheHierarchy
from mshare_hw.reference.kernel import KernelSide
from mshare_hw.reference.nested import NestedWalker
from mshare_hw.reference.oracle import Oracle
from mshare_hw.reference.pagetables import ENTRIES, PageTables, encode, present, target
from mshare_hw.reference.pwc import PWC
from mshare_hw.reference.scheduler import NO_EVENT, RUNNING, Scheduler, SchedulingLoop
from mshare_hw.reference.timing import CoreTiming
from mshare_hw.reference.tlb import TLBLevel
from mshare_hw.reference.walker import WALK_ATTEMPTS, Walker

C = INDEX


class ReferenceMachine(Walker, NestedWalker, SchedulingLoop, KernelSide):
    def __init__(self, params: SimParams, layout: Layout, traces: list[tuple[np.ndarray, np.ndarray]]):
        self.p = params
        self.layout = layout
        n_cpus, n_procs = params.n_cpus, layout.n_procs
        self.addrs = [np.asarray(a, dtype=np.uint64) for a, _ in traces]
        self.kinds = [np.asarray(k, dtype=np.uint8) for _, k in traces]
        self.pos = [0] * n_procs
        seed = params.seed
        self.l1i = [TLBLevel(params.l1i, "l1i", c, seed) for c in range(n_cpus)]
        self.l1d = [TLBLevel(params.l1d, "l1d", c, seed) for c in range(n_cpus)]
        self.l2d = [TLBLevel(params.l2d, "l2d", c, seed) for c in range(n_cpus)]
        self.l2i = [TLBLevel(params.l2i, "l2i", c, seed) for c in range(n_cpus)] if params.l2i is not None else self.l2d
        self.pwc = [PWC(params, c) for c in range(n_cpus)]
        self.caches = CacheHierarchy(
            n_cpus, params.l1d_cache, params.l2_cache, params.llc, params.dram_latency, params.seed
        )
        self.init_nested(params, n_cpus)
        self.pt = PageTables(params.levels, layout.dyn_frame_start)
        # mms: processes 0..n_procs-1, then one host mm per shared region; a thread runs in its process's mm
        # (mm_of): its own slot's state is never used, and its root is its process's (none allocated)
        self.mm_of = tuple(layout.mm_of) if layout.mm_of else tuple(range(n_procs))
        self.mms = [asid_mod.MmState(ctx_id=asid_mod.INIT_MM_CTX_ID + 1 + m) for m in range(n_procs + layout.n_hosts)]
        self.roots = [
            self.pt.new_table(params.levels, m) if m >= n_procs or self.mm_of[m] == m else -1
            for m in range(n_procs + layout.n_hosts)
        ]
        for m in range(n_procs):
            self.roots[m] = self.roots[self.mm_of[m]]
        # hugetlb PMD sharing: per PUD span, its PMD table (-1 until a fault allocates it) and how many mms link
        # to it (the table's page count: huge_pmd_unshare unshares only while another mm uses it)
        self.pmd_table = [-1] * layout.n_pmd_spans
        self.pmd_users = [0] * layout.n_pmd_spans
        self.cpu_state = [asid_mod.CpuTlbState() for _ in range(n_cpus)]
        self.oracle = Oracle(params.oracle, params.max_stale_examples)
        self.sched = Scheduler(params, layout)
        self.clock = [0] * n_cpus
        self.timing = [CoreTiming(params) for _ in range(n_cpus)]
        self.dependent = [bool(d) for d in layout.dependent] + [False] * (n_procs - len(layout.dependent))
        self.cpu_ctr = np.zeros((n_cpus, N_COUNTERS), dtype=np.int64)
        self.proc_ctr = np.zeros((n_procs, N_COUNTERS), dtype=np.int64)
        self.global_accesses = 0
        self.warmup_snapshot: tuple[np.ndarray, np.ndarray] | None = None
        self.intervals: list[tuple[int, np.ndarray]] = []
        self._cpu = 0
        self._proc = 0
        self.next_event_time = NO_EVENT
        self._init_mm = asid_mod.MmState(ctx_id=asid_mod.INIT_MM_CTX_ID)
        self.init_kernel_side(n_procs)

    # -- counters ------------------------------------------------------------------------------
    def add(self, name: str, v: int = 1) -> None:
        k = C[name]
        self.cpu_ctr[self._cpu, k] += v
        self.proc_ctr[self._proc, k] += v

    def spend(self, cycles: int) -> None:
        self.clock[self._cpu] += cycles
        self.add("cycles", cycles)

    # -- mm / ASID -----------------------------------------------------------------------------
    def pcid(self, cpu: int) -> int:
        return self.cpu_state[cpu].asid + 1

    def flush_pcid(self, cpu: int, pcid: int, removed=None) -> int:
        """Every non-global TLB and PWC entry of `pcid` on `cpu`; `removed[owner]` counts them."""
        n = self.l1i[cpu].flush_pcid(pcid, removed) + self.l1d[cpu].flush_pcid(pcid, removed)
        n += self.l2d[cpu].flush_pcid(pcid, removed)
        if self.l2i is not self.l2d:
            n += self.l2i[cpu].flush_pcid(pcid, removed)
        return n + self.pwc[cpu].flush(pcid, removed)

    def switch_to(self, cpu: int, proc: int) -> None:
        self._cpu, self._proc = cpu, proc
        mm = self.mm_of[proc]
        out = asid_mod.switch_mm(self.cpu_state[cpu], cpu, mm, self.mms[mm], self.p.pcid)
        self.add("context_switches")
        cost = self.p.context_switch_cycles
        if out.switched and not out.global_asid:
            self.add("asid_slot_hits" if out.slot_hit else "asid_slot_misses")
            if out.recycled:
                self.add("asid_recycles")
        if out.flush:
            self.flush_pcid(cpu, self.pcid(cpu))
            self.add("cr3_flushes")
            if out.lazy_catchup:
                self.add("lazy_catchup_flushes")
            cost += self.p.cr3_flush_cycles
        elif out.switched:
            self.add("cr3_writes_noflush")
            cost += self.p.cr3_noflush_cycles
        if self.p.pti:
            # the switch happens inside the kernel, entered from the outgoing process and left to the incoming
            # one; a flushing switch (load_new_mm_cr3 -> invalidate_user_asid) flushes the user PCID at that exit
            cost += self.pti_crossing(cpu, proc)
            if out.flush:
                cost += self.pti_user_flush(cpu, proc)
        self.spend(cost)

    def pti_crossing(self, cpu: int, proc: int) -> int:
        """Under PTI, a kernel entry and the return to user each switch CR3 (SWITCH_TO_KERNEL_CR3 and
        SWITCH_TO_USER_CR3, arch/x86/entry/calling.h), without a flush. Counts the two switches to (cpu,
        proc); returns their cycles."""
        self.charge(cpu, proc, "pti_cr3_switches", 2)
        return 2 * self.p.cr3_noflush_cycles

    def pti_user_flush(self, cpu: int, proc: int) -> int:
        """invalidate_user_asid() under PTI: the loaded ASID's user PCID is flushed at the next return to user,
        whose CR3 write then flushes (SWITCH_TO_USER_CR3 leaves the no-flush bit clear). The model's TLB
        entries of user accesses already went with the kernel-side flush, so this only counts and charges
        the flushing write's extra cycles."""
        self.charge(cpu, proc, "pti_user_flushes", 1)
        return max(0, self.p.cr3_flush_cycles - self.p.cr3_noflush_cycles)

    def bump_tlb_gen(self, mm: int) -> int:
        self.mms[mm].tlb_gen += 1
        return self.mms[mm].tlb_gen

    # -- single-step API mirroring the Cython Engine (hand-computed tests drive both alike) -----
    def enter_lazy(self, cpu: int) -> None:
        asid_mod.enter_lazy(self.cpu_state[cpu])

    def asid_slots(self, cpu: int) -> tuple[int, list[int]]:
        """(loaded ASID, [ctx_id per slot]) of a CPU."""
        st = self.cpu_state[cpu]
        return st.asid, list(st.ctx_ids)

    @property
    def cpu_counters(self) -> np.ndarray:
        """Raw counters per CPU (no warm-up subtraction)."""
        return self.cpu_ctr

    @property
    def proc_counters(self) -> np.ndarray:
        """Raw counters per process (no warm-up subtraction)."""
        return self.proc_ctr

    @property
    def clocks(self) -> np.ndarray:
        return np.array(self.clock, dtype=np.int64)

    @property
    def pt_pages(self) -> np.ndarray:
        return np.array(self.pt.pages_per_level, dtype=np.int64)

    def plant_pte_change(self, proc: int, va: int) -> bool:
        """Change va's leaf PTE in place without any flush (tests the oracle). False if not mapped."""
        pt = self.pt
        loc, _, _ = pt.find(self.roots[proc], va, self.p.levels)
        if not present(pt.entries[loc]):
            return False
        pt.set_entry(loc, encode(pt.alloc_frame(), True))
        return True

    # -- state and steps the kernel side (reference/kernel.py) builds on; tests inspect some ---------
    def loaded_mm(self, cpu: int) -> int:
        return self.cpu_state[cpu].loaded_mm

    def is_lazy(self, cpu: int) -> bool:
        return self.cpu_state[cpu].is_lazy

    def current_proc(self, cpu: int) -> int:
        return self.sched.current[cpu] if self.sched.state[cpu] == RUNNING else -1

    def cpu_clock(self, cpu: int) -> int:
        return self.clock[cpu]

    def cpu_pcid(self, cpu: int) -> int:
        return self.pcid(cpu)

    def local_gen(self, cpu: int) -> int:
        """The loaded ASID's tlb_gen (a global ASID is always up to date: its mm's)."""
        st = self.cpu_state[cpu]
        if asid_mod.is_global_asid(st.asid):
            return self.mms[st.loaded_mm].tlb_gen
        return st.ctx_gens[st.asid]

    def global_asid(self, mm: int) -> int:
        return self.mms[mm].global_asid

    def mm_gen(self, mm: int) -> int:
        return self.mms[mm].tlb_gen

    def cpumask(self, mm: int) -> list[int]:
        return sorted(self.mms[mm].cpumask)

    def pt_change(self, mm: int, va: int, n_pages: int, shift: int, op: int) -> int:
        return self.pt.change_range(self.roots[mm], va, n_pages, shift, op)

    def pt_change_span(self, mm: int, va: int, n_pages: int, shift: int, op: int) -> tuple[int, int, int]:
        """pt_change page by page, like the mmu_gather: (first, last) index of the pages whose present PTE
        changed and how many did; (-1, -1, 0) if none."""
        first = last = -1
        count = 0
        for i in range(n_pages):
            if self.pt.change_range(self.roots[mm], va + (i << shift), 1, shift, op):
                count += 1
                last = i
                if first < 0:
                    first = i
        return first, last, count

    def pt_unlink(self, mm: int, va: int, level: int) -> bool:
        return self.pt.unlink(self.roots[mm], va, level)

    def invlpg(self, cpu: int, va: int, removed) -> None:
        """INVLPG: va's entries in the loaded PCID (and global ones), and every PWC entry of that PCID."""
        pcid = self.pcid(cpu)
        self.l1i[cpu].invlpg(pcid, va, removed)
        self.l1d[cpu].invlpg(pcid, va, removed)
        self.l2d[cpu].invlpg(pcid, va, removed)
        if self.l2i is not self.l2d:
            self.l2i[cpu].invlpg(pcid, va, removed)
        self.pwc[cpu].flush(pcid, removed)

    def invlpg_pcid(self, cpu: int, pcid: int, va: int, pwc: bool, removed) -> None:
        """INVLPGB's work on one CPU: va's entries in `pcid` (ANY_PCID: every PCID), and that PCID's PWC
        entries if `pwc` (tables freed; else INVLPGB_FINAL_ONLY spares them)."""
        self.l1i[cpu].invlpg(pcid, va, removed)
        self.l1d[cpu].invlpg(pcid, va, removed)
        self.l2d[cpu].invlpg(pcid, va, removed)
        if self.l2i is not self.l2d:
            self.l2i[cpu].invlpg(pcid, va, removed)
        if pwc:
            self.pwc[cpu].flush(pcid, removed)

    def flush_all_pcids(self, cpu: int, removed) -> None:
        for level in (self.l1i, self.l1d, self.l2d):
            level[cpu].flush_all(removed)
        if self.l2i is not self.l2d:
            self.l2i[cpu].flush_all(removed)
        self.pwc[cpu].flush(-1, removed)

    def switch_to_init(self, cpu: int) -> bool:
        out = asid_mod.switch_mm(self.cpu_state[cpu], cpu, asid_mod.INIT_MM, self._init_mm, self.p.pcid)
        if out.flush:
            self.flush_pcid(cpu, self.pcid(cpu))
        return out.flush

    def charge(self, cpu: int, proc: int, counter: str, value: int) -> None:
        k = C[counter]
        self.cpu_ctr[cpu, k] += value
        if proc >= 0:
            self.proc_ctr[proc, k] += value
        if counter == "cycles":
            self.clock[cpu] += value

    # -- primitives for secondary MMUs (mshare_hw.engine.secondary) ------------------------------
    def pt_lookup(self, proc: int, va: int) -> tuple[bool, int, int, int, list[int]]:
        """A side-effect-free walk of proc's tables: (present, loc, level, target, entry paddrs read).
        `loc`/`level` are the leaf entry's, or the first non-present entry's on a miss."""
        pt = self.pt
        loc, level, path = pt.find(self.roots[proc], va, self.p.levels)
        paddrs = [pt.entry_paddr(x) for x in path]
        ent = pt.entries[loc]
        if not present(ent):
            return False, loc, level, 0, paddrs
        return True, loc, level, target(ent), paddrs

    def pte_stamp(self, loc: int) -> int:
        """An opaque stamp of the entry at `loc` that changes whenever it is written while present (here its
        version). Compare for equality only."""
        return self.pt.versions[loc]

    def llc_read(self, paddr: int) -> tuple[int, int]:
        """A read from outside the cores (an IOMMU walk): the shared LLC, else DRAM (filling the LLC).
        Returns (level, latency) with level 2 = LLC, 3 = DRAM."""
        c = self.caches
        line = paddr >> 6
        if c.llc.access(line):
            return 2, c.llc.latency
        c.llc.fill(line)
        return 3, c.dram_latency

    def fault_in(self, cpu: int, proc: int, va: int, kind: int) -> int:
        """Service faults (a device's page request) on `cpu` for `proc` until va is mapped, charged like
        a CPU's faults. Returns how many fault handler calls it took."""
        for n in range(WALK_ATTEMPTS):
            ok, loc, level, _, _ = self.pt_lookup(proc, va)
            if ok:
                return n
            self._cpu, self._proc = cpu, proc
            self.handle_fault(cpu, proc, va, kind, loc // ENTRIES, level)
        raise RuntimeError("a page walk kept faulting (internal error)")

    # -- results -------------------------------------------------------------------------------
    def results(self) -> dict:
        cpu, proc = self.cpu_ctr.copy(), self.proc_ctr.copy()
        if self.warmup_snapshot is not None:
            cpu -= self.warmup_snapshot[0]
            proc -= self.warmup_snapshot[1]
        return {
            "cpu_counters": cpu,
            "proc_counters": proc,
            "clocks": np.array(self.clock, dtype=np.int64),
            "pt_pages": np.array(self.pt.pages_per_level, dtype=np.int64),
            "stale_examples": [(x.cycle, x.cpu, x.proc, x.va, x.where) for x in self.oracle.examples],
            "intervals": self.intervals,
        }
