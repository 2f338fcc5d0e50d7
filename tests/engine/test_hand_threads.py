"""Threads and Linux 6.18's global ASIDs on both engines, each expected count derived by hand in the comments
from arch/x86/mm/tlb.c (flush_tlb_mm_range, consider_global_asid, mm_active_cpus_exceeds, use_global_asid,
broadcast_tlb_flush, finish_asid_transition, flush_tlb_func, switch_mm_irqs_off). Conventions:
tests/engine/kernel_cases.py; P0 is the process, T1.. its threads (Process.thread_of = 0), one per CPU.
"""

from __future__ import annotations

import pytest
from kernel_cases import (
    BASE,
    CR3F,
    INVLPG,
    INVLPGB,
    PER,
    RESP,
    RUNNERS,
    TLBSYNC,
    UNDECLARED,
    X,
    go,
    hammer,
    machine,
    zaps,
)
from machines import CR3_NOFLUSH

from mshare_hw.config.errors import ConfigError
from mshare_hw.engine.layout import build_layout
from mshare_hw.workload.model import Process, Region, Workload

N = 20_000
TIMES = [6000, 7000, 8000]  # all well inside the first jiffy (3e6 cycles): jiffies & 0x1f == 0 == P0's pid


def _threads(n_threads: int, n_cpus: int, sleeper: int = -1) -> Workload:
    """P0 and its n_threads - 1 threads on CPUs 0.., storing to page 0 of "shm" (a private shared mapping of
    P0, so one mm holds its PTE); the other CPUs run an unrelated process each. Thread `sleeper` sleeps from
    its 1000th access for the rest of the run (its CPU idles in lazy TLB mode)."""
    procs = []
    for i in range(n_threads):
        sleeps = ((1000, 10**9),) if i == sleeper else ()
        procs.append(Process(f"t{i}", hammer(X, N), cpu=i, thread_of=None if i == 0 else 0, sleeps=sleeps))
    for c in range(n_threads, n_cpus):
        procs.append(Process(f"u{c}", hammer(UNDECLARED + c * 4096, N), cpu=c))
    shm = Region("shm", X, 64 * 4096, kind="shmem", shared=True, processes=(0,))
    return Workload(procs, [shm])


@RUNNERS
def test_global_asid_when_loaded_on_four_cpus(run):
    """Four threads on CPUs 0-3, INVLPGB kernel, three 1-page zaps by P0 (pid 0) from CPU0.
    1st: no global ASID yet: flush_tlb_multi, IPIs to CPUs 1-3 (each one step behind: INVLPG) and a local
       INVLPG while they work; initiator BASE + 3 PER + max(INVLPG, RESP + INVLPG). Then consider_global_asid:
       (0 & 0x1f) == (0 & 0x1f), the cpumask holds 4 CPUs, all with the mm loaded, not lazy: 4 > 3, global ASID.
    2nd: broadcast_tlb_flush: one INVLPGB (1 page) by the global ASID; finish_asid_transition finds CPUs still
       on their dynamic ASID (nobody switched), so one flush_tlb_multi to the whole cpumask: each CPU,
       the initiator too (while the others work), reloads CR3 under the global ASID without a flush
       (cr3_writes_noflush); then TLBSYNC. Initiator INVLPGB + TLBSYNC + BASE + 3 PER + max(CR3_NOFLUSH,
       RESP + CR3_NOFLUSH).
    3rd: one INVLPGB + TLBSYNC; every CPU on the global ASID: the transition ends, no IPI."""
    p = machine(4, "private", invlpgb=True)
    res = go(run, _threads(4, 4), p, zaps(TIMES))
    assert res.fired == 3
    assert res.total("global_asid_assignments") == 1
    assert res.cpu("global_asid_assignments") == [1, 0, 0, 0]
    assert res.cpu("ipis_sent") == [6, 0, 0, 0]
    assert res.cpu("ipis_received") == [0, 2, 2, 2]
    assert res.cpu("invlpg") == [1, 1, 1, 1]
    assert res.cpu("invlpgb") == [2, 0, 0, 0]
    assert res.cpu("tlbsync") == [2, 0, 0, 0]
    assert res.cpu("cr3_writes_noflush") == [1, 1, 1, 1]
    first = BASE + 3 * PER + RESP + INVLPG
    second = INVLPGB + TLBSYNC + BASE + 3 * PER + RESP + CR3_NOFLUSH
    third = INVLPGB + TLBSYNC
    assert res.cpu("shootdown_cycles_initiator") == [first + second + third, 0, 0, 0]
    # one mm: the first thread to touch page 0 after each zap faults it in for all
    assert res.total("page_faults") == 4
    assert res.total("stale_translations") == 0


@RUNNERS
@pytest.mark.parametrize(
    "n_threads,sleeper,initiator",
    [
        (3, -1, 0),  # loaded on 3 CPUs only: the cpumask's weight is 3, not more than 3
        (4, 3, 0),  # T3 sleeps: its CPU is lazy, so only 3 CPUs count as active
        (4, -1, 1),  # T1 (pid 1) initiates in jiffy 0: (1 & 0x1f) != (0 & 0x1f), no check this jiffy
    ],
)
def test_no_global_asid_before_four_active_cpus(run, n_threads, sleeper, initiator):
    """Without a global ASID every zap is a flush_tlb_multi: IPIs to the other CPUs running the mm (lazy ones
    skipped), INVLPG there and locally; no INVLPGB (a private page table's flush never uses it)."""
    p = machine(4, "private", invlpgb=True)
    res = go(run, _threads(n_threads, 4, sleeper), p, zaps(TIMES, proc=initiator))
    assert res.fired == 3
    assert res.total("global_asid_assignments") == 0
    awake = n_threads - (1 if sleeper >= 0 else 0)
    assert res.total("ipis_sent") == 3 * (awake - 1)
    assert res.total("invlpg") == 3 * awake
    assert res.total("invlpgb") == 0
    assert res.total("stale_translations") == 0


@RUNNERS
def test_no_global_asid_without_invlpgb(run):
    p = machine(4, "private", invlpgb=False)
    res = go(run, _threads(4, 4), p, zaps(TIMES))
    assert res.total("global_asid_assignments") == 0
    assert res.total("ipis_sent") == 9 and res.total("invlpgb") == 0


@RUNNERS
def test_threads_share_one_mm(run):
    """Two threads of P0 on CPUs 0 and 1: one page table (P0's root; no tables of its own for T1), one fault
    for the page both store to, and a context switch on each CPU that loads the same mm (ctx_id) there."""
    p = machine(2, "private")
    wl = Workload(
        [Process("t0", hammer(UNDECLARED, 100), cpu=0), Process("t1", hammer(UNDECLARED, 100), cpu=1, thread_of=0)]
    )
    two = Workload([Process("p0", hammer(UNDECLARED, 100), cpu=0), Process("p1", hammer(UNDECLARED, 100), cpu=1)])
    res, sep = go(run, wl, p, []), go(run, two, p, [])
    assert res.total("page_faults") == 1 and sep.total("page_faults") == 2
    assert sum(res.r["pt_pages"]) * 2 == sum(sep.r["pt_pages"])  # 4 tables for one tree, 8 for two


def test_regions_name_processes_not_threads():
    wl = Workload(
        [Process("t0", hammer(X, 1), cpu=0), Process("t1", hammer(X, 1), cpu=1, thread_of=0)],
        [Region("shm", X, 4096, kind="shmem", shared=True, processes=(1,))],
    )
    with pytest.raises(ConfigError, match="process 1 is a thread of process 0"):
        build_layout(wl, machine(2, "private"))
    bad = Workload([Process("t0", hammer(X, 1), thread_of=1), Process("t1", hammer(X, 1), thread_of=0)])
    with pytest.raises(ConfigError, match="thread_of 1 must name another process"):
        build_layout(bad, machine(2, "private"))


@RUNNERS
@pytest.mark.parametrize("kind", ["zap", "detach"])
def test_freed_tables_reach_a_sleeping_threads_lazy_cpu(run, kind):
    """P0 on CPU0 and its thread T1 on CPU1 store to page 0 of P0's shm; T1 sleeps from its 1000th access for
    10^6 cycles, so CPU1 idles lazily with P0's mm loaded (in its cpumask). P0's event at 6000:
    zap (1 page, no tables freed): should_flush_tlb skips the lazy CPU: no IPI; P0's own CPU INVLPGs. When T1
      returns, CPU1 finds the ASID behind the mm's tlb_gen: a lazy catch-up flush.
    detach (the whole region, page tables freed): native_flush_tlb_multi interrupts every CPU of the cpumask,
      lazy or not: CPU1 takes the IPI and, lazy, switches to init_mm (slot 0, up to date: a CR3 write
      without flush, costing the kernel's CR3 cost); CPU0 flushes in full (64 pages > 33) meanwhile, so the
      initiator waits BASE + PER + max(CR3F, RESP + CR3F). When T1 returns
      CPU1 switches from init_mm back to the mm's slot, behind: an ordinary flush, no lazy catch-up."""
    p = machine(2, "private")
    wl = Workload(
        [
            Process("t0", hammer(X, N), cpu=0),
            Process("t1", hammer(X, N), cpu=1, thread_of=0, sleeps=((1000, 10**6),)),
        ],
        [Region("shm", X, 64 * 4096, kind="shmem", shared=True, processes=(0,))],
    )
    res = go(run, wl, p, zaps([6000], kind=kind))
    assert res.fired == 1
    if kind == "zap":
        assert res.cpu("ipis_sent") == [0, 0]
        assert res.cpu("invlpg") == [1, 0]
        assert res.cpu("lazy_catchup_flushes") == [0, 1]
        assert res.cpu("cr3_writes_noflush") == [0, 0]
    else:
        assert res.cpu("ipis_sent") == [1, 0] and res.cpu("ipis_received") == [0, 1]
        assert res.cpu("shootdown_cycles_responder") == [0, RESP + CR3F]
        assert res.cpu("shootdown_cycles_initiator") == [BASE + PER + RESP + CR3F, 0]
        assert res.cpu("full_flushes") == [1, 0]
        assert res.cpu("lazy_catchup_flushes") == [0, 0]
        assert res.cpu("cr3_writes_noflush") == [0, 1]
    assert res.cpu("cr3_flushes") == [1, 2]  # the first load; the return after the flush
    assert res.total("stale_translations") == 0
