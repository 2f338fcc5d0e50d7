"""Microarchitecture files (`configs/uarch/*.toml`) as typed, validated objects.

Every structure size and latency of the model comes from one of these files; the loader refuses
unknown keys and impossible values with a message naming the file, the key and the reason.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, NonNegativeInt, PositiveInt, ValidationError, model_validator

from mshare_hw.config.errors import ConfigError, from_validation_error
from mshare_hw.config.paths import config_dir
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
    replacement: Literal["lru"] = "lru"

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

    @model_validator(mode="after")
    def _check(self) -> CacheLevel:
        _check_ways(self.size_kib, self.ways)
        return self


class LLCLevel(Strict):
    size_kib_per_cpu: PositiveInt
    ways: PositiveInt
    latency: PositiveInt

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

    @model_validator(mode="after")
    def _check(self) -> Features:
        if self.invlpgb and self.invlpgb_count_max < 1:
            raise ValueError("invlpgb = true needs invlpgb_count_max >= 1")
        return self


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

    @model_validator(mode="after")
    def _check(self) -> Uarch:
        if self.features.invlpgb and (self.costs.invlpgb_cycles < 1 or self.costs.tlbsync_cycles < 1):
            raise ValueError("invlpgb = true needs costs.invlpgb_cycles and costs.tlbsync_cycles >= 1")
        return self


def uarch_dir() -> Path:
    return config_dir() / "uarch"


def list_uarchs() -> list[str]:
    return sorted(p.stem for p in uarch_dir().glob("*.toml"))


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


def load_uarch(name_or_path: str | Path) -> Uarch:
    """Load a uarch by name (a file in configs/uarch/) or by path."""
    p = Path(name_or_path)
    if p.suffix != ".toml":
        p = uarch_dir() / f"{name_or_path}.toml"
        if not p.exists():
            known = ", ".join(list_uarchs())
            raise ConfigError(f"unknown uarch '{name_or_path}' (known: {known})")
    data = load_toml(p)
    try:
        return Uarch.model_validate(data)
    except ValidationError as e:
        raise from_validation_error(p, e) from None
