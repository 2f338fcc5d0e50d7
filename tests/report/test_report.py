"""`mshare-hw report`: the tables and the plots a results file has data for."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mshare_hw.cli import main
from mshare_hw.config.experiment import Experiment
from mshare_hw.report import report
from mshare_hw.results.hdf5 import load_summary
from mshare_hw.runner import run_experiment

SHIPPED = Path(__file__).resolve().parents[2] / "results"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ALL_PLOTS = {
    "pt_bytes_vs_processes", "pt_bytes_projection", "private_vs_mshare", "shootdown_cost", "collateral_damage",
    "stale_translations", "asid_recycles",
}  # fmt: skip


def _pngs(d: Path) -> set[str]:
    out = set()
    for p in d.glob("*.png"):
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, p
        out.add(p.stem)
    return out


def _db(n_processes, accesses: int = 4000, **extra) -> dict:
    return {"generator": "database", "params": {"n_processes": n_processes, "accesses_per_process": accesses,
                                                "pool_bytes": "16MiB", "private_bytes": "1MiB",
                                                "text_bytes": "256KiB", **extra}}  # fmt: skip


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    """Sharers plus one unrelated process, invalidation events on and off, three strategies, private and
    mshare, 1 and 2 sharers: every plot but the ASID one has data."""
    exp = Experiment.model_validate(
        {
            "name": "mini_flush",
            "uarch": "zen3",
            "pt_config": "mshare",
            "machine": {"n_cpus": 3},
            "scheduler": {"slice_accesses": 256},
            "workload": _db(2, 6000, n_unrelated=1, n_sharer_cpus=2),
            "events": {"enabled": True, "rate_per_second": 200_000, "pages": [1, 64]},
            "sweep": {
                "workload.params.n_processes": [1, 2],
                "pt_config": ["private", "mshare"],
                "strategy": ["flush_all", "host_mm_only", "union_batch"],
                "events.enabled": [True, False],
            },
            "exclude": [
                {"pt_config": "private", "strategy": "host_mm_only"},
                {"pt_config": "private", "strategy": "union_batch"},
                {"events.enabled": False, "strategy": "host_mm_only"},
                {"events.enabled": False, "strategy": "union_batch"},
            ],
        }
    )
    out = tmp_path_factory.mktemp("report") / "mini_flush.h5"
    run_experiment(exp, out)
    return out


def test_report_of_an_events_sweep_draws_every_plot_it_has_data_for(events_file: Path, tmp_path: Path):
    out = tmp_path / "rep"
    written = report(events_file, out)
    assert all(p.exists() for p in written)
    assert _pngs(out) == ALL_PLOTS - {"asid_recycles"}  # no process count above 6 per CPU: no recycles
    df = load_summary(events_file)
    csv = pd.read_csv(out / "summary.csv")
    assert list(csv.columns) == list(df.columns) and len(csv) == len(df)
    shoot = pd.read_csv(out / "shootdown.csv")
    assert set(shoot["strategy"]) == {"linux", "flush_all", "host_mm_only", "union_batch"}
    assert (shoot["events_fired"] > 0).all()
    assert (shoot.loc[shoot["strategy"] == "host_mm_only", "stale_translations"] > 0).all()
    md = (out / "report.md").read_text()
    for name in ALL_PLOTS - {"asid_recycles"}:
        assert f"({name}.png)" in md
    assert (out / "summary.md").read_text().startswith("| uarch")


def test_report_draws_asid_recycles_when_processes_per_cpu_vary(tmp_path: Path):
    exp = Experiment.model_validate(
        {
            "name": "asid",
            "machine": {"n_cpus": 1},
            "scheduler": {"quantum_cycles": 20_000},
            "workload": _db(4, 3000),
            "sweep": {"workload.params.n_processes": [4, 8], "pt_config": ["private", "mshare"]},
        }
    )
    res = tmp_path / "asid.h5"
    rows = run_experiment(exp, res)
    assert any(r["asid_recycles"] for r in rows)
    report(res, tmp_path / "rep")
    assert _pngs(tmp_path / "rep") == {"asid_recycles", "pt_bytes_vs_processes", "pt_bytes_projection",
                                       "private_vs_mshare"}  # fmt: skip


@pytest.mark.skipif(not (SHIPPED / "default.h5").exists(), reason="no shipped results")
def test_report_cli_on_shipped_default_results(tmp_path: Path, capsys):
    out = tmp_path / "default"
    assert main(["report", str(SHIPPED / "default.h5"), "-o", str(out)]) == 0
    listed = capsys.readouterr().out.split()
    assert str(out / "report.md") in listed
    # one process count, no events: the comparison and the projection only
    assert _pngs(out) == {"private_vs_mshare", "pt_bytes_projection"}
    comp = pd.read_csv(out / "private_vs_mshare.csv")
    assert set(comp["uarch"]) == set(load_summary(SHIPPED / "default.h5")["uarch"])
    assert (comp["page_faults_change_%"] < 0).all()
    assert not (out / "shootdown.csv").exists()


def test_report_of_a_non_results_file_fails_cleanly(tmp_path: Path, capsys):
    bad = tmp_path / "bad.h5"
    bad.write_text("nope")
    assert main(["report", str(bad), "-o", str(tmp_path / "r")]) == 2
    assert "cannot read results" in capsys.readouterr().err
