"""`mshare-hw report`: tables (Markdown, CSV) and PNG plots of a results file.

Only the plots the file has data for are drawn:

* ``pt_bytes_vs_processes.png`` — measured page-table memory vs number of processes, private vs
  mshare (when the file has several process counts);
* ``pt_bytes_projection.png`` — the analytic page-table memory of the shared region for 1..2000
  processes (`mshare_hw.analysis.ptmem`), when the region's size can be read from the configuration;
* ``private_vs_mshare.png`` — page faults, walk cycles and DRAM walk reads, private vs mshare, per uarch;
* ``shootdown_cost.png`` — initiator + responder cycles per invalidation event, per strategy, against
  the number of sharers and CPUs;
* ``collateral_damage.png`` — STLB misses and walk cycles of the processes that do not map the shared
  region ("bystanders"), with events relative to the same run without events, per strategy;
* ``stale_translations.png`` — uses of stale translations per strategy (0 = safe);
* ``asid_recycles.png`` — PCID/ASID slot recycles vs processes per CPU.

Tables: ``summary.csv`` (every summary column), ``summary.md`` (the headline columns),
``private_vs_mshare.{csv,md}``, ``shootdown.{csv,md}``,
``secondary_mmu.{csv,md}`` (runs with devices); ``report.md`` puts tables and plots together.
Matplotlib draws through its Agg canvas (no display, no global backend switch).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from mshare_hw.analysis.ptmem import ptmem
from mshare_hw.config.errors import ConfigError
from mshare_hw.results.hdf5 import load_summary
from mshare_hw.units import format_bytes, parse_size

__all__ = ["report"]

PT_COLORS = {"private": "#d95f02", "mshare": "#1b9e77"}
STRATEGY_ORDER = ("linux", "host_mm_only", "flush_all", "host_cpumask", "per_sharer", "union_batch", "broadcast")
STRATEGY_LABELS = {
    "linux": "linux: private page tables, each mm flushed (today)",
    "host_mm_only": "host_mm_only: only the host mm flushed",
    "flush_all": "flush_all: flush_tlb_all() (posted series)",
    "host_cpumask": "host_cpumask: IPI CPUs that ran a sharer",
    "per_sharer": "per_sharer: flush each sharer mm in turn",
    "union_batch": "union_batch: one IPI round to all sharers' CPUs",
    "broadcast": "broadcast: INVLPGB + TLBSYNC (AMD only)",
}
STRATEGY_COLORS = {
    "linux": "#d95f02",
    "host_mm_only": "#999999",
    "flush_all": "#e7298a",
    "host_cpumask": "#e6ab02",
    "per_sharer": "#7570b3",
    "union_batch": "#1b9e77",
    "broadcast": "#66a61e",
}
HEADLINE_COLUMNS = (
    "uarch", "pt_config", "strategy", "n_cpus", "n_processes", "accesses", "page_faults", "pt_bytes", "walks",
    "walk_cycles", "walk_reads_dram", "cycles", "events_fired", "ipis_sent", "shootdown_cycles_initiator",
    "shootdown_cycles_responder", "collateral_entries_flushed", "stale_translations",
)  # fmt: skip
DPI = 110
MIB = 1 << 20


# --------------------------------------------------------------------------------------------------
# reading


def _configs(path: Path) -> dict[str, dict]:
    with h5py.File(path, "r") as f:
        return {rid: json.loads(g.attrs["config"]) for rid, g in f["runs"].items()}


def _generator_defaults(generator: str) -> dict:
    from mshare_hw.workload.generators import GENERATORS, default_params

    return default_params(generator) if generator in GENERATORS else {}


def _param(cfg: dict, key: str):
    w = cfg.get("workload", {})
    params = w.get("params", {})
    return params[key] if key in params else _generator_defaults(w.get("generator", "")).get(key)


def _shared_region(cfg: dict) -> tuple[int, str] | None:
    """(bytes, page size) of the region the processes share with mshare, if the generator has one."""
    gen = cfg.get("workload", {}).get("generator")
    try:
        if gen == "database":
            return parse_size(_param(cfg, "pool_bytes")), str(_param(cfg, "pool_page_size"))
        if gen in ("uniform", "uniform_stream", "strided", "pointer_chase") and _param(cfg, "shared"):
            size = _param(cfg, "working_set_bytes")
            return (parse_size(size), str(_param(cfg, "page_size"))) if size is not None else None
    except (TypeError, ValueError):
        return None
    return None


def _with_config_columns(df: pd.DataFrame, configs: dict[str, dict]) -> pd.DataFrame:
    """Adds n_sharers (processes that map the shared region), events_enabled, region bytes/page size."""
    df = df.copy()
    sharers, enabled, region, page = [], [], [], []
    for rid, n in zip(df["run_id"], df["n_processes"]):
        cfg = configs.get(rid, {})
        unrelated = _param(cfg, "n_unrelated") if cfg.get("workload", {}).get("generator") == "database" else 0
        sharers.append(int(n) - int(unrelated or 0))
        enabled.append(bool(cfg.get("events", {}).get("enabled", False)))
        r = _shared_region(cfg)
        region.append(r[0] if r else 0)
        page.append(r[1] if r else "")
    df["n_sharers"] = sharers
    df["events_enabled"] = enabled
    df["region_bytes"] = region
    df["region_page_size"] = page
    df["levels"] = [5 if configs.get(rid, {}).get("machine", {}).get("five_level") else 4 for rid in df["run_id"]]
    return df


# --------------------------------------------------------------------------------------------------
# formatting


def _si(v: float) -> str:
    a = abs(v)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            x = v / div
            return f"{x:.0f}{suffix}" if abs(x) >= 100 or x == int(x) else f"{x:.1f}{suffix}"
    return f"{v:.0f}" if v == int(v) else f"{v:.1f}"


def _si_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: _si(v))


def _plain_formatter():
    """1, 10, 100, 1000, 0.1: log-axis ticks as plain numbers."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:,.10g}")


def _uarchs(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["uarch"]))


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _config_label(row, n_processes_too: bool = True) -> str:
    unrelated = int(row.n_processes) - int(row.n_sharers)
    if unrelated:
        who = f"{row.n_sharers} sharers + {unrelated} unrelated"
    else:
        who = f"{row.n_processes} processes"
    return f"{who}\n{row.n_cpus} CPUs" if n_processes_too else f"{row.n_cpus} CPUs"


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _percent(new: float, old: float) -> str:
    if not old:
        return ""
    return f"{100.0 * (new - old) / old:+.0f}%"


# --------------------------------------------------------------------------------------------------
# tables


def _markdown(df: pd.DataFrame) -> str:
    shown = df.copy()
    for c in shown.columns:
        if pd.api.types.is_integer_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: f"{v:,}")
        elif pd.api.types.is_float_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: f"{v:,.1f}" if np.isfinite(v) else "")
    return shown.to_markdown(index=False, disable_numparse=True)


def _event_free(df: pd.DataFrame) -> pd.DataFrame:
    """Runs without invalidation events (the `none` rows), or every run if the file has no such rows."""
    free = df[df["strategy"] == "none"]
    return free if len(free) else df


PAIR_KEYS = ("uarch", "n_cpus", "n_processes", "accesses", "seed")


def _pairs(df: pd.DataFrame) -> list[tuple[pd.Series, pd.Series]]:
    """(private, mshare) runs of one configuration, both without events when the file has such runs."""
    base = _event_free(df)
    out = []
    for _, m in base[base["pt_config"] == "mshare"].iterrows():
        same = base[(base["pt_config"] == "private")]
        for k in PAIR_KEYS:
            same = same[same[k] == m[k]]
        if len(same):
            out.append((same.iloc[0], m))
    return out


COMPARE_METRICS = (
    ("page_faults", "page faults"),
    ("pt_bytes", "page-table bytes"),
    ("walks", "page walks"),
    ("walk_cycles", "walk cycles"),
    ("walk_reads_dram", "DRAM walk reads"),
    ("cycles", "cycles"),
)


def _comparison_table(pairs) -> pd.DataFrame:
    rows = []
    for p, m in pairs:
        row = {"uarch": p.uarch, "n_cpus": int(p.n_cpus), "n_processes": int(p.n_processes)}
        if m.share_level != "p4d":
            row["share_level"] = m.share_level
        for key, _ in COMPARE_METRICS:
            row[f"{key}_private"] = int(p[key])
            row[f"{key}_mshare"] = int(m[key])
            row[f"{key}_change_%"] = round(100.0 * (m[key] - p[key]) / p[key], 1) if p[key] else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _shootdown_table(df: pd.DataFrame) -> pd.DataFrame:
    ev = df[df["events_fired"] > 0]
    rows = []
    for _, r in ev.iterrows():
        n = int(r.events_fired)
        base = _baseline(df, r)
        rows.append(
            {
                "uarch": r.uarch,
                "n_cpus": int(r.n_cpus),
                "n_sharers": int(r.n_sharers),
                "n_processes": int(r.n_processes),
                "pt_config": r.pt_config,
                "strategy": r.strategy,
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
        )
    return pd.DataFrame(rows)


def _secondary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Runs with secondary MMUs and events: the notifier work per event, its cost, and the devices' safety."""
    if "devices" not in df.columns:
        return pd.DataFrame()
    ev = df[(df["devices"] > 0) & (df["events_fired"] > 0)]
    rows = []
    for _, r in ev.iterrows():
        n = int(r.events_fired)
        rows.append(
            {
                "uarch": r.uarch,
                "pt_config": r.pt_config,
                "strategy": r.strategy,
                "notifier_policy": r.notifier_policy,
                "events_fired": n,
                "iotlb_invalidations_per_event": round(r.iotlb_invalidations / n, 2),
                "iotlb_invalidation_cycles_per_event": round(r.iotlb_invalidation_cycles / n, 1),
                "mirror_invalidations_per_event": round(r.mirror_invalidations / n, 2),
                "mirror_invalidation_cycles_per_event": round(r.mirror_invalidation_cycles / n, 1),
                "initiator_cycles_per_event": round(r.shootdown_cycles_initiator / n, 1),
                "device_accesses": int(r.device_accesses),
                "iotlb_misses": int(r.iotlb_misses),
                "device_faults": int(r.device_faults),
                "device_stale_translations": int(r.device_stale_translations),
                "stale_translations": int(r.stale_translations),
            }
        )
    return pd.DataFrame(rows)


def _baseline(df: pd.DataFrame, r) -> pd.Series | None:
    """The run of the same configuration without events."""
    same = df[(df["strategy"] == "none") & (df["pt_config"] == r.pt_config)]
    for k in ("uarch", "n_cpus", "n_processes", "accesses", "seed"):
        same = same[same[k] == r[k]]
    return same.iloc[0] if len(same) else None


# --------------------------------------------------------------------------------------------------
# plots


def _plot_pt_vs_processes(df: pd.DataFrame, path: Path) -> Path | None:
    base = _event_free(df)
    if base["n_processes"].nunique() < 2:
        return None
    by_uarch = base.groupby(["pt_config", "n_processes"])["pt_bytes"].nunique().max() > 1
    fig = _new_figure(7.5, 4.8)
    ax = fig.add_subplot()
    groups = ["pt_config", "uarch"] if by_uarch else ["pt_config"]
    for key, g in base.groupby(groups, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        series = g.groupby("n_processes")["pt_bytes"].mean() / MIB
        label = f"{key[0]} page tables" + (f" ({key[1]})" if by_uarch else "")
        ax.plot(series.index, series.values, marker="o", color=PT_COLORS.get(key[0]), label=label)
        for x, y in zip(series.index, series.values):
            ax.annotate(
                format_bytes(y * MIB), (x, y), textcoords="offset points", xytext=(7, 0), va="center", fontsize=9
            )
    ax.set_xlabel("processes in the workload")
    ax.set_ylabel("page-table memory, all levels (MiB)")
    ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.1)
    xs = sorted(base["n_processes"].unique())
    ticks = []
    for n in xs:
        sh = base[base["n_processes"] == n]["n_sharers"].iloc[0]
        ticks.append(f"{n}" if sh == n else f"{n}\n({sh} sharing + {n - sh} unrelated)")
    ax.set_xticks(xs, ticks)
    span = max(xs) - min(xs)
    ax.set_xlim(min(xs) - 0.1 * span, max(xs) + 0.3 * span)
    same = " (identical on each)" if not by_uarch and base["uarch"].nunique() > 1 else ""
    ax.set_title(
        f"Measured page-table memory vs processes\n{_and(_uarchs(base))}{same}",
        fontsize=11,
    )
    ax.text(
        0.99, 0.02, "all page-table pages of all processes\n(shared region, heaps, text; host mm included)",
        transform=ax.transAxes, ha="right", va="bottom", fontsize=8, color="#555555",
    )  # fmt: skip
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return _save(fig, path)


SHARED_NAMES = {
    "p4d": "mshare: one shared copy of the PUD, PMD and PTE pages",
    "pud": "shared PMD and PTE pages (share_level pud)",
    "pmd": "shared PTE pages (share_level pmd)",
}


def _page_label(page: str) -> str:
    return {"4K": "4 KiB", "2M": "2 MiB", "1G": "1 GiB"}.get(page, page)


def _plot_projection(df: pd.DataFrame, path: Path) -> Path | None:
    regions = df[df["region_bytes"] > 0][["region_bytes", "region_page_size", "levels"]].drop_duplicates()
    if regions.empty or len(regions) > 3:
        return None
    ms = df[df["pt_config"] == "mshare"]
    share_level = ms["share_level"].iloc[0] if len(ms) else "p4d"
    ns = np.unique(np.round(np.logspace(0, math.log10(2000), 60)).astype(int))
    fig = _new_figure(7.5, 5.0)
    ax = fig.add_subplot()
    styles = ("-", "--", ":")
    shared_name = SHARED_NAMES.get(share_level, f"shared at the {share_level} level")
    for (_, reg), style in zip(regions.iterrows(), styles):
        size, page, levels = int(reg.region_bytes), reg.region_page_size, int(reg.levels)
        priv = np.array([ptmem(int(n), size, page, share_level, levels).private_total_bytes for n in ns]) / MIB
        shared = np.array([ptmem(int(n), size, page, share_level, levels).shared_total_bytes for n in ns]) / MIB
        tag = f", {format_bytes(size)} region" if len(regions) > 1 else ""
        ax.plot(ns, priv, style, color=PT_COLORS["private"], label=f"private page tables{tag}")
        ax.plot(ns, shared, style, color=PT_COLORS["mshare"], label=f"{shared_name}{tag}")
        for ys in (priv, shared):
            ax.annotate(
                format_bytes(ys[-1] * MIB), (ns[-1], ys[-1]), textcoords="offset points", xytext=(4, 0),
                va="center", fontsize=9,
            )  # fmt: skip
    for n in sorted(df["n_sharers"].unique()):
        ax.axvline(n, color="black", alpha=0.25, lw=1, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(1, 2000 * 4)
    ax.set_xlabel("processes mapping the shared region (log scale)")
    ax.set_ylabel("page-table memory for the region (MiB, log scale)")
    ax.yaxis.set_major_formatter(_plain_formatter())
    ax.xaxis.set_major_formatter(_plain_formatter())
    reg0 = regions.iloc[0]
    what = (
        f"one {format_bytes(int(reg0.region_bytes))} region of {_page_label(reg0.region_page_size)} pages"
        if len(regions) == 1
        else "the shared regions of this file"
    )
    ax.set_title(f"Page-table memory projected to 1-2000 processes: {what}", fontsize=11)
    ax.legend(loc="upper left")
    ax.text(
        0.015, 0.84,
        "analytic model (mshare-hw ptmem): the region's page-table\npages only, the same on every uarch; "
        "dotted lines: the\nnumbers of sharing processes simulated in this file",
        transform=ax.transAxes, ha="left", va="top", fontsize=8, color="#555555",
    )  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


PVM_METRICS = (
    ("page_faults", "page faults", "count"),
    ("walk_cycles", "page-walk cycles", "cycles, all CPUs"),
    ("walk_reads_dram", "page-walk reads from DRAM", "count"),
)


def _pvm_bars(ax, pairs, key: str, ticks: list[str]) -> None:
    x = np.arange(len(pairs))
    w = 0.38
    priv = np.array([p[key] for p, _ in pairs], dtype=float)
    msh = np.array([m[key] for _, m in pairs], dtype=float)
    ax.bar(x - w / 2, priv, w, color=PT_COLORS["private"], label="private page tables")
    bars = ax.bar(x + w / 2, msh, w, color=PT_COLORS["mshare"], label="mshare (shared page tables)")
    for b, new, old in zip(bars, msh, priv):
        ax.annotate(
            _percent(new, old), (b.get_x() + b.get_width() / 2, b.get_height()),
            textcoords="offset points", xytext=(0, 2), ha="center", va="bottom", fontsize=9, fontweight="bold",
        )  # fmt: skip
    ax.set_xticks(x, ticks, fontsize=9)
    ax.set_xlim(-0.6, len(pairs) - 0.4)
    ax.yaxis.set_major_formatter(_si_formatter())
    ax.set_ylim(0, max(priv.max(), msh.max()) * 1.15 or 1)
    ax.grid(axis="y", alpha=0.3)


def _pvm_legend(fig, ax) -> None:
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=9)


def _plot_private_vs_mshare(df: pd.DataFrame, path: Path) -> Path | None:
    pairs = _pairs(df)
    if not pairs:
        return None
    uarchs = list(dict.fromkeys(p.uarch for p, _ in pairs))
    events = "runs without invalidation events; " if (df["strategy"] == "none").any() else ""
    note = f"{events}totals over all CPUs and processes; labels: change with mshare"
    if len(pairs) == len(uarchs):  # one configuration per uarch: one row, the uarchs side by side
        fig = _new_figure(max(10.0, 1.6 * len(uarchs) * 3), 4.4)
        axes = fig.subplots(1, len(PVM_METRICS))
        p0 = pairs[0][0]
        for ax, (key, what, unit) in zip(axes, PVM_METRICS):
            _pvm_bars(ax, pairs, key, [p.uarch for p, _ in pairs])
            ax.set_ylabel(f"{what} ({unit})")
            ax.set_title(what)
        _pvm_legend(fig, axes[0])
        who = f"{p0.n_processes} processes on {p0.n_cpus} CPUs"
        fig.suptitle(f"Private vs mshare page tables on {_and(uarchs)}, {who}\n({note})", fontsize=11)
        return _save(fig, path)
    # several configurations: one row per metric, one column per uarch
    fig = _new_figure(max(9.0, len(uarchs) * (1.3 * len(pairs) / len(uarchs) + 1.5)), 3.0 * len(PVM_METRICS) + 1.0)
    axes = fig.subplots(len(PVM_METRICS), len(uarchs), squeeze=False)
    for i, (key, what, unit) in enumerate(PVM_METRICS):
        for j, u in enumerate(uarchs):
            sub = [(p, m) for p, m in pairs if p.uarch == u]
            ax = axes[i][j]
            _pvm_bars(ax, sub, key, [_config_label(p).replace(" + ", "\n+ ") for p, _ in sub])
            ax.set_ylabel(f"{what}\n({unit})")
            ax.set_title(f"{u}: {what}", fontsize=10)
        top = max(ax.get_ylim()[1] for ax in axes[i])
        for ax in axes[i]:  # one scale per metric, so the uarchs compare at a glance
            ax.set_ylim(0, top)
    _pvm_legend(fig, axes[0][0])
    fig.suptitle(f"Private vs mshare page tables on {_and(uarchs)}\n({note})", fontsize=11)
    return _save(fig, path)


def _configs_of(ev: pd.DataFrame) -> list[tuple[int, int, int]]:
    """(n_cpus, n_sharers, n_processes) of the event runs, sorted."""
    return sorted({(int(r.n_cpus), int(r.n_sharers), int(r.n_processes)) for r in ev.itertuples()})


def _strategies(ev: pd.DataFrame) -> list[str]:
    present = set(ev["strategy"])
    return [s for s in STRATEGY_ORDER if s in present] + sorted(present - set(STRATEGY_ORDER))


def _cfg_tick(cfg: tuple[int, int, int]) -> str:
    n_cpus, sharers, procs = cfg
    other = procs - sharers
    return f"{sharers} sharers" + (f"\n+ {other} unrelated" if other else "") + f"\n{n_cpus} CPUs"


def _grouped(ax, ev: pd.DataFrame, value, strategies: list[str], configs, *, hatch_value=None, labels=None) -> None:
    """Bars: one group per configuration, one bar per strategy (one `bar` call per strategy). With
    `hatch_value`, the bar is split: solid up to hatch_value, hatched above. `labels(row)` gives an
    optional (text, colour) written above the bar."""
    w = 0.8 / len(strategies)
    index = {(r.strategy, r.n_cpus, r.n_sharers, r.n_processes): r for r in ev.itertuples(index=False)}
    for j, s in enumerate(strategies):
        xs, vs, los, rows = [], [], [], []
        for i, cfg in enumerate(configs):
            r = index.get((s, *cfg))
            if r is None:
                continue
            xs.append(i - 0.4 + w * (j + 0.5))
            vs.append(float(value(r)))
            los.append(float(hatch_value(r)) if hatch_value is not None else 0.0)
            rows.append(r)
        if not xs:
            continue
        color = STRATEGY_COLORS.get(s, "#444444")
        if hatch_value is not None:
            ax.bar(xs, los, w, color=color, edgecolor="white", linewidth=0.3)
            hi = [v - lo for v, lo in zip(vs, los)]
            ax.bar(xs, hi, w, bottom=los, color=color, alpha=0.45, hatch="///", edgecolor="white", linewidth=0.3)
        else:
            ax.bar(xs, vs, w, color=color, edgecolor="white", linewidth=0.3)
        for x, v, r in zip(xs, vs, rows) if labels is not None else ():
            text, color_text = labels(r)
            if text:
                ax.annotate(
                    text, (x, v), textcoords="offset points", xytext=(0, 2), ha="center", va="bottom",
                    fontsize=7, color=color_text, rotation=90,
                )  # fmt: skip
    ax.set_xticks(range(len(configs)), [_cfg_tick(c) for c in configs], fontsize=9)
    ax.set_xlim(-0.5, len(configs) - 0.5)
    ax.grid(axis="y", alpha=0.3)


def _strategy_legend(fig, strategies: list[str], extra_handles=(), ncol: int = 2):
    from matplotlib.patches import Patch

    handles = [Patch(color=STRATEGY_COLORS.get(s, "#444444"), label=STRATEGY_LABELS.get(s, s)) for s in strategies]
    fig.legend(handles=[*handles, *extra_handles], loc="outside lower center", ncol=ncol, fontsize=8)


def _plot_shootdown(df: pd.DataFrame, path: Path) -> Path | None:
    ev = df[df["events_fired"] > 0]
    if ev.empty:
        return None
    from matplotlib.patches import Patch

    uarchs = _uarchs(ev)
    strategies = _strategies(ev)
    configs = _configs_of(ev)
    fig = _new_figure(max(9.0, 1.6 * len(configs) + 3), 3.6 * len(uarchs) + 1.6)
    axes = np.atleast_1d(fig.subplots(len(uarchs), 1, squeeze=False)[:, 0])
    for ax, u in zip(axes, uarchs):
        sub = ev[ev["uarch"] == u]

        def total(r):
            return (r.shootdown_cycles_initiator + r.shootdown_cycles_responder) / r.events_fired

        def initiator(r):
            return r.shootdown_cycles_initiator / r.events_fired

        def label(r):
            if r.stale_translations > 0:
                return "UNSAFE" if total(r) else "UNSAFE (no flush)", "#b2182b"
            return "", "black"

        _grouped(ax, sub, total, strategies, configs, hatch_value=initiator, labels=label)
        ax.set_ylabel("cycles per invalidation event\n(initiator + all responders)")
        ax.yaxis.set_major_formatter(_si_formatter())
        ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
        ax.set_title(f"{u}: TLB-shootdown cost per invalidation event, by flush strategy")
    extra = [
        Patch(facecolor="#888888", label="solid: initiator CPU's cycles"),
        Patch(facecolor="#888888", alpha=0.45, hatch="///", label="hatched: responder CPUs' cycles (summed)"),
        Patch(facecolor="white", edgecolor="#b2182b", label="UNSAFE: stale translations were used"),
    ]
    _strategy_legend(fig, strategies, extra)
    return _save(fig, path)


def _plot_collateral(df: pd.DataFrame, path: Path) -> Path | None:
    ev = df[(df["events_fired"] > 0) & (df["n_processes"] > df["n_sharers"])]
    if ev.empty:
        return None
    rows = []
    for _, r in ev.iterrows():
        base = _baseline(df, r)
        if base is None or not base.bystander_stlb_misses or not base.bystander_walk_cycles:
            continue
        rows.append(
            r.to_dict()
            | {
                "stlb_ratio": r.bystander_stlb_misses / base.bystander_stlb_misses,
                "walk_ratio": r.bystander_walk_cycles / base.bystander_walk_cycles,
            }
        )
    if not rows:
        return None
    ev = pd.DataFrame(rows)
    who = "the unrelated process" if (ev["n_processes"] - ev["n_sharers"]).max() == 1 else "the unrelated processes"
    uarchs = _uarchs(ev)
    strategies = _strategies(ev)
    configs = _configs_of(ev)
    fig = _new_figure(max(12.0, 3.0 * len(configs) + 2), 3.6 * len(uarchs) + 1.8)
    axes = fig.subplots(len(uarchs), 2, squeeze=False)
    for row_axes, u in zip(axes, uarchs):
        sub = ev[ev["uarch"] == u]
        for ax, key, what in (
            (row_axes[0], "stlb_ratio", "STLB misses"),
            (row_axes[1], "walk_ratio", "page-walk cycles"),
        ):

            def ratio(r, key=key) -> float:
                return getattr(r, key)

            def label(r, key=key) -> tuple[str, str]:
                return (f"{getattr(r, key):.1f}x" if abs(getattr(r, key) - 1) >= 0.05 else "", "black")

            _grouped(ax, sub, ratio, strategies, configs, labels=label)
            ax.axhline(1.0, color="black", ls="--", lw=1)
            ax.set_ylabel(f"{what} of {who.removeprefix('the ')}:\nwith events ÷ without events", fontsize=9)
            ax.set_ylim(0, ax.get_ylim()[1] * 1.2)
            ax.set_title(f"{u}: {what} of {who}", fontsize=10)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    extra = [
        Line2D([], [], color="black", ls="--", label="1x = no collateral damage (as without events)"),
        Patch(color="white", label="unlabelled bars: within 5% of 1x"),
    ]
    _strategy_legend(fig, strategies, extra, ncol=3)
    fig.suptitle(
        f"Collateral damage: how invalidations in the shared region hurt {who}, which does not map it",
        fontsize=11,
    )
    return _save(fig, path)


def _plot_stale(df: pd.DataFrame, path: Path) -> Path | None:
    """A table-like heat map per uarch: strategies down, configurations across, the count in each cell."""
    ev = df[df["events_fired"] > 0]
    if ev.empty:
        return None
    from matplotlib.colors import LinearSegmentedColormap, LogNorm
    from matplotlib.patches import Patch, Rectangle

    uarchs = _uarchs(ev)
    strategies = _strategies(ev)
    configs = _configs_of(ev)
    reds = LinearSegmentedColormap.from_list("stale", ["#fcbba1", "#a50f15"])
    top = max(2.0, float(ev["stale_translations"].max()))
    norm = LogNorm(vmin=1, vmax=top)
    fig = _new_figure(max(9.0, 1.3 * len(configs) * len(uarchs) + 4.0), 0.42 * len(strategies) + 2.6)
    axes = fig.subplots(1, len(uarchs), squeeze=False)[0]
    for k, (ax, u) in enumerate(zip(axes, uarchs)):
        sub = ev[ev["uarch"] == u]
        for i, s_name in enumerate(strategies):
            for j, cfg in enumerate(configs):
                rows = sub[(sub["strategy"] == s_name) & (sub["n_cpus"] == cfg[0]) & (sub["n_sharers"] == cfg[1])]
                rows = rows[rows["n_processes"] == cfg[2]]
                if rows.empty:
                    color, text, tcolor = "#eeeeee", "not run", "#888888"
                else:
                    n = int(rows.iloc[0].stale_translations)
                    if n == 0:
                        color, text, tcolor = "#c7e9c0", "0", "#00441b"
                    else:
                        color, text = reds(norm(n)), f"{n:,}"
                        tcolor = "white" if norm(n) > 0.5 else "black"
                ax.add_patch(Rectangle((j, i), 1, 1, facecolor=color, edgecolor="white", linewidth=2))
                ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=9, color=tcolor)
        ax.set_xlim(0, len(configs))
        ax.set_ylim(len(strategies), 0)
        ax.set_xticks(np.arange(len(configs)) + 0.5, [_cfg_tick(c) for c in configs], fontsize=8)
        names = [STRATEGY_LABELS.get(x, x) for x in strategies]
        ax.set_yticks(np.arange(len(strategies)) + 0.5, names if k == 0 else [""] * len(strategies), fontsize=9)
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_title(u)
    handles = [
        Patch(facecolor="#c7e9c0", label="0: safe (no stale translation used)"),
        Patch(facecolor="#cb181d", label="> 0: UNSAFE (count of accesses that used a stale translation)"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8)
    fig.suptitle(
        "Stale translations: accesses that used a TLB/PWC entry after its PTE had changed, by flush strategy",
        fontsize=11,
    )
    return _save(fig, path)


def _plot_asid(df: pd.DataFrame, path: Path) -> Path | None:
    if not (df["asid_recycles"] > 0).any():
        return None
    d = df.assign(per_cpu=df["n_processes"] / df["n_cpus"])
    d = d.assign(share=100.0 * d["asid_recycles"] / d["context_switches"].where(d["context_switches"] > 0))
    if d["per_cpu"].nunique() < 2:
        return None
    fig = _new_figure(11.0, 4.6)
    axes = fig.subplots(1, 2)
    markers = "osD^v"
    for ax, col, ylabel in (
        (axes[0], "asid_recycles", "ASID (PCID) slot recycles (count, all CPUs)"),
        (axes[1], "share", "context switches that recycle an ASID slot (%)"),
    ):
        for pt, g in d.groupby("pt_config", sort=False):
            curves: dict[tuple, list[str]] = {}  # identical curves of several uarchs are drawn once
            for u, gu in g.groupby("uarch", sort=False):
                s = gu.groupby("per_cpu")[col].mean()
                curves.setdefault((tuple(s.index), tuple(np.round(s.values, 1))), []).append(u)
            for k, ((xs, ys), us) in enumerate(curves.items()):
                ax.plot(
                    xs, ys, marker=markers[k % len(markers)], color=PT_COLORS.get(pt),
                    label=f"{pt} page tables: {_and(us)}" + (" (identical)" if len(us) > 1 else ""),
                )  # fmt: skip
        ax.axvline(6, color="black", ls=":", lw=1, label="6 ASID slots per CPU (Linux)")
        ax.set_xlabel("processes per CPU")
        ax.set_ylabel(ylabel)
        ax.yaxis.set_major_formatter(_si_formatter())
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle(f"PCID/ASID slot recycling vs processes per CPU on {_and(_uarchs(d))}", fontsize=11)
    return _save(fig, path)


# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plot:
    name: str
    draw: object
    caption: str


PLOTS = (
    _Plot("pt_bytes_vs_processes", _plot_pt_vs_processes, "Measured page-table memory vs number of processes."),
    _Plot(
        "pt_bytes_projection",
        _plot_projection,
        "Analytic page-table memory of the shared region for 1 to 2000 processes, private vs shared.",
    ),
    _Plot(
        "private_vs_mshare",
        _plot_private_vs_mshare,
        "Page faults, page-walk cycles and DRAM walk reads, private vs mshare page tables, per uarch.",
    ),
    _Plot(
        "shootdown_cost",
        _plot_shootdown,
        "TLB-shootdown cycles per invalidation event (initiator and responders) per strategy, by sharers and CPUs.",
    ),
    _Plot(
        "collateral_damage",
        _plot_collateral,
        "STLB misses and walk cycles of processes that do not map the shared region, with vs without events.",
    ),
    _Plot("stale_translations", _plot_stale, "Uses of stale translations per strategy (any non-zero count is a bug)."),
    _Plot("asid_recycles", _plot_asid, "PCID/ASID slot recycles vs processes per CPU."),
)


def report(results: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the tables and plots of `results` into `out_dir`; returns the files written."""
    results, out_dir = Path(results), Path(out_dir)
    try:
        df = load_summary(results)
        configs = _configs(results)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{results}: cannot read results ({e})") from None
    if df.empty:
        raise ConfigError(f"{results}: no runs")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in [p.name for p in PLOTS]:  # plots of an earlier report the data no longer supports
        (out_dir / f"{name}.png").unlink(missing_ok=True)
    df = _with_config_columns(df, configs)
    written: list[Path] = []

    summary = load_summary(results)
    summary.to_csv(out_dir / "summary.csv", index=False)
    written.append(out_dir / "summary.csv")
    head = df[[c for c in HEADLINE_COLUMNS if c in df.columns]]
    (out_dir / "summary.md").write_text(_markdown(head) + "\n")
    written.append(out_dir / "summary.md")

    tables: list[tuple[str, str, pd.DataFrame]] = []
    comp = _comparison_table(_pairs(df))
    if len(comp):
        tables.append(("private_vs_mshare", "Private vs mshare page tables (same configuration)", comp))
    shoot = _shootdown_table(df)
    if len(shoot):
        tables.append(("shootdown", "Invalidation events: cost per event, collateral damage, safety", shoot))
    secondary = _secondary_table(df)
    if len(secondary):
        title = "Secondary MMUs: notifier calls per event, their cost, and stale device translations"
        tables.append(("secondary_mmu", title, secondary))
    for name, _, t in tables:
        t.to_csv(out_dir / f"{name}.csv", index=False)
        (out_dir / f"{name}.md").write_text(_markdown(t) + "\n")
        written += [out_dir / f"{name}.csv", out_dir / f"{name}.md"]

    plots: list[tuple[_Plot, Path]] = []
    for plot in PLOTS:
        p = plot.draw(df, out_dir / f"{plot.name}.png")
        if p is not None:
            plots.append((plot, p))
            written.append(p)

    with h5py.File(results, "r") as f:
        experiment = str(f.attrs.get("experiment", "")) or results.stem
        version = str(f.attrs.get("tool_version", "?"))
    lines = [
        f"# Report: `{results.name}` (experiment `{experiment}`)",
        "",
        f"{len(df)} runs on {_and(_uarchs(df))}; written by mshare-hw {version}. "
        f"Regenerate with `mshare-hw report {results} -o {out_dir}`. Every summary column is in "
        "[summary.csv](summary.csv); the HDF5 schema is in the top-level README.",
        "",
    ]
    for plot, p in plots:
        lines += [f"## {plot.caption}", "", f"![{plot.caption}]({p.name})", ""]
    for name, title, t in tables:
        lines += [f"## {title}", "", f"[{name}.csv]({name}.csv)", "", _markdown(t), ""]
    lines += ["## Summary (headline columns)", "", _markdown(head), ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    written.append(out_dir / "report.md")
    return written
