"""Random small machines and workloads for the differential tests (Hypothesis strategies), the coverage
events they record, and the comparison of two engines' results."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import HealthCheck, assume, event, settings
from hypothesis import strategies as st

from mshare_hw import _engine
from mshare_hw.config.errors import ConfigError
from mshare_hw.counters import COUNTERS
from mshare_hw.engine.layout import Layout, build_layout
from mshare_hw.engine.params import SetAssoc, SimParams, TLBStruct
from mshare_hw.names import REPLACEMENT_POLICIES, TIMING_MODES
from mshare_hw.workload.model import PAGE_SIZES, ArrayTrace, Process, Region, Workload

KiB4 = 1 << 12
MiB2 = 1 << 21
GiB = 1 << 30
SLOT = 1 << 39  # 512 GiB


def differential_settings(max_examples: int) -> settings:
    """Hypothesis settings of the differential tests: reproducible (derandomized, no database), no deadline."""
    return settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
    )


# ---- machines --------------------------------------------------------------------------------------

SETS = st.sampled_from([1, 2, 4, 3])
# The engine runs one of three compiled copies of its hot loop (kernels/state.pxi's shape_t), picked by the
# machine's set shapes: every set one 16-way block and 2^k cache sets; so the caches only; or neither.
# A machine is drawn for one of them: "wide" structures have 17-33 ways (2-3 blocks).
NARROW_WAYS = st.integers(1, 4)
ANY_WAYS = st.integers(1, 4) | st.integers(17, 33)
SHAPES = ["one_block", "cache_block", "any"]
# replacement: LRU everywhere (the only policy the one-block copies run), one policy everywhere, or each
# structure its own
POLICY_MODES = ["lru", "lru", "plru", "random", "mixed"]
LRU = st.just("lru")


def policies(mode: str) -> st.SearchStrategy[str]:
    return st.sampled_from(REPLACEMENT_POLICIES) if mode == "mixed" else st.just(mode)


@st.composite
def tlb_level(
    draw, ways: st.SearchStrategy[int] = NARROW_WAYS, policy: st.SearchStrategy[str] = LRU
) -> tuple[TLBStruct, ...]:
    out = []
    for _ in range(draw(st.integers(1, 2))):
        shifts = tuple(sorted(draw(st.sets(st.sampled_from([12, 21, 30]), min_size=1))))
        sets = draw(SETS)
        xor = sets & (sets - 1) == 0 and draw(st.booleans())
        out.append(TLBStruct(shifts=shifts, sets=sets, ways=draw(ways), xor_index=xor, replacement=draw(policy)))
    return tuple(out)


@st.composite
def small_cache(
    draw, lat_lo: int, lat_hi: int, any_shape: bool = True, policy: st.SearchStrategy[str] = LRU
) -> SetAssoc:
    # mostly tiny caches (replacement on every few lines); sometimes 64-96 sets, whose 32-bit tags can tell
    # apart the frames of regions spanning 512 GiB slots (max_frames: tiny caches reject those layouts)
    if any_shape:
        sets = draw(st.integers(1, 8) | st.sampled_from([64, 96]))
        ways = draw(ANY_WAYS)
    else:
        sets = draw(st.sampled_from([1, 2, 4, 8, 64]))
        ways = draw(NARROW_WAYS)
    return SetAssoc(sets, ways, draw(st.integers(lat_lo, lat_hi)), replacement=draw(policy))


@st.composite
def pwcs(
    draw, levels: int, ways: st.SearchStrategy[int] = NARROW_WAYS, policy: st.SearchStrategy[str] = LRU
) -> tuple[tuple[SetAssoc, ...], tuple[int, ...]]:
    mode = draw(st.sampled_from(["per_level", "per_level", "unified", "none"]))
    of_level = [-1] * 6
    structs: list[SetAssoc] = []
    if mode == "unified":
        structs.append(SetAssoc(draw(SETS), draw(ways), replacement=draw(policy)))
        for lv in range(2, levels + 1):
            of_level[lv] = 0
    elif mode == "per_level":
        for lv in range(2, levels + 1):
            if draw(st.integers(0, 4)) > 0:
                of_level[lv] = len(structs)
                structs.append(SetAssoc(draw(SETS), draw(ways), replacement=draw(policy)))
    return tuple(structs), tuple(of_level)


@st.composite
def machines(draw) -> SimParams:
    levels = draw(st.sampled_from([4, 4, 5]))
    shape = draw(st.sampled_from(SHAPES))
    tlb_ways = NARROW_WAYS if shape == "one_block" else ANY_WAYS
    any_cache = shape == "any"
    policy = policies(draw(st.sampled_from(POLICY_MODES)))
    pwc_structs, pwc_of_level = draw(pwcs(levels, tlb_ways, policy))
    warmup = draw(st.one_of(st.just(0), st.integers(1, 600)))
    interval = draw(st.one_of(st.just(0), st.just(0), st.integers(7, 300)))
    timing = draw(st.sampled_from(TIMING_MODES))
    nested = draw(st.integers(0, 2)) == 0  # two-dimensional walks (nested TLB / PWCs each may be absent)
    nested_array = st.builds(SetAssoc, SETS, tlb_ways, replacement=policy)
    nested_structure = st.one_of(st.none(), nested_array, nested_array)
    pcid = draw(st.booleans())
    return SimParams(
        n_cpus=draw(st.integers(1, 3)),
        levels=levels,
        pcid=pcid,
        l1i=draw(tlb_level(tlb_ways, policy)),
        l1d=draw(tlb_level(tlb_ways, policy)),
        l2d=draw(tlb_level(tlb_ways, policy)),
        l2i=draw(st.one_of(st.none(), tlb_level(tlb_ways, policy))),
        l2_latency=draw(st.integers(0, 20)),
        pwc_structs=pwc_structs,
        pwc_of_level=pwc_of_level,
        l1d_cache=draw(small_cache(1, 6, any_cache, policy)),
        l2_cache=draw(small_cache(8, 20, any_cache, policy)),
        llc=draw(small_cache(20, 60, any_cache, policy)),
        dram_latency=draw(st.integers(60, 300)),
        data_caches=timing != "translation" or draw(st.booleans()),
        oracle=draw(st.booleans()),
        access_cycles=draw(st.integers(0, 5)),
        ifetch_cycles=draw(st.integers(0, 5)),
        fault_cycles=draw(st.integers(0, 3000)),
        fault_per_page_cycles=draw(st.integers(0, 100)),
        link_fault_cycles=draw(st.integers(0, 500)),
        context_switch_cycles=draw(st.integers(0, 500)),
        cr3_noflush_cycles=draw(st.integers(0, 50)),
        cr3_flush_cycles=draw(st.integers(0, 300)),
        fault_around_pages=draw(st.sampled_from([16, 16, 1, 2, 4, 64])),
        pt_config=draw(st.sampled_from(["private", "mshare", "mshare", "hugetlb_pmd_share"])),
        share_level=draw(st.sampled_from(["p4d", "pud", "pmd"])),
        scheduler=draw(st.sampled_from(["pinned", "global"])),
        quantum_cycles=draw(st.integers(50, 5000)),
        slice_accesses=draw(st.integers(1, 64)),
        warmup_accesses=warmup,
        interval_accesses=interval,
        max_stale_examples=draw(st.integers(0, 4)),
        timing=timing,
        load_queue=draw(st.integers(1, 8)),
        l1d_miss_buffers=draw(st.integers(1, 4)),
        page_walkers=draw(st.integers(1, 3)),
        virtualization="nested" if nested else "none",
        host_page_shift=draw(st.sampled_from([12, 21, 21, 30])),
        nested_tlb=draw(nested_structure) if nested else None,
        nested_pwc=draw(nested_structure) if nested else None,
        nested_walk_cycles=draw(st.sampled_from([0, 75, 3])) if nested else 0,
        pti=pcid and draw(st.booleans()),  # the model's PTI needs PCID (build_params refuses it without)
        seed=draw(st.integers(0, 2**32)),
    )


# ---- workloads -------------------------------------------------------------------------------------

LEAF = {"4K": 1, "2M": 2, "1G": 3}
SHARED_LEVEL = {"p4d": 3, "pud": 2, "pmd": 1}


@st.composite
def regions(draw, params: SimParams, n_procs: int) -> list[Region]:
    hugetlb = params.pt_config == "hugetlb_pmd_share"
    n = draw(st.sampled_from([1, 2, 2, 3] if hugetlb else [0, 1, 2, 2, 3, 3]))
    slots = draw(st.permutations([2, 4, 6, 8, 10]))[:n]  # even slots: slot k + 1 is free for spill-over
    out = []
    for i, k in enumerate(slots):
        if hugetlb and i == 0:
            # a hugetlb region (MAP_SHARED, 2 MiB pages) of 1 to 3 GiB, mostly PUD-aligned: whole aligned GiB
            # spans share their PMD table, the parts outside them do not (build_layout refuses a workload
            # with none: rejected)
            offset = draw(st.sampled_from([0, 0, 0, 1, 7, 511]))
            pages = draw(st.sampled_from([1024, 1030, 1536, 513] if offset else [512, 512, 513, 1024, 1536]))
            members = None if draw(st.booleans()) else tuple(range(0, n_procs, 2)) or None
            out.append(
                Region(
                    name=f"r{i}",
                    start=k * SLOT + offset * PAGE_SIZES["2M"],
                    size=pages * PAGE_SIZES["2M"],
                    page_size="2M",
                    kind="shmem",
                    shared=True,
                    processes=members,
                    share_tables=draw(st.integers(0, 7)) > 0,
                )
            )
            continue
        shared = draw(st.integers(0, 3)) > (0 if params.pt_config == "mshare" else 1)
        share_tables = draw(st.integers(0, 5)) > 0
        tables_shared = params.pt_config == "mshare" and shared and share_tables
        if tables_shared:
            # mostly page sizes the share level accepts (others are rejected by build_layout)
            ok = [s for s in ("4K", "2M", "1G") if LEAF[s] <= SHARED_LEVEL[params.share_level]]
            page_size = draw(st.sampled_from(ok * 6 + ["4K", "2M", "1G"]))
            offset = 0 if draw(st.integers(0, 9)) else draw(st.sampled_from([1, 3, 512])) * PAGE_SIZES[page_size]
        else:
            page_size = draw(st.sampled_from(["4K", "4K", "4K", "2M", "2M", "1G"]))
            offset = draw(st.sampled_from([0, 0, 1, 7, 511, 1000])) * PAGE_SIZES[page_size]
        psize = PAGE_SIZES[page_size]
        if page_size == "4K":
            pages = draw(st.integers(1, 48))
            size = pages * psize
            if draw(st.integers(0, 7)) == 0:
                size += SLOT  # spans two 512 GiB slots (the tables are built only where touched)
        else:
            size = draw(st.integers(1, 3 if page_size == "2M" else 2)) * psize
        members = None
        if draw(st.booleans()):
            members = tuple(sorted(draw(st.sets(st.integers(0, n_procs - 1), min_size=1))))
        out.append(
            Region(
                name=f"r{i}",
                start=k * SLOT + offset,
                size=size,
                page_size=page_size,  # type: ignore[arg-type]
                kind=draw(st.sampled_from(["anon", "shmem", "file"])),
                shared=shared,
                processes=members,
                share_tables=share_tables,
            )
        )
    return out


def address_pool(regs: list[Region], rng: np.random.Generator, va_bits: int) -> list[int]:
    """Candidate addresses: pages at both ends of every region (and its tail, undeclared), plus a few
    undeclared ones elsewhere."""
    pool: list[int] = []
    for r in regs:
        psize = PAGE_SIZES[r.page_size]
        n = r.size // psize
        idx = set(range(min(n, 40))) | set(range(max(0, n - 20), n))
        for i in sorted(idx):
            pool.append(r.start + i * psize + int(rng.integers(0, psize)))
        for j in range(3):  # beyond the end: undeclared (inside a shared slot's tail when there is one)
            pool.append(r.end + j * KiB4 + int(rng.integers(0, KiB4)))
    for j in range(6):
        pool.append(0x400000 + j * KiB4 + int(rng.integers(0, KiB4)))
    for _ in range(4):
        pool.append(int(rng.integers(0, 1 << (va_bits - 12))) << 12 | int(rng.integers(0, KiB4)))
    return pool


@st.composite
def workloads(draw, params: SimParams) -> Workload:
    n_procs = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 8]))
    regs = draw(regions(params, n_procs))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pile = draw(st.integers(0, 2)) == 0  # all processes on CPU 0: more than 6 per CPU recycles ASIDs
    sleepy = draw(st.integers(0, 2)) == 0  # sleeping clients: processes block and leave their CPUs
    # threads: some processes share an earlier process's mm (regions then list that process instead)
    threaded = n_procs > 1 and draw(st.integers(0, 2)) == 0
    mm_of = list(range(n_procs))
    if threaded:
        for p in range(1, n_procs):
            if rng.random() < 0.6:
                mm_of[p] = int(rng.choice([q for q in range(p) if mm_of[q] == q]))
        regs = [
            r
            if r.processes is None
            else dataclasses.replace(r, processes=tuple(sorted({mm_of[m] for m in r.processes})))
            for r in regs
        ]
    procs = []
    va_bits = 47 if params.levels == 4 else 56
    for p in range(n_procs):
        n = draw(st.one_of(st.integers(0, 40), st.integers(0, 400)))
        pool = np.array(address_pool(regs, rng, va_bits), dtype=np.uint64)
        rng.shuffle(pool)
        hot = pool[: int(rng.integers(1, 9))]
        pick_hot = rng.random(n) < 0.6
        addrs = np.where(pick_hot, rng.choice(hot, n), rng.choice(pool, n)).astype(np.uint64)
        kinds = rng.choice(3, n, p=[0.2, 0.5, 0.3]).astype(np.uint8)
        if pile:
            cpu = 0
        else:
            cpu = draw(st.one_of(st.none(), st.integers(0, params.n_cpus - 1)))
        sleeps: tuple[tuple[int, int], ...] = ()
        if sleepy and n:
            # positions past the end are never reached; cycles from 0 to beyond a quantum
            at = np.unique(rng.integers(1, n + 3, int(rng.integers(0, 6))))
            sleeps = tuple((int(a), int(rng.choice([0, 1, 50, 400, 3000, 20000]))) for a in at)
        thread_of = None if mm_of[p] == p else mm_of[p]
        procs.append(
            Process(
                f"p{p}",
                ArrayTrace(addrs, kinds),
                cpu=cpu,
                dependent=draw(st.booleans()),
                sleeps=sleeps,
                thread_of=thread_of,
            )
        )
    return Workload(procs, regs)


@st.composite
def cases(draw) -> tuple[SimParams, Workload, Layout]:
    """A machine, a workload on it and their layout (workloads the layout refuses are rejected)."""
    params = draw(machines())
    workload = draw(workloads(params))
    try:
        layout = build_layout(workload, params)
    except ConfigError:
        assume(False)
    return params, workload, layout


# ---- coverage events ----------------------------------------------------------------------------------

# Shown by `pytest --hypothesis-show-statistics`: how often each mechanism was exercised.
COVERAGE_EVENTS = (
    "context_switches",
    "asid_slot_hits",
    "asid_recycles",
    "cr3_flushes",
    "lazy_catchup_flushes",
    "sleeps",
    "global_asid_assignments",
    "stlb_hits",
    "pwc_hits_pd",
    "pwc_hits_pdpt",
    "pwc_hits_pml4",
    "pwc_hits_pml5",
    "walk_reads_l2",
    "walk_reads_llc",
    "link_faults",
    "pmd_shares",
    "pmd_unshares",
    "stale_translations",
    "data_l1d_hits",
    "nested_walk_reads",
)


def record_coverage(cpu_counters: np.ndarray, params: SimParams) -> None:
    tot = np.asarray(cpu_counters).sum(axis=0)
    for name in COVERAGE_EVENTS:
        if tot[COUNTERS.index(name)] > 0:
            event(f"{name} > 0")
    pf, pm = tot[COUNTERS.index("page_faults")], tot[COUNTERS.index("pages_mapped")]
    if pm > pf:
        event("fault-around mapped > 1 page")
    event(f"pt_config={params.pt_config}/{params.share_level if params.pt_config == 'mshare' else '-'}")
    event(f"virtualization={params.virtualization}")
    event(f"hot loop compiled for {SHAPE_NAMES[_engine.set_shape(params)]}")
    event(f"timing={params.timing}")
    event(f"replacement: {'/'.join(sorted({c.replacement for c in (params.l1d_cache, *params.l1d, *params.l2d)}))}")


SHAPE_NAMES = {2: "one-block sets", 1: "one-block cache sets", 0: "any sets"}


# ---- comparison ------------------------------------------------------------------------------------


def assert_same_results(got: dict, want: dict) -> None:
    for key in ("cpu_counters", "proc_counters"):
        a, b = np.asarray(got[key]), np.asarray(want[key])
        assert a.shape == b.shape, key
        if not np.array_equal(a, b):
            bad = sorted({COUNTERS[j] for j in np.argwhere(a != b)[:, 1]})
            raise AssertionError(f"{key} differ in {bad}:\nengine\n{a}\nreference\n{b}")
    np.testing.assert_array_equal(got["clocks"], want["clocks"], err_msg="clocks")
    np.testing.assert_array_equal(got["pt_pages"], want["pt_pages"], err_msg="pt_pages")
    assert [tuple(x) for x in got["stale_examples"]] == [tuple(x) for x in want["stale_examples"]]
    assert len(got["intervals"]) == len(want["intervals"]), "number of interval samples"
    for (ga, ca), (gb, cb) in zip(got["intervals"], want["intervals"]):
        assert ga == gb
        np.testing.assert_array_equal(ca, cb, err_msg=f"interval at {ga}")
