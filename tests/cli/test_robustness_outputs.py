"""Issue #19, outputs: existing files, concurrent writers, unwritable paths, Ctrl-C, tables that tell
runs apart, strings readable by plain pandas."""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import pytest

from mshare_hw.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _run_ids(path: Path) -> list[str]:
    with h5py.File(path, "r") as f:
        return sorted(f["runs"])


@pytest.fixture
def results(tiny, tmp_path) -> Path:
    out = tmp_path / "tiny.h5"
    assert main(["run", "-q", str(tiny), "-o", str(out)]) == 0
    return out


def test_merge_keeps_the_runs_of_an_existing_output(results, make_tiny, tmp_path, capsys):  # row 3
    other = tmp_path / "other.h5"
    assert main(["run", "-q", str(make_tiny(seed=2, name="s2.toml")), "-o", str(other)]) == 0
    before = _run_ids(results)
    assert main(["merge", str(results), str(other)]) == 0
    assert set(before) < set(_run_ids(results))
    assert "kept 2 earlier runs" in capsys.readouterr().err
    assert main(["merge", "--replace", str(results), str(other)]) == 0
    assert _run_ids(results) == _run_ids(other)


def test_a_second_writer_refuses(results, tiny, capsys):  # row 4
    from mshare_hw.fileio import output_lock

    with output_lock(results):
        assert main(["run", "-q", str(tiny), "-o", str(results), "--append"]) == 2
    assert "another mshare-hw" in capsys.readouterr().err
    assert main(["run", "-q", str(tiny), "-o", str(results), "--append"]) == 0  # released


def test_run_adds_to_an_existing_file_only_when_asked(results, make_tiny, capsys):  # row 5
    seed2 = make_tiny(seed=2, name="s2.toml")
    assert main(["run", "-q", str(seed2), "-o", str(results)]) == 2
    assert "--append" in capsys.readouterr().err and len(_run_ids(results)) == 2
    assert main(["run", str(seed2), "-o", str(results), "--append"]) == 0
    assert "kept 2 earlier runs" in capsys.readouterr().err and len(_run_ids(results)) == 4
    assert main(["table", str(results), "--csv"]) == 0
    head = capsys.readouterr().out.splitlines()[0].split(",")
    assert "seed" in head  # the two seeds' rows differ in a column


def test_ctrl_c_keeps_the_finished_runs(tiny, tmp_path, capsys, monkeypatch):  # row 6
    import mshare_hw.runner

    real, calls = mshare_hw.runner.run_point, []

    def interrupted_second(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(mshare_hw.runner, "run_point", interrupted_second)
    out = tmp_path / "o.h5"
    assert main(["run", "-q", str(tiny), "-o", str(out)]) == 130
    assert "1 finished run written" in capsys.readouterr().err
    assert len(_run_ids(out)) == 1


@pytest.mark.parametrize("command", ["run", "sweep"])
def test_unwritable_output_is_refused_before_compute(command, tiny, capsys, monkeypatch):  # row 7
    import mshare_hw.runner

    monkeypatch.setattr(mshare_hw.runner, "run_point", lambda *a, **k: pytest.fail("computed"))
    args = ["--shard", "1/1"] if command == "sweep" else []
    assert main([command, "-q", str(tiny), "-o", "/proc/x.h5", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: /proc/x.h5: cannot write here") and len(err.strip().splitlines()) == 1


def test_report_output_must_be_a_directory(results, tmp_path, capsys):  # row 8
    a_file = tmp_path / "a.txt"
    a_file.write_text("x")
    assert main(["report", "-q", str(results), "-o", str(a_file)]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_table_default_view_fits_and_skips_empty_shootdown_columns(results, capsys, monkeypatch):  # row 12
    monkeypatch.setenv("COLUMNS", "120")
    assert main(["table", str(results)]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and "ipis_sent" not in out and "page_faults" in out


def test_report_tables_show_the_notifier_policy():  # row 13
    from mshare_hw.report.frame import load_report_frame
    from mshare_hw.report.plots.events import plot_stale
    from mshare_hw.report.tables import shootdown_table

    _, df, _ = load_report_frame(ROOT / "results" / "secondary_mmu.h5")
    table = shootdown_table(df)
    assert "notifier_policy" in table.columns
    assert not table.duplicated().any()
    drawn = plot_stale(df)
    assert "notifier_policy = host_only" in drawn.figure._suptitle.get_text()


def test_shard_beyond_the_grid_is_an_error(tiny, tmp_path, capsys):  # row 15
    out = tmp_path / "s.h5"
    assert main(["sweep", "-q", str(tiny), "--shard", "5/8", "-o", str(out)]) == 2
    assert "the grid has 2 points" in capsys.readouterr().err and not out.exists()


def test_workload_init_does_not_overwrite(tmp_path, capsys):  # row 17
    (tmp_path / "trace.1234").write_text(" L 0400000,8\n")
    assert main(["workload", "init", "-q", str(tmp_path)]) == 0
    manifest = tmp_path / "workload.toml"
    manifest.write_text(manifest.read_text() + "# edited\n")
    assert main(["workload", "init", "-q", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err and manifest.read_text().endswith("# edited\n")
    assert main(["workload", "init", "-q", "--force", str(tmp_path)]) == 0


def test_results_recipe_compares_strings(results, tmp_path, monkeypatch):  # row 18
    text = (ROOT / "docs" / "results.md").read_text()
    recipe = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "import h5py" in b)
    (tmp_path / "default.h5").write_bytes(results.read_bytes())
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(recipe, scope)
    df = scope["df"]
    assert len(df[df.uarch == "skylake_sp"]) == 2 and isinstance(df.pt_config[0], str)


def test_ctrl_c_at_start_up_exits_130_without_traceback(monkeypatch, capsys):  # row 19
    import builtins
    import sys

    import mshare_hw.cli
    from mshare_hw.__main__ import entry

    # while the command's modules load (before `main` runs)
    real_import = builtins.__import__

    def interrupted_import(name, *a, **k):
        if name == "mshare_hw.cli":
            raise KeyboardInterrupt
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, "mshare_hw.cli")
    monkeypatch.setattr(builtins, "__import__", interrupted_import)
    with pytest.raises(SystemExit) as exit_:
        entry()
    assert exit_.value.code == 130
    monkeypatch.setattr(builtins, "__import__", real_import)

    # while the arguments are parsed, before the command starts
    def interrupted_parser():
        raise KeyboardInterrupt

    monkeypatch.setattr(mshare_hw.cli, "build_parser", interrupted_parser)
    assert mshare_hw.cli.main(["uarch", "list"]) == 130
    assert "interrupted" in capsys.readouterr().err
