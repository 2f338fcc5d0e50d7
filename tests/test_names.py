"""The name lists that cross into C (mshare_hw.names, mshare_hw.counters) equal the Cython engine's C enums:
member PREFIX + NAME.upper() for each name, in order, numbered from 0."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mshare_hw import names
from mshare_hw.counters import COUNTERS

KERNELS = Path(__file__).resolve().parents[1] / "kernels"

# (list, prefix of its enum's members): one line per list
C_ENUMS = [
    (COUNTERS, "C_"),
    (names.STRATEGIES, "S_"),
    (names.DETACH_FLUSHES, "DF_"),
    (names.EVENT_KINDS, "EK_"),
    (names.KERNEL_COSTS, "KC_"),
    (names.ACCESS_KINDS, "AK_"),
    (names.SCHEDULERS, "SCHED_"),
    (names.TIMING_MODES, "TM_"),
    (names.REPLACEMENT_POLICIES, "RP_"),
    (names.REPLACEMENT_STREAMS, "RS_"),
    (names.VIRTUALIZATION_MODES, "VIRT_"),
    (names.PT_CONFIGS, "PTC_"),
]


def enums() -> list[list[tuple[str, int]]]:
    """Every `cdef enum:` block of the kernels' .pxi files: its (member, value) pairs in order."""
    out = []
    for path in sorted(KERNELS.glob("*.pxi")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if not line.startswith("cdef enum"):
                continue
            members, value = [], 0
            for body in lines[i + 1 :]:
                m = re.match(r"\s+([A-Z][A-Z0-9_]*)\s*(?:=\s*(-?\d+))?\s*(?:#.*)?$", body)
                if not m:
                    break
                value = int(m.group(2)) if m.group(2) is not None else value
                members.append((m.group(1), value))
                value += 1
            out.append(members)
    return out


@pytest.mark.parametrize("names_list, prefix", C_ENUMS, ids=[p for _, p in C_ENUMS])
def test_c_enum_equals_the_name_list(names_list, prefix):
    found = [m for m in enums() if any(name.startswith(prefix) for name, _ in m)]
    assert len(found) == 1, f"expected one enum with {prefix}* members, found {len(found)}"
    members = [(name, value) for name, value in found[0] if name.startswith(prefix)]
    assert members == [(prefix + n.upper(), i) for i, n in enumerate(names_list)]


def test_codes_are_indices():
    assert names.codes(names.STRATEGIES)["flush_all"] == 1
    assert list(names.codes(names.EVENT_KINDS).values()) == list(range(len(names.EVENT_KINDS)))
