"""examples/analyse_results.py: plain h5py + pandas + matplotlib rebuild a README table and a plot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mshare_hw.cli import main
from mshare_hw.results.hdf5 import load_summary

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "analyse_results.py"
RESULTS = ROOT / "results"
# runs the example with mshare_hw made unimportable: it must not need the package
WITHOUT_MSHARE_HW = "import runpy, sys; sys.modules['mshare_hw'] = None; sys.argv = sys.argv[1:]; " \
                    "runpy.run_path(sys.argv[0], run_name='__main__')"  # fmt: skip


@pytest.fixture(scope="module")
def example_output(tmp_path_factory) -> tuple[str, Path]:
    if not (RESULTS / "default.h5").exists() or not (RESULTS / "flush_strategies.h5").exists():
        pytest.skip("no committed results")
    out = tmp_path_factory.mktemp("analysis")
    cmd = [sys.executable, "-c", WITHOUT_MSHARE_HW, str(EXAMPLE), str(RESULTS / "default.h5"),
           str(RESULTS / "flush_strategies.h5"), "-o", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    return done.stdout, out


def test_example_table_is_mshare_hw_table_and_the_readme_table(example_output, capsys):
    printed, _ = example_output
    columns = (
        "pt_config,strategy,events_fired,ipis_sent,invlpg,invlpgb,full_flushes,shootdown_cycles_initiator,"
        "shootdown_cycles_responder,collateral_entries_flushed,bystander_stlb_misses,bystander_walk_cycles,"
        "stale_translations"
    )
    where = [
        "--where",
        "uarch=zen3",
        "--where",
        "n_cpus=4",
        "--where",
        "n_processes=7",
        "--where",
        "sleep_every_accesses=0",
    ]
    assert main(["table", str(RESULTS / "flush_strategies.h5"), "--markdown", *where, "--columns", columns]) == 0
    assert printed == capsys.readouterr().out
    assert printed.count("\n") == 12  # header, rule and ten runs
    assert printed.strip() in (ROOT / "README.md").read_text()


def test_example_plot_data_is_the_default_experiments_private_vs_mshare(example_output):
    _, out = example_output
    assert (out / "private_vs_mshare.png").read_bytes().startswith(b"\x89PNG")
    data = pd.read_csv(out / "private_vs_mshare.csv")
    summary = load_summary(RESULTS / "default.h5")
    assert set(data["uarch"]) == set(summary["uarch"])
    readme = (ROOT / "README.md").read_text()
    names = {"page_faults": "faults", "walk_cycles": "walk cycles", "walk_reads_dram": "DRAM walk reads"}
    for _, r in data.iterrows():
        runs = summary[(summary["uarch"] == r.uarch) & (summary["sleep_every_accesses"] == 0)]
        if "pool_page_size" in runs.columns:  # the default experiment's 4 KiB pool (it also runs a 2 MiB one)
            runs = runs[runs["pool_page_size"] == "4K"]
        runs = runs.set_index("pt_config")
        assert (r.private, r.mshare) == (runs.loc["private", r.metric], runs.loc["mshare", r.metric])
        # the README quotes `mshare-hw run`'s line for each uarch, e.g. "faults -76%"
        line = next(x for x in readme.splitlines() if x.startswith(f"{r.uarch}: mshare vs private:"))
        assert f"{names[r.metric]} {r['change_%']:+.0f}%" in line
