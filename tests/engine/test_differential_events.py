"""Differential tests with invalidation events: the Cython engine and the reference model, both driven by
the same kernel side (mshare_hw.engine.shootdown), must agree exactly on random small machines and
workloads (the strategies of test_differential.py) with random event lists: every kind, every region of
the workload, random page ranges (including ranges that run past the region's end, which the kernel
side clips), random initiators and sorted times spread over the run (some after the end, which never
fire), under `private`, `mshare` and `hugetlb_pmd_share` page tables, every flush strategy (`broadcast`
and `broadcast_va` only on a machine with INVLPGB), both `detach_flush` settings and INVLPGB count limits
of 1, 3 and 8 pages.

A second property checks safety with the coherence oracle on: under `flush_all`, `per_sharer`,
`union_batch`, `broadcast` and `broadcast_va`, and under `private` and `hugetlb_pmd_share` page tables
(Linux's own paths) whatever the strategy, no CPU ever uses a
translation after the kernel changed its PTE (stale_translations == 0). `host_mm_only` and
`host_cpumask` are not claimed safe (test_shootdown.py builds the cases where they are not).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import assume, event, given, settings
from hypothesis import strategies as st
from random_machines import assert_same_results, differential_settings, machines, workloads

from mshare_hw.config.errors import ConfigError
from mshare_hw.counters import COUNTERS
from mshare_hw.engine.driver import run_workload
from mshare_hw.engine.layout import Layout, build_layout
from mshare_hw.engine.params import INVLPGB_STRATEGIES, SimParams
from mshare_hw.names import DETACH_FLUSHES, EVENT_KINDS, KERNEL_COSTS, STRATEGIES
from mshare_hw.reference.run import run_reference
from mshare_hw.workload.events import Event
from mshare_hw.workload.model import Workload

SAFE = ("flush_all", "per_sharer", "union_batch", "broadcast", "broadcast_va")
# A private detach walks every page of the region (pt_change over the whole span); regions built to span
# two 512 GiB slots have ~1.3e8 pages, far too many for the reference model. Detach those only under
# mshare (where it unlinks one entry per slot).
MAX_PRIVATE_DETACH_PAGES = 1 << 14

SETTINGS = differential_settings(160)
SAFETY_SETTINGS = differential_settings(300)
COL = {name: i for i, name in enumerate(COUNTERS)}


@st.composite
def kernel_side(draw, params: SimParams, strategies=STRATEGIES) -> SimParams:
    # an index rather than sampled_from: Hypothesis's sampled_from favours the first elements
    if params.virtualization == "nested":  # INVLPGB is not offered to guests (build_params refuses it)
        strategies = tuple(s for s in strategies if s not in INVLPGB_STRATEGIES)
    strategy = strategies[draw(st.integers(0, len(strategies) - 1))]
    invlpgb = strategy in INVLPGB_STRATEGIES or (params.virtualization == "none" and draw(st.integers(0, 3)) == 0)
    costs = {k: draw(st.integers(0, 3000)) for k in KERNEL_COSTS}
    detach_flush = DETACH_FLUSHES[draw(st.integers(0, len(DETACH_FLUSHES) - 1))]
    # the part's INVLPGB count limit: one page, a small one, and the shipped AMD parts' 8
    count_max = draw(st.sampled_from([1, 3, 8]))
    return dataclasses.replace(
        params,
        strategy=strategy,
        invlpgb=invlpgb,
        kernel_costs=costs,
        detach_flush=detach_flush,
        invlpgb_count_max=count_max,
    )


@st.composite
def event_lists(draw, params: SimParams, layout: Layout, horizon: int, max_events: int = 8) -> list[Event]:
    names = sorted(layout.spans)
    if not names:
        return []
    n = draw(st.integers(1, max_events))
    times = sorted(draw(st.lists(st.integers(0, horizon + horizon // 8 + 1), min_size=n, max_size=n)))
    out = []
    for t in times:
        region = draw(st.sampled_from(names))
        span = layout.spans[region]
        pages = (span.end - span.start) >> span.shift
        kinds = list(EVENT_KINDS)
        if span.host < 0 and pages > MAX_PRIVATE_DETACH_PAGES:
            kinds.remove("detach")
        kind = draw(st.sampled_from(kinds))
        first = draw(st.one_of(st.integers(0, min(pages - 1, 60)), st.integers(0, pages + 3)))
        n_pages = draw(st.sampled_from([1, 1, 2, 3, 16, 33, 34, 40]))
        proc = draw(st.integers(0, layout.n_procs - 1))
        out.append(Event(t, kind, proc, region, first, n_pages))
    return out


def _setup(data, strategies=STRATEGIES, oracle_on: bool = False, pt_config: str | None = None):
    params = data.draw(machines(), label="params")
    # more CPUs than test_differential draws, so that flushes have remote CPUs to interrupt
    params = dataclasses.replace(params, n_cpus=data.draw(st.sampled_from([1, 2, 2, 3, 3, 4]), label="n_cpus"))
    if data.draw(st.integers(0, 5), label="slow accesses") == 0:
        # runs longer than one simulated second (3e9 cycles): flushes also trim cpumasks
        params = dataclasses.replace(params, access_cycles=10**7, ifetch_cycles=10**7)
    params = data.draw(kernel_side(params, strategies), label="kernel side")
    if oracle_on:
        params = dataclasses.replace(params, oracle=True)
    if pt_config is not None:
        params = dataclasses.replace(params, pt_config=pt_config, warmup_accesses=0)
    workload = data.draw(workloads(params), label="workload")
    try:
        layout = build_layout(workload, params)
    except ConfigError:
        assume(False)
    # how long the run lasts without events, so that the event times land inside it
    plain = run_workload(workload, params, layout=layout)
    clocks = np.sort(np.asarray(plain["clocks"]))
    # mostly while several CPUs still run (up to the median clock), sometimes up to the end and beyond
    horizon = int(clocks[len(clocks) // 2] if data.draw(st.integers(0, 3), label="early") else clocks[-1])
    events = data.draw(event_lists(params, layout, horizon), label="events")
    return params, workload, layout, events


def _record(got: dict, params: SimParams, events: list[Event]) -> None:
    tot = np.asarray(got["cpu_counters"]).sum(axis=0)
    event(f"{params.pt_config}/{params.strategy}")
    if any(e.kind == "detach" for e in events[: got["events_fired"]]) and params.pt_config == "mshare":
        event(f"mshare detach, {params.detach_flush}")
    for name in ("ipis_sent", "invlpg", "invpcid", "invlpgb", "full_flushes", "lazy_catchup_flushes"):
        if tot[COL[name]] > 0:
            event(f"{name} > 0")
    if tot[COL["stale_translations"]] > 0:
        event("stale > 0")
    if got["events_fired"]:
        event("some events fired")
    if got["events_fired"] < len(events):
        event("some events never fired")
    for e in events[: got["events_fired"]]:
        event(f"kind {e.kind}")


@SETTINGS
@given(data=st.data())
def test_engine_matches_reference_with_events(data):
    params, workload, layout, events = _setup(data)
    chunk = data.draw(st.integers(1, 100), label="chunk_size")
    got = run_workload(workload, params, layout=layout, chunk_size=chunk, events=iter(events))
    want = run_reference(workload, params, layout=layout, events=iter(events))
    assert_same_results(got, want)
    assert got["events_fired"] == want["events_fired"]
    assert got["events_fired"] <= len(events)
    _record(got, params, events)
    stale = int(np.asarray(got["cpu_counters"])[:, COL["stale_translations"]].sum())
    if params.oracle and (params.pt_config != "mshare" or params.strategy in SAFE):
        assert stale == 0, got["stale_examples"]


@SAFETY_SETTINGS
@given(data=st.data())
def test_safe_strategies_never_use_stale_translations(data):
    """Cython engine only (it is checked against the reference above), the oracle always on, more events."""
    params, workload, layout, events = _setup(data, strategies=SAFE + ("host_mm_only", "host_cpumask"), oracle_on=True)
    got = run_workload(workload, params, layout=layout, events=iter(events))
    _record(got, params, events)
    stale = np.asarray(got["cpu_counters"])[:, COL["stale_translations"]].sum()
    if params.pt_config != "mshare" or params.strategy in SAFE:
        assert stale == 0, (params.pt_config, params.strategy, got["stale_examples"])
    # per CPU and per process rows count the same stale hits
    assert stale == np.asarray(got["proc_counters"])[:, COL["stale_translations"]].sum()


@settings(SETTINGS, max_examples=120)
@given(data=st.data())
def test_hugetlb_pmd_sharing_matches_reference(data):
    """hugetlb PMD sharing only, the oracle on: faults that share PMD tables, events that unshare them
    (every kind), the same counters from both engines and no stale translation (Linux's own flushes)."""
    params, workload, layout, events = _setup(data, oracle_on=True, pt_config="hugetlb_pmd_share")
    got = run_workload(workload, params, layout=layout, events=iter(events))
    want = run_reference(workload, params, layout=layout, events=iter(events))
    assert_same_results(got, want)
    _record(got, params, events)
    tot = np.asarray(got["cpu_counters"]).sum(axis=0)
    for name in ("pmd_shares", "pmd_unshares"):
        if tot[COL[name]] > 0:
            event(f"{name} > 0")
    assert tot[COL["stale_translations"]] == 0, got["stale_examples"]


@settings(SETTINGS, max_examples=120)
@given(data=st.data())
def test_strategy_signatures_on_shared_page_tables(data):
    """Events on regions with shared page tables only (mshare), kinds that change PTEs in the host's tables:
    each strategy's IPI/instruction counts per fired event, whatever the machine and workload."""
    params, workload, layout, _ = _setup(data, pt_config="mshare")
    hosted = sorted(name for name, span in layout.spans.items() if span.host >= 0)
    assume(hosted)
    n = data.draw(st.integers(1, 6), label="n_events")
    clocks = np.asarray(run_workload(workload, params, layout=layout)["clocks"])
    times = sorted(data.draw(st.lists(st.integers(0, int(clocks.max())), min_size=n, max_size=n), label="times"))
    events = []
    for t in times:
        region = data.draw(st.sampled_from(hosted), label="region")
        span = layout.spans[region]
        pages = (span.end - span.start) >> span.shift
        events.append(
            Event(
                t,
                data.draw(st.sampled_from(["zap", "protect", "migrate"]), label="kind"),
                data.draw(st.integers(0, layout.n_procs - 1), label="proc"),
                region,
                data.draw(st.integers(0, min(pages - 1, 40)), label="first"),
                data.draw(st.sampled_from([1, 2, 33, 34]), label="n_pages"),
            )
        )
    got = run_workload(workload, params, layout=layout, events=iter(events))
    fired, n_cpus = got["events_fired"], params.n_cpus
    cpu = np.asarray(got["cpu_counters"])
    col = {k: cpu[:, COL[k]] for k in ("ipis_sent", "ipis_received", "invlpg", "invpcid", "invlpgb", "tlbsync")}
    event(f"{params.strategy}, fired {min(fired, 2)}+")
    s = params.strategy
    if s == "host_mm_only":  # the host mm is never loaded and its cpumask is empty: nothing at all
        assert col["ipis_sent"].sum() == col["invlpg"].sum() == col["invpcid"].sum() == 0
    elif s == "flush_all" and params.invlpgb:  # flush_tlb_all() is INVLPGB + TLBSYNC on such a kernel
        assert col["ipis_sent"].sum() == col["invpcid"].sum() == col["invlpg"].sum() == 0
        assert col["invlpgb"].sum() == col["tlbsync"].sum()
    elif s == "flush_all":  # each flush_tlb_all: every other CPU once, INVPCID on every CPU
        # (an event flushes nothing when it cleared no PTE, and a migrate of k pages calls it k times)
        per_cpu = col["invpcid"][0]
        assert (col["invpcid"] == per_cpu).all()
        assert col["ipis_sent"].sum() == per_cpu * (n_cpus - 1)
        assert col["invlpg"].sum() == 0
    # a migrate of k pages is never deferred (the host mm's cpumask is empty): the strategy flushes each page
    rounds = sum(e.n_pages if e.kind == "migrate" else 1 for e in events)
    if s == "broadcast":  # at most one INVLPGB + TLBSYNC per round, no IPIs
        assert col["ipis_sent"].sum() == 0
        assert col["invlpgb"].sum() == col["tlbsync"].sum() <= rounds
    elif s == "broadcast_va":  # at most one TLBSYNC per round, and at least one page per INVLPGB; no IPIs
        assert col["ipis_sent"].sum() == 0
        assert col["tlbsync"].sum() <= rounds
        assert col["tlbsync"].sum() <= col["invlpgb"].sum() <= sum(e.n_pages for e in events)
    elif s in ("union_batch", "host_cpumask"):  # one IPI round per flush: each CPU interrupted at most once
        assert (col["ipis_received"] <= rounds).all()
    assert col["ipis_sent"].sum() == col["ipis_received"].sum()
    assert (col["ipis_received"] <= rounds * (layout.n_procs + layout.n_hosts)).all()
    if s not in INVLPGB_STRATEGIES and not (s == "flush_all" and params.invlpgb):
        assert col["invlpgb"].sum() == col["tlbsync"].sum() == 0


def _four_threads(workload: Workload) -> Workload:
    """Processes 1-3 become threads of process 0, the four pinned on CPUs 0-3 (so process 0's mm can be active
    on 4 CPUs and earn a global ASID); threads of 1-3 and regions naming them move to process 0."""
    procs = []
    for i, p in enumerate(workload.processes):
        if i < 4:
            procs.append(dataclasses.replace(p, cpu=i, thread_of=None if i == 0 else 0))
        else:
            t = p.thread_of
            procs.append(dataclasses.replace(p, thread_of=0 if t is not None and t < 4 else t))
    regs = [
        r
        if r.processes is None
        else dataclasses.replace(r, processes=tuple(sorted({0 if m < 4 else m for m in r.processes})))
        for r in workload.regions
    ]
    return Workload(procs, regs)


@settings(SETTINGS, max_examples=80)
@given(data=st.data())
def test_global_asids_match_reference(data):
    """A four-threaded process on four CPUs under an INVLPGB kernel with PCIDs, most events initiated by it
    (pid 0, so consider_global_asid samples in the first jiffy): the global ASID, its broadcast flushes and
    its transition agree in both engines, and no stale translation is used under a safe configuration."""
    params = data.draw(machines(), label="params")
    params = dataclasses.replace(params, n_cpus=4, pcid=True, virtualization="none", oracle=True)
    params = data.draw(kernel_side(params), label="kernel side")
    params = dataclasses.replace(params, invlpgb=True)
    workload = data.draw(workloads(params), label="workload")
    assume(len(workload.processes) >= 4)
    workload = _four_threads(workload)
    try:
        layout = build_layout(workload, params)
    except ConfigError:
        assume(False)
    clocks = np.sort(np.asarray(run_workload(workload, params, layout=layout)["clocks"]))
    events = data.draw(event_lists(params, layout, int(clocks[len(clocks) // 2])), label="events")
    events = [e._replace(proc=0) if data.draw(st.booleans(), label="by P0") else e for e in events]
    got = run_workload(workload, params, layout=layout, events=iter(events))
    want = run_reference(workload, params, layout=layout, events=iter(events))
    assert_same_results(got, want)
    tot = np.asarray(got["cpu_counters"]).sum(axis=0)
    if tot[COL["global_asid_assignments"]]:
        event("global ASID given")
    _record(got, params, events)
    if params.pt_config == "private" or params.strategy in SAFE:
        assert tot[COL["stale_translations"]] == 0, got["stale_examples"]
