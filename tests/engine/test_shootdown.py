"""Hand-computed invalidation events and TLB-coherence strategies, checked on BOTH engines.

Each case is a tiny pinned machine with short traces (or the single-step API) where the state at the
event is known: which mm every CPU has loaded, which CPUs are lazy, which CPUs sit in which mm's
cpumask. Expected numbers are derived in the comments from Linux 6.18's arch/x86/mm/tlb.c as summarised
in shared/reference/mshare_and_linux_tlb.md §2.3-2.7 (flush_tlb_mm_range, should_flush_tlb,
flush_tlb_func, arch_tlbbatch_flush, flush_tlb_all) and the strategies of DESIGN §2.7, never from a run.

Conventions: process i runs on CPU `cpu_of[i]`; `hammer` traces store to one page over and over (write
faults map one page, so no fault-around); event times are chosen well inside every running CPU's run, and
the engine stops every CPU at the event time (no CPU runs past it before the event fires), so at an event
every process of these workloads is still running. Kernel costs are the distinct numbers in `KC`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from machines import Drive, tiny

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.uarch import load_uarch
from mshare_hw.counters import INDEX
from mshare_hw.engine.driver import run_reference, run_workload
from mshare_hw.engine.params import SimParams, build_params
from mshare_hw.engine.shootdown import TRIM_INTERVAL_CYCLES, Kernel
from mshare_hw.workload.events import Event
from mshare_hw.workload.generators import database_workload
from mshare_hw.workload.model import ArrayTrace, Process, Region, Workload

LOAD, STORE = 1, 2
PAGE = 1 << 12
SLOT = 1 << 39
X = 2 * SLOT  # page 0 of the shared region "shm"
UNDECLARED = 0x40_0000  # a page no region covers (anonymous, private to whoever touches it)

KC = {
    "cr3_flush_cycles": 50,
    "invlpg_cycles": 20,
    "invpcid_cycles": 30,
    "ipi_initiator_base_cycles": 1000,
    "ipi_per_target_cycles": 100,
    "ipi_responder_cycles": 400,
    "invlpgb_cycles": 70,
    "tlbsync_cycles": 500,
}
BASE, PER, RESP = KC["ipi_initiator_base_cycles"], KC["ipi_per_target_cycles"], KC["ipi_responder_cycles"]
INVLPG, INVPCID, CR3F = KC["invlpg_cycles"], KC["invpcid_cycles"], KC["cr3_flush_cycles"]
INVLPGB, TLBSYNC = KC["invlpgb_cycles"], KC["tlbsync_cycles"]

RUNNERS = pytest.mark.parametrize("run", [run_workload, run_reference], ids=["engine", "reference"])


def machine(n_cpus: int, pt_config: str = "mshare", strategy: str = "flush_all", **kw) -> SimParams:
    kw.setdefault("invlpgb", strategy == "broadcast")
    return tiny(n_cpus=n_cpus, pt_config=pt_config, strategy=strategy, kernel_costs=dict(KC), **kw)


def shm(processes=None, pages: int = 64) -> Region:
    return Region("shm", X, pages * PAGE, kind="shmem", shared=True, processes=processes)


def hammer(va: int, n: int, kind: int = STORE, first: tuple[int, ...] = ()) -> ArrayTrace:
    """`first` (addresses touched once, with loads), then n accesses to va."""
    a = np.array(list(first) + [va] * n, dtype=np.uint64)
    k = np.array([LOAD] * len(first) + [kind] * n, dtype=np.uint8)
    return ArrayTrace(a, k)


def procs(*specs) -> list[Process]:
    """specs: (cpu, trace) per process."""
    return [Process(f"p{i}", trace, cpu=cpu) for i, (cpu, trace) in enumerate(specs)]


class Res:
    def __init__(self, r: dict):
        self.r = r
        self.fired = r["events_fired"]
        self.examples = [tuple(int(v) for v in x) for x in r["stale_examples"]]

    def cpu(self, name: str) -> list[int]:
        return [int(v) for v in np.asarray(self.r["cpu_counters"])[:, INDEX[name]]]

    def proc(self, name: str) -> list[int]:
        return [int(v) for v in np.asarray(self.r["proc_counters"])[:, INDEX[name]]]

    def total(self, name: str) -> int:
        return sum(self.cpu(name))


def go(run, wl: Workload, params: SimParams, events) -> Res:
    return Res(run(wl, params, events=iter(list(events))))


def zaps(times, n_pages: int = 1, kind: str = "zap", proc: int = 0, region: str = "shm", first: int = 0):
    return [Event(int(t), kind, proc, region, first, n_pages) for t in sorted(times)]


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
    # initiator: base + per target x (n-1) + slowest responder (IPI entry + INVPCID), + its own INVPCID
    assert res.cpu("shootdown_cycles_initiator") == [E * (BASE + PER * (n - 1) + RESP + INVPCID + INVPCID)] + [0] * (
        n - 1
    )
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
    assert res.cpu("shootdown_cycles_initiator") == [INVLPG + BASE + PER + RESP + INVLPG, 0, 0]
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
        # arch_tlbbatch_add_pending per mm (gen++, mask |= cpumask) then ONE round to the union {0,1,2}
        # minus the initiator: 2 IPIs for 4 mms. Receivers see mm = NULL, a full flush; their loaded mm's
        # gen moved, so each flushes its loaded PCID; the initiator too (it is in the union).
        assert res.cpu("full_flushes") == [1, 1, 1]
        assert res.total("invlpg") == 0
        assert res.cpu("shootdown_cycles_initiator") == [BASE + 2 * PER + (RESP + CR3F) + CR3F, 0, 0]
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
    # CPU0: full flush of P0's PCID.
    assert _cpu_col(d, "ipis_sent") == [2, 0, 0]
    assert _cpu_col(d, "ipis_received") == [0, 1, 1]
    assert _cpu_col(d, "full_flushes") == [1, 0, 0]
    assert _cpu_col(d, "shootdown_cycles_responder") == [0, RESP + CR3F, RESP]
    assert _cpu_col(d, "shootdown_cycles_initiator") == [BASE + 2 * PER + (RESP + CR3F) + CR3F, 0, 0]
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
    p = build_params(u, n_cpus=3, pt_config="private", data_caches=False, quantum_cycles=10**9)
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
    # runs P3 (not a mapper). Union of cpumasks {0, 1, 2}: one round of 2 targets. CPU1: P1's gen moved
    # -> full flush; CPU2: P3 loaded, up to date -> nothing. The initiator waits for the slowest.
    wl = Workload(
        procs((0, hammer(X, 30000)), (1, hammer(X, 30000)), (2, hammer(X, 10)), (2, hammer(UNDECLARED, 30000))),
        [shm(processes=(0, 1, 2))],
    )
    res = go(run, wl, p, zaps([20000], kind="reclaim"))
    assert res.fired == 1
    assert res.cpu("ipis_received") == [0, 1, 1]
    assert res.cpu("full_flushes") == [1, 1, 0]
    slowest = max(resp + cr3f, resp)
    assert res.cpu("shootdown_cycles_initiator") == [base + 2 * per + slowest + cr3f, 0, 0]
    assert res.cpu("shootdown_cycles_responder") == [0, resp + cr3f, resp]
    # the initiator's cycles are part of its clock and its process's cycles
    assert res.proc("shootdown_cycles_initiator")[0] == base + 2 * per + slowest + cr3f


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


# ---- known divergences from Linux (xfail: they document bugs) ---------------------------------------------


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
