"""User uarch files: named by path in an experiment or `--set`, found on MSHARE_HW_UARCH_PATH, and
`extends` a shipped or another user file with a deep merge."""

from __future__ import annotations

from pathlib import Path

import pytest

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import load_experiment
from mshare_hw.config.uarch import UARCH_PATH_ENV, list_uarchs, load_uarch, uarch_catalog

HOST = """extends = "zen4"
description = "my host"
[costs]
invlpg_cycles = 123
[caches.l2]
latency = 17
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_extends_overrides_only_the_given_keys(tmp_path):
    u = load_uarch(_write(tmp_path / "host.toml", HOST))
    zen4 = load_uarch("zen4")
    assert u.name == "host" and u.description == "my host"
    assert u.costs.invlpg_cycles == 123 and u.caches.l2.latency == 17
    assert u.caches.l2.size_kib == zen4.caches.l2.size_kib  # the rest of the table is inherited
    assert u.costs.model_dump() == {**zen4.costs.model_dump(), "invlpg_cycles": 123}
    assert u.tlb == zen4.tlb


def test_extends_a_relative_path_and_chains(tmp_path):
    _write(tmp_path / "host.toml", HOST)
    u = load_uarch(_write(tmp_path / "sub" / "child.toml", 'extends = "../host.toml"\n[costs]\ncr3_flush_cycles = 7\n'))
    assert u.name == "child" and u.costs.invlpg_cycles == 123 and u.costs.cr3_flush_cycles == 7


def test_extends_cycle_and_unknown_parent_are_one_line_errors(tmp_path):
    _write(tmp_path / "a.toml", 'extends = "b.toml"\n')
    _write(tmp_path / "b.toml", 'extends = "a.toml"\n')
    with pytest.raises(ConfigError, match="cycle"):
        load_uarch(tmp_path / "a.toml")
    with pytest.raises(ConfigError, match=r"key 'extends': unknown uarch 'pentium4'"):
        load_uarch(_write(tmp_path / "c.toml", 'extends = "pentium4"\n'))


def test_extending_file_gets_the_same_validation(tmp_path):
    p = _write(tmp_path / "bad.toml", 'extends = "zen4"\n[costs]\ninvlpg_cycles = 0\nclock_ghz = 3\n')
    with pytest.raises(ConfigError) as e:
        load_uarch(p)
    msg = str(e.value)
    assert f"{p}: key 'costs.invlpg_cycles'" in msg and f"{p}: key 'costs.clock_ghz': unknown key" in msg


def test_search_path_lists_user_files_and_marks_broken_ones(tmp_path, monkeypatch):
    good = _write(tmp_path / "d1" / "host.toml", HOST)
    broken = _write(tmp_path / "d2" / "broken.toml", "extends = \n")
    shadow = _write(tmp_path / "d2" / "zen4.toml", HOST)
    monkeypatch.setenv(UARCH_PATH_ENV, f"{tmp_path / 'd1'}:{tmp_path / 'd2'}:{tmp_path / 'missing'}")
    assert "host" in list_uarchs() and "broken" not in list_uarchs()
    assert load_uarch("host").costs.invlpg_cycles == 123
    by_path = {e.path: e for e in uarch_catalog()}
    assert by_path[good].error is None and not by_path[good].shipped
    assert "not valid TOML" in by_path[broken].error and "\n" not in by_path[broken].error
    assert "taken by" in by_path[shadow].error
    assert load_uarch("zen4").costs.invlpg_cycles != 123  # the shipped file wins


def test_experiment_uarch_path_is_relative_to_the_experiment(tmp_path, monkeypatch):
    _write(tmp_path / "uarch" / "host.toml", HOST)
    exp = _write(tmp_path / "exp" / "e.toml", 'name = "e"\nuarch = "../uarch/host.toml"\n')
    e = load_experiment(exp)
    assert Path(e.uarch) == (tmp_path / "uarch" / "host.toml").resolve()
    assert load_uarch(e.uarch).name == "host"


def test_set_uarch_path_is_relative_to_the_cwd(tmp_path, monkeypatch):
    _write(tmp_path / "host.toml", HOST)
    exp = _write(tmp_path / "exp" / "e.toml", 'name = "e"\n[sweep]\nuarch = ["zen4", "../host.toml"]\n')
    assert load_experiment(exp).sweep["uarch"][1] == str((tmp_path / "host.toml").resolve())
    monkeypatch.chdir(tmp_path)
    e = load_experiment(exp, ["uarch=host.toml"])
    assert e.uarch == str((tmp_path / "host.toml").resolve())


def test_experiment_with_broken_or_missing_user_file_is_refused(tmp_path):
    _write(tmp_path / "bad.toml", 'extends = "zen4"\n[costs]\nbogus = 1\n')
    exp = _write(tmp_path / "e.toml", 'name = "e"\nuarch = "bad.toml"\n')
    with pytest.raises(ConfigError, match=r"key 'uarch':.*key 'costs.bogus': unknown key"):
        load_experiment(exp)
    with pytest.raises(ConfigError, match=r"key 'uarch':.*file not found"):
        load_experiment(exp, ["uarch=nothere.toml"])
    with pytest.raises(ConfigError, match=r"unknown uarch 'pentium4' \(known: .*zen4"):
        load_experiment(exp, ["uarch=pentium4"])
