"""The small pinned machines of the invalidation-event cases: distinct kernel costs (`KC`), the shared region
`shm`, traces that hammer one page, and runners for both engines.

Conventions: process i runs on CPU `cpu_of[i]`; `hammer` traces store to one page over and over (write
faults map one page, so no fault-around); event times are chosen well inside every running CPU's run, and
the engine stops every CPU at the event time, so at an event every process of these workloads is still
running.
"""

from __future__ import annotations

import numpy as np
import pytest
from machines import tiny

from mshare_hw.counters import INDEX
from mshare_hw.engine.driver import run_workload
from mshare_hw.engine.params import SimParams
from mshare_hw.reference.run import run_reference
from mshare_hw.workload.events import Event
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
