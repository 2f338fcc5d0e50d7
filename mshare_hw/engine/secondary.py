"""Secondary MMUs bound to a process's mm: IOMMU/SVA devices and KVM-style mirrors, and the mmu notifiers
through which they learn about PTE changes.

An IOMMU doing shared virtual addressing walks the bound process's own page tables (reading their lines
through the shared LLC) and caches translations in a PASID-tagged, set-associative IOTLB; it hears of
changes only through `arch_invalidate_secondary_tlbs` on that mm (Linux calls it at the end of every
`flush_tlb_mm_range` and, with the whole range, from `arch_tlbbatch_add_pending`). A KVM-style mirror
keeps its own copy of translations (EPT/NPT entries), filled on first touch and dropped only by
`invalidate_range_start` on that mm (around zaps, mprotect, migration, reclaim and unmaps).

In mshare the PTEs live in the host mm, so only the host mm's notifiers run: `notifier_policy`
`host_only` is what the posted series does; `forward_to_sharers` has the host walk its sharers and call
each sharer mm's notifiers (at the initiator's cost). Devices run at the driver's stops: every
`period_accesses` global accesses a device issues a burst of DMA accesses, so device accesses and
events are ordered exactly. The oracle applies: an IOTLB or mirror hit on an entry whose PTE version
moved since the fill is a stale translation, attributed to the device (and counted for its process).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mshare_hw.engine.layout import Layout
from mshare_hw.names import NOTIFIER_POLICIES, DeviceKind

DMA_LOAD = 1  # device faults are serviced like a CPU's read fault

DEVICE_COUNTERS: tuple[str, ...] = (
    "accesses",
    "iotlb_hits",
    "iotlb_misses",
    "walks",
    "walk_reads_llc",
    "walk_reads_dram",
    "walk_cycles",
    "faults",
    "fault_cycles",
    "mirror_hits",
    "mirror_misses",
    "mirror_fill_cycles",
    "invalidations",
    "invalidation_cycles",
    "entries_invalidated",
    "stale_translations",
)
# Per process: notifier work the process initiated (as an event's initiator) and its devices' stale uses.
PROC_COUNTERS: tuple[str, ...] = (
    "iotlb_invalidations",
    "iotlb_invalidation_cycles",
    "mirror_invalidations",
    "mirror_invalidation_cycles",
    "device_stale_translations",
)
DEVICE_STALE_COLUMNS = ("global_access", "device", "va")


@dataclass(frozen=True)
class SecondaryCosts:
    """Cycle costs of the secondary MMUs (configs/uarch/*.toml [secondary])."""

    iommu_walk_base_cycles: int
    iotlb_invalidation_cycles: int
    page_request_cycles: int
    mirror_fill_cycles: int
    mirror_invalidation_cycles: int


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    kind: DeviceKind
    proc: int  # the process whose mm it is bound to
    region: str  # the region its accesses fall in
    pattern: str  # "uniform" (seeded) or "sequential" over the footprint
    first_page: int
    footprint_pages: int
    period_accesses: int  # one burst every this many global accesses
    burst: int  # device accesses per burst
    iotlb_sets: int
    iotlb_ways: int


class IOTLB:
    """Set-associative, LRU, tagged with (PASID, page number, page shift); set = page number mod sets."""

    def __init__(self, sets: int, ways: int):
        self.sets, self.ways = sets, ways
        self.tags: list[tuple[int, int, int] | None] = [None] * (sets * ways)
        self.data: list[tuple[int, int]] = [(0, 0)] * (sets * ways)
        self.lru = [0] * (sets * ways)
        self.tick = 0

    def lookup(self, pasid: int, va: int, shift: int) -> tuple[int, int] | None:
        """(PTE location, PTE version at fill) of a hit, refreshing its LRU stamp; None on a miss."""
        tag = (pasid, va >> shift, shift)
        base = ((va >> shift) % self.sets) * self.ways
        for w in range(base, base + self.ways):
            if self.tags[w] == tag:
                self.tick += 1
                self.lru[w] = self.tick
                return self.data[w]
        return None

    def fill(self, pasid: int, va: int, shift: int, loc: int, version: int) -> None:
        base = ((va >> shift) % self.sets) * self.ways
        ways = range(base, base + self.ways)
        victim = next((w for w in ways if self.tags[w] is None), None)
        if victim is None:
            victim = min(ways, key=lambda w: self.lru[w])
        self.tick += 1
        self.tags[victim] = (pasid, va >> shift, shift)
        self.data[victim] = (loc, version)
        self.lru[victim] = self.tick

    def invalidate(self, pasid: int, va: int, n_pages: int, shift: int) -> int:
        """PASID-selective (n_pages < 0) or page-range invalidation; returns the entries removed."""
        end = va + (n_pages << shift)
        removed = 0
        for w, tag in enumerate(self.tags):
            if tag is None or tag[0] != pasid:
                continue
            start = tag[1] << tag[2]
            if n_pages < 0 or (start < end and start + (1 << tag[2]) > va):
                self.tags[w] = None
                removed += 1
        return removed


class Mirror:
    """A KVM-style copy of translations: page -> (PTE location, PTE version); no capacity limit (it is a
    page table of its own, not a cache)."""

    def __init__(self) -> None:
        self.entries: dict[int, tuple[int, int, int]] = {}  # page base va -> (loc, version, shift)

    def invalidate(self, va: int, n_pages: int, shift: int) -> int:
        end = va + (n_pages << shift)
        gone = [p for p, (_, _, sh) in self.entries.items() if n_pages < 0 or (p < end and p + (1 << sh) > va)]
        for p in gone:
            del self.entries[p]
        return len(gone)


class Device:
    def __init__(self, index: int, spec: DeviceSpec, start: int, shift: int, seed: int):
        self.index = index
        self.spec = spec
        self.shift = shift
        self.base = start + (spec.first_page << shift)
        self.rng = np.random.default_rng([seed, 0x5EC0, index])
        self.cursor = 0
        self.next_at = spec.period_accesses
        self.iotlb = IOTLB(spec.iotlb_sets, spec.iotlb_ways) if spec.kind == "iommu" else None
        self.mirror = Mirror() if spec.kind == "kvm_mirror" else None
        self.ctr = dict.fromkeys(DEVICE_COUNTERS, 0)

    def addresses(self) -> list[int]:
        n, fp = self.spec.burst, self.spec.footprint_pages
        if self.spec.pattern == "uniform":
            pages = self.rng.integers(0, fp, size=n).tolist()
        else:
            pages = [(self.cursor + i) % fp for i in range(n)]
            self.cursor = (self.cursor + n) % fp
        return [self.base + (p << self.shift) for p in pages]


class SecondaryMMUs:
    """Every device of a run, the notifiers they register on their mms, and their counters."""

    def __init__(
        self,
        specs: list[DeviceSpec],
        layout: Layout,
        costs: SecondaryCosts,
        policy: str,
        *,
        oracle: bool,
        seed: int,
        max_examples: int = 16,
    ):
        if policy not in NOTIFIER_POLICIES:
            raise ValueError(f"unknown notifier policy {policy!r}")
        self.layout = layout
        self.costs = costs
        self.policy = policy
        self.oracle = oracle
        self.max_examples = max_examples
        self.devices: list[Device] = []
        for i, spec in enumerate(specs):
            span = layout.spans[spec.region]
            self.devices.append(Device(i, spec, span.start, span.shift, seed))
        self.on_mm: dict[int, list[Device]] = {}
        for d in self.devices:  # a device bound to a thread is bound to its process's mm
            mm = layout.mm_of[d.spec.proc] if layout.mm_of else d.spec.proc
            self.on_mm.setdefault(mm, []).append(d)
        # host mm -> the processes mapping its region (whose mms forwarding reaches)
        self.sharers_of_host = {layout.n_procs + s.host: tuple(s.mappers) for s in layout.spans.values() if s.host >= 0}
        self.proc_ctr = np.zeros((layout.n_procs, len(PROC_COUNTERS)), dtype=np.int64)
        self.examples: list[tuple[int, int, int]] = []
        self._warmup: tuple[list[dict], np.ndarray] | None = None

    # -- device accesses -------------------------------------------------------------------------
    def next_time(self) -> int:
        """Global access count of the next device burst (a huge number when there are no devices)."""
        return min((d.next_at for d in self.devices), default=1 << 62)

    def run_due(self, m, g: int) -> None:
        """Run the bursts due at global access count `g`, in device order."""
        for d in self.devices:
            if d.next_at == g:
                for va in d.addresses():
                    self._access(m, d, va, g)
                d.next_at += d.spec.period_accesses

    def _access(self, m, d: Device, va: int, g: int) -> None:
        d.ctr["accesses"] += 1
        proc = d.spec.proc
        if d.iotlb is not None:
            hit = d.iotlb.lookup(proc, va, d.shift)  # PASID = the bound mm
            if hit is not None:
                d.ctr["iotlb_hits"] += 1
                self._check(m, d, va, g, *hit)
                return
            d.ctr["iotlb_misses"] += 1
            loc, level = self._walk(m, d, va)
            d.iotlb.fill(proc, va, 12 + 9 * (level - 1), loc, m.pte_stamp(loc))
            return
        assert d.mirror is not None
        page = va >> d.shift << d.shift
        e = d.mirror.entries.get(page)
        if e is not None:
            d.ctr["mirror_hits"] += 1
            self._check(m, d, va, g, e[0], e[1])
            return
        d.ctr["mirror_misses"] += 1
        d.ctr["mirror_fill_cycles"] += self.costs.mirror_fill_cycles
        ok, loc, level, _, _ = m.pt_lookup(proc, va)  # the host side's get_user_pages
        if not ok:
            self._fault(m, d, va)
            ok, loc, level, _, _ = m.pt_lookup(proc, va)
        d.mirror.entries[page] = (loc, m.pte_stamp(loc), 12 + 9 * (level - 1))

    def _walk(self, m, d: Device, va: int) -> tuple[int, int]:
        """The IOMMU's walk of the bound mm's tables through the LLC; a non-present PTE is a page request
        the kernel services, then the walk is retried. Returns the leaf's (location, level)."""
        while True:
            d.ctr["walks"] += 1
            ok, loc, level, _, paddrs = m.pt_lookup(d.spec.proc, va)
            cycles = self.costs.iommu_walk_base_cycles
            for pa in paddrs:
                served, lat = m.llc_read(pa)
                d.ctr["walk_reads_llc" if served == 2 else "walk_reads_dram"] += 1
                cycles += lat
            d.ctr["walk_cycles"] += cycles
            if ok:
                return loc, level
            self._fault(m, d, va)

    def _fault(self, m, d: Device, va: int) -> None:
        """A page request (SVA) or a host-side fault (mirror): the kernel maps the page for the bound mm on
        the process's home CPU, which pays the fault plus the page-request handling."""
        cpu, proc = self.layout.home_cpu[d.spec.proc], d.spec.proc
        m.fault_in(cpu, proc, va, DMA_LOAD)
        cost = self.costs.page_request_cycles
        m.charge(cpu, proc, "fault_cycles", cost)
        m.charge(cpu, proc, "cycles", cost)
        d.ctr["faults"] += 1
        d.ctr["fault_cycles"] += cost

    def _check(self, m, d: Device, va: int, g: int, loc: int, version: int) -> None:
        if not self.oracle or m.pte_stamp(loc) == version:
            return
        proc = d.spec.proc
        d.ctr["stale_translations"] += 1
        self.proc_ctr[proc, PROC_COUNTERS.index("device_stale_translations")] += 1
        m.charge(self.layout.home_cpu[proc], proc, "stale_translations", 1)
        if len(self.examples) < self.max_examples:
            self.examples.append((g, d.index, va))

    # -- notifiers -------------------------------------------------------------------------------
    def _targets(self, mm: int) -> list[int]:
        """The mms whose notifiers a call on `mm` reaches: mm itself, plus its sharers when forwarding."""
        if mm in self.sharers_of_host and self.policy == "forward_to_sharers":
            return [mm, *self.sharers_of_host[mm]]
        return [mm]

    def arch_invalidate_secondary_tlbs(self, iproc: int, mm: int, va: int, n_pages: int, shift: int) -> int:
        """mmu_notifier_arch_invalidate_secondary_tlbs(mm, start, end) (n_pages < 0: 0..-1): every IOMMU
        bound to a reached mm gets an invalidation command and the initiator waits for its completion.
        Returns the initiator's cycles."""
        cycles = 0
        for target in self._targets(mm):
            for d in self.on_mm.get(target, ()):
                if d.iotlb is None:
                    continue
                d.ctr["entries_invalidated"] += d.iotlb.invalidate(target, va, n_pages, shift)
                cycles += self._count(d, iproc, "iotlb", self.costs.iotlb_invalidation_cycles)
        return cycles

    def invalidate_range_start(self, iproc: int, mm: int, va: int, n_pages: int, shift: int) -> int:
        """mmu_notifier_invalidate_range_start(mm, start, end): every mirror bound to a reached mm drops
        the range (KVM zaps its EPT/NPT entries and flushes the guest TLBs). Returns the initiator's
        cycles."""
        cycles = 0
        for target in self._targets(mm):
            for d in self.on_mm.get(target, ()):
                if d.mirror is None:
                    continue
                d.ctr["entries_invalidated"] += d.mirror.invalidate(va, n_pages, shift)
                cycles += self._count(d, iproc, "mirror", self.costs.mirror_invalidation_cycles)
        return cycles

    def _count(self, d: Device, iproc: int, what: str, cost: int) -> int:
        d.ctr["invalidations"] += 1
        d.ctr["invalidation_cycles"] += cost
        self.proc_ctr[iproc, PROC_COUNTERS.index(f"{what}_invalidations")] += 1
        self.proc_ctr[iproc, PROC_COUNTERS.index(f"{what}_invalidation_cycles")] += cost
        return cost

    # -- results ---------------------------------------------------------------------------------
    def snapshot_warmup(self) -> None:
        self._warmup = ([dict(d.ctr) for d in self.devices], self.proc_ctr.copy())

    def results(self) -> dict:
        """`device_counters` (devices x DEVICE_COUNTERS), the devices' names, kinds and processes, the
        per-process notifier table (processes x PROC_COUNTERS) and stale examples, less any warm-up."""
        table = np.array([[d.ctr[c] for c in DEVICE_COUNTERS] for d in self.devices], dtype=np.int64)
        table = table.reshape(len(self.devices), len(DEVICE_COUNTERS))
        proc = self.proc_ctr.copy()
        if self._warmup is not None:
            table -= np.array([[w[c] for c in DEVICE_COUNTERS] for w in self._warmup[0]], dtype=np.int64).reshape(
                table.shape
            )
            proc -= self._warmup[1]
        return {
            "device_counters": table,
            "device_names": [d.spec.name for d in self.devices],
            "device_kinds": [d.spec.kind for d in self.devices],
            "device_procs": [d.spec.proc for d in self.devices],
            "secondary_proc_counters": proc,
            "device_stale_examples": list(self.examples),
        }
