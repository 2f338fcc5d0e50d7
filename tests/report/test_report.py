"""`mshare-hw report`: the files written for the plots and tables a results file has data for."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mshare_hw.cli import main
from mshare_hw.report import report
from mshare_hw.results.hdf5 import load_summary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = {
    "pt_bytes_vs_processes", "pt_bytes_projection", "private_vs_mshare", "shootdown_cost", "collateral_damage",
    "stale_translations", "asid_recycles", "tlb_reach",
}  # fmt: skip


def _pngs(d: Path) -> set[str]:
    out = set()
    for p in d.glob("*.png"):
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, p
        out.add(p.stem)
    return out


def test_report_of_an_events_sweep_draws_every_plot_it_has_data_for(events_file: Path, tmp_path: Path):
    out = tmp_path / "rep"
    written = report(events_file, out)
    assert all(p.exists() for p in written)
    assert _pngs(out) == ALL_PLOTS - {"asid_recycles", "tlb_reach"}  # no recycles (<= 6 per CPU), no chase
    df = load_summary(events_file)
    csv = pd.read_csv(out / "summary.csv")
    assert list(csv.columns) == list(df.columns) and len(csv) == len(df)
    shoot = pd.read_csv(out / "shootdown.csv")
    assert set(shoot["strategy"]) == {"linux", "flush_all", "host_mm_only", "union_batch"}
    assert (shoot["events_fired"] > 0).all()
    assert (shoot.loc[shoot["strategy"] == "host_mm_only", "stale_translations"] > 0).all()
    md = (out / "report.md").read_text()
    for name in ALL_PLOTS - {"asid_recycles", "tlb_reach"}:
        assert f"({name}.png)" in md
    assert (out / "summary.md").read_text().startswith("| uarch")


def test_report_draws_asid_recycles_when_processes_per_cpu_vary(asid_file: Path, tmp_path: Path):
    assert (load_summary(asid_file)["asid_recycles"] > 0).any()
    report(asid_file, tmp_path / "rep")
    assert _pngs(tmp_path / "rep") == {"asid_recycles", "pt_bytes_vs_processes", "pt_bytes_projection",
                                       "private_vs_mshare"}  # fmt: skip


def test_report_cli_on_shipped_default_results(shipped, tmp_path: Path, capsys):
    out = tmp_path / "default"
    assert main(["report", str(shipped("default")), "-o", str(out)]) == 0
    listed = capsys.readouterr().out.split()
    assert str(out / "report.md") in listed
    # one process count, no events: the comparison and the projection only
    assert _pngs(out) == {"private_vs_mshare", "pt_bytes_projection"}
    comp = pd.read_csv(out / "private_vs_mshare.csv")
    assert set(comp["uarch"]) == set(load_summary(shipped("default"))["uarch"])
    assert (comp["page_faults_change_%"] < 0).all()
    assert not (out / "shootdown.csv").exists()


def test_report_of_shipped_results_equals_the_committed_report(shipped, tmp_path: Path):
    """The committed reports in results/<name>/ are what `mshare-hw report` writes today."""
    for name in ("default", "flush_strategies", "secondary_mmu"):
        committed = shipped(name).with_suffix("")
        out = tmp_path / name
        report(shipped(name), out)
        for f in committed.iterdir():
            if f.suffix in (".csv", ".md") and f.name != "report.md":  # report.md names its output directory
                assert (out / f.name).read_text() == f.read_text(), f.name


def test_report_of_a_non_results_file_fails_cleanly(tmp_path: Path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_text("nope")
    assert main(["report", str(bad), "-o", str(tmp_path / "r")]) == 2
    assert "cannot read results" in capsys.readouterr().err


def test_report_of_reach_runs_draws_the_reach_plot_and_its_step_table(reach_file: Path, tmp_path: Path):
    out = tmp_path / "rep"
    report(reach_file, out)
    assert _pngs(out) == {"tlb_reach"}
    steps = pd.read_csv(out / "reach_steps.csv")
    assert set(steps["uarch"]) == {"zen4", "skylake_sp"} and set(steps["timing"]) == {"translation", "latency"}
    md = (out / "report.md").read_text()
    assert "(tlb_reach.png)" in md and "[reach_steps.csv](reach_steps.csv)" in md
