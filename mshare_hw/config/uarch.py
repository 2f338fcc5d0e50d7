"""Microarchitecture files (`configs/uarch/*.toml`) as typed, validated objects.

Every structure size and latency of the model comes from one of these files; the loader refuses
unknown keys and impossible values with a message naming the file, the key and the reason.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveFloat, PositiveInt, ValidationError, model_validator

from mshare_hw.config.errors import ConfigError, from_validation_error
from mshare_hw.config.paths import config_dir
from mshare_hw.names import ReplacementPolicy
from mshare_hw.units import PAGE_SIZES, PageSize

PAGE_SHIFT: dict[str, int] = {name: size.bit_length() - 1 for name, size in PAGE_SIZES.items()}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class SetArray:
    """A set-associative array's `entries` and `ways` (on the model that mixes this in): `ways` divides
    `entries`; `ways == entries` is fully associative."""

    def check_ways(self) -> None:
        if self.entries % self.ways:
            raise ValueError(f"ways ({self.ways}) must divide entries ({self.entries})")

    @property
    def sets(self) -> int:
        return self.entries // self.ways


class TLBStructure(Strict, SetArray):
    """One TLB array: the page sizes it holds, its geometry and set indexing."""

    sizes: list[PageSize]
    entries: PositiveInt
    ways: PositiveInt
    index: Literal["modulo", "xor"] = "modulo"
    replacement: ReplacementPolicy | None = None  # None: the level's [tlb] replacement

    @model_validator(mode="after")
    def _check(self) -> TLBStructure:
        if not self.sizes:
            raise ValueError("sizes must name at least one page size")
        if len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"sizes {self.sizes} repeats a page size")
        self.check_ways()
        if self.index == "xor" and not _is_pow2(self.entries // self.ways):
            raise ValueError(f"index 'xor' needs a power-of-two number of sets, got {self.entries // self.ways}")
        return self


class TLBConfig(Strict):
    l1i: list[TLBStructure]
    l1d: list[TLBStructure]
    l2d: list[TLBStructure]
    l2i: list[TLBStructure] | None = None
    l2_hit_latency: PositiveInt
    replacement: ReplacementPolicy = "lru"  # the policy of every structure that does not name its own

    @model_validator(mode="after")
    def _check(self) -> TLBConfig:
        for name in ("l1i", "l1d", "l2d", "l2i"):
            level = getattr(self, name)
            if level is None:
                continue
            if not level:
                raise ValueError(f"{name} needs at least one structure")
            seen: set[str] = set()
            for s in level:
                dup = seen.intersection(s.sizes)
                if dup:
                    raise ValueError(f"{name}: page size {sorted(dup)[0]} is held by two structures")
                seen.update(s.sizes)
        return self


class PWCStructure(Strict, SetArray):
    entries: PositiveInt
    ways: PositiveInt

    @model_validator(mode="after")
    def _check(self) -> PWCStructure:
        self.check_ways()
        return self


class PWCConfig(Strict):
    """Per-level paging-structure caches (Intel), or one `unified` structure for all levels (AMD)."""

    pd: PWCStructure | None = None
    pdpt: PWCStructure | None = None
    pml4: PWCStructure | None = None
    pml5: PWCStructure | None = None
    unified: PWCStructure | None = None
    replacement: ReplacementPolicy = "lru"

    @model_validator(mode="after")
    def _check(self) -> PWCConfig:
        per_level = [self.pd, self.pdpt, self.pml4, self.pml5]
        if self.unified is not None and any(s is not None for s in per_level):
            raise ValueError("give either 'unified' or per-level structures (pd, pdpt, pml4, pml5), not both")
        return self


def _check_ways(size_kib: int, ways: int, per: str = "") -> None:
    lines = size_kib * 1024 // 64
    if lines % ways:
        raise ValueError(f"ways ({ways}) must divide the number of 64-byte lines{per} ({lines})")


class CacheLevel(Strict):
    size_kib: PositiveInt
    ways: PositiveInt
    latency: PositiveInt
    replacement: ReplacementPolicy = "lru"

    @model_validator(mode="after")
    def _check(self) -> CacheLevel:
        _check_ways(self.size_kib, self.ways)
        return self


class LLCLevel(Strict):
    size_kib_per_cpu: PositiveInt
    ways: PositiveInt
    latency: PositiveInt
    replacement: ReplacementPolicy = "lru"

    @model_validator(mode="after")
    def _check(self) -> LLCLevel:
        _check_ways(self.size_kib_per_cpu, self.ways, " per CPU")
        return self


class Caches(Strict):
    l1d: CacheLevel
    l2: CacheLevel
    llc: LLCLevel
    dram_latency: PositiveInt


class Features(Strict):
    pcid: bool
    invpcid: bool
    invlpgb: bool
    invlpgb_count_max: NonNegativeInt = 0
    la57: bool
    hypervisor: bool = False  # measured inside a virtual machine (`mshare-hw calibrate` sets it)
    meltdown: bool = False  # affected by Meltdown (CVE-2017-5754): Linux turns PTI on (machine.pti = "auto")

    @model_validator(mode="after")
    def _check(self) -> Features:
        if self.invlpgb and self.invlpgb_count_max < 1:
            raise ValueError("invlpgb = true needs invlpgb_count_max >= 1")
        return self


class VirtualizedCosts(Strict):
    """The kernel costs a guest pays (`machine.virtualization = "nested"`), in place of the native ones.
    INVLPGB is not offered to guests, so there is no INVLPGB/TLBSYNC cost here."""

    cr3_noflush_cycles: PositiveInt
    cr3_flush_cycles: PositiveInt
    invlpg_cycles: PositiveInt
    invpcid_cycles: PositiveInt
    ipi_initiator_base_cycles: PositiveInt
    ipi_per_target_cycles: PositiveInt
    ipi_responder_cycles: PositiveInt


class Costs(Strict):
    """Cycle costs of software paths and invalidation instructions."""

    access_cycles: NonNegativeInt
    ifetch_cycles: NonNegativeInt
    fault_cycles: PositiveInt
    fault_per_page_cycles: NonNegativeInt
    link_fault_cycles: PositiveInt
    context_switch_cycles: NonNegativeInt
    cr3_noflush_cycles: PositiveInt
    cr3_flush_cycles: PositiveInt
    invlpg_cycles: PositiveInt
    invpcid_cycles: PositiveInt
    ipi_initiator_base_cycles: PositiveInt
    ipi_per_target_cycles: PositiveInt
    ipi_responder_cycles: PositiveInt
    invlpgb_cycles: NonNegativeInt = 0
    tlbsync_cycles: NonNegativeInt = 0
    virtualized: VirtualizedCosts | None = None


class Core(Strict):
    """The core's clock and the limits of its memory-level parallelism (`machine.timing = "overlap"`)."""

    clock_ghz: PositiveFloat
    rob_entries: PositiveInt
    load_queue: PositiveInt  # loads in flight
    l1d_miss_buffers: PositiveInt  # outstanding L1D misses (fill buffers, miss address buffers)
    page_walkers: PositiveInt  # concurrent hardware page walks


class Nested(Strict):
    """Two-dimensional walks (`machine.virtualization = "nested"`): the per-CPU structures that cache the
    host (EPT/NPT) side."""

    tlb: PWCStructure  # guest-physical -> host-physical translations, one entry per host page
    pwc: PWCStructure  # host page-table entries, one such structure per host level above the leaf
    replacement: ReplacementPolicy = "lru"
    # cycles a walk in a guest takes beyond its memory reads, once per 2-D walk and once more per host walk
    # after a nested-TLB miss (walker start-up, the structures' lookups, the two dimensions' serialisation)
    walk_cycles: NonNegativeInt = 0


class Secondary(Strict):
    """Secondary MMUs (IOMMU/SVA, KVM mirrors): IOTLB geometry and the costs of their walks, faults and
    invalidations. The defaults are the ESTIMATEs the shipped files state and justify."""

    iotlb_entries: PositiveInt = 64
    iotlb_ways: PositiveInt = 4
    iommu_walk_base_cycles: NonNegativeInt = 150
    iotlb_invalidation_cycles: PositiveInt = 3000
    page_request_cycles: NonNegativeInt = 30000
    mirror_fill_cycles: NonNegativeInt = 6000
    mirror_invalidation_cycles: NonNegativeInt = 4000

    @model_validator(mode="after")
    def _check(self) -> Secondary:
        if self.iotlb_entries % self.iotlb_ways:
            raise ValueError(f"iotlb_ways ({self.iotlb_ways}) must divide iotlb_entries ({self.iotlb_entries})")
        return self


class Uarch(Strict):
    name: str
    vendor: Literal["intel", "amd"]
    description: str
    features: Features
    tlb: TLBConfig
    pwc: PWCConfig
    caches: Caches
    costs: Costs
    secondary: Secondary = Secondary()
    core: Core | None = None
    nested: Nested | None = None

    @model_validator(mode="after")
    def _check(self) -> Uarch:
        if self.features.invlpgb and (self.costs.invlpgb_cycles < 1 or self.costs.tlbsync_cycles < 1):
            raise ValueError("invlpgb = true needs costs.invlpgb_cycles and costs.tlbsync_cycles >= 1")
        return self


def uarch_dir() -> Path:
    return config_dir() / "uarch"


# User uarch files: `MSHARE_HW_UARCH_PATH` (directories, colon-separated) adds files beside the shipped ones;
# an experiment or `--set` may also name a file by path. A file may `extends = "<name or path>"` another
# and give only the keys it changes (tables merge key by key; lists, like a TLB level, are replaced whole).
UARCH_PATH_ENV = "MSHARE_HW_UARCH_PATH"


@dataclass(frozen=True)
class UarchEntry:
    """One file `uarch list` shows: its name, where it is, and why it does not load (None when it does)."""

    name: str
    path: Path
    shipped: bool
    error: str | None = None


def _user_dirs() -> list[Path]:
    return [Path(d).expanduser() for d in os.environ.get(UARCH_PATH_ENV, "").split(os.pathsep) if d]


def _named_files() -> dict[str, tuple[Path, bool]]:
    """Name -> (file, shipped): the shipped files, then the search path's in order; the first of a name wins."""
    found: dict[str, tuple[Path, bool]] = {p.stem: (p, True) for p in sorted(uarch_dir().glob("*.toml"))}
    for d in _user_dirs():
        for p in sorted(d.glob("*.toml")):
            found.setdefault(p.stem, (p, False))
    return found


def uarch_catalog() -> list[UarchEntry]:
    """Every shipped and user uarch file, sorted by name; a user file that does not load carries its error
    (and a second file of a taken name says so) instead of breaking the list."""
    named = _named_files()
    out = []
    for name, (path, shipped) in named.items():
        try:
            load_uarch(path)
            error = None
        except ConfigError as e:
            error = str(e).splitlines()[0]
        out.append(UarchEntry(name, path, shipped, error))
    for d in _user_dirs():
        for p in sorted(d.glob("*.toml")):
            if named[p.stem][0] != p:
                out.append(UarchEntry(p.stem, p, False, f"{p}: name '{p.stem}' is taken by {named[p.stem][0]}"))
    return sorted(out, key=lambda e: (e.name, e.error is not None))


def list_uarchs() -> list[str]:
    """The names of the uarch files that load: shipped, then from `MSHARE_HW_UARCH_PATH`."""
    return sorted(e.name for e in uarch_catalog() if e.error is None)


def is_uarch_path(ref: str | Path) -> bool:
    return str(ref).endswith(".toml")


def resolve_uarch_ref(ref: Any, base: Path) -> Any:
    """A uarch given as a relative path to a .toml file, made absolute against `base`; names unchanged."""
    if isinstance(ref, str) and is_uarch_path(ref):
        q = Path(ref).expanduser()
        return str(q if q.is_absolute() else (base / q).resolve())
    return ref


def uarch_path(name_or_path: str | Path) -> Path:
    """The file of a uarch name (shipped or on the search path) or path."""
    if is_uarch_path(name_or_path):
        return Path(name_or_path).expanduser()
    named = _named_files()
    if str(name_or_path) not in named:
        raise ConfigError(f"unknown uarch '{name_or_path}' (known: {', '.join(sorted(named))})")
    return named[str(name_or_path)][0]


def load_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text ({e})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_uarch_data(path: Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A uarch file's keys with its `extends` chain merged in (a file without `name` takes its stem)."""
    data = load_toml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: key 'extends': expected a uarch name or a path to a .toml file")
    here = path.resolve()
    try:
        parent_path = uarch_path(resolve_uarch_ref(parent, path.parent))
        if parent_path.resolve() in (*_chain, here):
            raise ConfigError(f"'{parent}' extends this file again (a cycle)")
        base = load_uarch_data(parent_path, (*_chain, here))
    except ConfigError as e:
        raise ConfigError(f"{path}: key 'extends': {e}") from None
    return _deep_merge({**base, "name": path.stem}, data)


def load_uarch(name_or_path: str | Path) -> Uarch:
    """Load a uarch by name (a shipped file or one on `MSHARE_HW_UARCH_PATH`) or by path."""
    p = uarch_path(name_or_path)
    data = load_uarch_data(p)
    try:
        return Uarch.model_validate(data)
    except ValidationError as e:
        raise from_validation_error(p, e) from None


def resolve_pti(pti: str | bool, uarch: Uarch) -> bool:
    """machine.pti: "auto" is on where the part is Meltdown-affected (the uarch's `features.meltdown`), as
    Linux's pti_check_boottime_disable() (arch/x86/mm/pti.c) turns PTI on only with X86_BUG_CPU_MELTDOWN.
    The model's PTI needs PCID and INVPCID (every shipped part with the bug has both)."""
    if pti not in ("auto", True, False):
        raise ConfigError(f'machine.pti: expected "auto", true or false, got {pti!r}')
    on = uarch.features.meltdown if pti == "auto" else bool(pti)
    if on and not (uarch.features.pcid and uarch.features.invpcid):
        raise ConfigError(f"machine.pti: the model's PTI needs PCID and INVPCID, which uarch '{uarch.name}' lacks")
    return on
