"""Experiment files (`configs/experiments/*.toml`): a workload, a machine, and sweep axes.

A sweep is a grid over dotted keys (`uarch`, `pt_config`, `machine.n_cpus`,
`workload.params.n_processes`, ...); every point is validated as a complete experiment of its own and
stored, fully resolved, with its results.
"""

from __future__ import annotations

import copy
import itertools
import logging
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, ValidationError, field_validator, model_validator

from mshare_hw.config.errors import ConfigError, from_validation_error
from mshare_hw.config.paths import config_dir
from mshare_hw.config.uarch import Features, Strict, load_toml, load_uarch, resolve_uarch_ref, uarch_dir, uarch_path
from mshare_hw.names import (
    DetachFlush,
    DeviceKind,
    EventKind,
    NotifierPolicy,
    PtConfig,
    ReplacementPolicy,
    SchedulerKind,
    ShareLevel,
    Strategy,
    TimingMode,
    VirtualizationMode,
)
from mshare_hw.units import PageSize

# the synthetic generators (mshare_hw.workload.generators registers one function per name)
GeneratorName = Literal["database", "uniform", "strided", "pointer_chase", "uniform_stream"]


class MachineCfg(Strict):
    n_cpus: PositiveInt = 4
    five_level: bool = False
    data_caches: bool = True
    oracle: bool = True
    kernel_invlpgb: bool = True  # Linux >= 6.15 uses INVLPGB for flush_tlb_all and reclaim where the CPU has it
    timing: TimingMode = "translation"
    virtualization: VirtualizationMode = "none"
    host_page_size: PageSize = "2M"  # the host pages backing a guest (nested): KVM maps THP-backed guest RAM at 2M
    # "auto": LRU everywhere in translation mode (the model's classic accounting), the uarch file's
    # per-structure policies in latency and overlap modes; a policy name forces it on every structure
    replacement: Literal["auto"] | ReplacementPolicy = "auto"
    # page-table isolation: "auto" is on where the uarch file says the part is Meltdown-affected
    pti: Literal["auto"] | bool = "auto"

    @field_validator("pti", mode="before")
    @classmethod
    def _pti(cls, v: Any) -> Any:
        if v not in ("auto", True, False) or isinstance(v, int) and not isinstance(v, bool):
            raise ValueError(f'expected "auto", true or false, got {v!r}')
        return v


class SchedulerCfg(Strict):
    kind: SchedulerKind = "pinned"
    quantum_cycles: PositiveInt = 3_000_000
    slice_accesses: PositiveInt = 512


class RunCfg(Strict):
    warmup_accesses: NonNegativeInt = 0
    warmup_fraction: float = Field(default=0.0, ge=0.0, lt=1.0)
    interval_accesses: NonNegativeInt = 0
    fault_around_pages: PositiveInt = 16

    @model_validator(mode="after")
    def _check(self) -> RunCfg:
        if self.warmup_accesses and self.warmup_fraction:
            raise ValueError("give warmup_accesses or warmup_fraction, not both")
        return self


class EventsCfg(Strict):
    """Invalidation events: a Poisson schedule at `rate_per_second` of simulated time, or a CSV file."""

    enabled: bool = False
    region: str = "buffer_pool"
    rate_per_second: float = Field(default=1000.0, gt=0)
    clock_ghz: float = Field(default=3.0, gt=0)
    kinds: dict[EventKind, float] = Field(default_factory=lambda: {"zap": 1.0})
    pages: list[PositiveInt] = Field(default_factory=lambda: [1])
    initiator: Literal["random"] | NonNegativeInt = "random"
    times: list[NonNegativeInt] | None = None  # fixed times in cycles instead of a rate
    at_accesses: list[NonNegativeInt] | None = None  # or fixed global access counts
    file: str | None = None  # or a CSV events file (time,kind,proc,region,first_page,n_pages)

    @model_validator(mode="after")
    def _check(self) -> EventsCfg:
        if not self.kinds or any(w < 0 for w in self.kinds.values()) or sum(self.kinds.values()) <= 0:
            raise ValueError("kinds needs at least one kind with a positive weight")
        if not self.pages:
            raise ValueError("pages needs at least one size")
        if sum(x is not None for x in (self.times, self.at_accesses, self.file)) > 1:
            raise ValueError("give at most one of times, at_accesses and file (else the rate is used)")
        return self


class DeviceCfg(Strict):
    """A secondary MMU bound to one process's mm (mshare_hw.engine.secondary): an IOMMU/SVA device with a
    PASID-tagged IOTLB, or a KVM-style mirror. It issues `burst` accesses to `region` every
    `period_accesses` global accesses, over `footprint_pages` pages from `first_page` (0 = to the end)."""

    name: str = Field(min_length=1)
    kind: DeviceKind = "iommu"
    process: NonNegativeInt = 0
    region: str = "buffer_pool"
    pattern: Literal["uniform", "sequential"] = "uniform"
    first_page: NonNegativeInt = 0
    footprint_pages: NonNegativeInt = 0
    period_accesses: PositiveInt = 1000
    burst: PositiveInt = 16
    iotlb_entries: PositiveInt | None = None  # default: the uarch's [secondary] iotlb_entries
    iotlb_ways: PositiveInt | None = None

    @model_validator(mode="after")
    def _check(self) -> DeviceCfg:
        if (self.iotlb_entries is None) != (self.iotlb_ways is None):
            raise ValueError("give iotlb_entries and iotlb_ways together (or neither, for the uarch's)")
        if self.iotlb_entries is not None and self.iotlb_entries % self.iotlb_ways:  # type: ignore[operator]
            raise ValueError(f"iotlb_ways ({self.iotlb_ways}) must divide iotlb_entries ({self.iotlb_entries})")
        return self


class WorkloadCfg(Strict):
    """A generator with its params, or a workload manifest of traces (`manifest`, relative to the
    experiment file)."""

    generator: GeneratorName | None = "database"
    params: dict[str, Any] = Field(default_factory=dict)
    manifest: str | None = None
    skip_bad_lines: bool = False  # manifest traces: skip and count malformed lackey lines

    @model_validator(mode="before")
    @classmethod
    def _generator_or_manifest(cls, v: Any) -> Any:
        if isinstance(v, dict) and v.get("manifest") is not None:
            if v.get("generator") is not None:
                raise ValueError("give generator or manifest, not both")
            if v.get("params"):
                raise ValueError("params belong to a generator; a manifest workload takes none")
            v = {**v, "generator": None}
        return v

    @model_validator(mode="after")
    def _check(self) -> WorkloadCfg:
        if self.generator is None and self.manifest is None:
            raise ValueError("give a generator or a manifest")
        return self


class Experiment(Strict):
    name: str
    description: str = ""
    seed: int = 1
    uarch: str = "skylake_sp"
    pt_config: PtConfig = "private"
    share_level: ShareLevel = "p4d"
    strategy: Strategy = "flush_all"
    # how an mshare detach flushes the detaching mm: "range" (its whole region, page tables freed) or
    # "p4d_stride" (the posted series: p4d_clear + tlb_flush_p4d_range, one flush per link entry)
    detach_flush: DetachFlush = "range"
    # who hears a PTE change in a shared (mshare) region: only the host mm's notifiers (the posted series),
    # or also every sharer mm's (secondary MMUs bound to sharers); private page tables notify each mm
    notifier_policy: NotifierPolicy = "host_only"
    devices: list[DeviceCfg] = Field(default_factory=list)
    machine: MachineCfg = MachineCfg()
    scheduler: SchedulerCfg = SchedulerCfg()
    run: RunCfg = RunCfg()
    workload: WorkloadCfg = WorkloadCfg()
    events: EventsCfg = EventsCfg()
    sweep: dict[str, Annotated[list[Any], Field(min_length=1)]] = Field(default_factory=dict)
    # grid points matching every key of any entry are left out; an entry's `unless_feature` names a uarch
    # [features] flag that keeps the matching points whose uarch has it (broadcast needs INVLPGB)
    exclude: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("exclude")
    @classmethod
    def _known_features(cls, v: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for rule in v:
            feature = rule.get(UNLESS_FEATURE)
            if feature is not None and (feature not in Features.model_fields or len(rule) < 2):
                raise ValueError(
                    f"exclude: {UNLESS_FEATURE} = {feature!r} needs other keys to match and one of the uarch "
                    f"[features] flags: {', '.join(Features.model_fields)}"
                )
        return v

    @model_validator(mode="after")
    def _unique_devices(self) -> Experiment:
        names = [d.name for d in self.devices]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"devices: name '{dup[0]}' is used twice")
        return self

    @field_validator("uarch")
    @classmethod
    def _known_uarch(cls, v: str) -> str:
        try:
            path = uarch_path(v)
            if not path.is_relative_to(uarch_dir()):  # a user file: validated here, not first in the runner
                load_uarch(path)
        except ConfigError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("sweep", mode="before")
    @classmethod
    def _flatten_sweep(cls, v: Any) -> Any:
        """`--set sweep.machine.n_cpus=[..]` nests tables; axes are dotted keys, so flatten them back."""
        return flatten_axes(v) if isinstance(v, dict) else v


def flatten_axes(sweep: dict) -> dict[str, Any]:
    """A [sweep] table with its nested tables (`machine.n_cpus = [..]` in TOML) as dotted axis keys."""
    flat: dict[str, Any] = {}

    def walk(prefix: str, node: dict) -> None:
        for k, val in node.items():
            key = f"{prefix}.{k}" if prefix else k
            if isinstance(val, dict):
                walk(key, val)
            else:
                flat[key] = val

    walk("", sweep)
    return flat


def experiments_dir() -> Path:
    return config_dir() / "experiments"


def default_experiment_path() -> Path:
    return experiments_dir() / "default.toml"


def parse_override(text: str, option: str = "--set", example: str = "machine.n_cpus=16") -> tuple[str, Any]:
    """`machine.n_cpus=16` -> ("machine.n_cpus", 16); the value is read as TOML, else as a string."""
    if "=" not in text:
        raise ConfigError(f"{option} {text!r}: expected KEY=VALUE, e.g. {option} {example}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"{option} {text!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def set_dotted(data: dict, key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        child = node.setdefault(p, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: key '{key}': '{p}' is not a table")
        node = child
    node[parts[-1]] = value


def validate_experiment(data: dict, source: str | Path, overrides: list[str] | None = None) -> Experiment:
    """The checked experiment; an error at a key that one of `overrides` set names that `--set` too."""
    set_by = {parse_override(text)[0]: f"{source} with --set {text}" for text in overrides or []}

    def source_of(key: str) -> str | Path:
        for k, where in set_by.items():
            if key == k or key.startswith(k + "."):
                return where
        return source

    try:
        return Experiment.model_validate(data)
    except ValidationError as e:
        raise from_validation_error(source_of, e) from None


def apply_overrides(data: dict, overrides: list[str]) -> None:
    """Apply `--set KEY=VALUE` overrides to experiment data. A KEY that is also a [sweep] axis replaces
    that axis (said on the log); a KEY inside a zipped axis (`a+b`) is refused."""
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(data, key, value, f"--set {text}")
        sweep = data.get("sweep")
        if key.startswith("sweep.") or not isinstance(sweep, dict):
            continue
        axes = flatten_axes(sweep)
        hit = [a for a in axes if any(k == key or k.startswith(key + ".") for k in a.split("+"))]
        for axis in hit:
            if "+" in axis:
                raise ConfigError(
                    f"--set {text}: '{key}' is part of the zipped [sweep] axis '{axis}'; "
                    f"override the axis instead (--set 'sweep.{axis}=[...]')"
                )
            logging.getLogger("mshare_hw").warning(
                "--set %s replaces the [sweep] axis %s = %s", text, axis, axes.pop(axis)
            )
        if hit:
            data["sweep"] = axes


def experiment_data(path: Path, overrides: list[str] | None = None) -> dict:
    """An experiment file's TOML data with `--set` overrides applied (`apply_overrides`). A relative
    `workload.manifest` is relative to the experiment file (to the working directory when given with --set)."""
    data = load_toml(path)
    _resolve_manifest(data, path.parent)
    _resolve_uarch(data, path.parent)
    apply_overrides(data, overrides or [])
    _resolve_manifest(data, Path.cwd())
    _resolve_uarch(data, Path.cwd())
    return data


def load_experiment(path: str | Path | None = None, overrides: list[str] | None = None) -> Experiment:
    """Load an experiment file (the built-in default when `path` is None) and apply `--set` overrides.
    The settings a named workload manifest carries are merged in by the workload layer's
    `mshare_hw.workload.manifest.load_run_file`, which is how the command line loads experiments."""
    p = Path(path) if path is not None else default_experiment_path()
    return validate_experiment(experiment_data(p, overrides), p, overrides)


def _resolve_manifest(data: dict, base: Path) -> None:
    w = data.get("workload")
    if isinstance(w, dict) and isinstance(w.get("manifest"), str):
        q = Path(w["manifest"]).expanduser()
        w["manifest"] = str(q if q.is_absolute() else (base / q).resolve())


def _resolve_uarch(data: dict, base: Path) -> None:
    """A uarch given as a relative .toml path (also in a `uarch` sweep axis) is relative to the experiment
    file (to the working directory when given with --set)."""
    if "uarch" in data:
        data["uarch"] = resolve_uarch_ref(data["uarch"], base)
    sweep = data.get("sweep")
    if isinstance(sweep, dict) and isinstance(sweep.get("uarch"), list):
        sweep["uarch"] = [resolve_uarch_ref(v, base) for v in sweep["uarch"]]


def get_dotted(data: dict, key: str) -> Any:
    node: Any = data
    for p in key.split("."):
        if not isinstance(node, dict) or p not in node:
            return _MISSING
        node = node[p]
    return node


_MISSING = object()


UNLESS_FEATURE = "unless_feature"  # the exclude-rule key naming a uarch feature that keeps a point


def _excludes(rule: dict[str, Any], data: dict) -> bool:
    """Whether an `exclude` entry leaves out the grid point `data`: every key matches and, if the entry has
    `unless_feature`, the point's uarch lacks that feature."""
    if not all(get_dotted(data, k) == v for k, v in rule.items() if k != UNLESS_FEATURE):
        return False
    feature = rule.get(UNLESS_FEATURE)
    return feature is None or not getattr(load_uarch(data["uarch"]).features, feature)


def expand(exp: Experiment) -> list[Experiment]:
    """The grid of a sweep, in axis order (the last axis varies fastest), less the `exclude`d points.
    Each point has no sweep and no exclusions of its own."""
    base = exp.model_dump()
    base["sweep"] = {}
    base["exclude"] = []
    axes = list(exp.sweep.items())
    if not axes:
        return [validate_experiment(base, f"experiment '{exp.name}'")]
    out = []
    for combo in itertools.product(*(values for _, values in axes)):
        data = copy.deepcopy(base)
        for (key, _), value in zip(axes, combo):
            if "+" in key:  # a zipped axis: "a+b" = [[a1, b1], [a2, b2]] varies a and b together
                keys = key.split("+")
                if not isinstance(value, list) or len(value) != len(keys):
                    raise ConfigError(
                        f"experiment '{exp.name}': sweep axis '{key}': each value must be a list of {len(keys)}"
                    )
                for k, v in zip(keys, value):
                    set_dotted(data, k, v, f"sweep axis '{key}'")
            else:
                set_dotted(data, key, value, f"sweep axis '{key}'")
        if any(_excludes(rule, data) for rule in exp.exclude):
            continue
        out.append(
            validate_experiment(data, f"experiment '{exp.name}', sweep point {dict(zip([k for k, _ in axes], combo))}")
        )
    return out
