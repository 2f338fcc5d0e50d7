"""Repeatability: the values two calibrations MEASURED (the keys their profiles mark `# MEASURED`), side by
side with their difference in percent. `mshare-hw calibrate --compare a.toml b.toml` prints it."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pandas as pd

REPEATABLE_PCT = 10.0  # two calibrations on the same idle machine should agree this closely


def measured_values(text: str) -> dict[str, float | bool]:
    """The `# MEASURED` keys of a profile's text, dotted (an array-of-tables entry by its index:
    `tlb.l1d[0].entries`)."""
    out: dict[str, float | bool] = {}
    table, seen = "", {}
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("[["):
            name = s.strip("[] ")
            seen[name] = seen.get(name, -1) + 1
            table = f"{name}[{seen[name]}]"
        elif s.startswith("["):
            table = s.strip("[] ")
        elif "=" in s and not s.startswith("#") and "# MEASURED" in s:
            key, _, rest = s.partition("=")
            value = tomllib.loads(f"v = {rest.split('#', 1)[0].strip()}")["v"]
            out[f"{table}.{key.strip()}" if table else key.strip()] = value
    return out


def _diff_pct(a, b) -> float:
    if a is None or b is None:
        return math.nan
    if isinstance(a, bool) or isinstance(b, bool):
        return 0.0 if a == b else 100.0
    if a == b:
        return 0.0
    return 100.0 * abs(b - a) / max(abs(a), abs(b))


def compare_profiles(a: str | Path, b: str | Path) -> pd.DataFrame:
    """key, a, b, diff_pct (|b - a| over the larger, in %; 100 for a flag that differs; NaN where only one
    profile measured the key) and `repeatable` (diff_pct <= REPEATABLE_PCT), keys in a's order then b's."""
    va, vb = measured_values(Path(a).read_text()), measured_values(Path(b).read_text())
    keys = list(va) + [k for k in vb if k not in va]
    rows = [(k, va.get(k), vb.get(k), _diff_pct(va.get(k), vb.get(k))) for k in keys]
    df = pd.DataFrame(rows, columns=["key", "a", "b", "diff_pct"])
    df["repeatable"] = df["diff_pct"] <= REPEATABLE_PCT
    return df.round({"diff_pct": 1})
