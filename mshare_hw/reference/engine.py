"""The reference engine: one access at a time, in plain Python, with the Cython engine's semantics.

Order of work per access (both engines): count it; charge the base cost; look up the L1 TLB of its
kind; on a miss charge the L2 TLB latency and look it up; on a miss walk (PWCs deepest level first,
then one cached read per remaining level), taking and retrying faults; fill L2 then L1; then, if data
caches are on, read the data line. The oracle checks every TLB and PWC hit.
"""

from __future__ import annotations

import numpy as np

from mshare_hw.counters import INDEX, N_COUNTERS
from mshare_hw.engine.layout import LEAF_LEVEL, Layout
from mshare_hw.engine.params import SimParams
from mshare_hw.reference import asid as asid_mod
from mshare_hw.reference.caches import CacheHierarchy
from mshare_hw.reference.kernel import KernelSide
from mshare_hw.reference.oracle import WHERE_L1, WHERE_L2, WHERE_PWC, Oracle
from mshare_hw.reference.pagetables import ENTRIES, PageTables, encode, index, is_leaf, present, target
from mshare_hw.reference.pwc import PWC
from mshare_hw.reference.scheduler import IDLE, RUNNING, Scheduler
from mshare_hw.reference.tlb import TLBEntry, TLBLevel

IFETCH, LOAD, STORE = 0, 1, 2
C = INDEX
NO_CHECKPOINT = 1 << 62
NO_EVENT = 1 << 62
WALK_ATTEMPTS = 4  # link fault, page fault, then a present walk


class ReferenceEngine(KernelSide):
    def __init__(self, params: SimParams, layout: Layout, traces: list[tuple[np.ndarray, np.ndarray]]):
        self.p = params
        self.layout = layout
        n_cpus, n_procs = params.n_cpus, layout.n_procs
        self.addrs = [np.asarray(a, dtype=np.uint64) for a, _ in traces]
        self.kinds = [np.asarray(k, dtype=np.uint8) for _, k in traces]
        self.pos = [0] * n_procs
        self.l1i = [TLBLevel(params.l1i) for _ in range(n_cpus)]
        self.l1d = [TLBLevel(params.l1d) for _ in range(n_cpus)]
        self.l2d = [TLBLevel(params.l2d) for _ in range(n_cpus)]
        self.l2i = [TLBLevel(params.l2i) for _ in range(n_cpus)] if params.l2i is not None else self.l2d
        self.pwc = [PWC(params) for _ in range(n_cpus)]
        self.caches = CacheHierarchy(n_cpus, params.l1d_cache, params.l2_cache, params.llc, params.dram_latency)
        self.pt = PageTables(params.levels, layout.dyn_frame_start)
        # mms: processes 0..n_procs-1, then one host mm per shared region
        self.mms = [asid_mod.MmState(ctx_id=asid_mod.INIT_MM_CTX_ID + 1 + m) for m in range(n_procs + layout.n_hosts)]
        self.roots = [self.pt.new_table(params.levels, m) for m in range(n_procs + layout.n_hosts)]
        self.cpu_state = [asid_mod.CpuTlbState() for _ in range(n_cpus)]
        self.oracle = Oracle(params.oracle, params.max_stale_examples)
        self.sched = Scheduler(params, layout)
        self.clock = [0] * n_cpus
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
        out = asid_mod.switch_mm(self.cpu_state[cpu], cpu, proc, self.mms[proc], self.p.pcid)
        self.add("context_switches")
        cost = self.p.context_switch_cycles
        if out.switched:
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
        self.spend(cost)

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

    # -- regions -------------------------------------------------------------------------------
    def find_region(self, proc: int, va: int):
        for r in self.layout.regions[proc]:
            if r.start <= va < r.end:
                return r
        return None

    def slot_host(self, proc: int, va: int) -> int:
        for s in self.layout.slots[proc]:
            if s.start <= va < s.end:
                return s.host
        return -1

    # -- page walk and faults ------------------------------------------------------------------
    def read_pt_entry(self, cpu: int, loc: int) -> int:
        level, lat = self.caches.read(cpu, self.pt.entry_paddr(loc))
        self.add("walk_reads")
        self.add(("walk_reads_l1d", "walk_reads_l2", "walk_reads_llc", "walk_reads_dram")[level])
        self.add("walk_cycles", lat)
        return lat

    def walk(self, cpu: int, proc: int, va: int, pcid: int):
        """Returns (cycles, fault, a, b, c): on success (loc, pfn, shift), on a fault (table, level)."""
        self.add("walks")
        pt = self.pt
        levels = self.p.levels
        table, level = self.roots[proc], levels
        for lv in range(2, levels + 1):
            e = self.pwc[cpu].lookup(lv, pcid, va)
            if e is not None:
                self.add(("", "", "pwc_hits_pd", "pwc_hits_pdpt", "pwc_hits_pml4", "pwc_hits_pml5")[lv])
                if self.oracle.is_stale(e.version, pt.versions[e.loc]):
                    self.add("stale_translations")
                    self.oracle.record(self.clock[cpu], cpu, proc, va, WHERE_PWC)
                table, level = e.child, lv - 1
                break
        cycles = 0
        while True:
            loc = table * ENTRIES + index(va, level)
            cycles += self.read_pt_entry(cpu, loc)
            ent = pt.entries[loc]
            if not present(ent):
                return cycles, True, table, level, 0
            if is_leaf(ent):
                return cycles, False, loc, target(ent), 12 + 9 * (level - 1)
            child = target(ent)
            self.pwc[cpu].fill(level, pcid, va, child, loc, pt.versions[loc], proc)
            table, level = child, level - 1

    def handle_fault(self, cpu: int, proc: int, va: int, kind: int, table: int, level: int) -> None:
        pt = self.pt
        link_level = self.p.link_level
        host = self.slot_host(proc, va) if link_level else -1
        if host >= 0 and pt.table_mm[table] == proc and level >= link_level:
            t = pt.descend(self.roots[proc], va, link_level)
            shared = pt.descend(self.roots[self.layout.n_procs + host], va, link_level - 1)
            pt.set_entry(t * ENTRIES + index(va, link_level), encode(shared, False))
            self.add("link_faults")
            self.add("fault_cycles", self.p.link_fault_cycles)
            self.spend(self.p.link_fault_cycles)
            return
        root = self.roots[pt.table_mm[table]]
        region = self.find_region(proc, va)
        shift = region.shift if region is not None else 12
        leaf_level = LEAF_LEVEL[shift]
        if region is not None and region.fault_around and kind != STORE:
            span = self.p.fault_around_pages << 12
            lo = max(va & ~(span - 1), region.start)
            hi = min((va & ~(span - 1)) + span, region.end)
            pages = range(lo, hi, 1 << 12)
        else:
            pages = range(va & ~((1 << shift) - 1), (va & ~((1 << shift) - 1)) + 1, 1)
        mapped = 0
        for page in pages:
            t = pt.descend(root, page, leaf_level)
            loc = t * ENTRIES + index(page, leaf_level)
            if not present(pt.entries[loc]):
                if region is not None:
                    frame = region.frame_base + ((page - region.start) >> 12)
                else:
                    frame = pt.alloc_frame()
                pt.set_entry(loc, encode(frame, True))
                mapped += 1
        cost = self.p.fault_cycles + self.p.fault_per_page_cycles * mapped
        self.add("page_faults")
        self.add("pages_mapped", mapped)
        self.add("fault_cycles", cost)
        self.spend(cost)

    # -- one access ----------------------------------------------------------------------------
    def access(self, cpu: int, proc: int, va: int, kind: int) -> None:
        self._cpu, self._proc = cpu, proc
        p = self.p
        self.add("accesses")
        self.add(("ifetches", "loads", "stores")[kind])
        cost = p.ifetch_cycles if kind == IFETCH else p.access_cycles
        pcid = self.pcid(cpu)
        l1 = self.l1i[cpu] if kind == IFETCH else self.l1d[cpu]
        e = l1.lookup(pcid, va)
        if e is not None:
            self.add("l1_itlb_hits" if kind == IFETCH else "l1_dtlb_hits")
            self.check(e, cpu, proc, va, WHERE_L1)
        else:
            self.add("l1_itlb_misses" if kind == IFETCH else "l1_dtlb_misses")
            l2 = self.l2i[cpu] if kind == IFETCH else self.l2d[cpu]
            stall = p.l2_latency
            e = l2.lookup(pcid, va)
            if e is not None:
                self.add("stlb_hits")
                self.check(e, cpu, proc, va, WHERE_L2)
                l1.fill(e)
            else:
                self.add("stlb_misses")
                for _ in range(WALK_ATTEMPTS):
                    cycles, fault, a, b, c = self.walk(cpu, proc, va, pcid)
                    stall += cycles
                    if not fault:
                        break
                    self.handle_fault(cpu, proc, va, kind, a, b)
                else:
                    raise RuntimeError("a page walk kept faulting (internal error)")
                e = TLBEntry(va >> c, c, pcid, b, a, self.pt.versions[a], proc)
                l2.fill(e)
                l1.fill(e)
            self.add("translation_cycles", stall)
            cost += stall
        if p.data_caches and kind != IFETCH:
            pa = e.pfn * 4096 + (va & ((1 << e.shift) - 1))
            level, _ = self.caches.read(cpu, pa)
            self.add(("data_l1d_hits", "data_l2_hits", "data_llc_hits", "data_dram_reads")[level])
        self.spend(cost)

    def check(self, e: TLBEntry, cpu: int, proc: int, va: int, where: int) -> None:
        if self.oracle.is_stale(e.pte_version, self.pt.versions[e.pte_loc]):
            self.add("stale_translations")
            self.oracle.record(self.clock[cpu], cpu, proc, va, where)

    def plant_pte_change(self, proc: int, va: int) -> bool:
        """Change va's leaf PTE in place without any flush (tests the oracle). False if not mapped."""
        pt = self.pt
        t, level = self.roots[proc], self.p.levels
        while True:
            loc = t * ENTRIES + index(va, level)
            ent = pt.entries[loc]
            if not present(ent):
                return False
            if is_leaf(ent):
                pt.set_entry(loc, encode(pt.alloc_frame(), True))
                return True
            t, level = target(ent), level - 1

    # -- scheduling ----------------------------------------------------------------------------
    def start(self) -> None:
        s = self.sched
        for cpu in range(self.p.n_cpus):
            q = s.queue(cpu)
            if q:
                self.begin(cpu, q.popleft())

    def begin(self, cpu: int, proc: int) -> None:
        s = self.sched
        s.state[cpu] = RUNNING
        s.current[cpu] = proc
        self.switch_to(cpu, proc)
        s.quantum_end[cpu] = self.clock[cpu] + s.quantum

    def on_done(self, cpu: int) -> None:
        s = self.sched
        q = s.queue(cpu)
        if q:
            self.begin(cpu, q.popleft())
        else:
            s.state[cpu] = IDLE
            s.current[cpu] = -1
            asid_mod.enter_lazy(self.cpu_state[cpu])

    def on_quantum(self, cpu: int) -> None:
        s = self.sched
        q = s.queue(cpu)
        if q:
            q.append(s.current[cpu])
            self.begin(cpu, q.popleft())
        else:
            s.quantum_end[cpu] = self.clock[cpu] + s.quantum

    def next_checkpoint(self, events=None, devices=None) -> int:
        nxt = NO_CHECKPOINT
        if events is not None and events.by_accesses:
            nxt = events.next_time()
        if devices is not None:
            nxt = min(nxt, devices.next_time())
        w, k = self.p.warmup_accesses, self.p.interval_accesses
        g = self.global_accesses
        if w > g:
            nxt = min(nxt, w)
        if k > 0:
            nxt = min(nxt, (g // k + 1) * k)
        return nxt

    def checkpoint(self, events=None, devices=None) -> None:
        g = self.global_accesses
        if g == self.p.warmup_accesses:
            self.warmup_snapshot = (self.cpu_ctr.copy(), self.proc_ctr.copy())
            if devices is not None:
                devices.snapshot_warmup()
        if self.p.interval_accesses and g % self.p.interval_accesses == 0:
            self.intervals.append((g, self.cpu_ctr.sum(axis=0)))
        if devices is not None and devices.next_time() == g:
            devices.run_due(self, g)
        while events is not None and events.by_accesses and events.next_time() == g:
            events.fire(self)

    def run(self, events=None, devices=None) -> None:
        """Replay everything. `events` (an EventLoop) is fired whenever every running CPU's clock has
        reached its next event's time; `devices` (SecondaryMMUs) run their bursts when due."""
        self.start()
        s = self.sched
        slice_len = self.p.slice_accesses
        nxt = self.next_checkpoint(events, devices)
        self.next_event_time = events.next_time() if events and not events.by_accesses else NO_EVENT
        cur, done = -1, 0
        while True:
            if cur < 0:
                c = s.next_cpu(self.clock)
                if c < 0:
                    break
                if self.clock[c] >= self.next_event_time:
                    events.fire(self)
                    self.next_event_time = events.next_time()
                    continue
                cur = c
                done = 0
            cpu = cur
            proc = s.current[cpu]
            n = len(self.addrs[proc])
            if self.pos[proc] == n:
                self.on_done(cpu)
                cur = -1
                continue
            if self.clock[cpu] >= s.quantum_end[cpu]:
                self.on_quantum(cpu)
                cur = -1
                continue
            if self.clock[cpu] >= self.next_event_time:
                cur = -1
                continue
            if done >= slice_len:
                cur = -1
                continue
            lim = min(slice_len - done, n - self.pos[proc], nxt - self.global_accesses)
            addrs, kinds = self.addrs[proc], self.kinds[proc]
            stop = min(s.quantum_end[cpu], self.next_event_time)
            for _ in range(lim):
                i = self.pos[proc]
                self.access(cpu, proc, int(addrs[i]), int(kinds[i]))
                self.pos[proc] = i + 1
                done += 1
                self.global_accesses += 1
                if self.clock[cpu] >= stop:
                    break
            if self.global_accesses == nxt:
                self.checkpoint(events, devices)
                nxt = self.next_checkpoint(events, devices)

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
        st = self.cpu_state[cpu]
        return st.ctx_gens[st.asid]

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
        t, level = self.roots[proc], self.p.levels
        paddrs = []
        while True:
            loc = t * ENTRIES + index(va, level)
            paddrs.append(pt.entry_paddr(loc))
            ent = pt.entries[loc]
            if not present(ent):
                return False, loc, level, 0, paddrs
            if is_leaf(ent):
                return True, loc, level, target(ent), paddrs
            t, level = target(ent), level - 1

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
