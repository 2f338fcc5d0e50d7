"""The data behind each plot: every point, bar and cell against the results file's summary, and what the
figure shows (axes labels, drawn heights, cell texts)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mshare_hw.analysis.ptmem import ptmem
from mshare_hw.config.uarch import list_uarchs, load_uarch
from mshare_hw.report.frame import load_report_frame
from mshare_hw.report.plots import PLOTS
from mshare_hw.report.plots.asid import plot_asid
from mshare_hw.report.plots.compare import plot_private_vs_mshare
from mshare_hw.report.plots.events import plot_collateral, plot_shootdown, plot_stale
from mshare_hw.report.plots.memory import plot_projection, plot_pt_vs_processes
from mshare_hw.report.plots.reach import plot_reach
from mshare_hw.report.reach import reach_curves, reach_steps
from mshare_hw.results.hdf5 import load_configs, load_summary

MIB = 1 << 20
RUN_KEYS = ["uarch", "n_cpus", "n_processes", "accesses", "seed"]


def _frame(path: Path) -> pd.DataFrame:
    return load_report_frame(path)[1]


def _run(summary: pd.DataFrame, **where) -> pd.Series:
    rows = summary
    for k, v in where.items():
        rows = rows[rows[k] == v]
    assert len(rows) == 1, where
    return rows.iloc[0]


def _bar_totals(ax) -> list[float]:
    """Heights of the drawn bars, stacked parts at one x added up, in x order."""
    by_x: dict[float, float] = {}
    for p in ax.patches:
        x = round(p.get_x(), 9)
        by_x[x] = by_x.get(x, 0.0) + p.get_height()
    return [by_x[x] for x in sorted(by_x)]


def test_a_file_draws_exactly_the_plots_it_has_data_for(shipped):
    drawn = {p.name for p in PLOTS if p.draw(_frame(shipped("default"))) is not None}
    assert drawn == {"private_vs_mshare", "pt_bytes_projection"}  # one process count, no events
    drawn = {p.name for p in PLOTS if p.draw(_frame(shipped("flush_strategies"))) is not None}
    assert drawn == {p.name for p in PLOTS} - {"asid_recycles", "tlb_reach"}


def test_private_vs_mshare_bars_are_the_summary_counters(shipped):
    summary = load_summary(shipped("default"))
    drawn = plot_private_vs_mshare(_frame(shipped("default")))
    data = drawn.data
    assert set(data["metric"]) == {"page_faults", "walk_cycles", "walk_reads_dram"}
    configs = summary[["uarch", "sleep_every_accesses", "pool_page_size"]].drop_duplicates()
    assert set(data["uarch"]) == set(summary["uarch"]) and len(data) == 3 * len(configs)
    assert set(data["pool_page_size"]) == {"4K", "2M"}  # the 2 MiB pool variant drawn beside the 4 KiB one
    for r in data.itertuples():
        same = {"uarch": r.uarch, "sleep_every_accesses": r.sleep_every_accesses, "pool_page_size": r.pool_page_size}
        priv = _run(summary, pt_config="private", **same)[r.metric]
        msh = _run(summary, pt_config="mshare", **same)[r.metric]
        assert (r.private, r.mshare) == (priv, msh)
        assert r.label == f"{100.0 * (msh - priv) / priv:+.0f}%"
        assert msh < priv  # the default experiment's finding: mshare saves on all three
    # awake and sleeping clients: one row of axes per metric, one column per uarch
    uarchs = list(dict.fromkeys(data["uarch"]))
    axes = drawn.figure.axes
    whats = ["page faults", "page-walk cycles", "page-walk reads from DRAM"]
    assert [ax.get_title() for ax in axes] == [f"{u}: {w}" for w in whats for u in uarchs]
    assert axes[0].get_ylabel() == "page faults\n(count)"
    metrics = [m for m in ("page_faults", "walk_cycles", "walk_reads_dram") for _ in uarchs]
    for ax, metric, uarch in zip(axes, metrics, uarchs * 3):
        private_bars, mshare_bars = ax.containers
        rows = data[(data["metric"] == metric) & (data["uarch"] == uarch)]
        assert [b.get_height() for b in private_bars] == list(rows["private"])
        assert [b.get_height() for b in mshare_bars] == list(rows["mshare"])
        assert [t.get_text() for t in ax.texts] == list(rows["label"])
        ticks = [t.get_text() for t in ax.get_xticklabels()]
        assert [t.endswith("sleeping") for t in ticks] == [bool(s) for s in rows["sleep_every_accesses"]]


def test_private_vs_mshare_with_several_configurations_pairs_runs_without_events(events_file: Path):
    summary = load_summary(events_file)
    data = plot_private_vs_mshare(_frame(events_file)).data
    assert sorted(set(data["n_processes"])) == [2, 3]  # 1 and 2 sharers, plus the unrelated process
    for r in data.itertuples():
        same = {"n_processes": r.n_processes, "strategy": "none"}
        assert r.private == _run(summary, pt_config="private", **same)[r.metric]
        assert r.mshare == _run(summary, pt_config="mshare", **same)[r.metric]


def test_pt_vs_processes_points_are_the_measured_page_table_bytes(events_file: Path):
    summary = load_summary(events_file)
    drawn = plot_pt_vs_processes(_frame(events_file))
    data = drawn.data
    assert set(data["pt_config"]) == {"private", "mshare"} and set(data["uarch"]) == {""}  # one uarch
    for r in data.itertuples():
        runs = summary[(summary["strategy"] == "none") & (summary["pt_config"] == r.pt_config)]
        assert r.pt_bytes == runs.loc[runs["n_processes"] == r.n_processes, "pt_bytes"].mean()
    ax = drawn.figure.axes[0]
    assert ax.get_xlabel() == "processes in the workload"
    assert ax.get_ylabel() == "page-table memory, all levels (MiB)"
    for line, (pt, rows) in zip(ax.get_lines(), data.groupby("pt_config", sort=False)):
        assert line.get_label() == f"{pt} page tables"
        np.testing.assert_array_equal(line.get_ydata(), rows["pt_bytes"] / MIB)
    assert ax.get_xticklabels()[0].get_text() == "2\n(1 sharing + 1 unrelated)"


def test_pt_vs_processes_spanning_a_decade_is_drawn_on_log_axes(shipped):
    """The cover-letter file's 8 to 1,500 processes: on linear axes the 8- and 64-process points and their
    labels overlap at the origin."""
    drawn = plot_pt_vs_processes(_frame(shipped("cover_letter")))
    ax = drawn.figure.axes[0]
    assert (ax.get_xscale(), ax.get_yscale()) == ("log", "log")
    assert sorted(set(drawn.data["n_processes"])) == [8, 64, 256, 1500]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["8", "64", "256", "1500"]


def test_projection_is_the_analytic_model_of_the_configured_region(shipped):
    drawn = plot_projection(_frame(shipped("default")))
    data = drawn.data
    # the default experiment's buffer pool: 1 GiB of 4 KiB pages (and its 2 MiB variant), 4-level paging,
    # mshare at the P4D
    assert set(zip(data["region_bytes"], data["page_size"], data["levels"], data["share_level"])) == {
        (1 << 30, "4K", 4, "p4d"),
        (1 << 30, "2M", 4, "p4d"),
    }
    assert data["n_processes"].min() == 1 and data["n_processes"].max() == 2000
    for r in data.iloc[::10].itertuples():
        model = ptmem(r.n_processes, 1 << 30, r.page_size, "p4d", 4)
        assert (r.private_bytes, r.shared_bytes) == (model.private_total_bytes, model.shared_total_bytes)
    assert (data["shared_bytes"] < data["private_bytes"]).iloc[-1]
    ax = drawn.figure.axes[0]
    assert ax.get_xscale() == ax.get_yscale() == "log"
    private, shared = ax.get_lines()[:2]  # the first region's (4 KiB pages)
    first = data[data["page_size"] == "4K"]
    np.testing.assert_allclose(private.get_ydata(), first["private_bytes"] / MIB)
    np.testing.assert_allclose(shared.get_ydata(), first["shared_bytes"] / MIB)
    assert "the shared regions of this file" in ax.get_title()
    assert private.get_label() == "private page tables, 1 GiB of 4 KiB pages"


def test_shootdown_bars_are_cycles_per_event_of_each_run_with_events(events_file: Path):
    summary = load_summary(events_file)
    drawn = plot_shootdown(_frame(events_file))
    data = drawn.data
    with_events = summary[summary["events_fired"] > 0]
    assert len(data) == len(with_events)
    assert set(data["strategy"]) == {"linux", "flush_all", "host_mm_only", "union_batch"}
    for r in data.itertuples():
        run = _run(with_events, strategy=r.strategy, n_processes=r.n_processes)
        n = run.events_fired
        assert r.value == (run.shootdown_cycles_initiator + run.shootdown_cycles_responder) / n
        assert r.solid == run.shootdown_cycles_initiator / n
        assert r.label.startswith("UNSAFE") == (run.stale_translations > 0)
    assert (data.loc[data["strategy"] == "host_mm_only", "label"] == "UNSAFE (no flush)").all()
    ax = drawn.figure.axes[0]
    assert ax.get_title() == "zen3: TLB-shootdown cost per invalidation event, by flush strategy"
    assert ax.get_ylabel() == "cycles per invalidation event\n(initiator + all responders)"
    # the drawn bars (solid + hatched part) in x order: strategies in order within each configuration
    drawn_rows = data.sort_values(["n_cpus", "n_sharers", "n_processes"], kind="stable")
    order = {s: i for i, s in enumerate(dict.fromkeys(data["strategy"]))}
    drawn_rows = drawn_rows.assign(o=drawn_rows["strategy"].map(order)).sort_values(["n_processes", "o"])
    np.testing.assert_allclose(_bar_totals(ax), drawn_rows["value"])


def test_collateral_bars_are_the_bystanders_counts_relative_to_the_run_without_events(events_file: Path):
    summary = load_summary(events_file)
    drawn = plot_collateral(_frame(events_file))
    data = drawn.data
    assert set(data["metric"]) == {"stlb_ratio", "walk_ratio"}
    column = {"stlb_ratio": "bystander_stlb_misses", "walk_ratio": "bystander_walk_cycles"}
    for r in data.itertuples():
        run = _run(summary[summary["events_fired"] > 0], strategy=r.strategy, n_processes=r.n_processes)
        base = _run(summary, strategy="none", pt_config=run.pt_config, n_processes=r.n_processes)
        assert r.value == run[column[r.metric]] / base[column[r.metric]]
        assert r.label == (f"{r.value:.1f}x" if abs(r.value - 1) >= 0.05 else "")
    # flush_all empties every TLB: the unrelated process misses more than without events
    assert (data.loc[data["strategy"] == "flush_all", "value"] > 1).all()
    stlb_ax, walk_ax = drawn.figure.axes
    assert stlb_ax.get_title() == "zen3: STLB misses of the unrelated process"
    assert walk_ax.get_title() == "zen3: page-walk cycles of the unrelated process"
    assert sorted(_bar_totals(stlb_ax)) == sorted(data.loc[data["metric"] == "stlb_ratio", "value"])


def test_stale_cells_are_the_stale_translation_counts(shipped):
    summary = load_summary(shipped("flush_strategies"))
    drawn = plot_stale(_frame(shipped("flush_strategies")))
    data = drawn.data
    run = data[data["text"] != "not run"]
    with_events = summary[summary["events_fired"] > 0]
    assert len(run) == len(with_events)
    for r in run.itertuples():
        match = with_events[(with_events["uarch"] == r.uarch) & (with_events["strategy"] == r.strategy)]
        match = match[(match["n_cpus"] == r.n_cpus) & (match["n_processes"] == r.n_processes)]
        match = match[match["sleep_every_accesses"] == r.sleep_every_accesses]
        assert r.text == f"{int(_run(match).stale_translations):,}"
    assert (run.loc[run["strategy"].isin(["per_sharer", "union_batch"]), "text"] == "0").all()
    assert (run.loc[run["strategy"] == "host_mm_only", "text"] != "0").all()
    for ax in drawn.figure.axes:
        cells = data[data["uarch"] == ax.get_title()]
        assert Counter(t.get_text() for t in ax.texts) == Counter(cells["text"])


def test_asid_curves_are_the_mean_recycles_per_processes_per_cpu(asid_file: Path):
    summary = load_summary(asid_file)
    drawn = plot_asid(_frame(asid_file))
    data = drawn.data
    assert set(data["column"]) == {"asid_recycles", "share"} and set(data["per_cpu"]) == {4.0, 8.0}
    for r in data[data["column"] == "asid_recycles"].itertuples():
        run = _run(summary, pt_config=r.pt_config, n_processes=int(r.per_cpu))
        assert r.value == pytest.approx(run.asid_recycles, abs=0.05)
        assert r.value == 0 if r.per_cpu <= 6 else r.value > 0  # 6 slots per CPU: recycling above 6
    count_ax, share_ax = drawn.figure.axes
    assert count_ax.get_xlabel() == "processes per CPU"
    assert share_ax.get_ylabel() == "context switches that recycle an ASID slot (%)"
    assert count_ax.get_lines()[-1].get_xdata()[0] == 6  # the marker at Linux's 6 slots


# the capacities the reach plot marks, read off the uarch files: L1 DTLB 4K entries, L1D lines, L2 TLB 4K
# entries, L2 lines
REACH_CAPACITIES = {"zen4": (72, 512, 3072, 16384), "skylake_sp": (64, 512, 1536, 16384)}


def test_reach_points_are_cycles_per_measured_load_at_the_uarch_clock(reach_file: Path):
    summary, configs = load_summary(reach_file), load_configs(reach_file)
    drawn = plot_reach(_frame(reach_file))
    data = drawn.data.set_index(["uarch", "timing", "pages"])
    assert len(data) == len(summary) and data.index.is_unique  # one run per point
    for r in summary.itertuples():
        cfg = configs[r.run_id]
        pages = cfg["workload"]["params"]["working_set_bytes"] // 4096
        assert r.accesses == max(3 * pages, 4000)  # the first lap is warm-up, not counted
        row = data.loc[(r.uarch, cfg["machine"]["timing"], pages)]
        assert row["virtualization"] == "none"
        assert row["cycles_per_load"] == r.cycles / r.accesses
        assert row["ns_per_load"] == r.cycles / r.accesses / load_uarch(r.uarch).core.clock_ghz
        marks = (row["l1_dtlb_entries"], row["l1d_lines"], row["l2_tlb_entries"], row["l2_lines"])
        assert marks == REACH_CAPACITIES[r.uarch]
    axes = [ax for ax in drawn.figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [f"{u} ({load_uarch(u).core.clock_ghz:g} GHz)" for u in REACH_CAPACITIES]
    for ax in axes:
        uarch = ax.get_title().split()[0]
        curves = [ln for ln in ax.get_lines() if ln.get_label().startswith(("translation", "latency"))]
        assert sorted(ln.get_label() for ln in curves) == ["latency, native", "translation, native"]
        for ln in curves:
            c = drawn.data[(drawn.data["uarch"] == uarch) & (drawn.data["timing"] == ln.get_label().split(",")[0])]
            assert list(ln.get_xdata()) == list(c["pages"]) and list(ln.get_ydata()) == list(c["ns_per_load"])
        marks = [ln.get_xdata()[0] for ln in ax.get_lines() if "entries" in ln.get_label() or "lines" in ln.get_label()]
        assert sorted(marks) == sorted(REACH_CAPACITIES[uarch])


def test_reach_steps_in_translation_mode_are_the_tlb_capacities(reach_file: Path):
    steps = reach_steps(reach_curves(_frame(reach_file)))
    zen4 = steps[(steps["uarch"] == "zen4") & (steps["timing"] == "translation")]
    # translation mode charges no data-cache latency: the two TLB steps only, cliffs just past capacity (LRU):
    # the middle of each rise lies between the capacity and the next working set of the grid (81, 3456)
    assert list(zen4["nearest"]) == ["L1 DTLB entries", "L2 TLB entries"]
    assert 72 <= zen4["pages"].iloc[0] <= 81 and 3072 <= zen4["pages"].iloc[1] <= 3456
    assert zen4["at_capacity"].all() and (zen4["height_ns"] > 0).all()
    first = zen4.iloc[0]
    assert first["height_ns"] == pytest.approx(first["after_ns"] - first["before_ns"])
    assert first["before_ns"] == pytest.approx(1 / load_uarch("zen4").core.clock_ghz)  # 1 cycle per L1 DTLB hit


def test_shipped_reach_results_draw_every_uarch_in_every_mode(shipped):
    data = plot_reach(_frame(shipped("tlb_reach"))).data
    assert set(data["uarch"]) == set(list_uarchs())
    modes = data.groupby(["uarch", "timing", "virtualization"])["pages"].nunique()
    assert len(modes) == 6 * len(list_uarchs()) and (modes >= 20).all()  # 3 timing x 2 virtualization modes
