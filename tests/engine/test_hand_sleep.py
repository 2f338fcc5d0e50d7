"""Sleeping clients on both engines, each expected count derived by hand in the comments: a sleep leaves the
CPU (to the next queued process, else idle in lazy TLB mode), the wake-up takes an idle CPU at the wake
time or waits in the run queue, and a flush skips the sleeper's lazy CPU, which catches up when the
sleeper returns (Linux 6.18 arch/x86/mm/tlb.c: should_flush_tlb skips lazy CPUs; switch_mm_irqs_off
flushes on return when the mm's tlb_gen moved on). Conventions: tests/engine/kernel_cases.py.
"""

from __future__ import annotations

import dataclasses

import pytest
from kernel_cases import RUNNERS, UNDECLARED, X, go, hammer, machine, shm, zaps
from machines import CS

from mshare_hw.engine.driver import run_workload
from mshare_hw.reference.run import run_reference
from mshare_hw.workload.model import Process, Workload

SLEEP = 100_000


def _res(run, wl, params, events=()):
    return go(run, wl, params, events)


@RUNNERS
def test_sleep_adds_its_time_and_one_switch(run):
    """One process alone on CPU0, 10 stores to one page; with a sleep of 1000 cycles after access 5. Nothing
    else runs, so CPU0 idles (lazy, P0 still loaded) and jumps to the wake time; the return is a context
    switch to the same mm, whose tlb_gen did not move: no CR3 write, just CS. Every access costs the same
    as without the sleep (same TLB state), so the clock grows by exactly 1000 + CS."""
    p = machine(1, "private")
    plain = Workload([Process("p0", hammer(UNDECLARED, 10), cpu=0)])
    sleepy = Workload([Process("p0", hammer(UNDECLARED, 10), cpu=0, sleeps=((5, 1000),))])
    a, b = _res(run, plain, p), _res(run, sleepy, p)
    assert int(b.r["clocks"][0]) - int(a.r["clocks"][0]) == 1000 + CS
    assert b.cpu("context_switches") == [2] and a.cpu("context_switches") == [1]
    assert b.proc("sleeps") == [1] and b.proc("sleep_cycles") == [1000]
    assert b.cpu("cr3_flushes") == a.cpu("cr3_flushes") == [1]  # the first load only
    assert b.total("lazy_catchup_flushes") == 0


@RUNNERS
def test_woken_process_waits_in_the_queue(run):
    """P0 and P1 share CPU0 (pinned, a quantum longer than the run). P0 sleeps after 5 accesses for 10
    cycles: P1 takes the CPU and runs its 2000 accesses to the end (P0, awake long before, waits in the
    queue: no preemption on wake-up), then P0 returns. Three context switches: P0, P1, P0 (two to P0)."""
    p = machine(1, "private")
    wl = Workload(
        [
            Process("p0", hammer(UNDECLARED, 10), cpu=0, sleeps=((5, 10),)),
            Process("p1", hammer(UNDECLARED, 2000), cpu=0),
        ]
    )
    res = _res(run, wl, p)
    assert res.cpu("context_switches") == [3]
    assert res.proc("context_switches") == [2, 1]
    assert res.proc("sleeps") == [1, 0]


@RUNNERS
def test_sleep_past_the_end_is_never_taken(run):
    p = machine(1, "private")
    wl = Workload([Process("p0", hammer(UNDECLARED, 10), cpu=0, sleeps=((10, 1000), (11, 5)))])
    res = _res(run, wl, p)
    assert res.proc("sleeps") == [0] and res.cpu("context_switches") == [1]


@RUNNERS
@pytest.mark.parametrize("sleeps,ipis", [((), 1), (((1000, SLEEP),), 0)])
def test_flush_skips_a_sleeper_and_it_catches_up(run, sleeps, ipis):
    """P0 (CPU0) and P1 (CPU1) store to page 0 of shm (private page tables). P0 zaps the page at cycle 6000.
    Awake, P1 is running on CPU1: P1's flush_tlb_mm_range sends CPU1 an IPI and an INVLPG. Asleep since its
    1000th access (long before 6000, for 100000 cycles): CPU1 has nothing else to run, is lazy with P1's mm
    loaded, and should_flush_tlb skips it: no IPI, no INVLPG there; P1's mm's tlb_gen moved on, so on
    waking switch_mm_irqs_off finds the lazy CPU's ASID behind and flushes it in full (one lazy catch-up,
    a second CR3 flush on CPU1 after the first load). Either way P1 faults page 0 in again (2 faults) and
    no stale translation is ever used."""
    p = machine(2, "private")
    wl = Workload(
        [
            Process("p0", hammer(X, 12000), cpu=0),
            Process("p1", hammer(X, 12000), cpu=1, sleeps=sleeps),
        ],
        [shm(processes=(0, 1))],
    )
    res = _res(run, wl, p, zaps([6000]))
    assert res.fired == 1
    assert res.cpu("ipis_sent") == [ipis, 0]
    assert res.cpu("ipis_received") == [0, ipis]
    assert res.cpu("invlpg") == [1, ipis]
    assert res.cpu("lazy_catchup_flushes") == [0, 1 - ipis]
    assert res.cpu("cr3_flushes") == [1, 2 - ipis]
    assert res.proc("page_faults") == [2, 2]
    assert res.total("stale_translations") == 0
    if sleeps:
        assert int(res.r["clocks"][1]) > 1000 + SLEEP


@pytest.mark.parametrize("run", [run_workload, run_reference], ids=["engine", "reference"])
def test_global_queue_wakes_on_the_last_cpu(run):
    """Global run queue, 2 CPUs: P0 starts on CPU0, P1 on CPU1. P0 sleeps after 5 accesses for 10 cycles;
    CPU0 idles. P0 wakes back on CPU0 (its last CPU, idle) rather than elsewhere: CPU0 switches to P0's
    mm twice, and CPU1 only ever runs P1."""
    p = dataclasses.replace(machine(2, "private"), scheduler="global")
    wl = Workload(
        [
            Process("p0", hammer(UNDECLARED, 10), sleeps=((5, 10),)),
            Process("p1", hammer(UNDECLARED, 2000)),
        ]
    )
    res = _res(run, wl, p)
    assert res.cpu("context_switches") == [2, 1]
    assert res.cpu("sleeps") == [1, 0]
