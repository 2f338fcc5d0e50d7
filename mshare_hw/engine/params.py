"""Flat simulation parameters: one uarch plus the machine and run settings, as plain numbers.

Both the Cython engine and the pure-Python reference model are built from a `SimParams`, so they
cannot disagree about sizes, latencies or policies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.uarch import PAGE_SHIFT, TLBStructure, Uarch, resolve_pti
from mshare_hw.names import (
    DETACH_FLUSHES,
    KERNEL_COSTS,
    PT_CONFIGS,
    REPLACEMENT_POLICIES,
    SCHEDULERS,
    SHARE_LEVELS,
    STRATEGIES,
    TIMING_MODES,
    VIRTUALIZATION_MODES,
    DetachFlush,
    PtConfig,
    ReplacementPolicy,
    SchedulerKind,
    ShareLevel,
    Strategy,
    TimingMode,
    VirtualizationMode,
)

# The table level that is shared (one copy for all sharers) for each share level.
SHARED_TABLE_LEVEL = {"p4d": 3, "pud": 2, "pmd": 1}

# The most simulated CPUs: the engine's per-CPU tables, and its per-mm cpumasks (n_mms x n_cpus bytes), are
# indexed by 32-bit ints (kernels/state.pxi); with up to 16,383 processes' two mms each they stay below 2^31.
MAX_CPUS = 1 << 16

# the mshare strategies that issue INVLPGB themselves: refused on parts (and in guests) without it
INVLPGB_STRATEGIES = ("broadcast", "broadcast_va")

# Levels of the host (EPT/NPT) page tables under nested virtualization: 4, as KVM uses while the guest's
# physical addresses fit 48 bits (kvm_mmu_get_tdp_level, arch/x86/kvm/mmu/mmu.c); a 5-level guest walk
# then takes 6 x 4 + 5 = 29 reads with nothing cached (35 would need a 5-level host table).
HOST_LEVELS = 4


@dataclass(frozen=True)
class TLBStruct:
    shifts: tuple[int, ...]
    sets: int
    ways: int
    xor_index: bool
    replacement: ReplacementPolicy = "lru"

    def __post_init__(self) -> None:
        if self.sets < 1 or self.ways < 1 or not self.shifts:
            raise ValueError("a TLB structure needs sets >= 1, ways >= 1 and at least one page size")
        if self.xor_index and self.sets & (self.sets - 1):
            raise ValueError(f"the xor set index needs a power-of-two number of sets, got {self.sets}")


@dataclass(frozen=True)
class SetAssoc:
    sets: int
    ways: int
    latency: int = 0
    replacement: ReplacementPolicy = "lru"


@dataclass(frozen=True)
class SimParams:
    n_cpus: int
    levels: int
    pcid: bool
    l1i: tuple[TLBStruct, ...]
    l1d: tuple[TLBStruct, ...]
    l2d: tuple[TLBStruct, ...]
    l2i: tuple[TLBStruct, ...] | None
    l2_latency: int
    # pwc_structs[k] is one structure; pwc_of_level[L] names the structure caching level-L entries
    # (L = 2..5), -1 for none.
    pwc_structs: tuple[SetAssoc, ...]
    pwc_of_level: tuple[int, ...]
    l1d_cache: SetAssoc
    l2_cache: SetAssoc
    llc: SetAssoc
    dram_latency: int
    data_caches: bool
    oracle: bool
    access_cycles: int
    ifetch_cycles: int
    fault_cycles: int
    fault_per_page_cycles: int
    link_fault_cycles: int
    context_switch_cycles: int
    cr3_noflush_cycles: int
    cr3_flush_cycles: int
    fault_around_pages: int
    pt_config: PtConfig
    share_level: ShareLevel
    scheduler: SchedulerKind
    quantum_cycles: int
    slice_accesses: int
    warmup_accesses: int = 0
    interval_accesses: int = 0
    max_stale_examples: int = 16
    # the kernel side (invalidation events): flush strategy for shared page tables and its costs;
    # invlpgb: the kernel uses INVLPGB (Linux >= 6.15 on a part that has it) for flush_tlb_all and batches
    strategy: Strategy = "flush_all"
    invlpgb: bool = False
    # how an mshare detach flushes (names.DETACH_FLUSHES); the pages one INVLPGB may cover (the uarch's
    # invlpgb_count_max; 8 for machines built by hand, what the shipped AMD parts give)
    detach_flush: DetachFlush = "range"
    invlpgb_count_max: int = 8
    kernel_costs: dict = field(default_factory=dict, compare=False)
    # timing (names.TIMING_MODES); the core's limits for `overlap` (0 where unused)
    timing: TimingMode = "translation"
    load_queue: int = 0
    l1d_miss_buffers: int = 0
    page_walkers: int = 0
    # two-dimensional walks: the host page size backing the guest and the per-CPU nested structures
    virtualization: VirtualizationMode = "none"
    host_page_shift: int = 21
    nested_tlb: SetAssoc | None = None
    nested_pwc: SetAssoc | None = None
    nested_walk_cycles: int = 0  # beyond the reads, per 2-D walk and per host walk (uarch [nested] walk_cycles)
    # page-table isolation (resolved from machine.pti): user/kernel PCID pairs, a CR3 switch at every kernel
    # entry and exit, an INVPCID on the user PCID per page flushed
    pti: bool = False
    # seeds the random-replacement streams
    seed: int = 0

    @property
    def tag_frames(self) -> int:
        """Physical 4 KiB frames the cache models can tell apart: the engine keeps 32-bit tags (line // sets
        + 1), so lines stay below (2^32 - 1) * sets in every cache (16 TiB with a 64-set L1D)."""
        return min((((1 << 32) - 1) * c.sets) // 64 for c in (self.l1d_cache, self.l2_cache, self.llc))

    @property
    def max_frames(self) -> int:
        """Frames the (guest) page tables and data may use: tag_frames, less the host page tables' reserved
        range above it under nested virtualization (host_table_base)."""
        if self.virtualization == "nested":
            return self.host_table_base[1]
        return self.tag_frames

    @property
    def host_table_base(self) -> tuple[int, ...]:
        """Under nested virtualization: the first frame of each host level's block of tables ([L] for host
        levels L = 1..4; [0] unused). Host physical = guest physical, and the level-L host table covering a
        guest-physical address g is frame host_table_base[L] + (g >> (12 + 9 L)), so the blocks sit above
        every guest frame, below tag_frames, with room for every guest frame's tables; guest frames stay
        below 2^36 (the 48-bit guest-physical space a 4-level host table maps)."""
        guest = min(1 << 36, (self.tag_frames - HOST_LEVELS) * 511 // 512)
        base = [0, guest]
        for level in range(1, HOST_LEVELS):
            base.append(base[-1] + -(-guest // (512**level)))
        return tuple(base)

    @property
    def shared_table_level(self) -> int:
        """Level of the first table shared by all sharers (0 in `private`)."""
        return SHARED_TABLE_LEVEL[self.share_level] if self.pt_config == "mshare" else 0

    @property
    def link_level(self) -> int:
        """Level of the per-process table whose entry links to the shared table."""
        return self.shared_table_level + 1 if self.pt_config == "mshare" else 0

    @property
    def slot_shift(self) -> int:
        """log2 of the VA span one link entry covers (512 GiB for p4d)."""
        return 12 + 9 * self.shared_table_level if self.pt_config == "mshare" else 0


def _tlb_structs(level: list[TLBStructure], policy) -> tuple[TLBStruct, ...]:
    out = []
    for s in level:
        shifts = tuple(sorted(PAGE_SHIFT[x] for x in s.sizes))
        out.append(
            TLBStruct(shifts=shifts, sets=s.sets, ways=s.ways, xor_index=s.index == "xor", replacement=policy(s))
        )
    return tuple(out)


def build_params(
    uarch: Uarch,
    *,
    n_cpus: int,
    pt_config: str = "private",
    share_level: str = "p4d",
    five_level: bool = False,
    data_caches: bool = True,
    oracle: bool = True,
    scheduler: str = "pinned",
    quantum_cycles: int = 3_000_000,
    slice_accesses: int = 512,
    fault_around_pages: int = 16,
    warmup_accesses: int = 0,
    interval_accesses: int = 0,
    strategy: Strategy = "flush_all",
    detach_flush: DetachFlush = "range",
    kernel_invlpgb: bool = True,
    timing: TimingMode = "translation",
    virtualization: VirtualizationMode = "none",
    host_page_size: str = "2M",
    replacement: str = "auto",
    pti: str | bool = "auto",
    seed: int = 0,
) -> SimParams:
    if n_cpus < 1 or n_cpus > MAX_CPUS:
        raise ConfigError(
            f"machine.n_cpus: expected 1..{MAX_CPUS:,} (the engine indexes its per-CPU tables with 32-bit ints), "
            f"got {n_cpus:,}"
        )
    for what, names, value in (
        ("pt_config", PT_CONFIGS, pt_config),
        ("share_level", SHARE_LEVELS, share_level),
        ("scheduler.kind", SCHEDULERS, scheduler),
        ("strategy", STRATEGIES, strategy),
        ("detach_flush", DETACH_FLUSHES, detach_flush),
        ("machine.timing", TIMING_MODES, timing),
        ("machine.virtualization", VIRTUALIZATION_MODES, virtualization),
        ("machine.replacement", ("auto", *REPLACEMENT_POLICIES), replacement),
        ("machine.host_page_size", tuple(PAGE_SHIFT), host_page_size),
    ):
        if value not in names:
            raise ConfigError(f"{what}: expected one of {', '.join(names)}, got {value!r}")
    if five_level and not uarch.features.la57:
        raise ConfigError(f"machine.five_level: uarch '{uarch.name}' does not support LA57")
    if quantum_cycles < 1 or slice_accesses < 1:
        raise ConfigError("scheduler.quantum_cycles and scheduler.slice_accesses must be >= 1")
    if fault_around_pages < 1 or fault_around_pages > 512 or fault_around_pages & (fault_around_pages - 1):
        raise ConfigError(f"fault_around_pages: expected a power of two in 1..512, got {fault_around_pages}")
    if strategy in INVLPGB_STRATEGIES and not uarch.features.invlpgb:
        raise ConfigError(f"strategy '{strategy}' needs INVLPGB, which uarch '{uarch.name}' does not have")
    if strategy in INVLPGB_STRATEGIES and not kernel_invlpgb:
        raise ConfigError(f"strategy '{strategy}' needs machine.kernel_invlpgb = true")
    if timing != "translation" and not data_caches:
        raise ConfigError(f"machine.timing: '{timing}' charges data-cache latency and needs machine.data_caches = true")
    if timing == "overlap" and uarch.core is None:
        raise ConfigError(f"machine.timing: 'overlap' needs a [core] table, which uarch '{uarch.name}' lacks")
    pti_on = resolve_pti(pti, uarch)
    nested = virtualization == "nested"
    if nested and uarch.nested is None:
        raise ConfigError(f"machine.virtualization: 'nested' needs a [nested] table, which uarch '{uarch.name}' lacks")
    if nested and uarch.costs.virtualized is None:
        raise ConfigError(
            f"machine.virtualization: 'nested' needs a [costs.virtualized] table, which uarch '{uarch.name}' lacks"
        )
    if nested and strategy in INVLPGB_STRATEGIES:
        raise ConfigError(
            f"strategy '{strategy}': INVLPGB is not offered to guests (machine.virtualization = 'nested')"
        )

    def policy(structure, default: str = "lru") -> str:
        """A structure's replacement: LRU in translation mode under 'auto', else the uarch's or the forced one."""
        if replacement != "auto":
            return replacement
        if timing == "translation":
            return "lru"
        own = getattr(structure, "replacement", None)
        return own if own is not None else default

    levels = 5 if five_level else 4
    pwc = uarch.pwc
    structs: list[SetAssoc] = []
    of_level = [-1] * 6
    pwc_policy = policy(pwc)
    if pwc.unified is not None:
        structs.append(SetAssoc(pwc.unified.sets, pwc.unified.ways, replacement=pwc_policy))
        for lv in range(2, levels + 1):
            of_level[lv] = 0
    else:
        for lv, s in ((2, pwc.pd), (3, pwc.pdpt), (4, pwc.pml4), (5, pwc.pml5)):
            if s is not None and lv <= levels:
                of_level[lv] = len(structs)
                structs.append(SetAssoc(s.sets, s.ways, replacement=pwc_policy))
    c = uarch.caches
    llc_lines = c.llc.size_kib_per_cpu * 1024 // 64 * n_cpus
    co = uarch.costs
    kernel = {k: getattr(co, k) for k in KERNEL_COSTS}
    cr3_noflush = co.cr3_noflush_cycles
    if nested:  # a guest's kernel: the virtualized costs, and no INVLPGB
        kernel.update(co.virtualized.model_dump())
        cr3_noflush = co.virtualized.cr3_noflush_cycles
        del kernel["cr3_noflush_cycles"]
    tlb_policy = lambda s: policy(s, uarch.tlb.replacement)  # noqa: E731
    core = uarch.core
    nest = uarch.nested
    return SimParams(
        n_cpus=n_cpus,
        levels=levels,
        pcid=uarch.features.pcid,
        l1i=_tlb_structs(uarch.tlb.l1i, tlb_policy),
        l1d=_tlb_structs(uarch.tlb.l1d, tlb_policy),
        l2d=_tlb_structs(uarch.tlb.l2d, tlb_policy),
        l2i=_tlb_structs(uarch.tlb.l2i, tlb_policy) if uarch.tlb.l2i is not None else None,
        l2_latency=uarch.tlb.l2_hit_latency,
        pwc_structs=tuple(structs),
        pwc_of_level=tuple(of_level),
        l1d_cache=SetAssoc(c.l1d.size_kib * 1024 // 64 // c.l1d.ways, c.l1d.ways, c.l1d.latency, policy(c.l1d)),
        l2_cache=SetAssoc(c.l2.size_kib * 1024 // 64 // c.l2.ways, c.l2.ways, c.l2.latency, policy(c.l2)),
        llc=SetAssoc(llc_lines // c.llc.ways, c.llc.ways, c.llc.latency, policy(c.llc)),
        dram_latency=c.dram_latency,
        data_caches=data_caches,
        oracle=oracle,
        access_cycles=co.access_cycles,
        ifetch_cycles=co.ifetch_cycles,
        fault_cycles=co.fault_cycles,
        fault_per_page_cycles=co.fault_per_page_cycles,
        link_fault_cycles=co.link_fault_cycles,
        context_switch_cycles=co.context_switch_cycles,
        cr3_noflush_cycles=cr3_noflush,
        cr3_flush_cycles=kernel["cr3_flush_cycles"],
        fault_around_pages=fault_around_pages,
        pt_config=pt_config,  # type: ignore[arg-type]
        share_level=share_level,  # type: ignore[arg-type]
        scheduler=scheduler,  # type: ignore[arg-type]
        quantum_cycles=quantum_cycles,
        slice_accesses=slice_accesses,
        warmup_accesses=warmup_accesses,
        interval_accesses=interval_accesses,
        strategy=strategy,
        invlpgb=uarch.features.invlpgb and kernel_invlpgb and not nested,
        detach_flush=detach_flush,
        # a part without INVLPGB never issues one; 1 keeps the kernel side's check (>= 1) satisfied
        invlpgb_count_max=uarch.features.invlpgb_count_max if uarch.features.invlpgb else 1,
        kernel_costs=kernel,
        timing=timing,
        load_queue=core.load_queue if core is not None else 0,
        l1d_miss_buffers=core.l1d_miss_buffers if core is not None else 0,
        page_walkers=core.page_walkers if core is not None else 0,
        virtualization=virtualization,
        host_page_shift=PAGE_SHIFT[host_page_size],
        nested_tlb=SetAssoc(nest.tlb.sets, nest.tlb.ways, replacement=policy(nest)) if nested else None,
        nested_pwc=SetAssoc(nest.pwc.sets, nest.pwc.ways, replacement=policy(nest)) if nested else None,
        nested_walk_cycles=nest.walk_cycles if nested else 0,
        pti=pti_on,
        seed=seed,
    )
