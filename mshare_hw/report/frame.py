"""A results file as the report's table: the summary plus columns read from each run's configuration."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mshare_hw.results.hdf5 import load_attrs, load_configs, load_summary
from mshare_hw.units import PAGE_SIZES, parse_size
from mshare_hw.workload.generators import GENERATORS, default_params

MICRO_GENERATORS = ("uniform", "uniform_stream", "strided", "pointer_chase")


def load_report_frame(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """(summary as stored, summary with the configuration columns, the file's root attributes)."""
    summary = load_summary(path)
    configs = load_configs(path)
    return summary, with_config_columns(summary, configs), load_attrs(path)


def param(cfg: dict, key: str):
    """A workload parameter of a run: as configured, else the generator's default."""
    w = cfg.get("workload", {})
    params = w.get("params", {})
    if key in params:
        return params[key]
    generator = w.get("generator")  # none for a workload manifest
    return default_params(generator).get(key) if generator in GENERATORS else None


def shared_region(cfg: dict) -> tuple[int, str] | None:
    """(bytes, page size) of the region the processes share with mshare, if the generator has one."""
    gen = cfg.get("workload", {}).get("generator")
    try:
        if gen == "database":
            return parse_size(param(cfg, "pool_bytes")), str(param(cfg, "pool_page_size"))
        if gen in MICRO_GENERATORS and param(cfg, "shared"):
            size = param(cfg, "working_set_bytes")
            return (parse_size(size), str(param(cfg, "page_size"))) if size is not None else None
    except (TypeError, ValueError):
        return None
    return None


def chase_pages(cfg: dict) -> int:
    """The working set in pages of a one-load-per-page pointer chase (the TLB-reach loop), else 0."""
    if cfg.get("workload", {}).get("generator") != "pointer_chase":
        return 0
    try:
        page = PAGE_SIZES[str(param(cfg, "page_size"))]
        if parse_size(param(cfg, "element_bytes")) != page:
            return 0
        return parse_size(param(cfg, "working_set_bytes")) // page
    except (KeyError, TypeError, ValueError):
        return 0


def with_config_columns(df: pd.DataFrame, configs: dict[str, dict]) -> pd.DataFrame:
    """Adds n_sharers (processes that map the shared region), events_enabled, region bytes/page size,
    the paging levels, the timing and virtualization modes, host page size and replacement (where the summary
    lacks them) and
    chase_pages (`chase_pages`)."""
    df = df.copy()
    sharers, enabled, region, page = [], [], [], []
    for rid, n in zip(df["run_id"], df["n_processes"]):
        cfg = configs.get(rid, {})
        unrelated = param(cfg, "n_unrelated") if cfg.get("workload", {}).get("generator") == "database" else 0
        sharers.append(int(n) - int(unrelated or 0))
        enabled.append(bool(cfg.get("events", {}).get("enabled", False)))
        r = shared_region(cfg)
        region.append(r[0] if r else 0)
        page.append(r[1] if r else "")
    df["n_sharers"] = sharers
    df["events_enabled"] = enabled
    df["region_bytes"] = region
    df["region_page_size"] = page
    machines = [configs.get(rid, {}).get("machine", {}) for rid in df["run_id"]]
    df["levels"] = [5 if m.get("five_level") else 4 for m in machines]
    later = (("timing", "translation"), ("virtualization", "none"), ("host_page_size", "2M"), ("replacement", "auto"))
    for col, first in later:  # runs before the key: its first value
        if col not in df.columns:
            df[col] = [str(m.get(col, first)) for m in machines]
    if "sleep_every_accesses" not in df.columns:  # files from before sleeping clients: all awake
        df["sleep_every_accesses"] = 0
    df["chase_pages"] = [chase_pages(configs.get(rid, {})) for rid in df["run_id"]]
    return df
