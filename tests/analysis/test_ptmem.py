"""Analytic page-table memory: the mshare cover-letter case and hand-computed small cases."""

from __future__ import annotations

import pytest

from mshare_hw.analysis.ptmem import ptmem
from mshare_hw.units import format_bytes

GiB = 1 << 30
MiB = 1 << 20
PAGE = 4096


def test_cover_letter_case_1500_clients_300_gib():
    r = ptmem(1500, 300 * GiB)
    # 300 GiB / 4 KiB PTEs x 8 B x 1500 processes = 878.9 GiB of last-level tables
    assert r.private_bytes["pt"] == 1500 * 300 * 2**30 // 4096 * 8
    assert format_bytes(r.private_bytes["pt"]) == "878.9 GiB"
    # mshare: one copy of the PTE pages
    assert r.shared_bytes["pt"] == 600 * MiB
    assert format_bytes(r.shared_bytes["pt"]) == "600 MiB"
    # upper levels: 300 PD pages, 1 PDPT page (shared); one PML4 per process + the host's
    assert r.private_pages == {"pt": 1500 * 153600, "pd": 1500 * 300, "pdpt": 1500, "pml4": 1500}
    assert r.shared_pages == {"pt": 153600, "pd": 300, "pdpt": 1, "pml4": 1501}
    assert r.private_total_bytes == sum(r.private_bytes.values())
    assert r.saved_bytes == r.private_total_bytes - r.shared_total_bytes
    assert r.as_dict()["shared"]["bytes"]["pt"] == 600 * MiB
    assert "pml4" in r.table()


def test_string_region_size_is_parsed():
    assert ptmem(1500, "300GB").private_bytes == ptmem(1500, 300 * GiB).private_bytes


# 3 processes, 3 GiB + 4 KiB region, 4K pages: per copy pt=1537, pd=4, pdpt=1, pml4=1
PRIVATE_4K = {"pt": 3 * 1537, "pd": 12, "pdpt": 3, "pml4": 3}
# 10 processes, 600 GiB (two 512 GiB slots), 2M pages: per copy pd=600, pdpt=2, pml4=1
PRIVATE_2M = {"pt": 0, "pd": 6000, "pdpt": 20, "pml4": 10}
# 4 processes, 1 TiB + 1 GiB, 1G pages: per copy pdpt=3, pml4=1
PRIVATE_1G = {"pt": 0, "pd": 0, "pdpt": 12, "pml4": 4}


@pytest.mark.parametrize(
    ("n", "region", "page_size", "share_level", "private", "shared"),
    [
        (3, 3 * GiB + 4096, "4K", "p4d", PRIVATE_4K, {"pt": 1537, "pd": 4, "pdpt": 1, "pml4": 4}),
        # levels above the shared one: one copy per process plus one for the host (owner) mm
        (3, 3 * GiB + 4096, "4K", "pud", PRIVATE_4K, {"pt": 1537, "pd": 4, "pdpt": 4, "pml4": 4}),
        (3, 3 * GiB + 4096, "4K", "pmd", PRIVATE_4K, {"pt": 1537, "pd": 16, "pdpt": 4, "pml4": 4}),
        (10, 600 * GiB, "2M", "p4d", PRIVATE_2M, {"pt": 0, "pd": 600, "pdpt": 2, "pml4": 11}),
        (10, 600 * GiB, "2M", "pud", PRIVATE_2M, {"pt": 0, "pd": 600, "pdpt": 22, "pml4": 11}),
        # nothing below a PMD to share: no host
        (10, 600 * GiB, "2M", "pmd", PRIVATE_2M, {"pt": 0, "pd": 6000, "pdpt": 20, "pml4": 10}),
        (4, (1 << 40) + GiB, "1G", "p4d", PRIVATE_1G, {"pt": 0, "pd": 0, "pdpt": 3, "pml4": 5}),
        (4, (1 << 40) + GiB, "1G", "pud", PRIVATE_1G, {"pt": 0, "pd": 0, "pdpt": 12, "pml4": 4}),
        (4, (1 << 40) + GiB, "1G", "pmd", PRIVATE_1G, {"pt": 0, "pd": 0, "pdpt": 12, "pml4": 4}),
    ],
)
def test_share_levels_per_page_size(n, region, page_size, share_level, private, shared):
    r = ptmem(n, region, page_size, share_level)
    assert r.private_pages == private
    assert r.shared_pages == shared
    assert r.shared_bytes == {k: v * PAGE for k, v in shared.items()}


def test_five_level_paging_and_host_switch():
    r = ptmem(2, 4 * MiB, "4K", "p4d", levels=5)
    # per copy: 2 PT, 1 PD, 1 PDPT, 1 P4D ("pml4"), 1 PML5
    assert r.private_pages == {"pt": 4, "pd": 2, "pdpt": 2, "pml4": 2, "pml5": 2}
    assert r.shared_pages == {"pt": 2, "pd": 1, "pdpt": 1, "pml4": 3, "pml5": 3}
    no_host = ptmem(2, 4 * MiB, "4K", "p4d", levels=5, host_mm=False)
    assert no_host.shared_pages == {"pt": 2, "pd": 1, "pdpt": 1, "pml4": 2, "pml5": 2}
    with_host = ptmem(2, 4 * MiB, "4K", "pmd", host_mm=True)
    assert with_host.shared_pages == {"pt": 2, "pd": 3, "pdpt": 3, "pml4": 3}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_processes": 0, "region_bytes": GiB},
        {"n_processes": 2, "region_bytes": 0},
        {"n_processes": 2, "region_bytes": GiB, "page_size": "8K"},
        {"n_processes": 2, "region_bytes": GiB, "share_level": "pgd"},
        {"n_processes": 2, "region_bytes": GiB, "levels": 3},
        {"n_processes": 2, "region_bytes": 1 << 49},  # beyond 4-level paging
    ],
)
def test_ptmem_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        ptmem(**kwargs)
