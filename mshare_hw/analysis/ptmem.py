"""Analytic page-table memory for one shared region: private page tables vs shared ones, projected to
N processes and any region size.

Levels are numbered from the leaf up: 1 = PT (holds 4 KiB PTEs; one table maps 2 MiB), 2 = PD / PMD
(1 GiB), 3 = PDPT / PUD (512 GiB), 4 = PML4 (P4D under 5-level paging; 256 TiB), 5 = PML5 (128 PiB).
Every table is one 4 KiB page of 512 eight-byte entries. The region is assumed to start on a 512 GiB
boundary (as mshare requires), so a level-L table count is ceil(region / coverage of one level-L
table); the top level is always exactly one page (the process's root, CR3). With 2 MiB pages there
are no level-1 tables (the PD entries are the leaves), with 1 GiB pages no level-1 or level-2 tables.

Configurations:

* private — every process has its own copy of every level, its own root page included.
* shared, ``share_level``:
  - ``"p4d"`` (mshare): the host mm owns the PDPT/PUD page and everything below it, one copy for all;
    each process keeps its own levels above (its root page, and its P4D page under 5-level paging),
    whose entry points at the host's PUD page. The host mm has its own root (and P4D) pages too, which
    are counted (``host_mm``).
  - ``"pud"``: PD/PMD tables and below are shared; each process keeps its PML4 and PDPT tables
    (hugetlb PMD sharing style).
  - ``"pmd"``: PT tables are shared; each process keeps PML4, PDPT and PD (the 2022-23 ptshare
    proposals). With 2 MiB or 1 GiB pages there is nothing below the PMD to share.
  ``host_mm`` (default True, as in the engine, which gives every shared region an owner mm at every
  share level) adds one more copy of the per-process levels for the mm that holds the shared tables.

Only the region's own tables are counted: the rest of each address space (text, heap, stack, kernel
half) is the same in both configurations.

Sizes may be given as strings such as "300GiB" (`mshare_hw.units.parse_size`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from mshare_hw.units import format_bytes, parse_size

__all__ = [
    "LEVEL_COVERAGE",
    "LEVEL_NAMES",
    "PT_PAGE_BYTES",
    "SHARE_LEVELS",
    "PtMem",
    "ptmem",
]

PT_PAGE_BYTES = 4096
LEVEL_NAMES = {1: "pt", 2: "pd", 3: "pdpt", 4: "pml4", 5: "pml5"}
LEVEL_COVERAGE = {1: 1 << 21, 2: 1 << 30, 3: 1 << 39, 4: 1 << 48, 5: 1 << 57}  # bytes one table maps
PAGE_LEAF_LEVEL = {"4K": 1, "2M": 2, "1G": 3}  # lowest level of tables that exists
SHARE_LEVELS = {"p4d": 3, "pud": 2, "pmd": 1}  # highest level whose tables are shared


@dataclass(frozen=True)
class PtMem:
    """Page-table pages for the region, per level name ("pt", "pd", "pdpt", "pml4"[, "pml5"]), summed
    over all processes (and the host mm, if any), for the private and the shared configuration."""

    n_processes: int
    region_bytes: int
    page_size: str
    share_level: str
    levels: int
    host_mm: bool
    private_pages: dict[str, int] = field(default_factory=dict)
    shared_pages: dict[str, int] = field(default_factory=dict)

    @property
    def private_bytes(self) -> dict[str, int]:
        return {k: v * PT_PAGE_BYTES for k, v in self.private_pages.items()}

    @property
    def shared_bytes(self) -> dict[str, int]:
        return {k: v * PT_PAGE_BYTES for k, v in self.shared_pages.items()}

    @property
    def private_total_bytes(self) -> int:
        return sum(self.private_pages.values()) * PT_PAGE_BYTES

    @property
    def shared_total_bytes(self) -> int:
        return sum(self.shared_pages.values()) * PT_PAGE_BYTES

    @property
    def saved_bytes(self) -> int:
        return self.private_total_bytes - self.shared_total_bytes

    def as_dict(self) -> dict:
        """Plain JSON-able dict (for results files and the CLI)."""
        return {
            "n_processes": self.n_processes,
            "region_bytes": self.region_bytes,
            "page_size": self.page_size,
            "share_level": self.share_level,
            "levels": self.levels,
            "host_mm": self.host_mm,
            "private": {"pages": dict(self.private_pages), "bytes": self.private_bytes},
            "shared": {"pages": dict(self.shared_pages), "bytes": self.shared_bytes},
            "private_total_bytes": self.private_total_bytes,
            "shared_total_bytes": self.shared_total_bytes,
            "saved_bytes": self.saved_bytes,
        }

    def table(self) -> str:
        """A small text table, one row per level, top level first."""
        head = f"{'level':<6}{'private pages':>16}{'private':>14}{'shared pages':>16}{'shared':>14}"
        rows = [
            f"{name:<6}{self.private_pages[name]:>16,}{format_bytes(self.private_bytes[name]):>14}"
            f"{self.shared_pages[name]:>16,}{format_bytes(self.shared_bytes[name]):>14}"
            for name in reversed(list(self.private_pages))
        ]
        total = (
            f"{'total':<6}{sum(self.private_pages.values()):>16,}{format_bytes(self.private_total_bytes):>14}"
            f"{sum(self.shared_pages.values()):>16,}{format_bytes(self.shared_total_bytes):>14}"
        )
        return "\n".join([head, *rows, total])


def ptmem(
    n_processes: int,
    region_bytes: int | str,
    page_size: str = "4K",
    share_level: str = "p4d",
    levels: int = 4,
    host_mm: bool | None = None,
) -> PtMem:
    """Page-table pages and bytes per level for `n_processes` mapping one `region_bytes` region
    (512 GiB aligned), with private page tables and with tables shared at `share_level`."""
    if isinstance(n_processes, bool) or not isinstance(n_processes, int) or n_processes < 1:
        raise ValueError(f"n_processes must be a positive integer, got {n_processes!r}")
    region = parse_size(region_bytes)
    if region < 1:
        raise ValueError(f"region_bytes must be positive, got {region_bytes!r}")
    if page_size not in PAGE_LEAF_LEVEL:
        raise ValueError(f"page_size must be one of {sorted(PAGE_LEAF_LEVEL)}, got {page_size!r}")
    if share_level not in SHARE_LEVELS:
        raise ValueError(f"share_level must be one of {sorted(SHARE_LEVELS)}, got {share_level!r}")
    if levels not in (4, 5):
        raise ValueError(f"levels must be 4 or 5 (LA57), got {levels!r}")
    if region > LEVEL_COVERAGE[levels]:
        raise ValueError(
            f"a {format_bytes(region)} region does not fit the {format_bytes(LEVEL_COVERAGE[levels])} "
            f"that {levels}-level paging maps"
        )
    if host_mm is None:
        host_mm = True

    lowest = PAGE_LEAF_LEVEL[page_size]
    shared_top = SHARE_LEVELS[share_level]
    if lowest > shared_top:
        host_mm = False  # nothing below the sharing level: no shared tables, no owner mm
    private_pages: dict[str, int] = {}
    shared_pages: dict[str, int] = {}
    for level in range(1, levels + 1):
        name = LEVEL_NAMES[level]
        if level < lowest:
            tables = 0
        elif level == levels:
            tables = 1  # the root page
        else:
            tables = math.ceil(region / LEVEL_COVERAGE[level])
        private_pages[name] = n_processes * tables
        if level <= shared_top:
            shared_pages[name] = tables
        else:
            shared_pages[name] = (n_processes + (1 if host_mm else 0)) * tables
    return PtMem(
        n_processes=n_processes,
        region_bytes=region,
        page_size=page_size,
        share_level=share_level,
        levels=levels,
        host_mm=bool(host_mm),
        private_pages=private_pages,
        shared_pages=shared_pages,
    )
