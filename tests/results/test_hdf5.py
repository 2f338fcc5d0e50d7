"""The HDF5 results file: layout, stable summary columns, readers, atomic writes, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

import mshare_hw
from mshare_hw import runner
from mshare_hw.config.experiment import expand, load_experiment
from mshare_hw.counters import COUNTERS, INDEX
from mshare_hw.results.hdf5 import FORMAT_NAME, FORMAT_VERSION, load_run, load_summary, write_results
from mshare_hw.results.summary import EXTRA_COLUMNS, STABLE_COLUMNS, STRING_COLUMNS

LEVELS = {1: "pt", 2: "pd", 3: "pdpt", 4: "pml4", 5: "pml5"}


class Tiny:
    """One run of the tiny experiment: its file, returned rows, the runs handed to write_results."""

    def __init__(self, toml: Path) -> None:
        self.toml = toml
        self.exp = load_experiment(self.toml)
        self.h5 = toml.with_suffix(".h5")
        captured: list = []

        def capture(path, name, runs):
            captured.append(runs)
            return write_results(path, name, runs)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(runner, "write_results", capture)
            self.rows = runner.run_experiment(self.exp, self.h5)
        self.runs = captured[0]


@pytest.fixture
def tiny_run(make_tiny, tmp_path: Path) -> Tiny:
    """The tiny experiment (2,000 accesses per process) run in tmp_path/tiny/."""
    (tmp_path / "tiny").mkdir()
    return Tiny(make_tiny(accesses=2000, name="tiny/tiny_run.toml"))


# --------------------------------------------------------------------------------------------------
# layout


def test_root_attributes(tiny_run: Tiny):
    with h5py.File(tiny_run.h5, "r") as f:
        attrs = dict(f.attrs)
    for key in ("format", "format_version", "tool_version", "created"):
        assert key in attrs
    assert attrs["format"] == FORMAT_NAME == "mshare-hw-results"
    assert int(attrs["format_version"]) == FORMAT_VERSION == 1
    assert attrs["tool_version"] == mshare_hw.__version__
    assert attrs["experiment"] == "tiny"
    created = datetime.fromisoformat(attrs["created"])
    assert created.tzinfo is not None
    assert abs((datetime.now(created.tzinfo) - created).total_seconds()) < 3600


def test_runs_groups(tiny_run: Tiny):
    with h5py.File(tiny_run.h5, "r") as f:
        assert sorted(f["runs"]) == sorted(r["run_id"] for r in tiny_run.rows)
        for rid in f["runs"]:
            g = f["runs"][rid]
            for ds in ("cpu_counters", "proc_counters", "clocks", "pt_pages", "stale_examples"):
                assert ds in g
            assert g["cpu_counters"].shape == (2, len(COUNTERS))
            assert g["proc_counters"].shape == (2, len(COUNTERS))
            assert json.loads(g.attrs["counter_names"]) == list(COUNTERS)


def test_summary_with_plain_h5py_and_pandas(tiny_run: Tiny):
    with h5py.File(tiny_run.h5, "r") as f:
        df = pd.DataFrame(f["summary"][()])
        dtype = f["summary"].dtype
    assert list(df.columns[: len(STABLE_COLUMNS)]) == list(STABLE_COLUMNS)
    assert list(df.columns) == list(STABLE_COLUMNS + EXTRA_COLUMNS)
    assert len(df) == 2
    for name in STABLE_COLUMNS + EXTRA_COLUMNS:
        if name in STRING_COLUMNS:
            assert h5py.check_string_dtype(dtype.fields[name][0]) is not None
        else:
            assert dtype.fields[name][0] == np.int64
    # strings come back as bytes from plain h5py: decodable UTF-8
    assert [v.decode() if isinstance(v, bytes) else v for v in df["pt_config"]] == ["private", "mshare"]


def test_load_summary_decodes_strings(tiny_run: Tiny):
    df = load_summary(tiny_run.h5)
    assert list(df.columns) == list(STABLE_COLUMNS + EXTRA_COLUMNS)
    for col in STRING_COLUMNS:
        assert all(isinstance(v, str) for v in df[col]), col
    assert list(df["pt_config"]) == ["private", "mshare"]
    assert list(df["uarch"]) == ["skylake_sp", "skylake_sp"]
    assert list(df["experiment"]) == ["tiny", "tiny"]
    assert list(df["strategy"]) == ["none", "none"]
    assert list(df["share_level"]) == ["none", "p4d"]
    assert list(df["n_cpus"]) == [2, 2]
    assert list(df["n_processes"]) == [2, 2]
    assert list(df["accesses"]) == [4000, 4000]
    # the file holds exactly what run_experiment returned
    for i, row in enumerate(tiny_run.rows):
        assert df.iloc[i].to_dict() == row


def test_load_summary_rejects_foreign_file(tmp_path: Path):
    p = tmp_path / "other.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("summary", data=np.zeros(3))
    with pytest.raises(ValueError, match="not an mshare-hw results file"):
        load_summary(p)


def test_load_run_config_is_the_resolved_point(tiny_run: Tiny):
    points = expand(tiny_run.exp)
    assert [r["pt_config"] for r in tiny_run.rows] == [p.pt_config for p in points]
    for row, point in zip(tiny_run.rows, points):
        run = load_run(tiny_run.h5, row["run_id"])
        assert run["config"] == point.model_dump()
        assert run["config"]["sweep"] == {}
        assert run["seed"] == 1
        assert len(run["trace_digests"]) == 2
    # the same workload replayed under both configurations
    a, b = (load_run(tiny_run.h5, r["run_id"])["trace_digests"] for r in tiny_run.rows)
    assert a == b


def test_load_run_unknown_id(tiny_run: Tiny):
    with pytest.raises(KeyError):
        load_run(tiny_run.h5, "0000000000000000")


def test_load_run_tables_add_up_to_summary(tiny_run: Tiny):
    df = load_summary(tiny_run.h5)
    for _, s in df.iterrows():
        run = load_run(tiny_run.h5, s["run_id"])
        cpu, proc = run["cpu_counters"], run["proc_counters"]
        assert isinstance(cpu, pd.DataFrame) and isinstance(proc, pd.DataFrame)
        assert list(cpu.columns) == list(COUNTERS) == list(proc.columns)
        assert len(cpu) == 2
        assert list(proc.index) == ["client0", "client1"]
        for table in (cpu, proc):
            sums = table.sum()
            for name in COUNTERS:
                if name not in df.columns:
                    continue
                want = s[name]
                if name == "page_faults":  # the summary counts every fault, mshare link faults included
                    want = s["page_faults"] - s["link_faults"]
                assert sums[name] == want, (s["pt_config"], name)
            assert sums["page_faults"] + sums["link_faults"] == s["page_faults"]
        # page-table memory comes from the page counts, not from a counter
        pages = run["pt_pages"]
        assert s["pt_bytes"] == int(pages.sum()) * 4096
        for level, lname in LEVELS.items():
            assert s[f"pt_bytes_{lname}"] == int(pages[level]) * 4096
        assert s["makespan_cycles"] == int(run["clocks"].max())
        assert list(run["stale_examples"].columns) == ["cycle", "cpu", "proc", "va", "where"]
        assert len(run["stale_examples"]) == 0 == s["stale_translations"]
    mshare = df[df.pt_config == "mshare"].iloc[0]
    assert mshare["link_faults"] > 0  # so the page_faults rule above is exercised


def test_interval_series(make_tiny, tmp_path: Path):
    exp = load_experiment(make_tiny(accesses=2000), ["run.interval_accesses=1000", "sweep.pt_config=['mshare']"])
    out = tmp_path / "i.h5"
    (row,) = runner.run_experiment(exp, out)
    iv = load_run(out, row["run_id"])["intervals"]
    assert list(iv.columns) == list(COUNTERS)
    assert list(iv.index) == [1000, 2000, 3000, 4000]
    assert list(iv["accesses"]) == [1000, 2000, 3000, 4000]
    assert (iv.diff().dropna() >= 0).all().all()  # cumulative
    assert iv.iloc[-1]["page_faults"] + iv.iloc[-1]["link_faults"] == row["page_faults"]


def test_readable_without_mshare_hw(tiny_run: Tiny, tmp_path: Path):
    """Analysis scripts read the summary with h5py and pandas only. -I keeps the checkout off sys.path, and
    mshare_hw is blocked outright (it may be installed in this environment): importing it would fail."""
    code = (
        "import json, sys\n"
        "sys.modules['mshare_hw'] = None  # any import of mshare_hw now raises ImportError\n"
        "import h5py, pandas as pd\n"
        "with h5py.File(sys.argv[1], 'r') as f:\n"
        "    df = pd.DataFrame(f['summary'][()])\n"
        "    fmt = f.attrs['format']\n"
        "dec = lambda v: v.decode() if isinstance(v, bytes) else v\n"
        "print(json.dumps({'columns': list(df.columns), 'pt_config': [dec(v) for v in df['pt_config']],\n"
        "                  'page_faults': [int(v) for v in df['page_faults']], 'format': dec(fmt),\n"
        "                  'mods': sorted(m for m, v in sys.modules.items() if m.startswith('mshare') and v)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, str(tiny_run.h5)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["mods"] == []
    assert out["format"] == FORMAT_NAME
    assert out["columns"][: len(STABLE_COLUMNS)] == list(STABLE_COLUMNS)
    assert out["pt_config"] == ["private", "mshare"]
    assert out["page_faults"] == [r["page_faults"] for r in tiny_run.rows]


# --------------------------------------------------------------------------------------------------
# atomic writes


def _fail_after_summary(monkeypatch, exc: type[BaseException] = RuntimeError) -> list[str]:
    """Make h5py raise when the first per-run table is created (the summary is already in the file)."""
    created: list[str] = []
    real = h5py.Group.create_dataset

    def create_dataset(self, name, *args, **kwargs):
        if name == "cpu_counters":
            raise exc("injected failure while writing")
        created.append(name)
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", create_dataset)
    return created


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An empty directory of its own, to check that a failed write leaves nothing in it."""
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_failed_write_leaves_nothing(tiny_run: Tiny, out_dir: Path, monkeypatch):
    target = out_dir / "r.h5"
    created = _fail_after_summary(monkeypatch)
    with pytest.raises(RuntimeError, match="injected"):
        write_results(target, "tiny", tiny_run.runs)
    assert created == ["summary"]  # it did fail midway
    assert not target.exists()
    assert list(out_dir.iterdir()) == []  # no temporary file left behind


def test_interrupted_write_leaves_nothing(tiny_run: Tiny, out_dir: Path, monkeypatch):
    target = out_dir / "r.h5"
    _fail_after_summary(monkeypatch, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        write_results(target, "tiny", tiny_run.runs)
    assert list(out_dir.iterdir()) == []


def test_bad_array_leaves_nothing(tiny_run: Tiny, out_dir: Path):
    target = out_dir / "r.h5"
    bad = list(tiny_run.runs)
    bad[1] = replace(bad[1], result={**bad[1].result, "proc_counters": np.array([object(), object()], dtype=object)})
    with pytest.raises((TypeError, ValueError)):
        write_results(target, "tiny", bad)
    assert list(out_dir.iterdir()) == []


def test_failed_rewrite_keeps_good_file(tiny_run: Tiny, out_dir: Path, monkeypatch):
    target = out_dir / "r.h5"
    write_results(target, "tiny", tiny_run.runs)
    before = target.read_bytes()
    mtime = target.stat().st_mtime_ns
    _fail_after_summary(monkeypatch)
    with pytest.raises(RuntimeError):
        write_results(target, "tiny", tiny_run.runs[:1])
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert target.stat().st_mtime_ns == mtime
    assert list(out_dir.iterdir()) == [target]
    assert len(load_summary(target)) == 2


def test_crash_during_replay_writes_nothing(tiny_run: Tiny, out_dir: Path, monkeypatch):
    """run_experiment writes once, after every point ran: a failure in the second point leaves no file."""
    calls = []
    real = runner.run_workload

    def flaky(workload, params, **kw):
        calls.append(params.pt_config)
        if len(calls) == 2:
            raise RuntimeError("engine crashed")
        return real(workload, params, **kw)

    monkeypatch.setattr(runner, "run_workload", flaky)
    target = out_dir / "r.h5"
    with pytest.raises(RuntimeError, match="engine crashed"):
        runner.run_experiment(tiny_run.exp, target)
    assert calls == ["private", "mshare"]
    assert list(out_dir.iterdir()) == []


def test_write_creates_parent_directories(tiny_run: Tiny, tmp_path: Path):
    target = tmp_path / "a" / "b" / "r.h5"
    write_results(target, "tiny", tiny_run.runs)
    assert len(load_summary(target)) == 2
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.h5"]


# --------------------------------------------------------------------------------------------------
# determinism


def test_same_experiment_twice_gives_identical_counters(tiny_run: Tiny, tmp_path: Path):
    again = tmp_path / "again.h5"
    rows = runner.run_experiment(load_experiment(tiny_run.toml), again)
    assert rows == tiny_run.rows
    a, b = load_summary(tiny_run.h5), load_summary(again)
    int_cols = [c for c in a.columns if c not in STRING_COLUMNS]
    assert int_cols  # all counters are int64
    pd.testing.assert_frame_equal(a[int_cols], b[int_cols])
    assert list(a["run_id"]) == list(b["run_id"])
    pd.testing.assert_frame_equal(a, b)
    for rid in a["run_id"]:
        ra, rb = load_run(tiny_run.h5, rid), load_run(again, rid)
        pd.testing.assert_frame_equal(ra["cpu_counters"], rb["cpu_counters"])
        pd.testing.assert_frame_equal(ra["proc_counters"], rb["proc_counters"])
        np.testing.assert_array_equal(ra["clocks"], rb["clocks"])
        np.testing.assert_array_equal(ra["pt_pages"], rb["pt_pages"])


def test_summary_totals_are_cpu_totals(tiny_run: Tiny):
    for r in tiny_run.runs:
        totals = r.result["cpu_counters"].sum(axis=0)
        assert r.row["accesses"] == totals[INDEX["accesses"]] == 4000
        assert r.row["walks"] == totals[INDEX["walks"]]
