"""Workload manifests (TOML): traced processes, the regions they share, and how to run them.

    name = "myapp"                       # optional; default: the manifest's directory name
    page_size = "4K"                     # default page size of the regions
    n_cpus = 4                           # optional
    dependent = false                    # optional: every process a chain of dependent accesses
    sleep_every_accesses = 0             # optional: sleeping clients, drawn per process from sleep_seed
    sleep_cycles = 0                     #   (mshare_hw.workload.generators.sleeps); a process's `sleeps`
    sleep_seed = 1                       #   list replaces its draws
    [[processes]]
    trace = "trace.1234.zst"             # lackey, ChampSim or native; relative to this file
    pid = 1234                           # optional; default name "pid1234"
    maps = "maps.1234"                   # optional /proc/PID/maps snapshot
    cpu = 0                              # optional home CPU
    dependent = true                     # optional: each access waits for the previous (pointer chase)
    sleeps = [[100000, 3000000]]         # optional: after access 100000 block for 3e6 cycles (I/O, a lock)
    thread_of = "pid1234"                # optional: a thread of that process (name or pid): shares its mm
    [[regions]]
    name = "pool"
    from_maps = "/dev/shm/pool"          # or "largest_shared", "[anon:...]", "/dev/zero (deleted)"
    # or: start = 0x7f0000000000, size = "1GiB"
    [scheduler]                          # as in experiment files
    [run]                                # warmup_accesses / warmup_fraction, ...

Accesses outside every listed region are private anonymous 4 KiB memory of their process, so a
manifest only needs the shared regions. Shared regions are relocated to free 512 GiB-aligned slots
(`mshare_hw.workload.relocate`) unless `relocate = false`.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, NonNegativeInt, PositiveInt, ValidationError, model_validator

from mshare_hw.config.errors import ConfigError, from_validation_error
from mshare_hw.config.experiment import (
    Experiment,
    RunCfg,
    SchedulerCfg,
    apply_overrides,
    default_experiment_path,
    expand,
    experiment_data,
    load_experiment,
    validate_experiment,
)
from mshare_hw.config.uarch import Strict, load_toml
from mshare_hw.traces import detect_format, open_trace
from mshare_hw.traces.native import NativeTrace
from mshare_hw.units import PAGE_SIZES, PageSize, parse_size
from mshare_hw.workload.generators import generator_params
from mshare_hw.workload.generators.sleeps import sleep_schedule
from mshare_hw.workload.maps import Mapping, find_mapping, read_maps
from mshare_hw.workload.model import Process, Region, RegionKind, Workload
from mshare_hw.workload.relocate import SLOT, SLOT_SHIFT, Move, RelocatedTrace, pick_bases, used_slots

USER_TOP_4LEVEL = 1 << 47


def _int_or_text(v: Any) -> Any:
    """Addresses and sizes: an integer, "0x..." or a size such as "4MiB"."""
    if isinstance(v, str):
        t = v.strip()
        try:
            return int(t, 0)
        except ValueError:
            pass
        try:
            return parse_size(t)
        except (ValueError, TypeError) as e:
            raise ValueError(f"expected an integer, a hex address or a size such as '4MiB' ({e})") from None
    return v


Addr = Annotated[NonNegativeInt, BeforeValidator(_int_or_text)]
Size = Annotated[PositiveInt, BeforeValidator(_int_or_text)]


class ProcessSpec(Strict):
    trace: str = Field(min_length=1)
    name: str | None = Field(default=None, min_length=1)
    pid: NonNegativeInt | None = None
    format: Literal["auto", "lackey", "champsim", "native"] = "auto"
    trace_process: str | NonNegativeInt | None = None  # which process of a native file (name or index)
    maps: str | None = Field(default=None, min_length=1)
    cpu: NonNegativeInt | None = None
    skip_bad_lines: bool = False
    dependent: bool | None = None  # default: the manifest's `dependent`
    sleeps: list[tuple[PositiveInt, NonNegativeInt]] | None = None  # (position, cycles); default: drawn
    thread_of: str | NonNegativeInt | None = None  # a thread of that process (its name or pid): its mm

    @model_validator(mode="after")
    def _sleeps_increase(self) -> ProcessSpec:
        if self.sleeps and any(b[0] <= a[0] for a, b in zip(self.sleeps, self.sleeps[1:])):
            raise ValueError("sleeps: positions must increase")
        return self


class RegionSpec(Strict):
    name: str = Field(min_length=1)
    start: Addr | None = None
    size: Size | None = None
    from_maps: str | None = Field(default=None, min_length=1)
    maps_start: Addr | None = None
    kind: RegionKind | None = None
    page_size: PageSize | None = None
    shared: bool | None = None
    processes: list[str | NonNegativeInt] | None = None  # names or pids; default: every process mapping it
    share_tables: bool = True
    relocate: bool | None = None  # default: shared regions are relocated

    @model_validator(mode="after")
    def _one_source(self) -> RegionSpec:
        explicit = self.start is not None or self.size is not None
        if explicit and self.from_maps is not None:
            raise ValueError("give start and size, or from_maps, not both")
        if not explicit and self.from_maps is None:
            raise ValueError("give start and size, or from_maps (a mapping's path or 'largest_shared')")
        if explicit and (self.start is None or self.size is None):
            raise ValueError("an explicit region needs both start and size")
        if self.maps_start is not None and self.from_maps is None:
            raise ValueError("maps_start only goes with from_maps")
        return self


class Manifest(Strict):
    name: str | None = Field(default=None, min_length=1)
    description: str = ""
    page_size: PageSize = "4K"
    n_cpus: PositiveInt | None = None
    dependent: bool = False  # the timing modes: each access waits for the previous one (a pointer chase)
    sleep_every_accesses: NonNegativeInt = 0
    sleep_cycles: NonNegativeInt = 0
    sleep_seed: int = 1
    processes: list[ProcessSpec] = Field(min_length=1)
    regions: list[RegionSpec] = Field(default_factory=list)
    scheduler: SchedulerCfg | None = None
    run: RunCfg | None = None

    @model_validator(mode="after")
    def _sleeps_pair(self) -> Manifest:
        if (self.sleep_every_accesses == 0) != (self.sleep_cycles == 0):
            raise ValueError("sleep_every_accesses and sleep_cycles go together: both 0 (no sleeps) or both > 0")
        return self


def is_manifest_data(data: dict) -> bool:
    """A manifest has `processes`; an experiment file has `name` and a [workload] table instead."""
    return "processes" in data


def load_manifest(path: str | Path) -> Manifest:
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: workload manifest not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read the workload manifest ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    try:
        m = Manifest.model_validate(data)
    except ValidationError as e:
        raise from_validation_error(p, e) from None
    _check_names(p, m)
    return m


def process_names(m: Manifest) -> list[str]:
    names = []
    for spec in m.processes:
        if spec.name:
            names.append(spec.name)
        elif spec.pid is not None:
            names.append(f"pid{spec.pid}")
        elif isinstance(spec.trace_process, str):
            names.append(spec.trace_process)
        else:
            base = Path(spec.trace).name
            for suffix in (".gz", ".xz", ".zst"):
                base = base.removesuffix(suffix)
            names.append(base if spec.trace_process is None else f"{base}#{spec.trace_process}")
    return names


def _check_names(p: Path, m: Manifest) -> None:
    names = process_names(m)
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise ConfigError(f"{p}: key 'processes[{i}]': process name {n!r} is used twice; give distinct names")
    regs = [r.name for r in m.regions]
    for i, n in enumerate(regs):
        if regs.index(n) != i:
            raise ConfigError(f"{p}: key 'regions[{i}].name': region name {n!r} is used twice")


def _resolve(base: Path, rel: str, where: str) -> Path:
    if "\0" in rel:
        raise ConfigError(f"{where}: a path cannot contain a NUL character")
    q = Path(rel)
    q = q if q.is_absolute() else base / q
    try:
        q.exists()
    except OSError as e:
        raise ConfigError(f"{where}: unusable path {rel!r} ({e.strerror or e})") from None
    return q


def _open_process(path: Path, i: int, spec: ProcessSpec, skip_bad_lines: bool):
    where = f"{path}: key 'processes[{i}].trace'"
    tp = _resolve(path.parent, spec.trace, where)
    try:
        if not tp.exists():
            raise ConfigError(f"{tp}: no such file")
        fmt = detect_format(tp) if spec.format == "auto" else spec.format
        if fmt == "native":
            return NativeTrace(tp, spec.trace_process)
        if spec.trace_process is not None:
            raise ConfigError("trace_process only applies to native trace files")
        return open_trace(tp, fmt, skip_bad_lines=skip_bad_lines or spec.skip_bad_lines)[0][1]
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def _trace_pid(spec: ProcessSpec, src) -> int | None:
    """The manifest's pid, else the one the trace knows (lackey `==PID==` lines, a native file's attribute)."""
    if spec.pid is not None:
        return spec.pid
    meta = src.meta() if hasattr(src, "meta") else {}
    pid = meta.get("pid", -1)
    return int(pid) if pid is not None and int(pid) >= 0 else None


def _member_index(path: Path, pids: list[int | None], names: list[str], ri: int, ref: str | int) -> int:
    return _process_ref(path, pids, names, f"regions[{ri}].processes", ref)


def _process_ref(path: Path, pids: list[int | None], names: list[str], key: str, ref: str | int) -> int:
    if isinstance(ref, str):
        if ref in names:
            return names.index(ref)
    elif ref in pids:
        return pids.index(ref)
    raise ConfigError(f"{path}: key '{key}': no process {ref!r} (names: {', '.join(names)}; or a process's pid)")


def _threads(path: Path, m: Manifest, pids: list[int | None], names: list[str]) -> list[int]:
    """Each process's mm: its own index, or for a thread (`thread_of`) its process's."""
    mm_of = list(range(len(m.processes)))
    for i, s in enumerate(m.processes):
        if s.thread_of is not None:
            t = _process_ref(path, pids, names, f"processes[{i}].thread_of", s.thread_of)
            if t == i or m.processes[t].thread_of is not None:
                raise ConfigError(
                    f"{path}: key 'processes[{i}].thread_of': {s.thread_of!r} must be another process, not a thread"
                )
            mm_of[i] = t
    return mm_of


def build_manifest_workload(path: str | Path, skip_bad_lines: bool = False) -> Workload:
    """The manifest's processes (traces opened lazily, shared regions relocated) and regions."""
    path = Path(path).resolve() if Path(path).exists() else Path(path)
    m = load_manifest(path)
    names = process_names(m)
    sources = [_open_process(path, i, s, skip_bad_lines) for i, s in enumerate(m.processes)]
    pids: list[int | None] = []
    for i, (s, src) in enumerate(zip(m.processes, sources)):
        try:
            pids.append(_trace_pid(s, src))
        except ConfigError as e:
            raise ConfigError(f"{path}: key 'processes[{i}].trace': {e}") from None
    mm_of = _threads(path, m, pids, names)
    n_mms = sum(1 for i, t in enumerate(mm_of) if i == t)
    maps: dict[int, list[Mapping]] = {}
    for i, s in enumerate(m.processes):
        if s.maps is not None:
            try:
                maps[i] = read_maps(_resolve(path.parent, s.maps, f"key 'processes[{i}].maps'"))
            except ConfigError as e:
                raise ConfigError(f"{path}: key 'processes[{i}].maps': {e}") from None

    # where each region is, who maps it, and whether it moves
    resolved: list[dict] = []
    for ri, r in enumerate(m.regions):
        where = f"{path}: key 'regions[{ri}]' ({r.name})"
        members: list[int] | None = (
            None if r.processes is None else sorted({_member_index(path, pids, names, ri, x) for x in r.processes})
        )
        if r.from_maps is not None:
            pool = {i: mp for i, mp in maps.items() if members is None or i in members}
            mapping, mapped_by = find_mapping(pool, r.from_maps, r.maps_start, where)
            start, size = mapping.start, mapping.size
            shared = mapping.shared if r.shared is None else r.shared
            kind = r.kind or mapping.kind
            if members is None:
                members = list(mapped_by)
        else:
            start, size = int(r.start), int(r.size)  # type: ignore[arg-type]
            shared = True if r.shared is None else r.shared
            kind = r.kind or ("shmem" if shared else "anon")
        if members is not None:  # a thread maps what its process maps: regions name processes
            members = sorted({mm_of[x] for x in members})
        psize_name = r.page_size or m.page_size
        psize = PAGE_SIZES[psize_name]
        relocate = shared if r.relocate is None else r.relocate
        if not relocate and (start % psize or size % psize):
            raise ConfigError(f"{where}: start {start:#x} and size {size:#x} must be multiples of {psize_name} pages")
        if start + size > 1 << 57:
            raise ConfigError(f"{where}: [{start:#x}, {start + size:#x}) is beyond the 57-bit virtual address width")
        resolved.append(
            dict(
                name=r.name,
                start=start,
                size=size,
                kind=kind,
                page_size=psize_name,
                shared=shared,
                members=members,
                share_tables=r.share_tables,
                relocate=relocate,
            )
        )

    n = len(sources)
    moving = [x for x in resolved if x["relocate"]]
    for i, x in enumerate(moving):
        for y in moving[i + 1 :]:
            shared_members = x["members"] is None or y["members"] is None or set(x["members"]) & set(y["members"])
            if shared_members and x["start"] < y["start"] + y["size"] and y["start"] < x["start"] + x["size"]:
                raise ConfigError(
                    f"{path}: regions '{x['name']}' and '{y['name']}' overlap at their captured addresses; "
                    "a process's access can be relocated with one region only"
                )
    moves: list[list[Move]] = [[] for _ in range(n)]
    if moving:
        taken: set[int] = set()
        for x in resolved:
            if not x["relocate"]:
                taken.update(range(x["start"] >> SLOT_SHIFT, ((x["start"] + x["size"] - 1) >> SLOT_SHIFT) + 1))
        for i, src in enumerate(sources):
            exclude = [
                (x["start"], x["start"] + x["size"]) for x in moving if x["members"] is None or mm_of[i] in x["members"]
            ]
            try:
                taken |= used_slots(src, exclude)
            except ConfigError as e:
                raise ConfigError(f"{path}: key 'processes[{i}].trace': {e}") from None
        sizes = [_round_up(x["size"], PAGE_SIZES[x["page_size"]]) for x in moving]
        bases = pick_bases(sizes, taken, 1, USER_TOP_4LEVEL // SLOT - 1, [x["name"] for x in moving])
        for x, base, size in zip(moving, bases, sizes):
            for i in range(n):  # every member's trace moves, its threads' too
                if x["members"] is None or mm_of[i] in x["members"]:
                    moves[i].append(Move(x["start"], x["start"] + x["size"], base))
            x["start"], x["size"] = base, size

    procs = [
        Process(
            name=names[i],
            trace=RelocatedTrace(src, moves[i]) if moves[i] else src,
            cpu=m.processes[i].cpu,
            dependent=m.dependent if m.processes[i].dependent is None else m.processes[i].dependent,
            sleeps=_process_sleeps(m, i, src),
            thread_of=None if mm_of[i] == i else mm_of[i],
        )
        for i, src in enumerate(sources)
    ]
    regions = [
        Region(
            name=x["name"],
            start=x["start"],
            size=x["size"],
            page_size=x["page_size"],
            kind=x["kind"],
            shared=x["shared"],
            processes=None if x["members"] is None or len(x["members"]) == n_mms else tuple(x["members"]),
            share_tables=x["share_tables"],
        )
        for x in resolved
    ]
    desc = m.description or f"workload manifest {path} ({n} processes, {len(regions)} regions)"
    return Workload(processes=procs, regions=regions, description=desc)


def _process_sleeps(m: Manifest, i: int, src) -> tuple[tuple[int, int], ...]:
    """Process i's sleeps: its own `sleeps` list, else drawn from the manifest's sleep_* keys."""
    spec = m.processes[i].sleeps
    if spec is not None:
        return tuple((int(a), int(b)) for a, b in spec)
    if not m.sleep_every_accesses:
        return ()
    return sleep_schedule(len(src), m.sleep_every_accesses, m.sleep_cycles, m.sleep_seed, i)


def _round_up(x: int, a: int) -> int:
    return -(-x // a) * a


def manifest_settings(path: str | Path) -> dict:
    """The experiment settings a manifest carries ([scheduler], [run], n_cpus), as keys set explicitly."""
    m = load_manifest(path)
    out: dict[str, dict] = {}
    if m.scheduler is not None:
        out["scheduler"] = m.scheduler.model_dump(exclude_unset=True)
    if m.run is not None:
        out["run"] = m.run.model_dump(exclude_unset=True)
    cpus = [s.cpu for s in m.processes if s.cpu is not None]
    if m.n_cpus is not None:
        out["machine"] = {"n_cpus": m.n_cpus}
    elif cpus:
        out["machine"] = {"n_cpus_at_least": max(cpus) + 1}
    return out


def experiment_name_for(path: Path, m: Manifest) -> str:
    if m.name:
        return m.name
    return path.parent.name if path.stem == "workload" and path.parent.name else path.stem


def manifest_experiment_data(path: str | Path, default_data: dict) -> dict:
    """An experiment (as TOML data) for `mshare-hw run MANIFEST`: the built-in default's machine,
    scheduler and run settings (the manifest's own take precedence), the default uarch, and a sweep of
    private vs mshare page tables."""
    p = Path(path).resolve()
    m = load_manifest(p)
    data = {k: v for k, v in default_data.items() if k not in ("workload", "sweep", "uarch", "exclude", "events")}
    data["name"] = experiment_name_for(p, m)
    data["description"] = m.description or f"workload manifest {p}: private vs mshare page tables"
    data["workload"] = {"manifest": str(p)}
    data["sweep"] = {"pt_config": ["private", "mshare"]}
    settings = manifest_settings(p)
    for table in ("scheduler", "run"):
        if table in settings:
            base = dict(data.get(table, {}))
            if table == "run" and ({"warmup_accesses", "warmup_fraction"} & set(settings["run"])):
                base.pop("warmup_accesses", None)
                base.pop("warmup_fraction", None)
            base.update(settings[table])
            data[table] = base
    machine = dict(data.get("machine", {}))
    ms = settings.get("machine", {})
    if "n_cpus" in ms:
        machine["n_cpus"] = ms["n_cpus"]
    elif "n_cpus_at_least" in ms:
        machine["n_cpus"] = max(machine.get("n_cpus", 1), ms["n_cpus_at_least"])
    data["machine"] = machine
    return data


def fill_from_manifest(data: dict, manifest_path: Path) -> None:
    """An experiment that names a manifest takes the manifest's [scheduler] / [run] keys and n_cpus where
    the experiment file does not set them itself."""
    settings = manifest_settings(manifest_path)
    for table in ("scheduler", "run"):
        if table not in settings:
            continue
        own = data.setdefault(table, {})
        if not isinstance(own, dict):
            return
        for k, v in settings[table].items():
            if table == "run" and k in ("warmup_accesses", "warmup_fraction"):
                if "warmup_accesses" in own or "warmup_fraction" in own:
                    continue
            own.setdefault(k, v)
    ms = settings.get("machine", {})
    machine = data.setdefault("machine", {})
    if isinstance(machine, dict) and "n_cpus" not in machine:
        if "n_cpus" in ms:
            machine["n_cpus"] = ms["n_cpus"]
        elif "n_cpus_at_least" in ms:
            machine["n_cpus"] = max(4, ms["n_cpus_at_least"])


def load_run_file(path: str | Path | None, overrides: list[str] | None = None) -> Experiment:
    """What `mshare-hw run FILE` runs: an experiment file, with the settings of the workload manifest it
    names filled in, or, for a workload manifest, the default comparison (private vs mshare on the
    default uarch) of its traces. The generator parameters of every grid point are checked too, an
    error naming the file (or the `--set`) that gave them."""
    exp = _load_run_file(path, overrides)
    params_set = [f"--set {t}" for t in overrides or [] if t.strip().startswith(("workload.params", "seed"))]
    source = " / ".join([str(path or default_experiment_path()), *params_set])
    for point in expand(exp):
        if point.workload.generator is not None:
            generator_params(point.workload.generator, point.workload.params, point.seed, f"{source}: workload.params")
    return exp


def _load_run_file(path: str | Path | None, overrides: list[str] | None) -> Experiment:
    if path is None:
        return load_experiment(None, overrides)
    p = Path(path)
    if is_manifest_data(load_toml(p)):
        data = manifest_experiment_data(p, load_toml(default_experiment_path()))
        apply_overrides(data, overrides or [])
        return validate_experiment(data, p, overrides)
    data = experiment_data(p, overrides)
    w = data.get("workload")
    if isinstance(w, dict) and isinstance(w.get("manifest"), str):
        try:
            fill_from_manifest(data, Path(w["manifest"]))
        except ConfigError as e:
            raise ConfigError(f"{p}: key 'workload.manifest': {e}") from None
    return validate_experiment(data, p, overrides)
