# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The replay engine: all MMU, cache and scheduler state in C structs, the access loop without the GIL.

Python (mshare_hw.engine.driver) builds it from SimParams and a Layout, feeds each process's trace in
chunks when `run()` asks for input, and reads the counter tables at the end. This file holds the
Engine class (its reference counterpart: mshare_hw/reference/machine.py); the included .pxi files mirror
the reference model's modules of the same names, each with its structure's set-up and teardown.
"""

import numpy as np

from mshare_hw.counters import COUNTERS
from mshare_hw.names import EVENT_KINDS, PT_CONFIGS, REPLACEMENT_POLICIES, SCHEDULERS, STRATEGIES, TIMING_MODES
from mshare_hw.names import DETACH_FLUSHES, codes
cimport numpy as cnp
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

cnp.import_array()

include "state.pxi"

# block-parallel scans of cache and TLB sets
cdef extern from "scan.h" nogil:
    enum: SCAN_BLOCK
    int scan_tags(const uint32_t* tags, int n_blocks, uint32_t tag)
    int ranks_find(const uint8_t* ranks, int n_blocks, unsigned rank)
    uint32_t key_tag(uint64_t key)
    int find_key(const uint32_t* tags, const uint64_t* keys, int n_blocks, int ways, uint64_t key)
    void ranks_touch(uint8_t* ranks, int n_blocks, int way)
    int ranks_replace(uint8_t* ranks, int n_blocks, unsigned ways)
    void ranks_drop(uint8_t* ranks, int n_blocks, unsigned ways, int way)
    bint set_touch(uint32_t* tags, uint8_t* ranks, int n_blocks, unsigned ways, uint32_t tag)
    void prefetch(const void* p)
    int lowest_bit(unsigned m)

include "alloc.pxi"
include "set_array.pxi"
include "_counters.pxi"
include "tlb.pxi"
include "pwc.pxi"
include "caches.pxi"
include "timing.pxi"
include "pagetables.pxi"
include "layout.pxi"
include "asid.pxi"
include "oracle.pxi"
include "nested.pxi"
include "walker.pxi"
include "scheduler.pxi"
include "flush.pxi"
include "kernel.pxi"
include "event_draws.pxi"

DONE = ST_DONE
NEED_INPUT = ST_NEED_INPUT
CHECKPOINT = ST_CHECKPOINT
ERROR = ST_ERROR
EVENT = ST_EVENT
NO_CHECKPOINT = 1 << 62
NO_EVENT = 1 << 62
_ERRORS = {
    ERR_NOMEM: "out of memory while growing page tables",
    ERR_WALK: "a page walk kept faulting (internal error)",
    ERR_HUGE_CONFLICT: "a huge-page mapping overlaps a region with smaller pages",
    ERR_PHYS: "the simulated physical memory outgrew what the cache models can tag, less the host page tables' "
    "range under nested virtualization (see SimParams.max_frames)",
}


def set_shape(params) -> int:
    """The shape_t the hot loop runs under (SHAPE_*): a copy compiled for one-block LRU sets where they fit
    (a machine with another replacement policy anywhere runs the general copy)."""
    tlbs = [*params.l1i, *params.l1d, *params.l2d, *(params.l2i or ()), *params.pwc_structs]
    if params.virtualization == "nested":
        tlbs += [t for t in (params.nested_tlb, params.nested_pwc) if t is not None]
    caches = [params.l1d_cache, params.l2_cache, params.llc]
    nested = [x for x in (params.nested_tlb, params.nested_pwc) if x is not None]
    if any(x.replacement != "lru" for x in [*tlbs, *caches, *nested]):
        return SHAPE_ANY
    if not all(c.ways <= SCAN_BLOCK and _is_pow2(c.sets) for c in caches):
        return SHAPE_ANY
    return SHAPE_ALL if all(t.ways <= SCAN_BLOCK for t in tlbs) else SHAPE_CACHES


cdef class Engine:
    cdef Sim s
    cdef EventCtx ev       # the kernel side's configuration and state (kernel.pxi)
    cdef object _regions   # region name -> index into ev's region arrays
    cdef object _notifiers # the secondary MMUs' mmu notifiers, or None
    cdef object _cpu_ctr
    cdef object _proc_ctr
    cdef object _chunks
    cdef bint _started

    def __cinit__(self):
        memset(&self.s, 0, sizeof(Sim))
        memset(&self.ev, 0, sizeof(EventCtx))

    def __init__(self, params, layout):
        cdef Sim* s = &self.s
        cdef int c, i, k, n_cpus = params.n_cpus, n_procs = layout.n_procs
        cdef uint64_t seed
        s.n_cpus = n_cpus
        s.n_procs = n_procs
        s.n_mms = n_procs + layout.n_hosts
        s.levels = params.levels
        s.pcid_enabled = params.pcid
        s.data_caches = params.data_caches
        s.oracle = params.oracle
        s.l2_latency = params.l2_latency
        s.access_cycles = params.access_cycles
        s.ifetch_cycles = params.ifetch_cycles
        s.fault_cycles = params.fault_cycles
        s.fault_per_page_cycles = params.fault_per_page_cycles
        s.link_fault_cycles = params.link_fault_cycles
        s.context_switch_cycles = params.context_switch_cycles
        s.cr3_noflush_cycles = params.cr3_noflush_cycles
        s.cr3_flush_cycles = params.cr3_flush_cycles
        s.pti = params.pti
        s.fault_around_pages = params.fault_around_pages
        s.link_level = params.link_level
        s.pt_config = codes(PT_CONFIGS)[params.pt_config]
        s.pinned = codes(SCHEDULERS)[params.scheduler] == SCHED_PINNED
        s.quantum = params.quantum_cycles
        s.slice_len = params.slice_accesses
        s.dram_latency = params.dram_latency
        s.cur_cpu = -1
        s.need_proc = -1
        s.next_checkpoint = NO_CHECKPOINT
        s.next_event_time = NO_EVENT

        s.l1i = <TLBLevel*>_calloc(n_cpus, sizeof(TLBLevel))
        s.l1d = <TLBLevel*>_calloc(n_cpus, sizeof(TLBLevel))
        s.l2d = <TLBLevel*>_calloc(n_cpus, sizeof(TLBLevel))
        s.split_l2 = params.l2i is not None
        s.l2i = <TLBLevel*>_calloc(n_cpus, sizeof(TLBLevel)) if s.split_l2 else s.l2d
        s.n_pwc = len(params.pwc_structs)
        for i in range(6):
            s.pwc_of_level[i] = params.pwc_of_level[i]
        s.pwc = <PWCArray*>_calloc(n_cpus * s.n_pwc, sizeof(PWCArray))
        s.l1d_cache = <Cache*>_calloc(n_cpus, sizeof(Cache))
        s.l2_cache = <Cache*>_calloc(n_cpus, sizeof(Cache))
        seed = params.seed & 0xFFFFFFFFFFFFFFFF
        for c in range(n_cpus):
            tlb_level_init(&s.l1i[c], params.l1i, RS_L1I, c, seed)
            tlb_level_init(&s.l1d[c], params.l1d, RS_L1D, c, seed)
            tlb_level_init(&s.l2d[c], params.l2d, RS_L2D, c, seed)
            if s.split_l2:
                tlb_level_init(&s.l2i[c], params.l2i, RS_L2I, c, seed)
            for k in range(s.n_pwc):
                pwc_init(&s.pwc[c * s.n_pwc + k], params.pwc_structs[k], stream_seed(seed, RS_PWC, k, c))
            cache_init(&s.l1d_cache[c], params.l1d_cache, stream_seed(seed, RS_L1D_CACHE, 0, c))
            cache_init(&s.l2_cache[c], params.l2_cache, stream_seed(seed, RS_L2_CACHE, 0, c))
        cache_init(&s.llc, params.llc, stream_seed(seed, RS_LLC, 0, 0))  # one stream: the LLC is shared
        nested_init(s, params)
        s.shape = set_shape(params)

        s.next_frame = layout.dyn_frame_start
        s.max_frames = params.max_frames
        s.mm_of = <int*>_calloc(n_procs, sizeof(int))
        for i in range(n_procs):
            s.mm_of[i] = layout.mm_of[i] if layout.mm_of else i
        pt_roots_init(s)
        asid_init(s)
        layout_init(s, layout)
        sched_init(s, layout.home_cpu, layout.sleeps)
        timing_init(s, params, layout.dependent)
        self._chunks = [None] * n_procs

        self._cpu_ctr = np.zeros((n_cpus, N_COUNTERS), dtype=np.int64)
        self._proc_ctr = np.zeros((n_procs, N_COUNTERS), dtype=np.int64)
        s.cpu_ctr = <int64_t*>cnp.PyArray_DATA(self._cpu_ctr)
        s.proc_ctr = <int64_t*>cnp.PyArray_DATA(self._proc_ctr)
        s.row = <int64_t*>_calloc(N_COUNTERS, sizeof(int64_t))
        s.max_examples = params.max_stale_examples
        s.examples = <int64_t*>_calloc(s.max_examples * 5, sizeof(int64_t))
        kernel_init(&self.ev, s)

    def __dealloc__(self):
        cdef Sim* s = &self.s
        tlb_levels_free(s.l1i, s.n_cpus)
        tlb_levels_free(s.l1d, s.n_cpus)
        tlb_levels_free(s.l2d, s.n_cpus)
        if s.split_l2:
            tlb_levels_free(s.l2i, s.n_cpus)
        pwcs_free(s.pwc, s.n_cpus * s.n_pwc)
        caches_free(s.l1d_cache, s.n_cpus)
        caches_free(s.l2_cache, s.n_cpus)
        set_array_free(&s.llc.sa)
        nested_free(s)
        pt_free(s)
        asid_free(s)
        layout_free(s)
        sched_free(s)
        timing_free(s)
        free(s.row)
        free(s.examples)
        kernel_free(&self.ev)

    # -- driving ----------------------------------------------------------------------------------
    def feed(self, int proc, addrs, kinds, bint final):
        """Give process `proc` its next chunk (the engine must have asked for it, or not started)."""
        a = np.ascontiguousarray(addrs, dtype=np.uint64)
        k = np.ascontiguousarray(kinds, dtype=np.uint8)
        if a.shape[0] != k.shape[0]:
            raise ValueError("addrs and kinds differ in length")
        if self.s.trace_pos[proc] != self.s.trace_len[proc]:
            raise RuntimeError(f"process {proc} still has unread input")
        self._chunks[proc] = (a, k)
        self.s.trace_base[proc] += self.s.trace_len[proc]
        self.s.trace_addrs[proc] = <uint64_t*>cnp.PyArray_DATA(a)
        self.s.trace_kinds[proc] = <uint8_t*>cnp.PyArray_DATA(k)
        self.s.trace_len[proc] = a.shape[0]
        self.s.trace_pos[proc] = 0
        self.s.trace_final[proc] = final

    def run(self):
        """Replay until done, until a process needs input (`need_proc`), or until a checkpoint."""
        cdef int st
        if not self._started:
            self._started = True
            sched_start(&self.s)
        with nogil:
            st = sim_run(&self.s)
        if st == ST_ERROR:
            raise RuntimeError(_ERRORS.get(self.s.error, f"engine error {self.s.error}"))
        return st

    @property
    def need_proc(self):
        return self.s.need_proc

    @property
    def global_accesses(self):
        return self.s.global_accesses

    def set_next_checkpoint(self, int64_t at):
        self.s.next_checkpoint = at

    # -- results ----------------------------------------------------------------------------------
    @property
    def cpu_counters(self):
        return self._cpu_ctr

    @property
    def proc_counters(self):
        return self._proc_ctr

    @property
    def clocks(self):
        return np.array([self.s.clock[c] for c in range(self.s.n_cpus)], dtype=np.int64)

    @property
    def pt_pages(self):
        return np.array([self.s.pages_per_level[i] for i in range(6)], dtype=np.int64)

    def pt_host_memory(self):
        """The host side of the page tables: tables, dense tables, hash slots and keys, the entries present
        and the bytes these structures take (the dense tables' slices of pt and pt_written included)."""
        cdef int64_t k, i, key, present = 0, dense = 0
        cdef int seg
        for k in range(self.s.n_tables):
            if self.s.table_dense[k]:
                dense += 1
                for i in range(PT_ENTRIES):
                    present += self.s.pt[k * PT_ENTRIES + i] & 1
        cdef int64_t slots = 0, keys = 0, stamp_slots = 0
        cdef PTHash* h
        for seg in range(1 << PTH_SEG_BITS):
            h = &self.s.ph[seg]
            slots += h.mask + 1
            keys += h.used
            stamp_slots += self.s.pw[seg].mask + 1 + self.s.pu[seg].mask + 1
            for k in range(self.s.pu[seg].mask + 1):
                key = self.s.pu[seg].slots[k * 2]
                if key and not self.s.table_dense[(key - 1) >> 9]:
                    present += self.s.pu[seg].slots[k * 2 + 1] & 1
            for k in range(h.mask + 1):
                key = h.slots[k * 9]
                if key and not self.s.table_dense[(key - 1) >> 6]:
                    for i in range(8):
                        present += h.slots[k * 9 + 1 + i] & 1
        nbytes = (self.s.cap_tables * (sizeof(int64_t) + 3 * sizeof(int32_t) + sizeof(uint8_t))
                  + dense * PT_ENTRIES * (sizeof(int64_t) + (sizeof(uint64_t) if self.s.pte_epoch else 0))
                  + slots * 9 * sizeof(int64_t) + stamp_slots * 2 * sizeof(int64_t))
        return {"tables": self.s.n_tables, "dense_tables": dense, "hash_slots": slots, "hash_keys": keys,
                "present_entries": present, "host_bytes": nbytes}

    @property
    def stale_examples(self):
        return [tuple(int(self.s.examples[i * 5 + j]) for j in range(5)) for i in range(self.s.n_examples)]

    cdef void _commit_row(self, int cpu, int proc) except *:
        """Add the current row of counters to (cpu, proc), as the run loop does after a slice; raise on an
        engine error."""
        cdef int k
        row_finish(self.s.row)
        for k in range(N_COUNTERS):
            self.s.cpu_ctr[cpu * N_COUNTERS + k] += self.s.row[k]
            self.s.proc_ctr[proc * N_COUNTERS + k] += self.s.row[k]
            self.s.row[k] = 0
        if self.s.error:
            raise RuntimeError(_ERRORS.get(self.s.error, f"engine error {self.s.error}"))

    # -- direct access to single steps (hand-computed tests) ---------------------------------------
    def access(self, int cpu, int proc, uint64_t va, int kind):
        """One access outside the scheduler, counted to (cpu, proc)."""
        cdef int pcid = self.s.cpu_state[cpu].asid + 1
        if self.s.shape == SHAPE_ALL:
            sim_access(&self.s, cpu, proc, va, kind, pcid, <one_block_t>0)
        elif self.s.shape == SHAPE_CACHES:
            sim_access(&self.s, cpu, proc, va, kind, pcid, <cache_block_t>0)
        else:
            sim_access(&self.s, cpu, proc, va, kind, pcid, <any_blocks_t>0)
        self._commit_row(cpu, proc)

    def end_slice(self, int cpu, int proc):
        """`cpu` stops running `proc` for now: it waits for its accesses in flight (the overlap mode)."""
        add2(&self.s, cpu, proc, C_CYCLES, timing_drain(&self.s, cpu))

    def drain_running(self):
        """end_slice() on every running CPU with the process it runs (before a checkpoint's snapshot)."""
        sched_drain_running(&self.s)

    def switch_to(self, int cpu, int proc):
        sim_switch_to(&self.s, cpu, proc)

    def enter_lazy(self, int cpu):
        self.s.cpu_state[cpu].is_lazy = 1

    def bump_tlb_gen(self, int mm):
        self.s.mm_tlb_gen[mm] += 1
        return self.s.mm_tlb_gen[mm]

    def asid_slots(self, int cpu):
        """(loaded ASID, [ctx_id per slot]) of a CPU."""
        st = &self.s.cpu_state[cpu]
        return st.asid, [st.ctx_ids[i] for i in range(N_DYN_ASIDS)]

    def plant_pte_change(self, int proc, uint64_t va):
        """Change va's leaf PTE in place without a flush (tests the oracle). False if not mapped."""
        cdef int level
        cdef int64_t loc = pt_find(&self.s, proc, va, &level, NULL)
        if not (pt_get(&self.s, loc) & 1):
            return False
        pt_set_entry(&self.s, loc, pt_encode(pt_alloc_frame(&self.s), 1))
        return True


    # -- event time, and state the tests inspect (the kernel side itself is below and in kernel.pxi) --
    def set_next_event(self, uint64_t at):
        self.s.next_event_time = at

    def loaded_mm(self, int cpu):
        return self.s.cpu_state[cpu].loaded_mm

    def is_lazy(self, int cpu):
        return bool(self.s.cpu_state[cpu].is_lazy)

    def cpu_clock(self, int cpu):
        return self.s.clock[cpu]

    def local_gen(self, int cpu):
        """The loaded ASID's tlb_gen (a global ASID is always up to date: its mm's)."""
        st = &self.s.cpu_state[cpu]
        if is_global_asid(st.asid):
            return self.s.mm_tlb_gen[st.loaded_mm]
        return st.ctx_gens[st.asid]

    def global_asid(self, int mm):
        return self.s.mm_global_asid[mm]

    def mm_gen(self, int mm):
        return self.s.mm_tlb_gen[mm]

    def cpumask(self, int mm):
        return [c for c in range(self.s.n_cpus) if self.s.mm_cpumask[mm * self.s.n_cpus + c]]

    def pt_change(self, int mm, uint64_t va, int64_t n_pages, int shift, int op):
        return pt_change_range(&self.s, mm, va, n_pages, shift, op)

    def pt_change_span(self, int mm, uint64_t va, int64_t n_pages, int shift, int op):
        """pt_change page by page, like the mmu_gather: (first, last) index of the pages whose present PTE
        changed and how many did; (-1, -1, 0) if none."""
        cdef int64_t first, last
        cdef int64_t count = ev_pt_change_span(&self.s, mm, va, n_pages, shift, op, &first, &last)
        return first, last, count

    def pt_unlink(self, int mm, uint64_t va, int level):
        """Clear the entry at `level` on va's path in mm's tree (a detach's p4d_clear)."""
        return bool(ev_pt_unlink(&self.s, mm, va, level))

    def charge(self, int cpu, int proc, str counter, int64_t value):
        """Add `value` to a counter of a CPU (and of a process, if proc >= 0); cycles also move its clock."""
        ev_charge(&self.s, cpu, proc, _COUNTER_INDEX[counter], value)

    # -- the kernel side of invalidation events (kernels/kernel.pxi; reference/kernel.py) ------------
    def set_kernel(self, *, str strategy, bint invlpgb, int slot_shift, int link_level, costs,
                   int64_t single_page_flush_ceiling, int64_t trim_interval, regions, home_cpu, notifiers,
                   int invlpgb_count_max, int64_t jiffy_cycles, str detach_flush="range"):
        """Configure the kernel side (mshare_hw.engine.shootdown.Kernel does): the flush strategy, whether the
        kernel uses INVLPGB, the mshare link entries' span and level, the kernel costs in KERNEL_COSTS
        order, Linux's constants, the regions events name ((name, start, end, shift, shared, host,
        mappers) each), each process's home CPU and the secondary MMUs' mmu notifiers (or None), the pages
        one INVLPGB may cover, the cycles of a jiffy (the global-ASID check) and how an mshare detach
        flushes (DETACH_FLUSHES). Resets the trim times."""
        cdef EventCtx* e = &self.ev
        if strategy not in _STRATEGY_CODE:
            raise ValueError(f"unknown strategy {strategy!r}")
        if detach_flush not in _DETACH_CODE:
            raise ValueError(f"unknown detach_flush {detach_flush!r}")
        if len(costs) != N_KCOSTS:
            raise ValueError(f"expected {N_KCOSTS} kernel costs, got {len(costs)}")
        regions = list(regions)
        if len(home_cpu) != self.s.n_procs or any(not 0 <= c < self.s.n_cpus for c in home_cpu):
            raise ValueError("home_cpu: one CPU in range per process expected")
        if invlpgb_count_max < 1 or jiffy_cycles < 1:
            raise ValueError("invlpgb_count_max and jiffy_cycles must be positive")
        for r in regions:
            if not (r[5] == -1 or 0 <= r[5] < self.s.n_mms - self.s.n_procs):
                raise ValueError(f"region {r[0]!r}: host {r[5]} out of range")
            if any(not 0 <= p < self.s.n_procs for p in r[6]):
                raise ValueError(f"region {r[0]!r}: a mapper is out of range")
        self._regions = kernel_configure(e, &self.s, _STRATEGY_CODE[strategy], _DETACH_CODE[detach_flush], invlpgb,
                                         slot_shift, link_level, costs, single_page_flush_ceiling, trim_interval,
                                         regions, home_cpu)
        self._notifiers = notifiers
        e.invlpgb_count_max = invlpgb_count_max
        e.jiffy_cycles = jiffy_cycles

    cdef int _configured(self) except -1:
        if not self.ev.configured:
            raise RuntimeError("the kernel side is not configured (set_kernel)")
        return 1

    def initiator_cpu(self, int proc):
        """The CPU an event by `proc` initiates on: the first CPU running it, else its home CPU."""
        self._configured()
        if not 0 <= proc < self.s.n_procs:
            raise IndexError(f"process {proc} out of range")
        return k_initiator(&self.s, &self.ev, proc)

    def execute_event(self, str kind, int proc, str region, first_page, n_pages, int64_t now, int cpu=-1):
        """One invalidation event of `kind` by process `proc` on `cpu` (-1: initiator_cpu(proc)) at time `now`,
        over n_pages pages of `region` from its page first_page (clipped to the region): PTEs change in
        every page table holding them, then the configured flushes; the initiator is charged its cycles."""
        self._configured()
        if not (0 <= proc < self.s.n_procs and -1 <= cpu < self.s.n_cpus):
            raise IndexError(f"process {proc} or cpu {cpu} out of range")
        if cpu < 0:
            cpu = k_initiator(&self.s, &self.ev, proc)
        # clip huge page numbers before they meet C integers (regions span far fewer than 2^62 pages)
        k_execute(&self.s, &self.ev, self._notifiers, _KIND_CODE[kind], proc, self._regions[region],
                  min(first_page, _PAGE_LIMIT), min(n_pages, _PAGE_LIMIT), now, cpu)

    def flush_tlb_mm_range(self, int cpu, int iproc, int mm, uint64_t va, int64_t n_pages, int shift, bint freed,
                           int64_t now):
        """flush_tlb_mm_range(mm) from `cpu` for process iproc at time `now` (should_trim_cpumask at most once
        per trim interval), then mm's secondary-TLB notifier. Returns the initiator's cycles (not charged)."""
        self._configured()
        if not (0 <= mm < self.s.n_mms and 0 <= cpu < self.s.n_cpus):
            raise IndexError(f"mm {mm} or cpu {cpu} out of range")
        return k_flush_tlb_mm_range(&self.s, &self.ev, self._notifiers, cpu, iproc, mm, va, n_pages, shift, freed,
                                    now)

    # -- primitives for secondary MMUs (mshare_hw.engine.secondary) -------------------------------
    def pt_lookup(self, int proc, uint64_t va):
        """A side-effect-free walk of proc's tables: (present, loc, level, target, entry paddrs read).
        `loc`/`level` are the leaf entry's, or the first non-present entry's on a miss."""
        cdef int level
        cdef int64_t path[5]
        cdef int64_t loc = pt_find(&self.s, proc, va, &level, path)
        cdef int64_t ent = pt_get(&self.s, loc)
        paddrs = [pt_entry_paddr(&self.s, path[i]) for i in range(self.s.levels - level + 1)]
        if not (ent & 1):
            return False, loc, level, 0, paddrs
        return True, loc, level, ent >> 2, paddrs

    def pte_stamp(self, int64_t loc):
        """An opaque stamp of the entry at `loc` that changes whenever the entry is written while present
        (here: the epoch of its last write; the reference returns its version). Compare for equality only."""
        return pt_get_written(&self.s, loc)

    def llc_read(self, uint64_t paddr):
        """A read from outside the cores (an IOMMU walk): the shared LLC, else DRAM (filling the LLC).
        Returns (level, latency) with level 2 = LLC, 3 = DRAM."""
        if cache_touch(&self.s.llc, paddr >> 6, <any_blocks_t>0):
            return LV_LLC, self.s.llc.latency
        return LV_DRAM, self.s.dram_latency

    def fault_in(self, int cpu, int proc, uint64_t va, int kind):
        """Service faults (a device's page request) on `cpu` for `proc` until va is mapped, charged like
        a CPU's faults. Returns how many fault handler calls it took."""
        cdef int n
        for n in range(WALK_ATTEMPTS):
            ok, loc, level, _, _ = self.pt_lookup(proc, va)
            if ok:
                return n
            sim_fault(&self.s, cpu, proc, va, kind, loc // PT_ENTRIES, level)
            self._commit_row(cpu, proc)
        raise RuntimeError(_ERRORS[ERR_WALK])


# names -> the C enums' codes (tests/test_names.py keeps the enums in step with mshare_hw.names)
_COUNTER_INDEX = codes(COUNTERS)
_STRATEGY_CODE = codes(STRATEGIES)
_DETACH_CODE = codes(DETACH_FLUSHES)
_KIND_CODE = codes(EVENT_KINDS)
_PAGE_LIMIT = 1 << 62
