# The engine's whole state as C structs: one `Sim` holds every CPU's TLBs, PWCs and caches, the
# page tables, the ASID slots, the run queues and the counters. No Python object is touched per access.

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t

cdef enum:
    N_DYN_ASIDS = 6
    MAX_SHIFTS = 3
    MAX_PROBES = 12

cdef enum:                 # page-table configurations: mshare_hw.names.PT_CONFIGS
    PTC_PRIVATE
    PTC_MSHARE
    PTC_HUGETLB_PMD_SHARE

cdef enum:                 # a trace's access kinds: mshare_hw.names.ACCESS_KINDS
    AK_IFETCH
    AK_LOAD
    AK_STORE

# Set shapes the hot path is compiled for: a Cython fused type, so every function taking a shape_t has
# one C copy per shape, the shape a compile-time constant in each (Sim.shape picks the copy). Only the
# type of the argument matters, never its value.
# one_block_t: every TLB, PWC and cache set is one 16-way block and every cache has 2^k sets (Intel parts);
# cache_block_t: so are the caches, TLB and PWC sets are any size (AMD's fully associative L1 TLBs);
# any_blocks_t: the general case.
ctypedef signed char one_block_t
ctypedef short cache_block_t
ctypedef int any_blocks_t
ctypedef fused shape_t:
    one_block_t
    cache_block_t
    any_blocks_t

cdef enum:
    SHAPE_ANY = 0
    SHAPE_CACHES = 1
    SHAPE_ALL = 2


cdef inline int tlb_blocks(shape_t shape, int blocks) noexcept nogil:
    """A TLB or PWC set's 16-way blocks under `shape`."""
    if shape_t is one_block_t:
        return 1
    else:
        return blocks


cdef inline int cache_blocks(shape_t shape, int blocks) noexcept nogil:
    """A cache set's 16-way blocks under `shape`."""
    if shape_t is any_blocks_t:
        return blocks
    else:
        return 1


cdef inline bint cache_pow2(shape_t shape, int set_bits) noexcept nogil:
    """Whether a cache with `set_bits` (-1: not a power of two) indexes by mask under `shape`."""
    if shape_t is any_blocks_t:
        return set_bits >= 0
    else:
        return True


ctypedef struct SetArray:
    # The sets of a set-associative structure (a TLB array, a PWC, a data cache), scanned by scan.h: each
    # set is `blocks` 16-way blocks of 32-bit tags (64-byte aligned, 0 = invalid or padding) and LRU rank
    # bytes (invalid ways ranked oldest, so fills take them first). Under tree-PLRU a set's rank bytes hold
    # its tree bits instead; under random replacement the structure has one xorshift64* stream. Set-up and
    # replacement: set_array.pxi.
    # 56 bytes: a Cache (this and its latency) stays within one 64-byte host line.
    uint64_t* keys         # per way: the packed key its tag hashes (key_tag), 0 when invalid; NULL for caches
    uint32_t* tags         # per set, blocks * 16
    uint8_t* ranks         # per set, blocks * 16 (tree-PLRU: 64-bit words of tree bits, bit n = node n)
    uint64_t rng           # random: the xorshift64* state
    uint64_t set_mask      # sets - 1 when sets is a power of two, else 0
    int sets
    int ways
    int8_t blocks          # 16-way blocks per set (MAX_WAYS: at most 8)
    int8_t set_bits        # log2(sets) when sets is a power of two, else -1
    uint8_t pow2           # sets is a power of two (1 included: no division for fully associative arrays)
    uint8_t policy         # RP_*: which replacement the fills use
    uint8_t leaves         # tree-PLRU: ways rounded up to a power of two (the tree's leaves, at most 128)

# Timing modes, replacement policies and virtualization (mshare_hw.names: TIMING_MODES,
# REPLACEMENT_POLICIES, VIRTUALIZATION_MODES; tests/test_names.py keeps them in step).
cdef enum:
    TM_TRANSLATION
    TM_LATENCY
    TM_OVERLAP

cdef enum:
    RP_LRU
    RP_PLRU
    RP_RANDOM

cdef enum:
    VIRT_NONE
    VIRT_NESTED


ctypedef struct TLBEntry:
    uint64_t vpn
    uint64_t pfn
    int64_t pte_loc
    uint64_t epoch         # Sim.pte_epoch at fill: stale once the PTE's last write is later than this
    int32_t owner
    int32_t pcid
    uint8_t shift          # 0 marks an invalid way
    uint8_t is_global

ctypedef struct TLBArray:
    SetArray sa            # keys: valid | pcid | page size | vpn packed in one word
    TLBEntry* e            # per way: the payload
    int xor_index
    int n_shifts
    int shifts[MAX_SHIFTS]
    int64_t n_valid[4]     # valid entries per page-size code (1: 4K, 2: 2M, 3: 1G): a size with none is not probed
    uint32_t probe_bits[4] # per page-size code: the bits of its level's probes of this array for that code
    uint32_t* live         # its level's `live` mask, kept up to date as n_valid reaches and leaves 0

ctypedef struct TLBLevel:
    TLBArray* arrays
    int n
    int n_probes           # lookups probe (array, page-size code) pairs in this order
    int probe_array[MAX_PROBES]
    int probe_code[MAX_PROBES]
    int fill_array[4]      # per page-size code: the array that caches it, or -1
    uint32_t live          # bit p set while probe p's array holds a valid entry of probe p's page size

ctypedef struct PWCEntry:
    int64_t child
    int64_t loc
    uint64_t epoch
    int32_t owner
    int32_t pcid

ctypedef struct PWCArray:
    SetArray sa            # keys: valid | PCID | level | tag packed in one word
    PWCEntry* e            # per way: the payload

ctypedef struct Cache:
    SetArray sa            # no keys: a tag (line // sets + 1) names a line
    int latency

ctypedef struct CpuTlbState:
    int loaded_mm          # -1: init_mm
    int asid
    int is_lazy
    int next_asid
    int64_t ctx_ids[N_DYN_ASIDS]
    uint64_t ctx_gens[N_DYN_ASIDS]


cdef extern from *:
    """
    /* The hashes of the sparse page tables (pagetables.pxi): 2^PTH_SEG_BITS segments, each an open-
       addressing hash of slots of `width` 64-bit words, the first the key (0 = empty). A key's hash,
       key * 2^64/phi, picks the segment by its top bits and the home slot by the next ones; linear probing.
       A segment grows on its own, so a growth holds one small old array besides the new one. The find is out
       of line (noinline), so the walk's inlined code stays as small as with dense tables alone. */
    #define PTH_SEG_BITS 8
    typedef struct { int64_t* slots; int64_t mask; int64_t used; int shift; int width; } PTHash;
    static __attribute__((noinline)) int64_t* pth_find(const PTHash* segs, int64_t key) {
        uint64_t hv = (uint64_t)key * 0x9E3779B97F4A7C15ULL;
        const PTHash* h = &segs[hv >> (64 - PTH_SEG_BITS)];
        uint64_t i = (hv << PTH_SEG_BITS) >> h->shift;
        for (;;) {
            int64_t* sl = h->slots + i * h->width;
            if (sl[0] == key) return sl;
            if (sl[0] == 0) return NULL;
            i = (i + 1) & (uint64_t)h->mask;
        }
    }
    /* A sparse table's entry at `loc` (0: never written): a leaf table's from its run of 8 in ph, an upper
       table's from pu. Out of line as well. */
    static __attribute__((noinline)) int64_t pt_sparse_value(const PTHash* ph, const PTHash* pu,
                                                             const int32_t* table_level, int64_t loc) {
        int64_t* sl;
        if (table_level[loc >> 9] == 1) {
            sl = pth_find(ph, (loc >> 3) + 1);
            return sl ? sl[1 + (loc & 7)] : 0;
        }
        sl = pth_find(pu, loc + 1);
        return sl ? sl[1] : 0;
    }
    """
    enum: PTH_SEG_BITS
    ctypedef struct PTHash:
        int64_t* slots
        int64_t mask       # slots - 1 (a power of two minus one)
        int64_t used       # slots holding a key
        int shift          # 64 - log2(slots)
        int width          # 64-bit words per slot
    int64_t* pth_find(const PTHash* segs, int64_t key) noexcept nogil
    int64_t pt_sparse_value(const PTHash* ph, const PTHash* pu, const int32_t* table_level, int64_t loc) noexcept nogil


ctypedef struct Sim:
    # machine
    int n_cpus
    int n_procs
    int n_mms
    int levels
    int pcid_enabled
    int data_caches
    int shape              # SHAPE_*: the shape_t the hot loop runs under
    int oracle
    int l2_latency
    int64_t access_cycles
    int64_t ifetch_cycles
    int64_t fault_cycles
    int64_t fault_per_page_cycles
    int64_t link_fault_cycles
    int64_t context_switch_cycles
    int64_t cr3_noflush_cycles
    int64_t cr3_flush_cycles
    int pti                # page-table isolation: CR3 switches at kernel entry/exit, user-PCID flushes
    int fault_around_pages
    int link_level
    int pt_config          # PTC_*
    int pinned
    uint64_t quantum
    int64_t slice_len
    # per-CPU translation structures (arrays of n_cpus)
    TLBLevel* l1i
    TLBLevel* l1d
    TLBLevel* l2d
    TLBLevel* l2i          # == l2d when the L2 TLB is unified
    int split_l2
    PWCArray* pwc          # n_cpus * n_pwc
    int n_pwc
    int pwc_of_level[6]
    Cache* l1d_cache
    Cache* l2_cache
    Cache llc
    int dram_latency
    # nested virtualization (nested.pxi): host leaf level and page shift, each host level's first table frame,
    # per-CPU nested TLBs (n_cpus) and nested PWCs (n_cpus * NESTED_PWCS), NULL where absent
    int nested
    int host_leaf
    int host_shift
    int64_t nested_walk_cycles  # beyond the reads: per 2-D walk and per host walk
    int64_t host_base[5]
    SetArray* ntlb
    SetArray* npwc
    # page tables (pagetables.pxi): an entry is 0 = not present, else target << 2 | leaf << 1 | 1; beside it
    # pte_epoch right after its last write (the coherence oracle's clock)
    int64_t* pt            # by location (table * 512 + index): dense tables' entries (reserved, backed where written)
    uint64_t* pt_written   # by location: dense tables' last-write epochs
    int32_t* table_level
    int64_t* table_frame
    int32_t* table_mm
    int64_t n_tables
    int64_t cap_tables
    int64_t pages_per_level[6]
    int64_t next_frame
    int64_t max_frames     # frames the caches' 32-bit tags can tell apart (params.max_frames)
    int64_t* roots         # per mm
    uint64_t pte_epoch     # writes to present entries so far; fills remember it, the oracle compares
    # mms and ASIDs
    int64_t* mm_ctx_id
    uint64_t* mm_tlb_gen
    uint8_t* mm_cpumask    # n_mms * n_cpus
    int* mm_global_asid    # per mm: its global ASID, 0 for none (INVLPGB kernels)
    uint8_t* mm_transition # per mm: some CPU running it may not use its global ASID yet
    int next_global_asid   # allocate_global_asid: from TLB_NR_DYN_ASIDS upwards
    int* mm_of             # per process: its mm (its own index; a thread's process's)
    CpuTlbState* cpu_state
    # regions (CSR by process)
    int64_t* reg_off
    uint64_t* reg_start
    uint64_t* reg_end
    int32_t* reg_shift
    int32_t* reg_fa
    int32_t* reg_host
    int64_t* reg_frame
    int64_t* slot_off
    uint64_t* slot_start
    uint64_t* slot_end
    int32_t* slot_host
    # hugetlb PMD sharing (PTC_HUGETLB_PMD_SHARE): the shareable PUD spans, CSR by process (pmds_sid: the
    # span's index); per span its PMD table (-1 until a fault allocates it) and how many mms link to it
    int64_t* pmds_off
    uint64_t* pmds_start
    uint64_t* pmds_end
    int32_t* pmds_sid
    int64_t n_pmd_spans
    int64_t* pmd_table
    int32_t* pmd_users
    # scheduler
    int* cpu_running
    int* cpu_current
    uint64_t* quantum_end
    uint64_t* clock
    int* queue_buf         # n_queues * (n_procs + 1) ring buffers
    int* queue_head
    int* queue_count
    int queue_cap
    # sleeps (sleeping clients): per process, its sleeps at sleep_off[p] .. sleep_off[p + 1] - 1
    int64_t* sleep_off
    int64_t* sleep_pos     # absolute trace positions
    int64_t* sleep_cyc
    int64_t* sleep_idx     # the next sleep's index into sleep_pos / sleep_cyc
    uint64_t* wake_time    # NO_WAKE unless sleeping
    int* last_cpu
    int* home_cpu          # per process
    uint64_t next_wake     # the earliest wake time (NO_WAKE: nobody sleeps)
    # traces: the chunk each process is consuming
    uint64_t** trace_addrs
    uint8_t** trace_kinds
    int64_t* trace_len
    int64_t* trace_pos
    int64_t* trace_base    # accesses of the chunks before the current one
    int* trace_final
    # counters
    int64_t* cpu_ctr       # n_cpus * N_COUNTERS
    int64_t* proc_ctr      # n_procs * N_COUNTERS
    int64_t* row           # the current slice's counters (N_COUNTERS)
    # oracle
    int max_examples
    int n_examples
    int64_t* examples      # max_examples * 5: cycle, cpu, proc, va, where
    # run state
    int64_t global_accesses
    int64_t next_checkpoint
    uint64_t next_event_time   # the run loop stops once every running CPU's clock has reached it
    int cur_cpu
    int64_t slice_done
    int need_proc
    int error              # 0 ok; 1 out of memory; 2 walk did not converge; 3 huge-page conflict
    # timing (timing.pxi)
    int timing             # TM_*
    uint8_t* dependent     # per process: each access waits for the previous one (latency semantics)
    int load_queue         # overlap: per-CPU limits (>= 1)
    int l1d_miss_buffers
    int page_walkers
    uint64_t* lq           # n_cpus * load_queue: completion times, a ring in issue order
    int* lq_next           # per CPU: the ring slot the next access takes
    uint64_t* mshr         # n_cpus * l1d_miss_buffers: when each L1D miss buffer is free
    uint64_t* walker       # n_cpus * page_walkers: when each page walker is free
    uint64_t* outstanding  # per CPU: the latest completion time issued (a drain waits for it)
    # sparse page tables (pagetables.pxi; last, so the hot fields above keep their offsets)
    PTHash* ph             # sparse leaf tables' entries, 8 a slot: key = location // 8 + 1, then the 8 entries
    PTHash* pw             # sparse tables' last-write epochs where not 0: key = location + 1, then the epoch
    PTHash* pu             # sparse upper tables' entries, one to a slot: key = location + 1, then the entry
    int64_t pw_used        # keys in pw (all segments)
    uint8_t* table_dense   # per table: 1 once its entries are in pt, 0 while they are in ph
    int32_t* table_count   # per table: its slots in ph


# -- the kernel side of invalidation events (flush.pxi, kernel.pxi) ---------------------------------------
cdef enum:
    GLOBAL_ASID_MIN_CPUS = 3  # consider_global_asid: mm_active_cpus_exceeds(mm, 3), i.e. 4 or more CPUs
    FLUSH_ANY_MM = -2      # a kernel/batch flush: flush_tlb_func with no mm (whatever is loaded catches up)
    ANY_PCID = -1          # invlpg in every PCID (INVLPGB by address without a PCID)

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
    W_NOTHING              # tlb_remove_table_sync_one: the IPI itself, no flush

cdef enum:                 # flush strategies for shared page tables: mshare_hw.names.STRATEGIES
    S_HOST_MM_ONLY
    S_FLUSH_ALL
    S_HOST_CPUMASK
    S_PER_SHARER
    S_UNION_BATCH
    S_BROADCAST
    S_BROADCAST_VA

cdef enum:                 # how an mshare detach flushes: mshare_hw.names.DETACH_FLUSHES
    DF_RANGE
    DF_P4D_STRIDE

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
    int detach_flush       # DF_RANGE or DF_P4D_STRIDE
    int invlpgb            # the kernel uses INVLPGB for flush_tlb_all and reclaim's batches
    int slot_shift         # log2 of the VA one mshare link entry covers
    int link_level         # level of the per-process entry that links to the shared table
    int64_t ceiling        # tlb_single_page_flush_ceiling
    int64_t trim_interval  # should_trim_cpumask says yes at most once per this many cycles per mm
    int64_t* next_trim     # per mm
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
    int invlpgb_count_max  # pages one INVLPGB may cover
    int64_t jiffy_cycles   # consider_global_asid samples when (pid & 0x1f) == (jiffies & 0x1f)
