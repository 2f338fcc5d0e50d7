"""The mshare flush strategies on both engines, each expected number derived by hand in the comments from
Linux 6.18's arch/x86/mm/tlb.c (flush_tlb_mm_range, should_flush_tlb, flush_tlb_func) and the strategy's
definition, never from a run: whom each strategy interrupts, whether the oracle sees stale entries,
INVLPGB broadcasts, collateral damage. Conventions: tests/engine/kernel_cases.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from kernel_cases import (
    BASE,
    INVLPG,
    INVLPGB,
    INVPCID,
    PAGE,
    PER,
    RESP,
    RUNNERS,
    TLBSYNC,
    UNDECLARED,
    X,
    go,
    hammer,
    machine,
    procs,
    shm,
    zaps,
)

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.uarch import load_uarch
from mshare_hw.counters import INDEX
from mshare_hw.engine.params import build_params
from mshare_hw.engine.shootdown import TRIM_INTERVAL_CYCLES, Kernel
from mshare_hw.workload.events import Event
from mshare_hw.workload.generators import database_workload
from mshare_hw.workload.model import Region, Workload

# ---- flush_all: the posted series -----------------------------------------------------------------------


@RUNNERS
@pytest.mark.parametrize("n_cpus,n_sharers", [(4, 2), (4, 4), (8, 2), (8, 5)])
def test_flush_all_interrupts_every_cpu_whatever_the_sharers(run, n_cpus, n_sharers):
    p = machine(n_cpus, "mshare", "flush_all")
    wl = Workload(procs(*[(c, hammer(X, 20000)) for c in range(n_sharers)]), [shm()])
    # events 5000 cycles apart: more than one event's costs plus a fault, so every CPU runs in between
    res = go(run, wl, p, zaps([3000, 8000, 13000]))
    E, n = 3, n_cpus
    assert res.fired == E
    # Per event: flush_tlb_mm_range(host) bumps the host's tlb_gen; its cpumask is empty and it is never
    # loaded, so no IPI and no local INVLPG. Then the notifier's flush_tlb_all(): an IPI to every online
    # CPU but the initiator (idle CPUs n_sharers.. included: they never ran anything, but are online),
    # and every CPU, the initiator too, runs INVPCID type 2.
    assert res.cpu("ipis_sent") == [E * (n - 1)] + [0] * (n - 1)
    assert res.cpu("ipis_received") == [0] + [E] * (n - 1)
    assert res.cpu("invpcid") == [E] * n  # invpcid == n_cpus per event
    assert res.cpu("full_flushes") == [E] * n
    assert res.total("invlpg") == res.total("invlpgb") == 0
    assert res.total("stale_translations") == 0 and res.examples == []
    # initiator: base + per target x (n-1) + the longer of the slowest responder (IPI entry + INVPCID) and
    # its own INVPCID, which it runs while the responders run theirs
    own = max(INVPCID, RESP + INVPCID)
    assert res.cpu("shootdown_cycles_initiator") == [E * (BASE + PER * (n - 1) + own)] + [0] * (n - 1)
    assert res.cpu("shootdown_cycles_responder") == [0] + [E * (RESP + INVPCID)] * (n - 1)
    # the first store faults the page in for every sharer (mshare); after each zap exactly one sharer
    # (the first to touch it) faults it in again, the others find it present
    assert res.total("page_faults") == 1 + E
    assert res.total("link_faults") == n_sharers


# ---- the oracle decides ----------------------------------------------------------------------------------


@RUNNERS
def test_host_mm_only_is_unsafe(run):
    p = machine(2, "mshare", "host_mm_only")
    wl = Workload(procs((0, hammer(X, 4000)), (1, hammer(X, 4000))), [shm()])
    res = go(run, wl, p, zaps([2000]))
    assert res.fired == 1
    # flush_tlb_mm_range(host): empty cpumask, never loaded -> nothing is flushed anywhere, not even on the
    # initiating CPU. Both CPUs keep their L1 DTLB entry for the zapped page and hit it on every later
    # store: stale on both CPUs, for both processes, and the page is never faulted in again.
    assert res.total("ipis_sent") == res.total("invlpg") == res.total("invpcid") == res.total("full_flushes") == 0
    assert all(s > 0 for s in res.cpu("stale_translations"))
    assert all(s > 0 for s in res.proc("stale_translations"))
    assert res.total("page_faults") == 1
    assert 0 < len(res.examples) <= p.max_stale_examples
    for cycle, cpu, proc, va, where in res.examples:
        assert cycle >= 2000 and cpu == proc and va == X and where == 0  # an L1 hit
    assert {proc for _, _, proc, _, _ in res.examples} <= {0, 1}


@RUNNERS
@pytest.mark.parametrize("strategy", ["per_sharer", "union_batch", "host_cpumask", "broadcast"])
def test_one_sharer_per_cpu(run, strategy):
    """Sharers P0 (CPU0, initiator) and P1 (CPU1); CPU2 idle."""
    p = machine(3, "mshare", strategy)
    wl = Workload(procs((0, hammer(X, 4000)), (1, hammer(X, 4000))), [shm()])
    res = go(run, wl, p, zaps([2000]))
    assert res.fired == 1
    assert res.total("stale_translations") == 0
    assert res.total("page_faults") == 2  # the first touch and one re-fault after the zap
    if strategy == "broadcast":
        # one INVLPGB (every non-global entry on every CPU) + TLBSYNC by the initiator; no IPIs
        assert res.total("ipis_sent") == res.total("ipis_received") == 0
        assert res.cpu("invlpgb") == [1, 0, 0] and res.cpu("tlbsync") == [1, 0, 0]
        assert res.cpu("full_flushes") == [1, 0, 0]
        assert res.total("invlpg") == 0
        assert res.cpu("shootdown_cycles_initiator") == [INVLPGB + TLBSYNC, 0, 0]
        return
    # per_sharer: flush_tlb_mm_range(P0): cpumask {0} = the initiator only -> local INVLPG (gen 1 = 0 + 1);
    #   flush_tlb_mm_range(P1): CPU1 has P1 loaded, not lazy -> one IPI, INVLPG.
    # union_batch: gens of P0, P1 bumped; union {0, 1}; one IPI to CPU1 (loaded P1, behind by one ->
    #   INVLPG) and the local catch-up (INVLPG).
    # host_cpumask: mask {0, 1}; CPU1 flushes its loaded PCID (P1, a sharer) with INVLPG; CPU0 too.
    assert res.cpu("ipis_sent") == [1, 0, 0]
    assert res.cpu("ipis_received") == [0, 1, 0]
    assert res.cpu("invlpg") == [1, 1, 0]
    assert res.total("full_flushes") == res.total("invpcid") == res.total("invlpgb") == 0
    if strategy == "per_sharer":  # two flush_tlb_mm_range calls: the local flush, then a round
        assert res.cpu("shootdown_cycles_initiator") == [INVLPG + BASE + PER + RESP + INVLPG, 0, 0]
    else:  # one round: the local INVLPG overlaps CPU1's work, the initiator pays the longer
        assert res.cpu("shootdown_cycles_initiator") == [BASE + PER + max(INVLPG, RESP + INVLPG), 0, 0]
    assert res.cpu("shootdown_cycles_responder") == [0, RESP + INVLPG, 0]


@RUNNERS
@pytest.mark.parametrize("strategy", ["host_cpumask", "union_batch", "per_sharer", "flush_all"])
def test_parked_asid_slot(run, strategy):
    """P0 on CPU0 initiates; sharers P1 and P2 time-share CPU1 (quantum 300 cycles), so at the event one
    of them is loaded and the other is parked in its own ASID slot with the zapped page in its TLB."""
    p = machine(2, "mshare", strategy, quantum_cycles=300)
    wl = Workload(procs((0, hammer(X, 12000)), (1, hammer(X, 5000)), (1, hammer(X, 5000))), [shm()])
    res = go(run, wl, p, zaps([6000]))
    assert res.fired == 1
    # Every strategy interrupts CPU1 exactly once (per_sharer: only the loaded sharer's flush reaches it;
    # the parked one is neither loaded nor lazy and there is no trim before 1 s).
    assert res.cpu("ipis_received") == [0, 1]
    assert sum(res.proc("stale_translations")) == res.total("stale_translations")
    # CPU1's CR3 flushes: 2 slot misses (first switch to P1, then to P2); afterwards slot hits.
    if strategy == "host_cpumask":
        # Only the loaded PCID is flushed and no tlb_gen moves: the parked sharer switches back with a slot
        # hit and no flush, and hits its old entry -> stale, on CPU1 only, for exactly one of P1/P2.
        assert res.cpu("cr3_flushes")[1] == 2
        assert res.cpu("stale_translations")[0] == 0 and res.cpu("stale_translations")[1] > 0
        s1, s2 = res.proc("stale_translations")[1:]
        assert min(s1, s2) == 0 and max(s1, s2) > 0
        assert {cpu for _, cpu, _, _, _ in res.examples} == {1}
        assert len({proc for _, _, proc, _, _ in res.examples}) == 1
    elif strategy in ("union_batch", "per_sharer"):
        # The parked sharer's tlb_gen was bumped: at switch-in its slot is behind -> CR3 flush (a third).
        assert res.cpu("cr3_flushes")[1] == 3
        assert res.total("lazy_catchup_flushes") == 0
        assert res.total("stale_translations") == 0
    else:  # flush_all: sharer gens untouched (no catch-up flush), but INVPCID type 2 emptied every slot
        assert res.cpu("cr3_flushes")[1] == 2
        assert res.cpu("invpcid") == [1, 1]
        assert res.total("stale_translations") == 0


@RUNNERS
@pytest.mark.parametrize(
    "strategy,n_events,cpu1_ipis",
    [("per_sharer", 1, 2), ("per_sharer", 2, 3), ("union_batch", 1, 1), ("union_batch", 2, 2)],
)
def test_per_sharer_can_interrupt_a_cpu_twice(run, strategy, n_events, cpu1_ipis):
    """Hansen's warning about alternative (C). Every mm's first flush after one second (3e9 cycles) sets
    trim_cpumask, and should_flush_tlb then picks every non-lazy CPU of the cpumask. Accesses cost 1e6
    cycles so that the run passes that point; P1 and P2 time-share CPU1 (quantum 5e8)."""
    p = machine(2, "mshare", strategy, access_cycles=10**6, quantum_cycles=5 * 10**8)
    wl = Workload(procs((0, hammer(X, 5000)), (1, hammer(X, 4000)), (1, hammer(X, 4000))), [shm()])
    times = [TRIM_INTERVAL_CYCLES + 10**8, TRIM_INTERVAL_CYCLES + 3 * 10**8][:n_events]
    res = go(run, wl, p, zaps(times))
    assert res.fired == n_events
    # per_sharer, event 1 (trim for every mm): P0's cpumask is the initiator only (local INVLPG); P1's and
    # P2's cpumasks both hold CPU1 -> two IPIs to CPU1 for one event: the loaded sharer's flush (INVLPG)
    # and the parked one's (flush_tlb_func finds another mm loaded and clears CPU1 from its cpumask).
    # Event 2 (within the second): only the loaded sharer's flush reaches CPU1 -> one more.
    # union_batch: one IPI round to the union {0, 1} per event -> CPU1 once per event.
    assert res.cpu("ipis_received") == [0, cpu1_ipis]
    assert res.cpu("ipis_sent") == [cpu1_ipis, 0]
    assert res.cpu("invlpg") == [n_events, n_events]  # one per event on each CPU (the loaded PCIDs)
    assert res.total("stale_translations") == 0


# ---- broadcast needs INVLPGB ------------------------------------------------------------------------------


def test_broadcast_needs_invlpgb():
    with pytest.raises(ConfigError, match="INVLPGB"):
        build_params(load_uarch("skylake_sp"), n_cpus=2, pt_config="mshare", strategy="broadcast")
    p = build_params(load_uarch("zen3"), n_cpus=2, pt_config="mshare", strategy="broadcast")
    assert p.invlpgb and p.strategy == "broadcast"


@RUNNERS
def test_broadcast_on_zen3_costs(run):
    u = load_uarch("zen3")
    p = build_params(u, n_cpus=2, pt_config="mshare", strategy="broadcast", data_caches=False)
    kc = p.kernel_costs
    wl = Workload(procs((0, hammer(X, 30000)), (1, hammer(X, 30000))), [shm()])
    res = go(run, wl, p, zaps([20000]))
    assert res.fired == 1
    assert res.total("ipis_sent") == res.total("ipis_received") == 0
    assert res.cpu("invlpgb") == [1, 0] and res.cpu("tlbsync") == [1, 0]
    # host flush: nothing; one INVLPGB + TLBSYNC, paid by the initiator only
    assert res.cpu("shootdown_cycles_initiator") == [u.costs.invlpgb_cycles + u.costs.tlbsync_cycles, 0]
    assert kc["invlpgb_cycles"] == u.costs.invlpgb_cycles and kc["tlbsync_cycles"] == u.costs.tlbsync_cycles
    assert res.total("shootdown_cycles_responder") == 0
    assert res.total("stale_translations") == 0


# ---- collateral damage to an unrelated process ---------------------------------------------------------------


@RUNNERS
@pytest.mark.parametrize("strategy", ["flush_all", "union_batch", "broadcast"])
def test_unrelated_process_collateral(run, strategy):
    wl = database_workload(
        n_processes=2,
        accesses_per_process=4000,
        pool_bytes=1 << 22,
        private_bytes=1 << 20,
        text_bytes=1 << 16,
        n_unrelated=1,
        cpu_of=[0, 1, 2],
        seed=3,
    )
    assert [p.name for p in wl.processes] == ["client0", "client1", "unrelated0"]
    p = machine(3, "mshare", strategy)
    # 256 pages from the pool's start: some of them are mapped (an event that clears no PTE flushes nothing)
    res = go(run, wl, p, zaps([20_000, 40_000], region="buffer_pool", n_pages=256))
    assert res.fired == 2
    col = res.proc("collateral_entries_flushed")
    # The clients map the buffer pool: their own entries are never collateral.
    assert col[0] == col[1] == 0
    if strategy == "union_batch":
        # CPU2 never ran a sharer: it is in no sharer's cpumask, so it is never interrupted, and the
        # receivers flush only their loaded (sharer) PCID.
        assert res.cpu("ipis_received")[2] == 0
        assert col[2] == 0 and res.total("collateral_entries_flushed") == 0
    elif strategy == "flush_all":
        # Every CPU runs INVPCID type 2: the unrelated process's text and heap entries on CPU2 go too.
        assert res.cpu("ipis_received")[2] == 2
        assert col[2] > 0
    else:  # broadcast: INVLPGB of every non-global entry reaches CPU2 without an IPI
        assert res.total("ipis_received") == 0
        assert col[2] > 0
    assert res.total("stale_translations") == 0


# ---- broadcast_va: INVLPGB by address in every PCID -------------------------------------------------------


def _sharers_and_bystander(drive, strategy: str, **kw):
    """P0 (CPU0) and P1 (CPU1) share shm; P2 (CPU2) does not map it and stores to an undeclared page once.
    P0 loads pages 0 and 24 (two read faults, each mapping an aligned 16-page fault-around window: pages 0-31
    present),
    P1 loads page 1. P2's store walks (after its fault) through three levels: its entry sits in CPU2's L1
    DTLB and L2 TLB, and its PML4E, PDPTE and PDE in CPU2's paging-structure caches: 5 entries."""
    p = machine(3, "mshare", strategy, invlpgb=True, **kw)
    d = drive(p, n_procs=3, regions=[shm(processes=(0, 1))])
    d.switch_to(0, 0)
    d.load(0, X, cpu=0)
    d.load(0, X + 24 * PAGE, cpu=0)
    d.switch_to(1, 1)
    d.load(1, X + PAGE, cpu=1)
    d.switch_to(2, 2)
    d.store(2, UNDECLARED, cpu=2)
    return d, Kernel(d.eng, p, d.layout)


def _cpu(d, name: str) -> list[int]:
    return [int(v) for v in np.asarray(d.eng.cpu_counters)[:, INDEX[name]]]


@pytest.mark.parametrize("count_max,n_invlpgb", [(8, 3), (4, 5), (1, 20), (32, 1)])
def test_broadcast_va_invlpgbs_follow_the_parts_count_limit(drive, count_max, n_invlpgb):
    """A zap of pages 0-19 (all present): the host flush does nothing (empty cpumask, never loaded); then
    INVLPGB by address, no PCID, covering at most invlpgb_count_max pages each: ceil(20 / count_max) of
    them (8: 3, 4: 5, 1: 20, 32: 1), one TLBSYNC, no IPIs, paid by the initiator alone."""
    d, k = _sharers_and_bystander(drive, "broadcast_va", invlpgb_count_max=count_max)
    k.execute(Event(0, "zap", 0, "shm", 0, 20), 0, [0, 1, 2])
    assert _cpu(d, "invlpgb") == [n_invlpgb, 0, 0] and _cpu(d, "tlbsync") == [1, 0, 0]
    assert d.total("ipis_sent") == d.total("invlpg") == d.total("full_flushes") == 0
    assert _cpu(d, "shootdown_cycles_initiator") == [n_invlpgb * INVLPGB + TLBSYNC, 0, 0]


@pytest.mark.parametrize("strategy", ["broadcast_va", "broadcast"])
def test_broadcast_va_spares_bystanders(drive, strategy):
    """The same zap of pages 0-19.
    broadcast_va: the addresses of pages 0-19 go in every PCID on every CPU: P0's page 0 on CPU0 and P1's page
      1 on CPU1; P0's page 24 and P2's page stay (nothing else maps pages 0-19), and so do the
      paging-structure caches (INVLPGB_FINAL_ONLY: no table was freed). No collateral damage.
    broadcast: one INVLPGB of every non-global entry: P2's 5 entries on CPU2 are collateral damage, and P0's
      page 24 goes too."""
    d, k = _sharers_and_bystander(drive, strategy)
    k.execute(Event(0, "zap", 0, "shm", 0, 20), 0, [0, 1, 2])
    snap = d.totals()
    d.store(2, UNDECLARED, cpu=2)
    d.load(0, X + 24 * PAGE, cpu=0)
    got = d.since(snap)
    if strategy == "broadcast_va":
        assert d.total("collateral_entries_flushed") == 0
        assert got.get("l1_dtlb_misses", 0) == got.get("walks", 0) == 0  # both L1 hits
    else:
        assert _cpu(d, "collateral_entries_flushed") == [0, 0, 5]  # charged where the entries were
        assert d.proc(2, "collateral_entries_flushed") == 5
        assert got["l1_dtlb_misses"] == got["stlb_misses"] == got["walks"] == 2
    # the zapped pages fault again for both sharers (P1 first: page 1's PTE is gone)
    snap = d.totals()
    d.load(1, X + PAGE, cpu=1)
    d.load(0, X, cpu=0)
    got = d.since(snap)
    assert got["page_faults"] == 1 and got["stlb_misses"] == 2  # P1's fault maps pages 0-15 for both
    assert d.total("stale_translations") == 0


def test_broadcast_va_over_the_ceiling_flushes_every_non_global_entry(drive):
    """P0 also maps pages 32-47; a zap of 40 pages from page 0 changes the span 0-39: 40 > 33 pages, and as
    flush_tlb_kernel_range turns a range over the ceiling into a full flush, one INVLPGB of every non-global
    entry + TLBSYNC (a full flush): P2's 5 entries on CPU2 are collateral damage."""
    d, k = _sharers_and_bystander(drive, "broadcast_va")
    d.load(0, X + 32 * PAGE, cpu=0)  # pages 32-47 present
    k.execute(Event(0, "zap", 0, "shm", 0, 40), 0, [0, 1, 2])
    assert _cpu(d, "invlpgb") == [1, 0, 0] and _cpu(d, "tlbsync") == [1, 0, 0]
    assert _cpu(d, "full_flushes") == [1, 0, 0]
    assert _cpu(d, "collateral_entries_flushed") == [0, 0, 5]
    assert _cpu(d, "shootdown_cycles_initiator") == [INVLPGB + TLBSYNC, 0, 0]


@pytest.mark.parametrize("page_size,n_invlpgb", [("2M", 3), ("1G", 20)])
def test_broadcast_va_strides(drive, page_size, n_invlpgb):
    """Huge pages: INVLPGB's PMD stride bit lets one instruction cover up to invlpgb_count_max 2 MiB pages
    (ceil(20 / 8) = 3), while 1 GiB pages take one INVLPGB each (broadcast_tlb_flush's rule: count only for
    strides up to PMD_SHIFT): 20. Each of P0's 20 loads faults its own page (no fault-around above 4 KiB)."""
    size = {"2M": 1 << 21, "1G": 1 << 30}[page_size]
    p = machine(2, "mshare", "broadcast_va", invlpgb=True)
    d = drive(p, n_procs=2, regions=[Region("shm", X, 20 * size, page_size=page_size, kind="shmem", shared=True)])
    d.switch_to(0, 0)
    for i in range(20):
        d.load(0, X + i * size, cpu=0)
    assert d.total("page_faults") == 20
    # P1's zap, initiated where `running` says P1 runs: CPU1
    Kernel(d.eng, p, d.layout).execute(Event(0, "zap", 1, "shm", 0, 20), 0, [0, 1])
    assert _cpu(d, "invlpgb") == [0, n_invlpgb] and _cpu(d, "tlbsync") == [0, 1]
    snap = d.totals()
    d.load(0, X + 5 * size, cpu=0)
    assert d.since(snap)["page_faults"] == 1  # P0's entry went: it re-faults rather than hitting the old one
    assert d.total("stale_translations") == 0


def test_broadcast_va_needs_invlpgb():
    for uarch in ("skylake_sp", "icelake_sp", "sapphire_rapids"):
        with pytest.raises(ConfigError, match="'broadcast_va' needs INVLPGB"):
            build_params(load_uarch(uarch), n_cpus=2, pt_config="mshare", strategy="broadcast_va")
    with pytest.raises(ConfigError, match="kernel_invlpgb"):
        build_params(load_uarch("zen3"), n_cpus=2, pt_config="mshare", strategy="broadcast_va", kernel_invlpgb=False)
    with pytest.raises(ConfigError, match="not offered to guests"):
        build_params(load_uarch("zen3"), n_cpus=2, pt_config="mshare", strategy="broadcast_va", virtualization="nested")
    p = build_params(load_uarch("zen3"), n_cpus=2, pt_config="mshare", strategy="broadcast_va")
    # the count limit is the part's: zen3.toml's invlpgb_count_max (CPUID 0x80000008 EDX[15:0] + 1)
    assert p.invlpgb and p.invlpgb_count_max == load_uarch("zen3").features.invlpgb_count_max == 8
    assert build_params(load_uarch("skylake_sp"), n_cpus=2).invlpgb_count_max == 1  # never used: no INVLPGB


@RUNNERS
def test_broadcast_va_on_zen3_costs(run):
    """Two sharers hammer page 0; one 1-page zap: one INVLPGB (1 page <= 8) + TLBSYNC at zen3's costs."""
    u = load_uarch("zen3")
    p = build_params(u, n_cpus=2, pt_config="mshare", strategy="broadcast_va", data_caches=False)
    wl = Workload(procs((0, hammer(X, 30000)), (1, hammer(X, 30000))), [shm()])
    res = go(run, wl, p, zaps([20000]))
    assert res.fired == 1
    assert res.total("ipis_sent") == 0 and res.total("full_flushes") == 0
    assert res.cpu("invlpgb") == [1, 0] and res.cpu("tlbsync") == [1, 0]
    assert res.cpu("shootdown_cycles_initiator") == [u.costs.invlpgb_cycles + u.costs.tlbsync_cycles, 0]
    assert res.total("stale_translations") == 0
