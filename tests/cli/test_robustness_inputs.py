"""Issue #19, settings: `--set` on a sweep axis, impossible [run] settings, workloads too big for memory,
errors that name their source, help texts (their examples run in test_documented_examples.py), 57-bit
addresses on a 4-level machine."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mshare_hw.cli import build_parser, main


def test_set_on_a_sweep_axis_replaces_it(tiny, capsys, caplog):  # row 1
    assert main(["validate", str(tiny), "--set", "pt_config=mshare"]) == 0
    assert "1 point" in capsys.readouterr().out
    assert "replaces the [sweep] axis pt_config = ['private', 'mshare']" in caplog.text


def test_warmup_of_every_access_is_refused_before_running(tiny, tmp_path, capsys):  # row 2
    out = tmp_path / "o.h5"
    assert main(["run", "-q", str(tiny), "-o", str(out), "--set", "run.warmup_accesses=2000"]) == 2
    err = capsys.readouterr().err
    assert "run.warmup_accesses" in err and "2,000" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_too_many_interval_rows_is_refused(tiny, capsys, monkeypatch):  # row 10
    import mshare_hw.runner

    monkeypatch.setattr(mshare_hw.runner, "MAX_INTERVAL_ROWS", 100, raising=False)
    assert main(["validate", str(tiny), "--set", "run.interval_accesses=1"]) == 2
    assert "run.interval_accesses" in capsys.readouterr().err


def test_workload_too_big_for_memory_is_one_line(tiny, capsys):  # row 9
    # traces are drawn in chunks while replayed: 10^12 accesses take memory through the pages they touch
    huge = ["--set", "workload.params.accesses_per_process=1000000000000"]
    huge += ["--set", 'workload.params.pool_bytes="64TiB"']
    assert main(["validate", str(tiny), *huge]) == 2
    err = capsys.readouterr().err
    assert "workload.params.accesses_per_process" in err and "TiB" in err and "Traceback" not in err


def test_errors_name_the_set_and_the_file(tiny, capsys):  # row 16
    assert main(["validate", str(tiny), "--set", "machine.n_cpus=four"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tiny} with --set machine.n_cpus=four: key 'machine.n_cpus'")
    assert main(["validate", str(tiny), "--set", "workload.params.zipf_s=-1"]) == 2
    err = capsys.readouterr().err
    assert str(tiny) in err and "workload.params.zipf_s" in err


def test_addresses_beyond_47_bits_name_five_level():  # row 21
    from mshare_hw.config.errors import ConfigError
    from mshare_hw.config.experiment import load_experiment
    from mshare_hw.runner import check_point, params_for
    from mshare_hw.traces.source import ArrayTrace
    from mshare_hw.workload.model import Process, Region, Workload

    start = 1 << 47
    trace = ArrayTrace(np.array([start], np.uint64), np.array([1], np.uint8))
    w = Workload([Process("p", trace)], [Region("high", start, 4096)])
    point = load_experiment(None, ["sweep={}"])
    with pytest.raises(ConfigError, match=r"machine\.five_level"):
        check_point(point, w, params_for(point, w.total_accesses()))


def _help_texts(parser, out):
    out.append(parser.format_help())
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for sub in choices.values():
                _help_texts(sub, out)
    return out


def test_help_texts_have_no_doubled_percent_and_their_generate_example_runs(tmp_path, capsys):  # row 11
    texts = _help_texts(build_parser(), [])
    assert not [t for t in texts if "%%" in t]
    gen = next(t for t in texts if "usage: mshare-hw trace generate" in t)
    example = re.search(r"e\.g\. (-p .*?) \(repeatable\)", " ".join(gen.split())).group(1).split()
    assert main(["trace", "generate", "uniform", str(tmp_path / "x.h5"), "-q", *example]) == 0
    assert main(["trace", "generate", "uniform", str(tmp_path / "y.h5"), "-p", "n_processes"]) == 2
    assert "-p 'n_processes': expected KEY=VALUE, e.g. -p" in capsys.readouterr().err


def test_trace_info_on_a_cut_short_gzip_and_a_bom(tmp_path, capsys):  # row 14
    import gzip

    data = gzip.compress(b" L 0400000,8\n S 0400010,8\n" * 20000)
    (tmp_path / "trunc.txt.gz").write_bytes(data[:300])
    assert main(["trace", "info", str(tmp_path / "trunc.txt.gz")]) == 2
    err = capsys.readouterr().err
    assert "gzip stream ends at byte offset" in err and "truncated or corrupt" in err and "near line" not in err
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf L 0400000,8\n S 0400010,8\n")
    assert main(["trace", "info", str(tmp_path / "bom.txt")]) == 0
    out = capsys.readouterr().out
    assert "lackey trace" in out and "accesses        2" in out
