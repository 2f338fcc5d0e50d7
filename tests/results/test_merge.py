"""Merging results files: order, duplicates, exact copies of the runs, refusals, atomic output."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from mshare_hw.config.experiment import Experiment
from mshare_hw.results.hdf5 import load_run, load_summary, read_runs
from mshare_hw.results.merge import MergeError, merge_results, summary_run_ids, write_merged
from mshare_hw.runner import run_experiment


def _exp(uarchs: list[str], name: str = "m") -> Experiment:
    return Experiment.model_validate(
        {
            "name": name,
            "machine": {"n_cpus": 2},
            "run": {"interval_accesses": 1000},  # interval series too: every dataset kind is copied
            "workload": {
                "generator": "database",
                "params": {
                    "n_processes": 2,
                    "accesses_per_process": 2000,
                    "pool_bytes": "16MiB",
                    "private_bytes": "1MiB",
                    "text_bytes": "256KiB",
                },
            },
            "sweep": {"uarch": uarchs, "pt_config": ["private", "mshare"]},
        }
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("merge")
    out = {}
    for key, uarchs in (("a", ["skylake_sp"]), ("b", ["zen3"]), ("ab", ["skylake_sp", "zen3"])):
        out[key] = d / f"{key}.h5"
        run_experiment(_exp(uarchs), out[key])
    return out


def _ids(p: Path) -> list[str]:
    return list(load_summary(p)["run_id"])


def _no_temps(d: Path) -> bool:
    return not [p for p in d.iterdir() if ".tmp." in p.name]


def test_merge_order_as_given_and_duplicates_once(files, tmp_path: Path):
    out = tmp_path / "m.h5"
    ids = merge_results(out, [files["b"], files["ab"], files["a"]])
    assert ids == _ids(out) == _ids(files["b"]) + _ids(files["a"])
    assert len(set(ids)) == len(ids) == 4
    pd.testing.assert_frame_equal(
        load_summary(out).sort_values("run_id").reset_index(drop=True),
        load_summary(files["ab"]).sort_values("run_id").reset_index(drop=True),
    )
    with h5py.File(out, "r") as f:
        assert f.attrs["experiment"] == "m"
        assert f.attrs["format"] == "mshare-hw-results"
    assert _no_temps(tmp_path)


def test_merged_runs_are_exact_copies(files, tmp_path: Path):
    out = tmp_path / "m.h5"
    merge_results(out, [files["a"], files["b"]])
    for rid in _ids(out):
        src = files["a"] if rid in _ids(files["a"]) else files["b"]
        with h5py.File(src, "r") as fs, h5py.File(out, "r") as fo:
            gs, go = fs["runs"][rid], fo["runs"][rid]
            assert dict(gs.attrs) == dict(go.attrs)
            assert sorted(gs) == sorted(go) and "intervals" in go
            for name in gs:
                np.testing.assert_array_equal(gs[name][()], go[name][()])
                assert gs[name].compression == go[name].compression
        a, b = load_run(src, rid), load_run(out, rid)
        pd.testing.assert_frame_equal(a["proc_counters"], b["proc_counters"])
    # what the runner reads back (to keep runs on a rerun) is the same too
    by_id = {r.run_id: r for r in read_runs(files["a"]) + read_runs(files["b"])}
    for r in read_runs(out):
        assert r.row == by_id[r.run_id].row
        assert r.config == by_id[r.run_id].config


def test_output_may_be_an_input(files, tmp_path: Path):
    out = tmp_path / "grow.h5"
    out.write_bytes(files["a"].read_bytes())
    merge_results(out, [out, files["ab"]])
    assert _ids(out) == _ids(files["a"]) + _ids(files["b"])
    assert _no_temps(tmp_path)


def test_write_merged_picks_runs_in_the_order_given(files, tmp_path: Path):
    ids = _ids(files["ab"])
    out = write_merged(tmp_path / "p.h5", [(files["ab"], ids[3]), (files["a"], ids[0])], experiment="picked")
    assert _ids(out) == [ids[3], ids[0]]
    with h5py.File(out, "r") as f:
        assert f.attrs["experiment"] == "picked"
    with pytest.raises(MergeError, match="picked twice"):
        write_merged(tmp_path / "q.h5", [(files["a"], ids[0]), (files["ab"], ids[0])])
    with pytest.raises(MergeError, match="no run"):
        write_merged(tmp_path / "q.h5", [(files["a"], "0123456789abcdef")])
    assert not (tmp_path / "q.h5").exists()


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_disagreeing_duplicate_is_refused(files, tmp_path: Path):
    bad = _copy(files["a"], tmp_path / "bad.h5")
    with h5py.File(bad, "r+") as f:
        t = f["summary"][()]
        t["page_faults"][1] += 1
        f["summary"][...] = t
    with pytest.raises(MergeError, match="differs .* page_faults"):
        merge_results(tmp_path / "out.h5", [files["ab"], bad])
    assert not (tmp_path / "out.h5").exists() and _no_temps(tmp_path)


def test_refuses_other_files(files, tmp_path: Path):
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = 1
    with pytest.raises(MergeError, match="not an mshare-hw results file"):
        merge_results(tmp_path / "o.h5", [plain])
    newer = _copy(files["a"], tmp_path / "newer.h5")
    with h5py.File(newer, "r+") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(MergeError, match="format version 99"):
        merge_results(tmp_path / "o.h5", [newer])
    older = _copy(files["a"], tmp_path / "older.h5")
    with h5py.File(older, "r+") as f:
        t = f["summary"][()]
        del f["summary"]
        names = [n for n in t.dtype.names if n != "bystander_cycles"]
        f["summary"] = t[names]
    with pytest.raises(MergeError, match="summary columns differ"):
        merge_results(tmp_path / "o.h5", [older])
    assert summary_run_ids(older, strict=False) == []  # the runner's view: runs to replay
    with pytest.raises(MergeError):
        summary_run_ids(older)
    with pytest.raises(MergeError, match="no such file"):
        merge_results(tmp_path / "o.h5", [tmp_path / "missing.h5"])
    with pytest.raises(MergeError, match="nothing to merge"):
        merge_results(tmp_path / "o.h5", [])
    assert not (tmp_path / "o.h5").exists()


def test_experiment_names_of_several_experiments_are_joined(files, tmp_path: Path):
    other = tmp_path / "other.h5"
    run_experiment(_exp(["zen4"], name="other"), other)
    out = tmp_path / "m.h5"
    merge_results(out, [files["a"], other])
    with h5py.File(out, "r") as f:
        assert f.attrs["experiment"] == "m+other"
    assert set(load_summary(out)["experiment"]) == {"m", "other"}
