"""Running a workload through the reference model: the counterpart of `mshare_hw.engine.driver.run_workload`
that the differential tests compare it with."""

from __future__ import annotations

import numpy as np

from mshare_hw.engine.layout import Layout, build_layout
from mshare_hw.engine.params import SimParams
from mshare_hw.engine.shootdown import EventLoop
from mshare_hw.reference.machine import ReferenceMachine
from mshare_hw.workload.model import Workload


def run_reference(
    workload: Workload,
    params: SimParams,
    *,
    layout: Layout | None = None,
    events=None,
    events_by_accesses: bool = False,
    devices=None,
) -> dict:
    """`mshare_hw.engine.driver.run_workload`'s run through the pure-Python reference model (slow; small
    workloads only)."""
    layout = layout or build_layout(workload, params)
    traces = []
    for p in workload.processes:
        chunks = list(p.trace.chunks())
        a = np.concatenate([c[0] for c in chunks]) if chunks else np.empty(0, np.uint64)
        k = np.concatenate([c[1] for c in chunks]) if chunks else np.empty(0, np.uint8)
        traces.append((a, k))
    ref = ReferenceMachine(params, layout, traces)
    loop = EventLoop(events, ref, params, layout, events_by_accesses, devices) if events is not None else None
    ref.run(loop, devices)
    out = {**ref.results(), "events_fired": loop.fired if loop is not None else 0}
    return {**out, **(devices.results() if devices is not None else {})}
