"""The probes' access and event sequences replayed in the engine with a profile: what the model predicts
for each held-out probe, in ns per round (the probe's own unit).

Each probe becomes a workload built here address by address (the probe's loop over its pages, stores or
loads as the probe does them) and an event schedule (`zap` for madvise(MADV_DONTNEED), `protect` for each
mprotect call). The engine does not model threads: the probe's remote CPU, a thread of the same mm spinning
in user space, is replayed as a second process sharing the probed region's page tables under mshare with
the `union_batch` strategy, which is what `flush_tlb_mm_range` does for a threaded mm (bump the mm's
generation, one IPI round to the CPUs in its cpumask, INVLPG per page up to 33 pages, else a full flush).
The region is shmem for that reason; fault-around is set to one page so a refault maps one page, as an
anonymous fault does.

An event's cost to the initiator is taken as the difference of CPU 0's clock with and without the events
(the same accesses), divided by the number of events: events fire on simulated time, so the process keeps
touching its pages between them and each zapped page refaults once per round, as in the probe.

The machine settings every replay uses are `TIMING` and, for a profile measured under a hypervisor
(`features.hypervisor`), `NESTED`: each is passed only if the experiment schema has the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mshare_hw.config.experiment import Experiment, MachineCfg
from mshare_hw.config.uarch import Uarch, load_uarch
from mshare_hw.counters import INDEX
from mshare_hw.traces.source import ArrayTrace
from mshare_hw.workload.model import Process, Region, Workload

TIMING = "latency"  # every replay charges data-cache latency (a pointer chase waits for each load)
NESTED = "nested"  # machine.virtualization for a profile with features.hypervisor = true
WS_BASE = 1 << 39  # the probed pages (a 512 GiB slot of their own)
SPIN_BASE = 1 << 40  # the page a spinning process or thread reads
LOAD, STORE = 1, 2
EVENT_ROUNDS = 4  # rounds of events replayed per case (the replay is deterministic: a few suffice)


def machine_settings(u: Uarch, n_cpus: int) -> dict:
    """`[machine]` for a replay: the timing mode, and nested paging when the profile was measured in a VM."""
    fields = MachineCfg.model_fields
    m: dict = {"n_cpus": n_cpus}
    if "timing" in fields:
        m["timing"] = TIMING
    if u.features.hypervisor and "virtualization" in fields:
        m["virtualization"] = NESTED
    return m


def point(profile: Path, n_cpus: int, **keys) -> Experiment:
    """A single-point experiment on `profile` (its workload table is a placeholder: replays pass their own)."""
    data = {
        "name": "calibrate-replay",
        "uarch": str(profile),
        "machine": machine_settings(load_uarch(profile), n_cpus),
        "scheduler": {"slice_accesses": 16},  # fine interleaving: an event waits for every running CPU
        "workload": {"generator": "uniform", "params": {"n_processes": 1, "accesses_per_process": 1}},
        **keys,
    }
    data["workload"]["params"]["working_set_bytes"] = 4096
    return Experiment.model_validate(data)


def run(exp: Experiment, workload: Workload) -> dict:
    """The engine's result dict for one replay."""
    from mshare_hw.runner import params_for, run_point

    params = params_for(exp, workload.total_accesses())
    return run_point(exp, workload, workload.trace_digests(), params).result


def _pages(n: int, laps: int, kind: int) -> ArrayTrace:
    addrs = WS_BASE + (np.arange(n * laps, dtype=np.uint64) % np.uint64(n)) * np.uint64(4096)
    return ArrayTrace(addrs, np.full(len(addrs), kind, np.uint8))


def _spin(n: int, kind: int = LOAD) -> ArrayTrace:
    return ArrayTrace(np.full(n, SPIN_BASE, np.uint64), np.full(n, kind, np.uint8))


def _concat(*traces: ArrayTrace) -> ArrayTrace:
    return ArrayTrace(np.concatenate([t.addrs for t in traces]), np.concatenate([t.kinds for t in traces]))


def _regions(n_pages: int, shared: bool) -> list[Region]:
    ws = Region(name="ws", start=WS_BASE, size=n_pages * 4096, kind="shmem" if shared else "anon", shared=shared)
    return [ws, Region(name="spin", start=SPIN_BASE, size=4096, kind="anon", shared=False)]


@dataclass(frozen=True)
class Prediction:
    ns: float
    note: str = ""


def chase(profile: Path, order: list[int] | np.ndarray, ghz: float, spacing: int = 4096) -> Prediction:
    """A pointer chase visiting the nodes of a working set (one per `spacing` bytes: a page, or every other
    page at 8192) in `order` (one cycle), one line per node, the first lap excluded: ns per load. The probe
    puts each node on a random line of its slot, and the kernel backs its pages with scattered physical
    frames, so the lines fall in effectively random cache sets; the model backs a region with consecutive
    frames, so each node's line is drawn at random here (seeded) to give the caches the same spread."""
    n = len(order)
    laps = max(4, 200_000 // n)
    idx = np.asarray(order, dtype=np.uint64)
    line = np.random.default_rng(n).integers(0, spacing // 64, n, dtype=np.uint64)  # per node, in node order
    addrs = WS_BASE + idx * np.uint64(spacing) + line[idx.astype(np.int64)] * np.uint64(64)
    trace = ArrayTrace(np.tile(addrs, laps), np.full(n * laps, LOAD, np.uint8))
    wl = Workload([Process("chase", trace, cpu=0)], _regions(n * (spacing // 4096), False))
    res = run(point(profile, 1, run={"warmup_accesses": n}), wl)
    ctr = res["cpu_counters"].sum(axis=0)
    return Prediction(ctr[INDEX["cycles"]] / ctr[INDEX["accesses"]] / ghz)


def _clock0(res: dict) -> float:
    return float(res["clocks"][0])


def shootdown(profile: Path, kind: str, pages: int, remote: int, ghz: float) -> Prediction:
    """madvise(MADV_DONTNEED) + a write refault of every page (`kind` "zap"), or an mprotect round trip
    (`kind` "protect": two protect events, no touches), on `pages` pages with `remote` other CPUs holding
    the mm: ns per round."""
    u = load_uarch(profile)
    c = u.costs
    n_cpus = 1 + remote
    touches = kind == "zap"
    # the baseline: the same accesses without events (the probe's loop, or one lap then a spin)
    per_event = pages * (c.fault_cycles + c.invlpg_cycles) + c.cr3_flush_cycles
    per_event += remote * (c.ipi_initiator_base_cycles + c.ipi_per_target_cycles + c.ipi_responder_cycles)
    events_per_round = 1 if touches else 2
    n_events = EVENT_ROUNDS * events_per_round
    gap = 4 * per_event + 8 * pages  # cycles between events: every page is touched again in between
    accesses = int(math.ceil((n_events + 2) * gap / pages)) * pages  # >= 1 cycle each: outlives the events

    def workload() -> Workload:
        own = _pages(pages, accesses // pages, STORE) if touches else _concat(_pages(pages, 1, STORE), _spin(accesses))
        procs = [Process("probe", own, cpu=0)]
        procs += [Process(f"spinner{k}", _spin(2 * accesses), cpu=1 + k) for k in range(remote)]
        return Workload(procs, _regions(pages, True))

    common = dict(pt_config="mshare", strategy="union_batch", run={"fault_around_pages": 1})
    base = run(point(profile, n_cpus, **common), workload())
    times = [(k + 1) * gap for k in range(n_events)]
    events = dict(enabled=True, region="ws", kinds={kind: 1.0}, pages=[pages], initiator=0, times=times)
    with_events = run(point(profile, n_cpus, events=events, **common), workload())
    fired = with_events["events_fired"]
    extra = (_clock0(with_events) - _clock0(base)) / fired * events_per_round
    ctr0 = base["cpu_counters"][0]
    per_touch = (ctr0[INDEX["cycles"]] - ctr0[INDEX["fault_cycles"]]) / ctr0[INDEX["accesses"]]
    cycles = extra + (pages * per_touch if touches else 0.0)
    return Prediction(cycles / ghz, f"{fired} events replayed")


def pingpong(profile: Path, pages: int, ghz: float, pipe_ns: float) -> Prediction:
    """Two processes on one CPU taking turns, each touching its own `pages` pages per turn: ns per round
    (two switches). The scheduler switches on a quantum of cycles, not per round: the quantum is set to
    one turn's cycles and corrected from the turns each replay made until a turn holds `pages` touches
    (within 10%, at most eight replays; the closest is kept). The pipe syscalls are not modelled: their
    measured cost (the one-process pipe round trip) is added."""
    laps = 400
    wl = lambda: Workload(  # noqa: E731
        [Process(f"side{i}", _pages(pages, laps, LOAD), cpu=0) for i in range(2)], _regions(pages, False)
    )
    alone = run(
        point(profile, 1), Workload([Process("side0", _pages(pages, laps, LOAD), cpu=0)], _regions(pages, False))
    )
    quantum = max(1, int(_clock0(alone) / laps))
    best = None
    for _ in range(8):  # per turn = (quantum - switch cost) / touch cost, roughly: a few corrections converge
        res = run(point(profile, 1, scheduler={"quantum_cycles": quantum, "slice_accesses": 1}), wl())
        ctr = res["cpu_counters"][0]
        turns = max(1, int(ctr[INDEX["context_switches"]]))
        per_turn = ctr[INDEX["accesses"]] / turns
        if best is None or abs(per_turn - pages) < abs(best[2] - pages):
            best = (res, turns, per_turn)
        if abs(per_turn - pages) <= 0.1 * pages:
            break
        quantum = max(1, int(round(quantum * (pages / per_turn) ** 0.7)))
    res, turns, per_turn = best
    cycles = 2 * _clock0(res) / turns
    return Prediction(
        cycles / ghz + pipe_ns, f"{per_turn:.0f} touches per turn (probe: {pages}); pipe syscalls measured"
    )
