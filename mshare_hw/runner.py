"""Run an experiment: expand its grid, build each point's workload and machine, replay, write HDF5."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import Experiment, expand
from mshare_hw.config.uarch import load_uarch
from mshare_hw.engine.driver import run_workload
from mshare_hw.engine.footprint import Footprint, describe, estimate
from mshare_hw.engine.layout import Layout, build_layout
from mshare_hw.engine.params import SimParams, build_params
from mshare_hw.engine.secondary import DeviceSpec, SecondaryCosts, SecondaryMMUs
from mshare_hw.results.hdf5 import read_runs, tool_version, write_results
from mshare_hw.results.record import RunRecord
from mshare_hw.results.summary import EXTRA_COLUMNS, STABLE_COLUMNS, summary_row
from mshare_hw.traces.source import HELD_TRACE_BYTES
from mshare_hw.units import format_bytes
from mshare_hw.workload.build import available_memory, build_workload
from mshare_hw.workload.events import file_schedule, fixed_schedule, rate_schedule
from mshare_hw.workload.generators import generator_params
from mshare_hw.workload.generators.blocks import BlockTrace, materialise
from mshare_hw.workload.model import Workload


def run_id_for(point: Experiment, trace_digests: list[str]) -> str:
    """Digest of the resolved config, the traces and the tool version: equal runs get equal ids."""
    h = hashlib.blake2b(digest_size=8)
    h.update(json.dumps(_id_config(point), sort_keys=True).encode())
    h.update(json.dumps(trace_digests).encode())
    h.update(tool_version().encode())
    return h.hexdigest()


# machine keys added after the first results format, with the value that reproduces the runs made before
# them: left out of run ids at that value, so those runs keep their ids
_LATER_MACHINE_KEYS = {
    "timing": "translation",
    "virtualization": "none",
    "host_page_size": "2M",
    "replacement": "auto",
    "pti": "auto",
}
# top-level keys added later, left out of run ids at their first values for the same reason
_LATER_TOP_KEYS = {"detach_flush": "range"}
# generator parameters added later, left out of run ids at their first values for the same reason
_LATER_WORKLOAD_PARAMS = {"sleep_every_accesses": 0, "sleep_cycles": 0, "threads_per_process": 1}


def _id_config(point: Experiment) -> dict:
    """The resolved config as hashed into run ids: the workload keys added for manifests are left out
    while unused, and the later top-level, machine and generator keys while at their first-format values,
    so earlier runs keep the ids they had."""
    cfg = point.model_dump()
    for key, value in _LATER_MACHINE_KEYS.items():
        if cfg["machine"].get(key) == value:
            del cfg["machine"][key]
    for key, value in _LATER_TOP_KEYS.items():
        if cfg.get(key) == value:
            del cfg[key]
    w = cfg["workload"]
    for key, value in _LATER_WORKLOAD_PARAMS.items():  # sleeping clients off, one thread: as before they existed
        if key in w.get("params", {}) and w["params"][key] == value:
            del w["params"][key]
    if w.get("manifest") is None:
        w.pop("manifest", None)
        if not w.get("skip_bad_lines"):
            w.pop("skip_bad_lines", None)
    return cfg


# `run.interval_accesses` stores one row of cumulative counters per interval; more rows than this is
# a setting's mistake (a row per access costs ~2 KB and slows the replay many times), not a request
MAX_INTERVAL_ROWS = 100_000


def check_run_settings(point: Experiment, total_accesses: int) -> int:
    """The warm-up in accesses; raises ConfigError for [run] settings this workload cannot honour."""
    r = point.run
    warmup = r.warmup_accesses or int(r.warmup_fraction * total_accesses)
    if warmup and warmup >= total_accesses:
        raise ConfigError(
            f"run.warmup_accesses: a warm-up of {warmup:,} accesses leaves nothing to count "
            f"(the workload has {total_accesses:,} accesses in all); choose fewer, or run.warmup_fraction"
        )
    if r.interval_accesses and total_accesses // r.interval_accesses > MAX_INTERVAL_ROWS:
        raise ConfigError(
            f"run.interval_accesses: {r.interval_accesses:,} gives {total_accesses // r.interval_accesses:,} "
            f"interval rows for {total_accesses:,} accesses (at most {MAX_INTERVAL_ROWS:,}); choose at least "
            f"{-(-total_accesses // MAX_INTERVAL_ROWS):,}"
        )
    return warmup


def params_for(point: Experiment, total_accesses: int) -> SimParams:
    """The engine parameters of one grid point (the machine's and scheduler's settings by their names)."""
    r = point.run
    warmup = check_run_settings(point, total_accesses)
    return build_params(
        load_uarch(point.uarch),
        **point.machine.model_dump(),
        **point.scheduler.model_dump(exclude={"kind"}),
        **r.model_dump(include={"fault_around_pages", "interval_accesses"}),
        scheduler=point.scheduler.kind,
        pt_config=point.pt_config,
        share_level=point.share_level,
        strategy=point.strategy,
        detach_flush=point.detach_flush,
        warmup_accesses=warmup,
        seed=point.seed,
    )


# what to change when a part of the estimate is the largest
_MEMORY_KEYS = {
    "page_tables": "fewer pages touched (workload.params.accesses_per_process or n_processes), or pt_config = mshare",
    "traces": "workload.params.n_processes (each trace holds a few chunks while it is replayed)",
    "scratch": "workload.params.pool_bytes or block_bytes (the generator's popularity tables)",
    "cpus": "machine.n_cpus",
    "processes": "workload.params.n_processes",
    "intervals": "a larger run.interval_accesses",
}


def point_footprint(point: Experiment) -> Footprint | None:
    """The estimated peak host memory of one grid point (mshare_hw.engine.footprint), from its settings
    alone: nothing is generated. None for a manifest's traces (read from disk in chunks)."""
    w = point.workload
    if w.manifest is not None or w.generator is None:
        return None
    gen = generator_params(w.generator, w.params, point.seed)
    n_processes = getattr(gen, "n_processes", 1) + getattr(gen, "n_unrelated", 0)
    if 2 * n_processes * point.machine.n_cpus >= 1 << 31:
        raise ConfigError(
            f"machine.n_cpus: {point.machine.n_cpus:,} CPUs x {n_processes:,} processes exceed the engine's "
            f"per-mm cpumasks (2 x processes x CPUs < 2^31); use fewer CPUs or processes"
        )
    total = n_processes * getattr(gen, "accesses_per_process", 0)
    params = params_for(point, max(total, 1))
    rows = total // params.interval_accesses if params.interval_accesses else 0
    entries = gen.leaf_entries(params.fault_around_pages, params.pt_config == "mshare")
    return estimate(params, n_processes, entries, rows, gen.trace_bytes(), gen.scratch_bytes())


def check_memory(points: list[Experiment], labels: list[str] | None = None, available: int | None = None) -> None:
    """Refuse, with one line naming the figure and the key to change, the first grid point whose estimated
    peak host memory exceeds the memory available (MemAvailable), before anything is generated or run."""
    have = available_memory() if available is None else available
    for k, point in enumerate(points):
        fp = point_footprint(point)
        if fp is None or fp.total <= have:
            continue
        where = f"sweep point {k + 1} ({labels[k]})" if labels else f"point {k + 1}"
        raise ConfigError(
            f"{where}: would need {describe(fp)} of host memory at its peak, more than the "
            f"{format_bytes(have)} available; change {_MEMORY_KEYS[fp.largest()]}"
        )


def bystanders(point: Experiment, layout: Layout) -> list[int]:
    """Processes that do not map the events' region (whether or not events are enabled, so that runs
    with and without events compare)."""
    span = layout.spans.get(point.events.region)
    if span is None:
        return []
    mm_of = layout.mm_of or range(layout.n_procs)  # a thread maps what its process maps
    return [p for p in range(layout.n_procs) if mm_of[p] not in span.mappers]


def _span(layout: Layout, region: str, where: str):
    span = layout.spans.get(region)
    if span is None:
        raise ConfigError(f"{where}: the workload has no region '{region}' (it has: {', '.join(layout.spans)})")
    return span


def events_for(point: Experiment, workload: Workload, layout: Layout):
    """A fresh event iterator for one run (None when events are off)."""
    ev = point.events
    if not ev.enabled:
        return None
    span = _span(layout, ev.region, "events.region")
    if ev.file is not None:
        return file_schedule(ev.file, layout.n_procs, set(layout.spans))
    if ev.initiator == "random":
        # a random task mapping the region: a mapper, or one of its threads
        mm_of = layout.mm_of or range(layout.n_procs)
        initiators = [p for p in range(layout.n_procs) if mm_of[p] in span.mappers]
    else:
        if ev.initiator >= layout.n_procs:
            raise ConfigError(f"events.initiator: process {ev.initiator} does not exist")
        initiators = [ev.initiator]
    draws = dict(
        kinds=dict(ev.kinds),
        region=ev.region,
        region_pages=(span.end - span.start) >> span.shift,
        pages=list(ev.pages),
        initiators=initiators,
        seed=point.seed,
    )
    if ev.times is not None or ev.at_accesses is not None:
        return fixed_schedule(at=list(ev.times if ev.times is not None else ev.at_accesses), **draws)
    return rate_schedule(rate_per_second=ev.rate_per_second, clock_ghz=ev.clock_ghz, **draws)


# DeviceCfg fields that DeviceSpec takes under the same name
_DEVICE_FIELDS = {"name", "kind", "region", "pattern", "first_page", "period_accesses", "burst"}


def devices_for(point: Experiment, layout: Layout, params: SimParams) -> SecondaryMMUs | None:
    """Fresh secondary MMUs (IOMMU devices, KVM-style mirrors) for one run; None when there are none."""
    if not point.devices:
        return None
    sec = load_uarch(point.uarch).secondary
    specs = []
    for i, d in enumerate(point.devices):
        where = f"devices[{i}] ('{d.name}')"
        if d.process >= layout.n_procs:
            raise ConfigError(
                f"{where}.process: process {d.process} does not exist (the workload has {layout.n_procs})"
            )
        span = _span(layout, d.region, f"{where}.region")
        if d.process not in span.mappers:
            raise ConfigError(f"{where}.region: process {d.process} does not map region '{d.region}'")
        region_pages = (span.end - span.start) >> span.shift
        footprint = d.footprint_pages or region_pages - d.first_page
        if d.first_page >= region_pages or d.first_page + footprint > region_pages:
            raise ConfigError(
                f"{where}: pages {d.first_page}..{d.first_page + footprint - 1} lie outside region '{d.region}' "
                f"({region_pages} pages)"
            )
        entries, ways = (d.iotlb_entries, d.iotlb_ways) if d.iotlb_entries else (sec.iotlb_entries, sec.iotlb_ways)
        specs.append(
            DeviceSpec(
                **d.model_dump(include=_DEVICE_FIELDS),
                proc=d.process,
                footprint_pages=footprint,
                iotlb_sets=entries // ways,  # type: ignore[operator]
                iotlb_ways=ways,  # type: ignore[arg-type]
            )
        )
    costs = SecondaryCosts(**{f.name: getattr(sec, f.name) for f in fields(SecondaryCosts)})
    return SecondaryMMUs(
        specs,
        layout,
        costs,
        point.notifier_policy,
        oracle=params.oracle,
        seed=point.seed,
        max_examples=params.max_stale_examples,
    )


def workload_key(point: Experiment) -> str:
    """Points with equal keys replay the same workload (same generator, parameters and seed)."""
    return json.dumps([point.workload.model_dump(), point.seed], sort_keys=True)


class WorkloadCache:
    """Points that differ only in machine or page-table configuration replay the same workload. A generated
    workload small enough is drawn once and held (up to HELD_TRACE_BYTES in all), so its points do not
    each draw it again; larger ones are drawn chunk by chunk in every replay."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Workload, list[str]]] = {}
        self._held_bytes = 0

    def get(self, point: Experiment) -> tuple[Workload, list[str]]:
        key = workload_key(point)
        if key not in self._cache:
            self._cache[key] = generate_workload(point, self._hold)
        return self._cache[key]

    def _hold(self, workload: Workload) -> Workload:
        """The workload with its traces drawn and held if they are generated and fit the budget left."""
        size = 9 * workload.total_accesses()
        generated = all(isinstance(p.trace, BlockTrace) for p in workload.processes)
        if not generated or self._held_bytes + size > HELD_TRACE_BYTES:
            return workload
        self._held_bytes += size
        return materialise(workload)

    def put(self, key: str, workload: Workload, digests: list[str]) -> None:
        """Add a workload built elsewhere (its `workload_key` and trace digests)."""
        self._cache[key] = (workload, digests)


def generate_workload(
    point: Experiment, hold: Callable[[Workload], Workload] = lambda w: w
) -> tuple[Workload, list[str]]:
    """The point's workload (passed through `hold`, which may draw its traces into memory) and its trace
    digests."""
    w = hold(build_workload(point.workload, point.seed))
    digests = w.trace_digests()
    _log_bad_lines(w)
    return w, digests


def _log_bad_lines(workload: Workload) -> None:
    """With skip_bad_lines, say how many lines each trace lost (known after the digest pass)."""
    for p in workload.processes:
        bad = getattr(p.trace, "bad_lines", None)
        if bad:
            logging.getLogger("mshare_hw").warning("process '%s': %d bad trace lines skipped", p.name, bad)


ProgressHook = Callable[[str, int, int], None]  # (run label, accesses done in this run, run total)


def prepare_point(point: Experiment, cache: WorkloadCache) -> tuple[Workload, list[str], SimParams]:
    """The workload (from `cache`), its trace digests and the engine parameters of one grid point.
    Raises ConfigError for a point that cannot run."""
    workload, digests = cache.get(point)
    return workload, digests, params_for(point, workload.total_accesses())


@contextmanager
def five_level_hint(params: SimParams) -> Iterator[None]:
    """An address beyond a 4-level machine's user space: say which setting makes the run possible."""
    try:
        yield
    except ConfigError as e:
        if params.levels == 4 and "user address space" in str(e):
            raise ConfigError(
                f"{e}; addresses up to 2^57 need 5-level paging: --set machine.five_level=true (on a uarch with LA57)"
            ) from None
        raise


def check_point(point: Experiment, workload: Workload, params: SimParams) -> None:
    """Everything a run builds before replaying (layout, event schedule), without replaying."""
    with five_level_hint(params):
        layout = build_layout(workload, params)
    devices_for(point, layout, params)
    events = events_for(point, workload, layout)
    if events is not None and point.events.file is not None:
        for _ in events:  # a file schedule is finite and checked line by line as it is read
            pass


def run_point(
    point: Experiment,
    workload: Workload,
    digests: list[str],
    params: SimParams,
    *,
    run_id: str | None = None,
    on_progress: ProgressHook | None = None,
) -> RunRecord:
    """Replay one grid point; returns the record `write_results` takes."""
    run_id = run_id or run_id_for(point, digests)
    label = f"{point.uarch} {point.pt_config}"
    total = workload.total_accesses()

    def hook(n: int) -> None:
        if on_progress:
            on_progress(label, n, total)

    with five_level_hint(params):
        layout = build_layout(workload, params)
        result = run_workload(
            workload,
            params,
            layout=layout,
            events=events_for(point, workload, layout),
            events_by_accesses=point.events.at_accesses is not None,
            progress=hook if on_progress else None,
            devices=devices_for(point, layout, params),
        )
    return RunRecord(
        run_id=run_id,
        row=summary_row(run_id, point, result, len(workload.processes), bystanders(point, layout)),
        config=point.model_dump(),
        seed=point.seed,
        trace_digests=digests,
        proc_names=[p.name for p in workload.processes],
        result=result,
    )


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during `run_experiment`, after the runs that had finished were written."""

    def __init__(self, finished: int, out: Path) -> None:
        super().__init__(f"{finished} finished runs written to {out}")
        self.finished = finished
        self.out = out


def run_experiment(
    exp: Experiment, out: str | Path, *, on_progress: ProgressHook | None = None, keep_existing: bool = True
) -> list[dict]:
    """Replay every point of the experiment's grid and write one results file. Runs already in `out`
    (same run id: same resolved config, traces and tool version) are kept and not replayed, unless
    `keep_existing` is false (then `out` is replaced). Returns the summary rows of the grid's points, in
    grid order. On Ctrl-C during the replays, the runs finished so far (and those kept) are written
    and RunInterrupted is raised."""
    points = expand(exp)
    check_memory(points)
    existing = {r.run_id: r for r in _existing_runs(Path(out))} if keep_existing else {}
    cache = WorkloadCache()
    prepared = [(point, *prepare_point(point, cache)) for point in points]
    runs: list[RunRecord] = []
    computed = 0
    try:
        for point, workload, digests, params in prepared:
            run_id = run_id_for(point, digests)
            if run_id in existing:
                runs.append(existing.pop(run_id))
                continue
            runs.append(run_point(point, workload, digests, params, run_id=run_id, on_progress=on_progress))
            computed += 1
    except KeyboardInterrupt:
        if runs or existing:
            write_results(out, exp.name, runs + list(existing.values()))
        raise RunInterrupted(computed, Path(out)) from None
    write_results(out, exp.name, runs + list(existing.values()))
    return [r.row for r in runs]


def _existing_runs(out: Path) -> list[RunRecord]:
    if not out.exists():
        return []
    try:
        # a run written before the summary gained columns is replayed, not kept
        return [r for r in read_runs(out) if set(r.row) == set(STABLE_COLUMNS + EXTRA_COLUMNS)]
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(
            f"{out}: exists and is not a readable mshare-hw results file ({e}); choose another output path"
        ) from None
