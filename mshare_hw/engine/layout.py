"""Where a workload's regions live: per-process region tables, physical frame reservations, host mms.

Both engines take a `Layout`, so physical addresses (and therefore cache sets of page-table and data
lines) are the same in both and reproducible from run to run.
"""

from __future__ import annotations

from dataclasses import dataclass

from mshare_hw.config.errors import ConfigError
from mshare_hw.engine.params import SimParams
from mshare_hw.workload.model import PAGE_SIZES, Workload

FRAME_BASE = 256  # first usable 4 KiB frame (1 MiB), as on a PC
LEAF_LEVEL = {12: 1, 21: 2, 30: 3}
PUD_SHIFT = 30  # hugetlb PMD sharing shares the PMD table under one PUD entry: a PUD-aligned 1 GiB span


@dataclass(frozen=True)
class RegionRow:
    start: int
    end: int
    shift: int  # page shift: 12, 21, 30
    fault_around: bool  # read faults map the aligned fault-around window (file/shmem, 4 KiB pages)
    host: int  # host mm index when the region's page tables are shared, else -1
    frame_base: int  # 4 KiB frame number of the region's first page for this process


@dataclass(frozen=True)
class SlotRow:
    start: int  # VA span whose link entry points into a host's tables
    end: int
    host: int


@dataclass(frozen=True)
class RegionSpan:
    """A workload region as the kernel side sees it: who maps it, whose tables hold its PTEs."""

    start: int
    end: int
    shift: int
    shared: bool
    host: int  # host mm index (shared page tables), else -1
    mappers: tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    n_procs: int
    n_hosts: int
    home_cpu: tuple[int, ...]
    regions: tuple[tuple[RegionRow, ...], ...]  # per process, sorted by start
    slots: tuple[tuple[SlotRow, ...], ...]  # per process
    dyn_frame_start: int
    va_limit: int
    spans: dict[str, RegionSpan]
    dependent: tuple[bool, ...] = ()  # per process (empty: none): each access waits for the previous one
    # per process (empty: none): (trace position, cycles) of each sleep, positions increasing
    sleeps: tuple[tuple[tuple[int, int], ...], ...] = ()
    # per process (empty: each its own): the mm it runs in, its own index or, for a thread, its process's
    mm_of: tuple[int, ...] = ()
    # pt_config hugetlb_pmd_share: per process, the PUD-aligned 1 GiB spans of its hugetlb regions whose PMD
    # table may be shared (want_pmd_share), each a SlotRow whose `host` is the span's index among n_pmd_spans
    pmd_slots: tuple[tuple[SlotRow, ...], ...] = ()
    n_pmd_spans: int = 0


def _align_up(x: int, a: int) -> int:
    return (x + a - 1) // a * a


def build_layout(workload: Workload, params: SimParams) -> Layout:
    n = len(workload.processes)
    if n == 0:
        raise ConfigError("workload: no processes")
    va_limit = 1 << (47 if params.levels == 4 else 56)
    home = []
    for i, p in enumerate(workload.processes):
        cpu = i % params.n_cpus if p.cpu is None else p.cpu
        if not 0 <= cpu < params.n_cpus:
            raise ConfigError(f"process '{p.name}': cpu {cpu} is outside 0..{params.n_cpus - 1}")
        home.append(cpu)
    mm_of = _mm_of(workload)
    leaders = [i for i in range(n) if mm_of[i] == i]

    next_frame = FRAME_BASE
    rows: list[list[RegionRow]] = [[] for _ in range(n)]
    slots: list[list[SlotRow]] = [[] for _ in range(n)]
    n_hosts = 0
    spans: dict[str, RegionSpan] = {}
    share = params.pt_config == "mshare"
    slot = 1 << params.slot_shift if share else 0
    hugetlb = params.pt_config == "hugetlb_pmd_share"
    pmd_slots: list[list[SlotRow]] = [[] for _ in range(n)]
    n_pmd_spans = 0
    for reg in workload.regions:
        where = f"region '{reg.name}'"
        if reg.page_size not in PAGE_SIZES:
            raise ConfigError(f"{where}: page_size must be 4K, 2M or 1G, got {reg.page_size!r}")
        psize = PAGE_SIZES[reg.page_size]
        shift = psize.bit_length() - 1
        if reg.size <= 0 or reg.size % psize or reg.start % psize:
            raise ConfigError(f"{where}: start and size must be positive multiples of the {reg.page_size} page size")
        if reg.start < 0 or reg.end > va_limit:
            raise ConfigError(f"{where}: [{reg.start:#x}, {reg.end:#x}) is outside the user address space")
        members = leaders if reg.processes is None else reg.processes
        for m in members:
            if not 0 <= m < n:
                raise ConfigError(f"{where}: process index {m} does not exist (there are {n})")
            if mm_of[m] != m:
                raise ConfigError(
                    f"{where}: process {m} is a thread of process {mm_of[m]}; list the process (its threads share "
                    "its mappings)"
                )
        frames = reg.size >> 12
        align = psize >> 12
        host = -1
        if reg.shared and reg.share_tables and share:
            if LEAF_LEVEL[shift] > params.shared_table_level:
                raise ConfigError(
                    f"{where}: {reg.page_size} pages cannot share page tables at level '{params.share_level}'"
                )
            if reg.start % slot:
                raise ConfigError(
                    f"{where}: start {reg.start:#x} is not aligned to {slot:#x} as share level "
                    f"'{params.share_level}' requires; relocate the region"
                )
            host = n_hosts
            n_hosts += 1
        if reg.shared and reg.share_tables and hugetlb and shift == 21:
            # want_pmd_share (mm/hugetlb.c): a MAP_SHARED hugetlb vma covering the whole PUD-aligned span; every
            # mapper maps the region at the same address and file offset, so page_table_shareable agrees
            pud = 1 << PUD_SHIFT
            for g in range(_align_up(reg.start, pud), reg.end // pud * pud, pud):
                for m in members:
                    pmd_slots[m].append(SlotRow(g, g + pud, n_pmd_spans))
                n_pmd_spans += 1
        if reg.name in spans:
            raise ConfigError(f"{where}: two regions have this name")
        spans[reg.name] = RegionSpan(reg.start, reg.end, shift, reg.shared, host, tuple(members))
        if reg.shared:
            next_frame = _align_up(next_frame, align)
            base = next_frame
            next_frame += frames
            for m in members:
                rows[m].append(RegionRow(reg.start, reg.end, shift, _fault_around(reg.kind, shift), host, base))
                if host >= 0:
                    slots[m].append(SlotRow(reg.start, _align_up(reg.end, slot), host))
        else:
            for m in members:
                next_frame = _align_up(next_frame, align)
                rows[m].append(RegionRow(reg.start, reg.end, shift, _fault_around(reg.kind, shift), -1, next_frame))
                next_frame += frames
    if hugetlb and not n_pmd_spans:
        raise ConfigError(
            "pt_config 'hugetlb_pmd_share': no shared 2M-page region covers a whole PUD-aligned 1 GiB span, so no "
            "PMD table would be shared (Linux shares them only there); use pt_config 'private'"
        )
    for p in range(n):  # a thread maps what its process maps, with the same frames
        if mm_of[p] != p:
            rows[p], slots[p] = list(rows[mm_of[p]]), list(slots[mm_of[p]])
            pmd_slots[p] = list(pmd_slots[mm_of[p]])
    for p in range(n):
        rows[p].sort(key=lambda r: r.start)
        for a, b in zip(rows[p], rows[p][1:]):
            if b.start < a.end:
                raise ConfigError(
                    f"process '{workload.processes[p].name}': regions at {a.start:#x} and {b.start:#x} overlap"
                )
        for s in slots[p]:
            for r in rows[p]:
                if r.host != s.host and r.start < s.end and s.start < r.end:
                    raise ConfigError(
                        f"process '{workload.processes[p].name}': region at {r.start:#x} lies inside the "
                        f"shared-page-table slot [{s.start:#x}, {s.end:#x}); shared slots must hold only the "
                        "shared region"
                    )
    dyn_start = _align_up(next_frame, 512)
    if dyn_start >= params.max_frames:
        raise ConfigError(
            f"workload: its regions need {dyn_start * 4096 / 2**40:.1f} TiB of simulated physical memory, more "
            f"than the cache models can tag ({params.max_frames * 4096 / 2**40:.1f} TiB with these caches)"
        )
    return Layout(
        n_procs=n,
        n_hosts=n_hosts,
        home_cpu=tuple(home),
        regions=tuple(tuple(r) for r in rows),
        slots=tuple(tuple(s) for s in slots),
        dyn_frame_start=dyn_start,
        va_limit=va_limit,
        spans=spans,
        dependent=tuple(p.dependent for p in workload.processes),
        sleeps=_sleeps(workload) if any(p.sleeps for p in workload.processes) else (),
        mm_of=tuple(mm_of) if mm_of != list(range(n)) else (),
        pmd_slots=tuple(tuple(sorted(x, key=lambda r: r.start)) for x in pmd_slots) if hugetlb else (),
        n_pmd_spans=n_pmd_spans,
    )


def _mm_of(workload: Workload) -> list[int]:
    """Each process's mm: its own, or for a thread (`thread_of`) its process's."""
    n = len(workload.processes)
    out = []
    for i, p in enumerate(workload.processes):
        t = p.thread_of
        if t is None:
            out.append(i)
            continue
        if not 0 <= t < n or t == i or workload.processes[t].thread_of is not None:
            raise ConfigError(
                f"process '{p.name}': thread_of {t} must name another process of the workload that is not a thread"
            )
        out.append(t)
    return out


def _sleeps(workload: Workload) -> tuple[tuple[tuple[int, int], ...], ...]:
    out = []
    for p in workload.processes:
        last = 0
        for pos, cycles in p.sleeps:
            if pos <= last or cycles < 0:
                raise ConfigError(
                    f"process '{p.name}': sleeps must be at increasing trace positions >= 1 with cycles >= 0, "
                    f"got ({pos}, {cycles})"
                )
            last = pos
        out.append(tuple((int(a), int(b)) for a, b in p.sleeps))
    return tuple(out)


def _fault_around(kind: str, shift: int) -> bool:
    return kind in ("shmem", "file") and shift == 12
