"""The lists of names that cross from the configuration into the engines: one definition each.

The configuration's pydantic types, SimParams' checks and both engines' codes derive from these tuples. A
list the Cython engine knows as a C enum has the same members in the same order there: the enum member of
name `n` is PREFIX + n.upper(), numbered from 0 (tests/test_names.py parses the .pxi files and checks
them). A name's code is its index in its list.
"""

from __future__ import annotations

from typing import Literal

# flush strategies for shared page tables (mshare_hw.engine.shootdown, kernels/kernel.pxi)
# (append new ones at the end: a name's code is its index)
STRATEGIES = ("host_mm_only", "flush_all", "host_cpumask", "per_sharer", "union_batch", "broadcast", "broadcast_va")
# how an mshare detach flushes the detaching mm: its whole region page by page with page tables freed (the
# model's original reading), or the posted series' p4d_clear + tlb_flush_p4d_range (one flush of the link
# entry's stride per slot, no table freed)
DETACH_FLUSHES = ("range", "p4d_stride")
# invalidation event kinds: the PTE change an event makes
EVENT_KINDS = ("zap", "protect", "migrate", "reclaim", "detach")
# the kernel costs (cycles) the kernel side charges: uarch `costs` fields, in the engine's cost-array order
KERNEL_COSTS = (
    "cr3_flush_cycles",
    "invlpg_cycles",
    "invpcid_cycles",
    "ipi_initiator_base_cycles",
    "ipi_per_target_cycles",
    "ipi_responder_cycles",
    "invlpgb_cycles",
    "tlbsync_cycles",
)
# a trace's access kinds: the kinds array holds their codes
ACCESS_KINDS = ("ifetch", "load", "store")
# schedulers: one run queue per CPU (processes stay on their home CPU), or one global queue
SCHEDULERS = ("pinned", "global")
# page-table configurations: every process its own tables, mshare's shared tables, or Linux's hugetlb PMD-table
# sharing (today's kernel: a MAP_SHARED hugetlbfs mapping's PMD tables over whole PUD-aligned 1 GiB spans)
PT_CONFIGS = ("private", "mshare", "hugetlb_pmd_share")
# the level whose tables mshare shares among its sharers (Linux names)
SHARE_LEVELS = ("p4d", "pud", "pmd")
# who hears a PTE change in a shared region: the host mm's mmu notifiers only, or every sharer mm's too
NOTIFIER_POLICIES = ("host_only", "forward_to_sharers")
# secondary MMUs: a device behind an IOMMU with its IOTLB, or a KVM-style mirror of the page tables
DEVICE_KINDS = ("iommu", "kvm_mirror")
# what a run charges for: translation only (data caches looked up, never charged), plus each data access's
# cache latency, or that latency overlapped across independent misses (an interval-style core)
TIMING_MODES = ("translation", "latency", "overlap")
# replacement in a TLB, PWC or cache set (invalid ways are always filled first)
REPLACEMENT_POLICIES = ("lru", "plru", "random")
# the structures that draw their own random-replacement stream (seeded from the experiment's seed, the
# structure, its index among its kind and the CPU)
REPLACEMENT_STREAMS = ("l1i", "l1d", "l2d", "l2i", "pwc", "l1d_cache", "l2_cache", "llc", "nested_tlb", "nested_pwc")
# page walks of a bare-metal machine, or two-dimensional walks of a guest (guest tables through EPT/NPT)
VIRTUALIZATION_MODES = ("none", "nested")

Strategy = Literal[STRATEGIES]  # type: ignore[valid-type]
DetachFlush = Literal[DETACH_FLUSHES]  # type: ignore[valid-type]
EventKind = Literal[EVENT_KINDS]  # type: ignore[valid-type]
SchedulerKind = Literal[SCHEDULERS]  # type: ignore[valid-type]
PtConfig = Literal[PT_CONFIGS]  # type: ignore[valid-type]
ShareLevel = Literal[SHARE_LEVELS]  # type: ignore[valid-type]
NotifierPolicy = Literal[NOTIFIER_POLICIES]  # type: ignore[valid-type]
DeviceKind = Literal[DEVICE_KINDS]  # type: ignore[valid-type]
TimingMode = Literal[TIMING_MODES]  # type: ignore[valid-type]
ReplacementPolicy = Literal[REPLACEMENT_POLICIES]  # type: ignore[valid-type]
VirtualizationMode = Literal[VIRTUALIZATION_MODES]  # type: ignore[valid-type]


def codes(names: tuple[str, ...]) -> dict[str, int]:
    """The engine's integer code of each name of a list: its index."""
    return {name: i for i, name in enumerate(names)}
