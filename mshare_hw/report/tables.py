"""The report's tables: private vs mshare pairs, invalidation events, secondary MMUs."""

from __future__ import annotations

import pandas as pd

HEADLINE_COLUMNS = (
    "uarch", "pt_config", "strategy", "n_cpus", "n_processes", "accesses", "page_faults", "pt_bytes", "walks",
    "walk_cycles", "walk_reads_dram", "cycles", "events_fired", "ipis_sent", "shootdown_cycles_initiator",
    "shootdown_cycles_responder", "collateral_entries_flushed", "stale_translations",
)  # fmt: skip
# the columns that make two runs "the same configuration" (sleep_every_accesses: files before it lack it)
PAIR_KEYS = (
    "uarch", "n_cpus", "n_processes", "accesses", "seed", "sleep_every_accesses", "threads_per_process",
    "pool_page_size",
)  # fmt: skip
# secondary MMUs: the notifier work per event (column, decimals), then the device counts
NOTIFIER_PER_EVENT = (
    ("iotlb_invalidations", 2),
    ("iotlb_invalidation_cycles", 1),
    ("mirror_invalidations", 2),
    ("mirror_invalidation_cycles", 1),
)
SECONDARY_COUNTS = (
    "device_accesses",
    "iotlb_misses",
    "device_faults",
    "device_stale_translations",
    "stale_translations",
)
COMPARE_METRICS = (
    ("page_faults", "page faults"),
    ("pt_bytes", "page-table bytes"),
    ("walks", "page walks"),
    ("walk_cycles", "walk cycles"),
    ("walk_reads_dram", "DRAM walk reads"),
    ("cycles", "cycles"),
)


def headline(df: pd.DataFrame) -> pd.DataFrame:
    return df[[c for c in HEADLINE_COLUMNS if c in df.columns]]


def event_free(df: pd.DataFrame) -> pd.DataFrame:
    """Runs without invalidation events (the `none` rows), or every run if the file has no such rows."""
    free = df[df["strategy"] == "none"]
    return free if len(free) else df


def _pair_keys(df: pd.DataFrame) -> list[str]:
    return [k for k in PAIR_KEYS if k in df.columns]


def _sleepy(df: pd.DataFrame) -> bool:
    """Whether some runs have sleeping clients (then the tables say which)."""
    return "sleep_every_accesses" in df.columns and bool((df["sleep_every_accesses"] > 0).any())


def pairs(df: pd.DataFrame) -> list[tuple[pd.Series, pd.Series]]:
    """(private, mshare) runs of one configuration, both without events when the file has such runs."""
    base = event_free(df)
    out = []
    for _, m in base[base["pt_config"] == "mshare"].iterrows():
        same = base[(base["pt_config"] == "private")]
        for k in _pair_keys(base):
            same = same[same[k] == m[k]]
        if len(same):
            out.append((same.iloc[0], m))
    return out


def baseline(df: pd.DataFrame, r) -> pd.Series | None:
    """The run of the same configuration without events."""
    same = df[(df["strategy"] == "none") & (df["pt_config"] == r.pt_config)]
    for k in _pair_keys(df):
        same = same[same[k] == r[k]]
    return same.iloc[0] if len(same) else None


def comparison_table(pairs) -> pd.DataFrame:
    rows = []
    sleepy = any(int(m.get("sleep_every_accesses", 0)) for _, m in pairs)
    threaded = any(int(m.get("threads_per_process", 1)) > 1 for _, m in pairs)
    pools = any(str(m.get("pool_page_size", "")) not in ("", "4K") for _, m in pairs)
    for p, m in pairs:
        row = {"uarch": p.uarch, "n_cpus": int(p.n_cpus), "n_processes": int(p.n_processes)}
        if pools:  # the default experiment's 4 KiB and 2 MiB pools
            row["pool_page_size"] = m.pool_page_size
        if sleepy:
            row["sleep_every_accesses"] = int(m.sleep_every_accesses)
        if threaded:
            row["threads_per_process"] = int(m.threads_per_process)
        if m.share_level != "p4d":
            row["share_level"] = m.share_level
        for key, _ in COMPARE_METRICS:
            row[f"{key}_private"] = int(p[key])
            row[f"{key}_mshare"] = int(m[key])
            row[f"{key}_change_%"] = round(100.0 * (m[key] - p[key]) / p[key], 1) if p[key] else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _per_event_rows(ev: pd.DataFrame, row) -> pd.DataFrame:
    """One row per run with events: `row(run, events_fired)`."""
    return pd.DataFrame([row(r, int(r.events_fired)) for _, r in ev.iterrows()])


def shootdown_table(df: pd.DataFrame) -> pd.DataFrame:
    ev = df[df["events_fired"] > 0]
    # runs that differ only in these would otherwise look identical
    extra = [c for c in ("detach_flush", "notifier_policy", "seed") if c in ev.columns and ev[c].nunique() > 1]
    if _sleepy(df):
        extra.append("sleep_every_accesses")
    if "threads_per_process" in df.columns and df["threads_per_process"].nunique() > 1:
        extra.append("threads_per_process")

    def row(r, n: int) -> dict:
        base = baseline(df, r)
        return {
            "uarch": r.uarch,
            "n_cpus": int(r.n_cpus),
            "n_sharers": int(r.n_sharers),
            "n_processes": int(r.n_processes),
            "pt_config": r.pt_config,
            "strategy": r.strategy,
            **{k: r[k] for k in extra},
            "events_fired": n,
            "ipis_per_event": round(r.ipis_sent / n, 2),
            "initiator_cycles_per_event": round(r.shootdown_cycles_initiator / n, 1),
            "responder_cycles_per_event": round(r.shootdown_cycles_responder / n, 1),
            "collateral_entries_flushed": int(r.collateral_entries_flushed),
            "bystander_stlb_misses": int(r.bystander_stlb_misses),
            "bystander_stlb_misses_without_events": int(base.bystander_stlb_misses) if base is not None else -1,
            "bystander_walk_cycles": int(r.bystander_walk_cycles),
            "bystander_walk_cycles_without_events": int(base.bystander_walk_cycles) if base is not None else -1,
            "stale_translations": int(r.stale_translations),
        }

    return _per_event_rows(ev, row)


def secondary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Runs with secondary MMUs and events: the notifier work per event, its cost, and the devices' safety."""
    if "devices" not in df.columns:
        return pd.DataFrame()

    def row(r, n: int) -> dict:
        out = {k: r[k] for k in ("uarch", "pt_config", "strategy", "notifier_policy")} | {"events_fired": n}
        for key, digits in NOTIFIER_PER_EVENT:
            out[f"{key}_per_event"] = round(r[key] / n, digits)
        out["initiator_cycles_per_event"] = round(r.shootdown_cycles_initiator / n, 1)
        return out | {k: int(r[k]) for k in SECONDARY_COUNTS}

    return _per_event_rows(df[(df["devices"] > 0) & (df["events_fired"] > 0)], row)
