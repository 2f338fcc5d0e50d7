"""The kernel side's engine API on BOTH engines (kernels/kernel.pxi and mshare_hw/reference/kernel.py):
configuration (set_kernel) and its checks, the initiating CPU, one event through execute_event, and the
mmu_gather span of pt_change_span. Strategies and Linux's flush paths are pinned down by
test_shootdown.py; these cases pin what the event loop relies on. Expected numbers are derived in the
comments from the costs in test_shootdown.KC, never from a run."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_cases import BASE, INVLPG, KC, PAGE, PER, RESP, X, machine, shm

from mshare_hw import _engine
from mshare_hw.counters import INDEX
from mshare_hw.engine.layout import build_layout
from mshare_hw.engine.shootdown import (
    JIFFY_CYCLES,
    TLB_SINGLE_PAGE_FLUSH_CEILING,
    TRIM_INTERVAL_CYCLES,
    Kernel,
)
from mshare_hw.names import KERNEL_COSTS
from mshare_hw.reference import ReferenceMachine
from mshare_hw.workload.model import ArrayTrace, Process, Workload

STORE = 2
EMPTY = (np.empty(0, np.uint64), np.empty(0, np.uint8))


@pytest.fixture(params=["cython", "reference"])
def engine_kind(request) -> str:
    return request.param


def build(kind: str, n_cpus: int, homes: list[int], pt_config: str = "private"):
    """An engine for processes with the given home CPUs sharing region "shm" (64 pages at X)."""
    p = machine(n_cpus, pt_config)
    wl = Workload([Process(f"p{i}", ArrayTrace(*EMPTY), cpu=c) for i, c in enumerate(homes)], [shm()])
    layout = build_layout(wl, p)
    eng = _engine.Engine(p, layout) if kind == "cython" else ReferenceMachine(p, layout, [EMPTY] * len(homes))
    return eng, p, layout


def cpu_col(eng, name: str) -> list[int]:
    return [int(v) for v in np.asarray(eng.cpu_counters)[:, INDEX[name]]]


def config(layout, **changes) -> dict:
    """set_kernel's arguments as Kernel passes them, with `changes`."""
    kw = dict(
        strategy="flush_all",
        invlpgb=False,
        slot_shift=0,
        link_level=0,
        costs=[KC[k] for k in KERNEL_COSTS],
        single_page_flush_ceiling=TLB_SINGLE_PAGE_FLUSH_CEILING,
        trim_interval=TRIM_INTERVAL_CYCLES,
        regions=[(n, s.start, s.end, s.shift, s.shared, s.host, s.mappers) for n, s in layout.spans.items()],
        home_cpu=layout.home_cpu,
        notifiers=None,
        invlpgb_count_max=8,
        jiffy_cycles=JIFFY_CYCLES,
    )
    kw.update(changes)
    return kw


def test_nothing_runs_before_the_kernel_side_is_configured(engine_kind):
    eng, _, _ = build(engine_kind, 2, [0, 1])
    with pytest.raises(RuntimeError, match="set_kernel"):
        eng.execute_event("zap", 0, "shm", 0, 1, 0)
    with pytest.raises(RuntimeError, match="set_kernel"):
        eng.flush_tlb_mm_range(0, 0, 0, X, 1, 12, False, 0)
    with pytest.raises(RuntimeError, match="set_kernel"):
        eng.initiator_cpu(0)


@pytest.mark.parametrize(
    "changes",
    [
        dict(strategy="flush_some"),
        dict(detach_flush="p5d_stride"),
        dict(costs=[1] * (len(KERNEL_COSTS) - 1)),
        dict(regions=[("shm", X, X + 64 * PAGE, 12, True, 0, (0, 1))]),  # host 0, but private has no host mm
        dict(regions=[("shm", X, X + 64 * PAGE, 12, True, -1, (0, 2))]),  # no process 2
        dict(home_cpu=(0,)),  # one home CPU for two processes
        dict(home_cpu=(0, 2)),  # no CPU 2
    ],
)
def test_set_kernel_refuses_a_bad_configuration(engine_kind, changes):
    eng, _, layout = build(engine_kind, 2, [0, 1])
    with pytest.raises(ValueError):
        eng.set_kernel(**config(layout, **changes))


def test_execute_event_refuses_unknown_names_and_out_of_range_numbers(engine_kind):
    eng, _, layout = build(engine_kind, 2, [0, 1])
    eng.set_kernel(**config(layout))
    with pytest.raises(KeyError):
        eng.execute_event("munmap", 0, "shm", 0, 1, 0)
    with pytest.raises(KeyError):
        eng.execute_event("zap", 0, "heap", 0, 1, 0)
    with pytest.raises(IndexError):
        eng.execute_event("zap", 2, "shm", 0, 1, 0)
    with pytest.raises(IndexError):
        eng.execute_event("zap", 0, "shm", 0, 1, 0, 2)
    with pytest.raises(IndexError):
        eng.initiator_cpu(-1)


def test_event_initiates_on_the_home_cpu_when_its_process_runs_nowhere(engine_kind):
    """Single steps run no scheduler, so no CPU 'runs' a process: an event by P0 (home CPU 1) initiates on
    CPU1. P0 is loaded on CPU2 only (its cpumask is {2}), with page 5 of shm in its TLB."""
    eng, p, layout = build(engine_kind, 3, [1, 0])
    Kernel(eng, p, layout)
    assert eng.initiator_cpu(0) == 1 and eng.initiator_cpu(1) == 0
    eng.switch_to(2, 0)
    eng.access(2, 0, X + 5 * PAGE, STORE)
    eng.execute_event("zap", 0, "shm", 5, 1, 0)  # cpu -1: initiator_cpu(0)
    # flush_tlb_mm_range(P0) from CPU1: CPU2 is in the cpumask, not lazy, P0 loaded -> one IPI; CPU2's gen is
    # one step behind -> INVLPG of the page. CPU1 is not in the cpumask: no local flush.
    assert cpu_col(eng, "ipis_sent") == [0, 1, 0]
    assert cpu_col(eng, "ipis_received") == [0, 0, 1]
    assert cpu_col(eng, "invlpg") == [0, 0, 1]
    assert cpu_col(eng, "shootdown_cycles_responder") == [0, 0, RESP + INVLPG]
    assert cpu_col(eng, "shootdown_cycles_initiator") == [0, BASE + PER + RESP + INVLPG, 0]
    assert eng.mm_gen(0) == 1 and eng.local_gen(2) == 1


def test_event_range_is_clipped_to_the_region_however_large_its_numbers(engine_kind):
    """A page range from an events file may start beyond the region (numbers of any size): it is clipped
    to the region's last page."""
    eng, p, layout = build(engine_kind, 1, [0, 0])
    Kernel(eng, p, layout)
    eng.switch_to(0, 0)
    for page in (62, 63):  # stores fault one page each (no fault-around for writes)
        eng.access(0, 0, X + page * PAGE, STORE)
    eng.execute_event("zap", 0, "shm", 10**30, 10**30, 0, 0)
    # first = min(10^30, 63) = 63, n = max(1, min(10^30, 64 - 63)) = 1: only page 63's PTE goes; P0 is
    # loaded on the initiating CPU (its cpumask is {0}): a local INVLPG
    assert eng.pt_lookup(0, X + 63 * PAGE)[0] is False
    assert eng.pt_lookup(0, X + 62 * PAGE)[0] is True
    assert cpu_col(eng, "invlpg") == [1] and cpu_col(eng, "ipis_sent") == [0]
    assert cpu_col(eng, "shootdown_cycles_initiator") == [INVLPG]


def test_pt_change_span_is_the_span_of_present_ptes(engine_kind):
    """Like the mmu_gather: (first, last) page index whose present PTE changed, and how many did."""
    eng, _, _ = build(engine_kind, 1, [0, 0])
    eng.switch_to(0, 0)
    for page in (2, 5):
        eng.access(0, 0, X + page * PAGE, STORE)
    assert tuple(eng.pt_change_span(0, X, 8, 12, 1)) == (2, 5, 2)  # protect: rewritten in place, still present
    assert tuple(eng.pt_change_span(0, X + 3 * PAGE, 2, 12, 0)) == (-1, -1, 0)  # pages 3-4: none present
    assert tuple(eng.pt_change_span(0, X + 4 * PAGE, 4, 12, 0)) == (1, 1, 1)  # zap pages 4-7: page 5 is index 1
    assert tuple(eng.pt_change_span(0, X, 8, 12, 0)) == (2, 2, 1)  # only page 2 is left
    assert tuple(eng.pt_change_span(0, X, 8, 12, 0)) == (-1, -1, 0)
