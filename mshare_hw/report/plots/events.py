"""Invalidation events by flush strategy: shootdown cost, collateral damage, stale translations."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.colors import LinearSegmentedColormap, LogNorm
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from mshare_hw.report import style
from mshare_hw.report.style import STRATEGY_COLORS, STRATEGY_LABELS, STRATEGY_ORDER, Drawn, new_figure, si_formatter
from mshare_hw.report.tables import baseline

CONFIG_COLUMNS = ("n_cpus", "n_sharers", "n_processes", "sleep_every_accesses")


def _config(r) -> tuple[int, ...]:
    return tuple(int(getattr(r, c)) for c in CONFIG_COLUMNS)


def _configs_of(ev: pd.DataFrame) -> list[tuple[int, ...]]:
    """The configurations (CONFIG_COLUMNS) of the event runs, sorted."""
    return sorted({_config(r) for r in ev.itertuples()})


def _layout(ev: pd.DataFrame) -> tuple[list[str], list[str], list[tuple[int, ...]]]:
    """What an events plot shows: its uarchs (one row or column of axes each), its strategies (bars or
    rows) and its configurations (groups or columns)."""
    return style.uarchs(ev), _strategies(ev), _configs_of(ev)


def _strategies(ev: pd.DataFrame) -> list[str]:
    present = set(ev["strategy"])
    return [s for s in STRATEGY_ORDER if s in present] + sorted(present - set(STRATEGY_ORDER))


def _cfg_tick(cfg: tuple[int, ...]) -> str:
    n_cpus, sharers, procs, sleep_every = cfg
    other = procs - sharers
    tick = f"{sharers} sharers" + (f"\n+ {other} unrelated" if other else "") + f"\n{n_cpus} CPUs"
    return tick + ("\nsleeping" if sleep_every else "")


def _grouped(ax, ev: pd.DataFrame, value, strategies, configs, *, hatch_value=None, labels=None) -> list[dict]:
    """Bars: one group per configuration, one bar per strategy (one `bar` call per strategy). With
    `hatch_value`, the bar is split: solid up to hatch_value, hatched above. `labels(row)` gives an
    optional (text, colour) written above the bar. Returns one row per bar drawn."""
    w = 0.8 / len(strategies)
    index = {(r.strategy, *_config(r)): r for r in ev.itertuples(index=False)}
    drawn = []
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
        for x, v, lo, r in zip(xs, vs, los, rows):
            text = ""
            if labels is not None:
                text, color_text = labels(r)
                if text:
                    ax.annotate(
                        text, (x, v), textcoords="offset points", xytext=(0, 2), ha="center", va="bottom",
                        fontsize=7, color=color_text, rotation=90,
                    )  # fmt: skip
            bar = {"strategy": s, **dict(zip(CONFIG_COLUMNS, _config(r))), "value": v}
            drawn.append(bar | ({"solid": lo} if hatch_value is not None else {}) | {"label": text})
    ax.set_xticks(range(len(configs)), [_cfg_tick(c) for c in configs], fontsize=9)
    ax.set_xlim(-0.5, len(configs) - 0.5)
    ax.grid(axis="y", alpha=0.3)
    return drawn


def _strategy_legend(fig, strategies: list[str], extra_handles=(), ncol: int = 2):
    handles = [Patch(color=STRATEGY_COLORS.get(s, "#444444"), label=STRATEGY_LABELS.get(s, s)) for s in strategies]
    fig.legend(handles=[*handles, *extra_handles], loc="outside lower center", ncol=ncol, fontsize=8)


def plot_shootdown(df: pd.DataFrame) -> Drawn | None:
    """Data: one row per bar (uarch, strategy, n_cpus, n_sharers, n_processes, sleep_every_accesses, value = initiator +
    responder cycles per event, solid = the initiator's part, label = "UNSAFE..." or "")."""
    ev = df[df["events_fired"] > 0]
    if ev.empty:
        return None
    uarchs, strategies, configs = _layout(ev)
    fig = new_figure(max(9.0, 1.6 * len(configs) + 3), 3.6 * len(uarchs) + 1.6)
    axes = np.atleast_1d(fig.subplots(len(uarchs), 1, squeeze=False)[:, 0])
    drawn = []
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

        bars = _grouped(ax, sub, total, strategies, configs, hatch_value=initiator, labels=label)
        drawn += [{"uarch": u, **b} for b in bars]
        ax.set_ylabel("cycles per invalidation event\n(initiator + all responders)")
        ax.yaxis.set_major_formatter(si_formatter())
        ax.set_ylim(0, ax.get_ylim()[1] * 1.15)
        ax.set_title(f"{u}: TLB-shootdown cost per invalidation event, by flush strategy")
    extra = [
        Patch(facecolor="#888888", label="solid: initiator CPU's cycles"),
        Patch(facecolor="#888888", alpha=0.45, hatch="///", label="hatched: responder CPUs' cycles (summed)"),
        Patch(facecolor="white", edgecolor="#b2182b", label="UNSAFE: stale translations were used"),
    ]
    _strategy_legend(fig, strategies, extra)
    return Drawn(fig, pd.DataFrame(drawn))


def plot_collateral(df: pd.DataFrame) -> Drawn | None:
    """Data: one row per bar (uarch, metric = stlb_ratio | walk_ratio, strategy, n_cpus, n_sharers,
    n_processes, sleep_every_accesses, value = the bystanders' count with events / without, label)."""
    ev = df[(df["events_fired"] > 0) & (df["n_processes"] > df["n_sharers"])]
    if ev.empty:
        return None
    rows = []
    for _, r in ev.iterrows():
        base = baseline(df, r)
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
    uarchs, strategies, configs = _layout(ev)
    fig = new_figure(max(12.0, 3.0 * len(configs) + 2), 3.6 * len(uarchs) + 1.8)
    axes = fig.subplots(len(uarchs), 2, squeeze=False)
    drawn = []
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

            bars = _grouped(ax, sub, ratio, strategies, configs, labels=label)
            drawn += [{"uarch": u, "metric": key, **b} for b in bars]
            ax.axhline(1.0, color="black", ls="--", lw=1)
            ax.set_ylabel(f"{what} of {who.removeprefix('the ')}:\nwith events ÷ without events", fontsize=9)
            ax.set_ylim(0, ax.get_ylim()[1] * 1.2)
            ax.set_title(f"{u}: {what} of {who}", fontsize=10)

    extra = [
        Line2D([], [], color="black", ls="--", label="1x = no collateral damage (as without events)"),
        Patch(color="white", label="unlabelled bars: within 5% of 1x"),
    ]
    _strategy_legend(fig, strategies, extra, ncol=3)
    fig.suptitle(
        f"Collateral damage: how invalidations in the shared region hurt {who}, which does not map it",
        fontsize=11,
    )
    return Drawn(fig, pd.DataFrame(drawn))


def plot_stale(df: pd.DataFrame) -> Drawn | None:
    """A table-like heat map per uarch: strategies down, configurations across, the count in each cell.
    Data: one row per cell (uarch, strategy, n_cpus, n_sharers, n_processes, sleep_every_accesses, text: the
    count, or "not run")."""
    ev = df[df["events_fired"] > 0]
    if ev.empty:
        return None
    ev, shown = _one_notifier_policy(ev)
    uarchs, strategies, configs = _layout(ev)
    reds = LinearSegmentedColormap.from_list("stale", ["#fcbba1", "#a50f15"])
    top = max(2.0, float(ev["stale_translations"].max()))
    norm = LogNorm(vmin=1, vmax=top)
    fig = new_figure(max(9.0, 1.3 * len(configs) * len(uarchs) + 4.0), 0.42 * len(strategies) + 2.6)
    axes = fig.subplots(1, len(uarchs), squeeze=False)[0]
    drawn = []
    for k, (ax, u) in enumerate(zip(axes, uarchs)):
        sub = ev[ev["uarch"] == u]
        for i, s_name in enumerate(strategies):
            for j, cfg in enumerate(configs):
                rows = sub[sub["strategy"] == s_name]
                for col, value in zip(CONFIG_COLUMNS, cfg):
                    rows = rows[rows[col] == value]
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
                drawn.append({"uarch": u, "strategy": s_name, **dict(zip(CONFIG_COLUMNS, cfg)), "text": text})
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
        "Stale translations: accesses that used a TLB/PWC entry after its PTE had changed, by flush strategy"
        + (f"\n(mshare runs with notifier_policy = {shown}; the secondary-MMU table has the others)" if shown else ""),
        fontsize=11,
    )
    return Drawn(fig, pd.DataFrame(drawn))


def _one_notifier_policy(ev: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A heat map cell holds one run: with several notifier policies for mshare, keep the first (named)."""
    if "notifier_policy" not in ev.columns:
        return ev, ""
    policies = list(dict.fromkeys(ev.loc[ev["pt_config"] == "mshare", "notifier_policy"]))
    if len(policies) < 2:
        return ev, ""
    return ev[(ev["pt_config"] != "mshare") | (ev["notifier_policy"] == policies[0])], policies[0]
