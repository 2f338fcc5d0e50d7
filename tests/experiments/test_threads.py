"""The shipped threads experiment (configs/experiments/threads.toml) runs, and shows the mechanisms it is
about: one 4-threaded process has one set of page tables where 4 clients have 4, and on Zen 3 (an INVLPGB
kernel) its mm, active on 4 CPUs, gets a global ASID, after which its flushes are INVLPGBs, not IPIs."""

from __future__ import annotations

from pathlib import Path

from mshare_hw.cli import main
from mshare_hw.results.hdf5 import load_summary

ROOT = Path(__file__).resolve().parents[2]


def test_threads_experiment(tmp_path: Path):
    out = tmp_path / "threads.h5"
    assert main(["run", str(ROOT / "configs/experiments/threads.toml"), "-o", str(out), "-q"]) == 0
    df = load_summary(out)
    assert len(df) == 8 and (df["stale_translations"] == 0).all()
    assert (df["events_fired"] > 0).all()
    private = df[df["pt_config"] == "private"].set_index(["uarch", "threads_per_process"])
    for uarch in ("skylake_sp", "zen3"):
        assert private.loc[(uarch, 4), "pt_bytes"] < private.loc[(uarch, 1), "pt_bytes"]
    assert (df[df["uarch"] == "skylake_sp"]["global_asid_assignments"] == 0).all()
    assert (df[df["threads_per_process"] == 1]["global_asid_assignments"] == 0).all()
    threaded_zen = df[(df["uarch"] == "zen3") & (df["threads_per_process"] == 4)]
    assert (threaded_zen["global_asid_assignments"] == 1).all()
    # after the assignment the process's own flushes are INVLPGBs: far fewer IPIs than with 4 processes
    zen_private = private.loc["zen3"]
    assert zen_private.loc[4, "ipis_sent"] < zen_private.loc[1, "ipis_sent"] // 4
    assert zen_private.loc[4, "invlpgb"] > 0
