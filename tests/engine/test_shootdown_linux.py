"""Linux's own flush paths on both engines, each expected number derived by hand in the comments from Linux
6.18's arch/x86/mm/tlb.c (flush_tlb_mm_range, should_trim_cpumask, should_flush_tlb, flush_tlb_func,
arch_tlbbatch_flush, flush_tlb_all), never from a run: private page tables, lazy CPUs, freed tables,
cpumask trimming, costs on a shipped uarch, the event plumbing and known divergences from Linux.
Conventions: tests/engine/kernel_cases.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from kernel_cases import (
    BASE,
    CR3F,
    INVLPG,
    INVLPGB,
    INVPCID,
    KC,
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
from machines import Drive

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.uarch import load_uarch
from mshare_hw.counters import INDEX
from mshare_hw.engine.params import SimParams, build_params
from mshare_hw.engine.shootdown import TRIM_INTERVAL_CYCLES, Kernel
from mshare_hw.workload.events import Event
from mshare_hw.workload.model import Workload

# ---- private page tables: Linux's own paths ---------------------------------------------------------------


def _private_three_mappers(n: int = 12000):
    """P0-P2 (CPUs 0-2) map shm; P3 (CPU3) does not. The mappers load pages 0, 16 and 32 (three read
    faults, each mapping a 16-page fault-around window: pages 0-47 present), then store to page 0."""
    warm = (X, X + 16 * PAGE, X + 32 * PAGE)
    return Workload(
        procs(
            (0, hammer(X, n, first=warm)),
            (1, hammer(X, n, first=warm)),
            (2, hammer(X, n, first=warm)),
            (3, hammer(UNDECLARED, n)),
        ),
        [shm(processes=(0, 1, 2))],
    )


@RUNNERS
@pytest.mark.parametrize("initiator", [0, 3])
@pytest.mark.parametrize("n_pages", [1, 33, 34])
def test_private_zap_per_mm(run, n_pages, initiator):
    p = machine(4, "private")
    res = go(run, _private_three_mappers(), p, zaps([10_000], n_pages=n_pages, proc=initiator))
    assert res.fired == 1
    # The rmap walk changes the PTEs in P0's, P1's and P2's tables and calls flush_tlb_mm_range on each.
    # Each mm's cpumask is its own CPU. If the initiator is that CPU (P0 from CPU0) the flush is local;
    # otherwise one IPI round with one target. <= 33 pages: INVLPG per page (new_gen = local + 1 = mm gen);
    # 34 pages: more than tlb_single_page_flush_ceiling -> a full flush of the loaded PCID.
    full = n_pages > 33
    work = CR3F if full else n_pages * INVLPG
    round_ = BASE + PER + RESP + work
    if initiator == 0:
        assert res.cpu("ipis_sent") == [2, 0, 0, 0]
        assert res.cpu("shootdown_cycles_initiator") == [work + 2 * round_, 0, 0, 0]
    else:  # P3 (not a mapper) truncates the file from CPU3: three rounds, none local
        assert res.cpu("ipis_sent") == [0, 0, 0, 3]
        assert res.cpu("shootdown_cycles_initiator") == [0, 0, 0, 3 * round_]
    assert res.cpu("ipis_received") == ([0, 1, 1, 0] if initiator == 0 else [1, 1, 1, 0])
    assert res.cpu("invlpg") == ([0] * 4 if full else [n_pages, n_pages, n_pages, 0])
    assert res.cpu("full_flushes") == ([1, 1, 1, 0] if full else [0] * 4)
    responders = [1, 2] if initiator == 0 else [0, 1, 2]
    assert res.cpu("shootdown_cycles_responder") == [RESP + work if c in responders else 0 for c in range(4)]
    assert res.total("invpcid") == 0
    assert res.total("stale_translations") == 0
    # each mapper faults its three windows, then page 0 again after the zap (it stores only to page 0)
    assert res.proc("page_faults") == [4, 4, 4, 1]


@RUNNERS
@pytest.mark.parametrize(
    "pt_config,strategy", [("private", "flush_all"), ("mshare", "per_sharer"), ("mshare", "union_batch")]
)
@pytest.mark.parametrize("p1_accesses,ipis", [(10, 0), (12000, 1)])
def test_lazy_cpu_gets_no_ipi(run, pt_config, strategy, p1_accesses, ipis):
    """P1 (CPU1) touches the page 10 times and finishes long before the event: CPU1 has nothing else to
    run, enters lazy TLB mode and keeps P1 loaded. should_flush_tlb skips lazy CPUs (private: P1's own
    flush_tlb_mm_range; per_sharer: the same call on the sharer; union_batch: the union's lazy CPUs are
    skipped too). With P1 still running, CPU1 gets the IPI and an INVLPG."""
    p = machine(2, pt_config, strategy)
    wl = Workload(procs((0, hammer(X, 12000)), (1, hammer(X, p1_accesses))), [shm(processes=(0, 1))])
    res = go(run, wl, p, zaps([6000]))
    assert res.fired == 1
    assert res.cpu("ipis_sent") == [ipis, 0]
    assert res.cpu("ipis_received") == [0, ipis]
    assert res.cpu("invlpg") == [1, ipis]
    assert res.total("stale_translations") == 0


@RUNNERS
@pytest.mark.parametrize("kind", ["reclaim", "zap"])
def test_reclaim_batches_one_round(run, kind):
    """Four mms map shm: P0 (CPU0, initiator), P1 and P2 time-sharing CPU1, P3 (CPU2)."""
    p = machine(3, "private", quantum_cycles=300)
    wl = Workload(
        procs((0, hammer(X, 12000)), (1, hammer(X, 5000)), (1, hammer(X, 5000)), (2, hammer(X, 12000))),
        [shm()],
    )
    res = go(run, wl, p, zaps([6000], kind=kind))
    assert res.fired == 1
    assert res.cpu("ipis_sent") == [2, 0, 0]
    assert res.cpu("ipis_received") == [0, 1, 1]
    if kind == "reclaim":
        # arch_tlbbatch_should_defer: P0's cpumask is {0}, the initiator alone, so its page is cleared and
        # flushed at once (a local INVLPG, no IPI). P1..P3 have a remote CPU in theirs: arch_tlbbatch_add_pending
        # per mm (gen++, mask |= cpumask) then ONE round to the union {1,2}: 2 IPIs for 3 mms. Receivers see
        # mm = NULL, a full flush; their loaded mm's gen moved, so each flushes its loaded PCID; the initiator
        # is not in the union.
        assert res.cpu("full_flushes") == [0, 1, 1]
        assert res.cpu("invlpg") == [1, 0, 0]
        assert res.cpu("shootdown_cycles_initiator") == [INVLPG + BASE + 2 * PER + (RESP + CR3F), 0, 0]
        assert res.cpu("shootdown_cycles_responder") == [0, RESP + CR3F, RESP + CR3F]
    else:
        # one flush_tlb_mm_range per mm: P0 local INVLPG; the loaded one of P1/P2 -> an IPI round; the
        # parked one -> no IPI (not loaded, no trim); P3 -> an IPI round. Same 2 IPIs, but 2 rounds.
        assert res.cpu("invlpg") == [1, 1, 1]
        assert res.total("full_flushes") == 0
        assert res.cpu("shootdown_cycles_initiator") == [INVLPG + 2 * (BASE + PER + RESP + INVLPG), 0, 0]
    # either way the parked one of P1/P2 had its gen bumped: it catches up with a CR3 flush at switch-in
    # (CPU1: 2 slot misses + 1 catch-up)
    assert res.cpu("cr3_flushes") == [1, 3, 1]
    assert res.total("stale_translations") == 0


@RUNNERS
@pytest.mark.parametrize("kind", ["migrate", "reclaim"])
@pytest.mark.parametrize("second_mapper", [False, True])
def test_batched_unmap_defers_only_with_a_remote_cpu(run, kind, second_mapper):
    """A kernel that uses INVLPGB (as on Zen 3+). P0 (CPU0, the initiator) loads page 0 of shm once (a read
    fault maps a 16-page fault-around window: pages 0-15), then hammers it; CPU1 runs P1, which maps shm
    too or not (then a bystander on its own heap). The event unmaps 40 pages (above the 33-page ceiling)."""
    p = machine(2, "private", invlpgb=True)
    p1 = hammer(X, 12000, first=(X,)) if second_mapper else hammer(UNDECLARED, 12000)
    wl = Workload(procs((0, hammer(X, 12000, first=(X,))), (1, p1)), [shm(processes=(0, 1) if second_mapper else (0,))])
    res = go(run, wl, p, zaps([6000], n_pages=40, kind=kind))
    assert res.fired == 1
    # arch_tlbbatch_should_defer(P0): P0's cpumask is {0}, the initiator alone: no batch. Each of the 16
    # present pages is cleared and flushed at once (one folio at a time): flush_tlb_mm_range of one page,
    # no other CPU in the cpumask, P0 loaded -> flush_tlb_func, one step behind -> one INVLPG. Never a full
    # flush (each flush is one page, under the ceiling), never an INVLPGB, no IPI.
    assert res.cpu("invlpg") == [16, 0]
    assert res.total("ipis_sent") == 0
    assert res.total("full_flushes") == res.total("invlpgb")  # the INVLPGB below, if any, is the only one
    if second_mapper:
        # P1's cpumask is {1}, a remote CPU: deferred. arch_tlbbatch_add_pending, then arch_tlbbatch_flush
        # with INVLPGB: one flush of every non-global entry on every CPU + TLBSYNC by the initiator.
        assert res.cpu("invlpgb") == [1, 0] and res.cpu("tlbsync") == [1, 0]
        assert res.cpu("shootdown_cycles_initiator") == [16 * INVLPG + INVLPGB + TLBSYNC, 0]
    else:
        # nothing deferred: no batch flush at all, and the bystander on CPU1 keeps its TLB
        assert res.total("invlpgb") == res.total("tlbsync") == 0
        assert res.cpu("shootdown_cycles_initiator") == [16 * INVLPG, 0]
        assert res.total("collateral_entries_flushed") == 0
    assert res.total("stale_translations") == 0


# ---- single steps: lazy catch-up, freed tables, cpumask trimming ------------------------------------------


@pytest.fixture(params=["cython", "reference"])
def kind(request):
    return request.param


def _mask(d: Drive, mm: int) -> list[int]:
    return [int(c) for c in d.eng.cpumask(mm)]


def _cpu_col(d: Drive, name: str) -> list[int]:
    return [int(v) for v in np.asarray(d.eng.cpu_counters)[:, INDEX[name]]]


@pytest.mark.parametrize("event", [True, False])
def test_lazy_cpu_catches_up_at_switch_in(kind, event):
    p = machine(2, "private")
    d = Drive(kind, p, n_procs=2, regions=[shm(processes=(0, 1))])
    d.switch_to(0, 0)
    d.store(0, X, cpu=0)
    d.switch_to(1, 1)
    d.store(1, X, cpu=1)
    d.enter_lazy(1)  # P1 has nothing more to run: CPU1 keeps P1 loaded, lazily
    k = Kernel(d.eng, p, d.layout)
    if event:
        k.execute(Event(0, "zap", 0, "shm", 0, 1), 0, [0, -1])
        # flush_tlb_mm_range(P0): local INVLPG; flush_tlb_mm_range(P1): cpumask {1}, but CPU1 is lazy ->
        # no IPI (P1's gen is now 1, CPU1's slot still says 0)
        assert _cpu_col(d, "ipis_sent") == [0, 0] and _cpu_col(d, "invlpg") == [1, 0]
        assert d.eng.loaded_mm(1) == 1 and d.eng.is_lazy(1)
    snap = d.totals()
    d.switch_to(1, 1)  # back from lazy to the same mm: flush iff the slot's gen is behind
    got = d.since(snap)
    assert got.get("lazy_catchup_flushes", 0) == int(event)
    assert got.get("cr3_flushes", 0) == int(event)
    snap = d.totals()
    d.store(1, X, cpu=1)
    got = d.since(snap)
    if event:  # TLB empty for P1's PCID; the PTE was zapped: walk, fault, retry
        assert got.get("l1_dtlb_misses") == 1 and got.get("page_faults") == 1
    else:
        assert got.get("l1_dtlb_hits") == 1
    assert d.total("stale_translations") == 0


def _three_cpu_setup(kind: str) -> tuple[Drive, Kernel, SimParams]:
    """shm mapped by P0 only. CPU1 ran P0 and went lazy (P0 loaded); CPU2 ran P0, then switched to P1;
    CPU0 runs P0 (the initiator). P0's cpumask: {0, 1, 2}."""
    p = machine(3, "private")
    d = Drive(kind, p, n_procs=2, regions=[shm(processes=(0,))])
    d.switch_to(1, 0)
    d.store(0, X, cpu=1)
    d.enter_lazy(1)
    d.switch_to(2, 0)
    d.store(0, X, cpu=2)
    d.switch_to(2, 1)
    d.switch_to(0, 0)
    d.store(0, X, cpu=0)
    # bits are set at switch-in and never cleared at switch-out or by going lazy
    assert _mask(d, 0) == [0, 1, 2] and _mask(d, 1) == [2]
    return d, Kernel(d.eng, p, d.layout), p


def test_ordinary_flush_skips_lazy_and_other_mm_cpus_and_keeps_the_cpumask(kind):
    d, k, _ = _three_cpu_setup(kind)
    k.execute(Event(0, "zap", 0, "shm", 0, 1), 0, [0, -1, -1])
    # should_flush_tlb: CPU1 lazy -> no; CPU2 loaded P1 != P0 and no trim -> no. Local INVLPG only.
    assert _cpu_col(d, "ipis_sent") == [0, 0, 0] and _cpu_col(d, "ipis_received") == [0, 0, 0]
    assert _cpu_col(d, "invlpg") == [1, 0, 0]
    assert _mask(d, 0) == [0, 1, 2]  # nobody was interrupted, so nobody left the cpumask
    assert d.eng.loaded_mm(1) == 0 and d.eng.is_lazy(1)


def test_freed_tables_interrupt_every_cpu_of_the_cpumask(kind):
    d, k, _ = _three_cpu_setup(kind)
    k.execute(Event(0, "detach", 0, "shm", 0, 1), 0, [0, -1, -1])
    # munmap: P0's PTEs cleared, flush_tlb_mm_range(P0, 64 pages -> full, freed_tables): on_each_cpu_mask
    # over the whole cpumask, lazy CPUs included.
    # CPU1: P0 loaded but lazy -> switch_mm(init_mm) (a CR3 write) instead of flushing.
    # CPU2: P1 loaded != P0 -> clears CPU2 from P0's cpumask (the only way a bit goes away).
    # CPU0: full flush of P0's PCID, while the responders work: the initiator pays the longer of the two.
    assert _cpu_col(d, "ipis_sent") == [2, 0, 0]
    assert _cpu_col(d, "ipis_received") == [0, 1, 1]
    assert _cpu_col(d, "full_flushes") == [1, 0, 0]
    assert _cpu_col(d, "shootdown_cycles_responder") == [0, RESP + CR3F, RESP]
    assert _cpu_col(d, "shootdown_cycles_initiator") == [BASE + 2 * PER + max(CR3F, RESP + CR3F), 0, 0]
    assert d.eng.loaded_mm(1) == -1 and not d.eng.is_lazy(1)
    assert d.eng.loaded_mm(2) == 1
    # switching to init_mm leaves CPU1 in P0's cpumask (bits are only cleared by flush_tlb_func)
    assert _mask(d, 0) == [0, 1]


def test_trim_cpumask_once_a_second(kind):
    d, k, _ = _three_cpu_setup(kind)
    T = TRIM_INTERVAL_CYCLES
    k.execute(Event(T, "zap", 0, "shm", 0, 1), T, [0, -1, -1])
    # first flush of P0 at/after one second: trim_cpumask -> every non-lazy CPU of the cpumask. CPU1 is
    # lazy (should_flush_tlb checks that first): skipped. CPU2 (P1 loaded): IPI, leaves the cpumask.
    assert _cpu_col(d, "ipis_received") == [0, 0, 1]
    assert _cpu_col(d, "invlpg") == [1, 0, 0]
    assert _mask(d, 0) == [0, 1]
    # CPU2 runs P0 again, then P1: back in the cpumask. Within the same second: no trim, no IPI.
    d.switch_to(2, 0)
    d.switch_to(2, 1)
    d.store(0, X, cpu=0)  # re-fault the page: a zap of a page with no PTE flushes nothing
    k.execute(Event(T + 1, "zap", 0, "shm", 0, 1), T + 1, [0, -1, -1])
    assert _cpu_col(d, "ipis_received") == [0, 0, 1]
    assert _mask(d, 0) == [0, 1, 2]
    # one second later: trim again
    d.store(0, X, cpu=0)
    k.execute(Event(2 * T + 1, "zap", 0, "shm", 0, 1), 2 * T + 1, [0, -1, -1])
    assert _cpu_col(d, "ipis_received") == [0, 0, 2]
    assert _mask(d, 0) == [0, 1]


def test_trim_window_is_not_used_up_by_a_local_flush(kind):
    p = machine(2, "private")
    d = Drive(kind, p, n_procs=2, regions=[shm(processes=(0,))])
    k = Kernel(d.eng, p, d.layout)
    T = TRIM_INTERVAL_CYCLES
    d.switch_to(0, 0)
    d.store(0, X, cpu=0)
    # P0's cpumask is {0}: flush_tlb_mm_range takes the local branch (no should_trim_cpumask call)
    k.execute(Event(T + 10, "zap", 0, "shm", 0, 1), T + 10, [0, -1])
    d.store(0, X, cpu=0)  # re-fault the page: a zap of a page with no PTE flushes nothing
    d.switch_to(1, 0)
    d.switch_to(1, 1)  # CPU1 in P0's cpumask, P1 loaded
    k.execute(Event(T + 20, "zap", 0, "shm", 0, 1), T + 20, [0, -1])
    # Linux: remote CPU in the mask -> should_trim_cpumask(): jiffies is past next_trim_cpumask (set at
    # mm creation + HZ) -> trim -> IPI to CPU1, which leaves P0's cpumask
    assert _cpu_col(d, "ipis_received") == [0, 1]
    assert _mask(d, 0) == [0]


def test_freed_tables_trim_the_initiating_cpu_too(kind):
    p = machine(2, "private")
    d = Drive(kind, p, n_procs=2, regions=[shm(processes=(0, 1))])
    d.switch_to(0, 1)
    d.switch_to(0, 0)  # CPU0: in P1's cpumask, P0 loaded (it initiates)
    d.switch_to(1, 1)  # CPU1: P1 loaded
    k = Kernel(d.eng, p, d.layout)
    k.flush_tlb_mm_range(0, 0, 1, X, 64, 12, True, 0)  # e.g. the reaper frees P1's page tables from CPU0
    assert _cpu_col(d, "ipis_received") == [0, 1]
    assert _mask(d, 1) == [1]


# ---- costs against a shipped uarch -------------------------------------------------------------------------


@RUNNERS
def test_ipi_costs_against_skylake(run):
    u = load_uarch("skylake_sp")
    # without PTI (test_pti_on_skylake has the default, with it)
    p = build_params(u, n_cpus=3, pt_config="private", data_caches=False, quantum_cycles=10**9, pti=False)
    kc = p.kernel_costs
    for key, v in kc.items():
        assert v == getattr(u.costs, key), key
    base, per, resp = kc["ipi_initiator_base_cycles"], kc["ipi_per_target_cycles"], kc["ipi_responder_cycles"]
    invlpg, cr3f = kc["invlpg_cycles"], kc["cr3_flush_cycles"]

    # (a) 1-page zap from P0 (CPU0); P1, P2 on CPUs 1, 2: local INVLPG + two rounds of one target
    wl = Workload(
        procs((0, hammer(X, 30000)), (1, hammer(X, 30000)), (2, hammer(X, 30000))), [shm(processes=(0, 1, 2))]
    )
    res = go(run, wl, p, zaps([20000]))
    assert res.fired == 1
    assert res.cpu("shootdown_cycles_initiator") == [invlpg + 2 * (base + per + resp + invlpg), 0, 0]
    assert res.cpu("shootdown_cycles_responder") == [0, resp + invlpg, resp + invlpg]

    # (b) reclaim, where one receiver has nothing to flush: P2 (CPU2, a mapper) finishes early and CPU2
    # runs P3 (not a mapper); CPU2 stays in P2's cpumask. P0's cpumask is {0}: not deferred, its page is
    # flushed at once (local INVLPG). P1 and P2 are deferred: one round to {1, 2}, 2 targets. CPU1: P1's gen
    # moved -> full flush; CPU2: P3 loaded, up to date -> nothing. The initiator waits for the slowest.
    wl = Workload(
        procs((0, hammer(X, 30000)), (1, hammer(X, 30000)), (2, hammer(X, 10)), (2, hammer(UNDECLARED, 30000))),
        [shm(processes=(0, 1, 2))],
    )
    res = go(run, wl, p, zaps([20000], kind="reclaim"))
    assert res.fired == 1
    assert res.cpu("ipis_received") == [0, 1, 1]
    assert res.cpu("full_flushes") == [0, 1, 0]
    assert res.cpu("invlpg") == [1, 0, 0]
    slowest = max(resp + cr3f, resp)
    assert res.cpu("shootdown_cycles_initiator") == [invlpg + base + 2 * per + slowest, 0, 0]
    assert res.cpu("shootdown_cycles_responder") == [0, resp + cr3f, resp]
    # the initiator's cycles are part of its clock and its process's cycles
    assert res.proc("shootdown_cycles_initiator")[0] == invlpg + base + 2 * per + slowest


@RUNNERS
def test_pti_on_skylake(run):
    """Skylake-SP is Meltdown-affected: machine.pti = "auto" turns PTI on. The 1-page zap of
    test_ipi_costs_against_skylake (a), by hand from the uarch file's costs."""
    u = load_uarch("skylake_sp")
    p = build_params(u, n_cpus=3, pt_config="private", data_caches=False, quantum_cycles=10**9)
    assert p.pti and u.features.meltdown
    kc = p.kernel_costs
    base, per, resp = kc["ipi_initiator_base_cycles"], kc["ipi_per_target_cycles"], kc["ipi_responder_cycles"]
    invlpg, invpcid, nf = kc["invlpg_cycles"], kc["invpcid_cycles"], p.cr3_noflush_cycles
    assert (base, per, resp, invlpg, invpcid, nf) == (3000, 600, 1500, 260, 300, 96)
    wl = Workload(
        procs((0, hammer(X, 30000)), (1, hammer(X, 30000)), (2, hammer(X, 30000))), [shm(processes=(0, 1, 2))]
    )
    res = go(run, wl, p, zaps([20000]))
    assert res.fired == 1
    # flush_tlb_one_user under PTI: INVLPG (kernel PCID) + INVPCID type 0 on the user PCID, on every CPU
    assert res.cpu("invlpg") == [1, 1, 1]
    assert res.cpu("invpcid") == [1, 1, 1]
    flush = invlpg + invpcid  # 560
    # each responder: IPI entry/exit (interrupted in user mode: CR3 to kernel and back) + its flush: 2252;
    # the initiator waits until it is released, before the responder's exit switch: 2156
    assert res.cpu("shootdown_cycles_responder") == [0, resp + flush + 2 * nf, resp + flush + 2 * nf]
    wait = resp + flush + nf
    # P0's own flush (cpumask {0}: local), two rounds of one target, the madvise's own entry and exit:
    # 560 + 2 x (3000 + 600 + 2156) + 192 = 12264
    assert res.cpu("shootdown_cycles_initiator") == [flush + 2 * (base + per + wait) + 2 * nf, 0, 0] == [12264, 0, 0]
    # CR3 switches per CPU: the first context switch (2), the first store's fault (2), the event (initiator's
    # system call or responder's interrupt, 2) and the re-fault after the zap (2)
    assert res.cpu("pti_cr3_switches") == [8, 8, 8]
    # the first switch on each CPU takes a new ASID: load_new_mm_cr3 flushes, invalidate_user_asid marks the
    # user PCID, flushed at the exit to user (cr3_flush_cycles = cr3_noflush_cycles here: no extra cycles)
    assert res.cpu("pti_user_flushes") == [1, 1, 1]
    # each fault (the first store, the re-fault; one page each) pays its entry and exit switches
    assert res.cpu("fault_cycles") == [2 * (u.costs.fault_cycles + u.costs.fault_per_page_cycles + 2 * nf)] * 3


@RUNNERS
@pytest.mark.parametrize("n_pages", [1, 34])
def test_pti_flushes_by_hand(run, n_pages):
    """The small machine's costs with PTI forced on: P0 (CPU0) zaps, P1 (CPU1) maps shm too; P2 (CPU2) does
    not. Both mappers load pages 0 and 33 (two read faults, each mapping a 16-page fault-around window:
    pages 0-15 and 32-47), then hammer page 0; 34 pages from page 0 change PTEs over a 34-page span."""
    p = machine(3, "private", pti=True)
    nf, cf = p.cr3_noflush_cycles, p.cr3_flush_cycles
    assert (nf, cf) == (7, 50)
    warm = (X, X + 33 * PAGE)
    wl = Workload(
        procs((0, hammer(X, 12000, first=warm)), (1, hammer(X, 12000, first=warm)), (2, hammer(UNDECLARED, 12000))),
        [shm(processes=(0, 1))],
    )
    res = go(run, wl, p, zaps([6000], n_pages=n_pages))
    assert res.fired == 1
    if n_pages == 1:
        # partial flush: INVLPG + INVPCID (single address, user PCID) on CPU0 (local) and CPU1 (IPI)
        assert res.cpu("invlpg") == [1, 1, 0] and res.cpu("invpcid") == [1, 1, 0]
        work, extra_flushes = INVLPG + INVPCID, 0
    else:
        # 34 pages > the ceiling: flush_tlb_local, a CR3 write plus invalidate_user_asid; the user PCID goes at
        # the exit to user, whose CR3 write then flushes: (50 - 7) more cycles, one deferred user flush
        assert res.total("invlpg") == res.total("invpcid") == 0
        assert res.cpu("full_flushes") == [1, 1, 0]
        work, extra_flushes = CR3F + (cf - nf), 1
    # first context switches (a new ASID: a flushing switch) + the deferred flushes of this event
    assert res.cpu("pti_user_flushes") == [1 + extra_flushes, 1 + extra_flushes, 1]
    assert res.cpu("shootdown_cycles_responder") == [0, RESP + work + 2 * nf, 0]
    # P0's local flush; one round to CPU1, waited for until before CPU1's exit switch; the zap's own switches
    assert res.cpu("shootdown_cycles_initiator") == [work + BASE + PER + (RESP + work + nf) + 2 * nf, 0, 0]
    # CR3 switches, 2 each: on every CPU the first switch; the mappers' two read faults, the event (system
    # call or interrupt) and the re-fault of page 0 after the zap; P2's one fault
    assert res.cpu("pti_cr3_switches") == [10, 10, 4]
    assert res.total("stale_translations") == 0


def test_pti_setting():
    """machine.pti: auto follows the uarch's `meltdown`; true needs PCID and INVPCID; anything else is refused."""
    for name, on in (("skylake_sp", True), ("icelake_sp", False), ("sapphire_rapids", False), ("zen3", False)):
        u = load_uarch(name)
        assert build_params(u, n_cpus=2).pti is on
        assert build_params(u, n_cpus=2, pti=False).pti is False
        assert build_params(u, n_cpus=2, pti=True).pti is True
    u = load_uarch("skylake_sp")
    no_pcid = u.model_copy(update={"features": u.features.model_copy(update={"pcid": False})})
    with pytest.raises(ConfigError, match="machine.pti"):
        build_params(no_pcid, n_cpus=2)
    with pytest.raises(ConfigError, match="machine.pti"):
        build_params(u, n_cpus=2, pti="yes")


# ---- event plumbing ----------------------------------------------------------------------------------------


@RUNNERS
def test_events_after_the_run_never_fire(run):
    p = machine(2, "mshare", "flush_all")
    wl = Workload(procs((0, hammer(X, 500)), (1, hammer(X, 500))), [shm()])
    res = go(run, wl, p, zaps([1000, 10**9, 2 * 10**9]))
    assert res.fired == 1
    assert res.cpu("ipis_sent") == [1, 0]


@RUNNERS
def test_events_out_of_order_are_refused(run):
    p = machine(2, "mshare", "flush_all")
    wl = Workload(procs((0, hammer(X, 4000)), (1, hammer(X, 4000))), [shm()])
    evs = [Event(2000, "zap", 0, "shm", 0, 1), Event(1000, "zap", 0, "shm", 0, 1)]
    with pytest.raises(ValueError, match="out of time order"):
        run(wl, p, events=iter(evs))


# ---- divergences from Linux found in review, now fixed: each test keeps it so ---------------------------------


@RUNNERS
@pytest.mark.parametrize("pt_config", ["private", "mshare"])
def test_no_flush_when_no_pte_was_present(run, pt_config):
    p = machine(2, pt_config, "flush_all")
    wl = Workload(procs((0, hammer(X, 4000)), (1, hammer(X, 4000))), [shm(processes=(0, 1))])
    # both processes only ever store to page 0; pages 40-41 were never faulted in anywhere
    res = go(run, wl, p, zaps([2000], n_pages=2, first=40))
    assert res.fired == 1
    assert res.total("ipis_sent") == 0
    assert res.total("invlpg") == res.total("invpcid") == res.total("full_flushes") == 0


@RUNNERS
def test_flush_all_uses_invlpgb_when_the_cpu_has_it(run):
    p = machine(3, "mshare", "flush_all", invlpgb=True)
    wl = Workload(procs((0, hammer(X, 4000)), (1, hammer(X, 4000))), [shm()])
    res = go(run, wl, p, zaps([2000]))
    assert res.fired == 1
    assert res.total("ipis_sent") == 0
    assert res.cpu("invlpgb") == [1, 0, 0] and res.cpu("tlbsync") == [1, 0, 0]


@RUNNERS
def test_private_reclaim_uses_invlpgb_when_the_cpu_has_it(run):
    p = machine(2, "private", "flush_all", invlpgb=True)
    wl = Workload(procs((0, hammer(X, 4000)), (1, hammer(X, 4000))), [shm()])
    res = go(run, wl, p, zaps([2000], kind="reclaim"))
    assert res.fired == 1
    assert res.total("ipis_sent") == 0
    assert res.cpu("invlpgb") == [1, 0] and res.cpu("tlbsync") == [1, 0]


def test_machine_helper_is_consistent():
    p = machine(2)
    assert dataclasses.asdict(p)["kernel_costs"] == KC and not p.invlpgb
