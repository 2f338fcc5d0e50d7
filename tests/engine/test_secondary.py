"""Secondary MMUs (IOMMU/SVA devices, KVM-style mirrors) and the mmu notifiers, on BOTH engines.

Tiny pinned machines: sharers P0 (CPU0, the initiator) and P1 (CPU1) store to page X of the shared
region "shm" over and over; a device bound to P1 reads X (footprint 1 page, burst 1) every 300 global
accesses; events fire at global access counts, so the device's accesses and the events are ordered
exactly. 2 x 4000 accesses -> device bursts at 300, 600, ..., 7800 (26 of them); an event at 1000 has 3
bursts before it (300 misses and fills, 600 and 900 hit) and 23 after it. Expected values are derived in
the comments from what Linux 6.18 calls (arch/x86/mm/tlb.c, arch/x86/include/asm/tlbflush.h,
include/linux/mmu_notifier.h): the notifier `arch_invalidate_secondary_tlbs(mm)` at the end of every
flush_tlb_mm_range and, with 0..-1, once per page in arch_tlbbatch_add_pending; `invalidate_range_start(mm)`
before PTEs change.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_cases import KC, PAGE, RUNNERS, X, hammer, machine, procs, shm

from mshare_hw.counters import INDEX
from mshare_hw.engine.layout import build_layout
from mshare_hw.engine.secondary import (
    DEVICE_COUNTERS,
    IOTLB,
    PROC_COUNTERS,
    DeviceSpec,
    SecondaryCosts,
    SecondaryMMUs,
)
from mshare_hw.workload.events import Event
from mshare_hw.workload.model import Workload

COSTS = SecondaryCosts(
    iommu_walk_base_cycles=11,
    iotlb_invalidation_cycles=3333,
    page_request_cycles=777,
    mirror_fill_cycles=55,
    mirror_invalidation_cycles=4444,
)
PERIOD = 300
BURSTS_BEFORE, BURSTS_AFTER = 3, 23  # around an event at global access 1000 (bursts 300..7800)


def device(name="nic", kind="iommu", proc=1, sets=16, ways=4, footprint=1) -> DeviceSpec:
    return DeviceSpec(name, kind, proc, "shm", "sequential", 0, footprint, PERIOD, 1, sets, ways)


def run_with(run, pt_config, strategy, policy, specs, events):
    p = machine(2, pt_config, strategy)
    wl = Workload(procs((0, hammer(X, 4000)), (1, hammer(X, 4000))), [shm()])
    layout = build_layout(wl, p)
    sec = SecondaryMMUs(specs, layout, COSTS, policy, oracle=True, seed=1)
    r = run(wl, p, layout=layout, events=iter(events), events_by_accesses=True, devices=sec)
    return r


def dev(r, i=0) -> dict:
    return dict(zip(DEVICE_COUNTERS, (int(v) for v in r["device_counters"][i])))


def per_proc(r, name) -> list[int]:
    return [int(v) for v in r["secondary_proc_counters"][:, PROC_COUNTERS.index(name)]]


def zap_at(g=1000, kind="zap"):
    return [Event(g, kind, 0, "shm", 0, 1)]


# ---- the acceptance cases -------------------------------------------------------------------------------


@RUNNERS
def test_host_only_leaves_a_sharers_iotlb_stale(run):
    r = run_with(run, "mshare", "flush_all", "host_only", [device()], zap_at())
    d = dev(r)
    # Only the host mm's notifiers run; no device is registered on the host mm, so P1's IOTLB keeps X.
    # Burst 300 misses and fills; every later burst hits: the 23 after the zap on a PTE that changed.
    assert r["events_fired"] == 1
    assert d["accesses"] == BURSTS_BEFORE + BURSTS_AFTER
    assert d["iotlb_misses"] == 1 and d["iotlb_hits"] == BURSTS_BEFORE + BURSTS_AFTER - 1
    assert d["invalidations"] == 0 and per_proc(r, "iotlb_invalidations") == [0, 0]
    assert d["stale_translations"] == BURSTS_AFTER
    # attributed to the device, counted for its process and in the run's total (flush_all leaves the
    # CPUs' TLBs coherent, so every stale use is the device's)
    assert per_proc(r, "device_stale_translations") == [0, BURSTS_AFTER]
    assert int(np.asarray(r["proc_counters"])[:, INDEX["stale_translations"]].sum()) == BURSTS_AFTER
    assert int(np.asarray(r["cpu_counters"])[:, INDEX["stale_translations"]].sum()) == BURSTS_AFTER
    assert [(g, i, va) for g, i, va in r["device_stale_examples"]][:2] == [(1200, 0, X), (1500, 0, X)]


@RUNNERS
def test_forward_to_sharers_keeps_the_iotlb_coherent(run):
    r = run_with(run, "mshare", "flush_all", "forward_to_sharers", [device()], zap_at())
    d = dev(r)
    # flush_tlb_mm_range(host) ends with the host's notifier; forwarded to sharers P0 and P1; P1's IOMMU
    # gets one invalidation command (P0 has no device). Burst 1200 then misses and refills.
    assert d["invalidations"] == 1 and d["entries_invalidated"] == 1
    assert d["iotlb_misses"] == 2 and d["iotlb_hits"] == BURSTS_BEFORE + BURSTS_AFTER - 2
    assert d["stale_translations"] == 0
    assert int(np.asarray(r["cpu_counters"])[:, INDEX["stale_translations"]].sum()) == 0
    # the command and its wait are the initiator's (P0 on CPU0): per event 1 invalidation, 3333 cycles
    assert per_proc(r, "iotlb_invalidations") == [1, 0]
    assert per_proc(r, "iotlb_invalidation_cycles") == [3333, 0]


@RUNNERS
def test_private_notifies_each_mm(run):
    r = run_with(run, "private", "flush_all", "host_only", [device()], zap_at())
    d = dev(r)
    # private: the zap changes and flushes P0's mm and P1's mm; P1's flush_tlb_mm_range calls P1's
    # notifier -> one command to P1's IOMMU. The policy is irrelevant (there is no host mm).
    assert d["invalidations"] == 1 and d["stale_translations"] == 0
    assert d["iotlb_misses"] == 2
    assert per_proc(r, "iotlb_invalidations") == [1, 0]
    assert int(np.asarray(r["cpu_counters"])[:, INDEX["stale_translations"]].sum()) == 0


@RUNNERS
def test_initiator_pays_the_invalidation(run):
    base = run_with(run, "mshare", "flush_all", "host_only", [device()], zap_at())
    fwd = run_with(run, "mshare", "flush_all", "forward_to_sharers", [device()], zap_at())
    c = INDEX["shootdown_cycles_initiator"]
    # the same flush_tlb_all either way; forwarding adds exactly one command + wait on CPU0
    assert int(fwd["cpu_counters"][0, c]) - int(base["cpu_counters"][0, c]) == 3333


@RUNNERS
def test_per_sharer_reaches_iommus_but_not_mirrors(run):
    """per_sharer calls flush_tlb_mm_range on each sharer mm, which ends with that mm's secondary-TLB
    notifier: an IOMMU hears of the zap even under host_only. A mirror listens to invalidate_range_start,
    which only the host mm gets: stale."""
    specs = [device("nic", "iommu", 1), device("vm", "kvm_mirror", 1)]
    r = run_with(run, "mshare", "per_sharer", "host_only", specs, zap_at())
    nic, vm = dev(r, 0), dev(r, 1)
    assert nic["invalidations"] == 1 and nic["stale_translations"] == 0
    assert vm["invalidations"] == 0 and vm["stale_translations"] == BURSTS_AFTER
    assert vm["mirror_misses"] == 1 and vm["mirror_hits"] == BURSTS_BEFORE + BURSTS_AFTER - 1
    fwd = run_with(run, "mshare", "per_sharer", "forward_to_sharers", specs, zap_at())
    nic, vm = dev(fwd, 0), dev(fwd, 1)
    # forwarded: the host's range_start reaches P1 (1 mirror zap); the host's secondary-TLB call reaches
    # P1 (1 command) on top of per_sharer's own flush of P1's mm (1 command): 2
    assert vm["invalidations"] == 1 and vm["stale_translations"] == 0 and vm["mirror_misses"] == 2
    assert nic["invalidations"] == 2 and nic["stale_translations"] == 0
    assert per_proc(fwd, "mirror_invalidation_cycles") == [4444, 0]
    assert per_proc(fwd, "iotlb_invalidation_cycles") == [2 * 3333, 0]


@RUNNERS
def test_invalidations_per_event_with_a_device_on_each_sharer(run):
    specs = [device("nic0", "iommu", 0), device("nic1", "iommu", 1)]
    events = [Event(1000, "zap", 0, "shm", 0, 1), Event(3000, "reclaim", 1, "shm", 0, 1)]
    r = run_with(run, "mshare", "flush_all", "forward_to_sharers", specs, events)
    # zap: host flush_tlb_mm_range -> forwarded to P0 and P1: 1 command each. reclaim: the host mm's
    # cpumask is empty, so arch_tlbbatch_should_defer says no and the page is flushed at once: one
    # flush_tlb_mm_range(host) -> forwarded: 1 command each. 2 events x 2 devices = 4 commands, split by
    # initiator (P0, then P1).
    assert r["events_fired"] == 2
    assert [dev(r, i)["invalidations"] for i in (0, 1)] == [2, 2]
    assert per_proc(r, "iotlb_invalidations") == [2, 2]
    assert per_proc(r, "iotlb_invalidation_cycles") == [2 * 3333, 2 * 3333]
    assert sum(dev(r, i)["stale_translations"] for i in (0, 1)) == 0
    priv = run_with(run, "private", "flush_all", "host_only", specs, events)
    # private: every mm's own notifier: the zap flushes P0's and P1's mm (1 each); the reclaim (from P1 on
    # CPU1) defers P0 (CPU0 in its cpumask: arch_tlbbatch_add_pending's notifier) and flushes P1 at once
    # (flush_tlb_mm_range's notifier): again 1 each, 2 per event
    assert [dev(priv, i)["invalidations"] for i in (0, 1)] == [2, 2]
    assert sum(dev(priv, i)["stale_translations"] for i in (0, 1)) == 0


@RUNNERS
def test_device_fault_maps_the_page_for_its_process(run):
    """A device touching a page nobody has mapped: the walk finds no PTE, the kernel services the page
    request on P1's CPU (link fault into the host tables + a page fault), the walk is retried."""
    p = machine(2, "mshare", "flush_all")
    wl = Workload(procs((0, hammer(X, 4000)), (1, hammer(X, 4000))), [shm()])
    layout = build_layout(wl, p)
    spec = DeviceSpec("nic", "iommu", 1, "shm", "sequential", 40, 1, PERIOD, 1, 16, 4)
    sec = SecondaryMMUs([spec], layout, COSTS, "host_only", oracle=True, seed=1)
    r = run(wl, p, layout=layout, devices=sec)
    d = dev(r)
    assert d["faults"] == 1 and d["walks"] == 2 and d["iotlb_misses"] == 1
    assert d["fault_cycles"] == 777
    # X is faulted in once (by whichever sharer stores first), the device's page once more, for P1
    assert int(np.asarray(r["proc_counters"])[:, INDEX["page_faults"]].sum()) == 2
    assert int(r["proc_counters"][1, INDEX["page_faults"]]) >= 1
    assert int(r["proc_counters"][1, INDEX["fault_cycles"]]) >= 777
    assert d["stale_translations"] == 0


# ---- the IOTLB itself ------------------------------------------------------------------------------------


def test_iotlb_set_associative_lru_and_pasid_tags():
    t = IOTLB(2, 2)  # pages 0, 2, 4, 6 all map to set 0
    for page, loc in ((0, 10), (2, 12)):
        t.fill(7, page * PAGE, 12, loc, 1)
    assert t.lookup(7, 0, 12) == (10, 1)  # refreshes page 0: page 2 is now least recently used
    t.fill(7, 4 * PAGE, 12, 14, 1)  # evicts page 2
    assert t.lookup(7, 2 * PAGE, 12) is None
    assert t.lookup(7, 0, 12) == (10, 1) and t.lookup(7, 4 * PAGE, 12) == (14, 1)
    assert t.lookup(8, 0, 12) is None  # another PASID
    t.fill(7, 1 * PAGE, 12, 11, 1)  # set 1
    assert t.invalidate(7, 0, 2, 12) == 2  # pages 0 and 1
    assert t.lookup(7, 4 * PAGE, 12) == (14, 1)
    t.fill(8, 4 * PAGE, 12, 99, 3)
    assert t.invalidate(7, 0, -1, 12) == 1  # PASID 7 only
    assert t.lookup(8, 4 * PAGE, 12) == (99, 3)


# ---- both engines agree -----------------------------------------------------------------------------------


def test_primitives_agree_between_engines():
    from mshare_hw import _engine
    from mshare_hw.reference import ReferenceMachine

    for pt_config in ("private", "mshare"):
        p = machine(2, pt_config, "flush_all")
        wl = Workload(procs((0, hammer(X, 10)), (1, hammer(X, 10))), [shm()])
        layout = build_layout(wl, p)
        eng = _engine.Engine(p, layout)
        ref = ReferenceMachine(p, layout, [(np.zeros(0, np.uint64), np.zeros(0, np.uint8))] * 2)
        for m in (eng, ref):
            assert m.fault_in(1, 1, X + 3 * PAGE, 1) >= 1
        for va in (X, X + 3 * PAGE, X + 5 * PAGE, X + 60 * PAGE):
            a, b = eng.pt_lookup(1, va), ref.pt_lookup(1, va)
            assert a == b
            assert [eng.llc_read(pa) for pa in a[4]] == [ref.llc_read(pa) for pa in b[4]]
        assert eng.pt_lookup(1, X + 3 * PAGE)[0] is True
        # stamps are opaque (an epoch here, a version in the reference): both must move when a present entry
        # is rewritten, and not when it is only read
        loc = eng.pt_lookup(1, X + 3 * PAGE)[1]
        before = (eng.pte_stamp(loc), ref.pte_stamp(loc))
        for m in (eng, ref):
            m.pt_lookup(1, X + 3 * PAGE)
        assert (eng.pte_stamp(loc), ref.pte_stamp(loc)) == before
        for m in (eng, ref):
            assert m.plant_pte_change(1, X + 3 * PAGE)
        assert eng.pte_stamp(loc) != before[0] and ref.pte_stamp(loc) != before[1]
        assert np.array_equal(eng.proc_counters, ref.proc_counters)
        assert np.array_equal(eng.cpu_counters, ref.cpu_counters)


@pytest.mark.parametrize("policy", ["host_only", "forward_to_sharers"])
@pytest.mark.parametrize("strategy", ["flush_all", "union_batch", "per_sharer"])
def test_engines_agree_with_devices(policy, strategy):
    from mshare_hw.engine.driver import run_workload
    from mshare_hw.reference.run import run_reference

    specs = [
        DeviceSpec("nic", "iommu", 1, "shm", "uniform", 0, 8, 170, 3, 2, 2),
        DeviceSpec("vm", "kvm_mirror", 0, "shm", "sequential", 4, 8, 230, 2, 1, 1),
    ]
    events = [Event(900, "zap", 0, "shm", 2, 4), Event(2500, "reclaim", 1, "shm", 5, 2)]
    out = []
    for run in (run_workload, run_reference):
        p = machine(2, "mshare", strategy)
        trace = hammer(X, 3000, first=tuple(X + i * PAGE for i in range(12)))
        wl = Workload(procs((0, trace), (1, trace)), [shm()])
        layout = build_layout(wl, p)
        sec = SecondaryMMUs(specs, layout, COSTS, policy, oracle=True, seed=3)
        out.append(run(wl, p, layout=layout, events=iter(events), events_by_accesses=True, devices=sec))
    a, b = out
    for key in ("cpu_counters", "proc_counters", "device_counters", "secondary_proc_counters"):
        assert np.array_equal(a[key], b[key]), key
    assert a["device_stale_examples"] == b["device_stale_examples"]
    assert a["device_counters"][:, DEVICE_COUNTERS.index("accesses")].sum() > 0


def test_deterministic():
    from mshare_hw.engine.driver import run_workload

    specs = [DeviceSpec("nic", "iommu", 1, "shm", "uniform", 0, 32, 50, 4, 4, 2)]
    runs = [run_with(run_workload, "mshare", "flush_all", "host_only", specs, zap_at()) for _ in range(2)]
    assert np.array_equal(runs[0]["device_counters"], runs[1]["device_counters"])
    assert runs[0]["device_stale_examples"] == runs[1]["device_stale_examples"]
    assert np.array_equal(runs[0]["cpu_counters"], runs[1]["cpu_counters"])


assert KC  # the shootdown tests' kernel costs apply here too
