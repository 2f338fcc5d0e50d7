"""`--shard I/N` (serial slices for job arrays) and `merge`: the slices merged equal the full sweep."""

from __future__ import annotations

import json
from pathlib import Path

import h5py

import mshare_hw.runner as runner_mod
from mshare_hw.cli import main
from mshare_hw.config.experiment import load_experiment
from mshare_hw.results.hdf5 import load_summary
from mshare_hw.sweep import plan, sweep


def test_shards_then_merge_equal_the_full_sweep(grid: Path, swept, tmp_path: Path, same_results):
    parts = [tmp_path / f"part{i}.h5" for i in (1, 2, 3)]
    for i, part in enumerate(parts, 1):
        assert main(["sweep", str(grid), "-o", str(part), "--shard", f"{i}/3", "-q"]) == 0
    ids = list(load_summary(swept[0])["run_id"])
    for i, part in enumerate(parts):
        assert list(load_summary(part)["run_id"]) == ids[i::3]  # points k with k % 3 == i - 1
    merged = tmp_path / "merged.h5"
    assert main(["merge", str(merged), *map(str, parts), "-q"]) == 0
    assert list(load_summary(merged)["run_id"]) == ids[0::3] + ids[1::3] + ids[2::3]  # inputs in order given
    same_results(swept[0], merged, ordered=False)
    # merging the merged file with a part again keeps every run once
    again = tmp_path / "again.h5"
    assert main(["merge", str(again), str(parts[1]), str(merged), "-q"]) == 0
    assert list(load_summary(again)["run_id"]) == ids[1::3] + ids[0::3] + ids[2::3]
    same_results(swept[0], again, ordered=False)


def test_merge_refuses_disagreeing_duplicates_and_non_results(swept, tmp_path: Path, capsys):
    out, _ = swept
    bad = tmp_path / "bad.h5"
    bad.write_bytes(out.read_bytes())
    with h5py.File(bad, "r+") as f:
        table = f["summary"][()]
        table["cycles"][0] += 1
        f["summary"][...] = table
    assert main(["merge", str(tmp_path / "m.h5"), str(out), str(bad)]) == 2
    assert "differs" in capsys.readouterr().err
    junk = tmp_path / "junk.h5"
    with h5py.File(junk, "w") as f:
        f["x"] = 1
    assert main(["merge", str(tmp_path / "m.h5"), str(junk)]) == 2
    assert "not an mshare-hw results file" in capsys.readouterr().err
    assert not (tmp_path / "m.h5").exists()


def test_serial_shard_replays_the_workload_generated_to_name_its_traces(grid: Path, tmp_path: Path, count_calls):
    """The grid check generates each workload once (for its digests); the serial runs reuse it."""
    count_calls(plan, "build_workload", "check")
    count_calls(runner_mod, "build_workload", "runs")
    exp = load_experiment(grid, ["seed=987654", "sweep.uarch=['zen3']"])  # a workload no other test built
    res = sweep(exp, tmp_path / "one.h5", shard=(1, 1))
    assert len(res.computed) == 6
    assert count_calls.calls == {"check": 1, "runs": 0}


def test_sweep_rejects_output_that_is_not_results(grid: Path, tmp_path: Path, capsys):
    out = tmp_path / "x.h5"
    out.write_text("not hdf5")
    assert main(["sweep", str(grid), "-o", str(out), "--shard", "1/12", "-q"]) == 2
    assert "not a readable mshare-hw results file" in capsys.readouterr().err
    assert json.dumps(out.read_text()) == json.dumps("not hdf5")
