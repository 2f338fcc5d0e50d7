"""A sweep's plan: `validate` checks every grid point without replaying it; `--shard I/N` parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mshare_hw.cli import main
from mshare_hw.config.errors import ConfigError
from mshare_hw.sweep import parse_shard

N_POINTS = 12  # the grid fixture's


def test_validate_ok_counts_points(grid: Path, capsys):
    assert main(["validate", str(grid)]) == 0
    assert f"{N_POINTS} points" in capsys.readouterr().out
    assert main(["validate", str(grid), "--set", "sweep.uarch=['zen3']"]) == 0
    assert "6 points" in capsys.readouterr().out


def test_validate_lists_the_axes_of_the_grid(grid: Path, capsys):
    """The model's axes and every machine key are listed with their values, swept or not; the swept uarch
    with both of its values in grid order."""
    sweep = ["--set", 'sweep.machine.timing=["translation", "latency"]']
    assert main(["validate", str(grid), *sweep, "--set", "machine.virtualization=nested"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  machine.timing: translation, latency" in lines
    assert "  machine.virtualization: nested" in lines and "  machine.replacement: auto" in lines
    assert "  pt_config: private" in lines or any(x.startswith("  pt_config: ") for x in lines)
    assert any(x.startswith("  uarch: ") and ", " in x for x in lines)  # the grid fixture sweeps two uarchs
    assert "  detach_flush: range" in lines  # a model axis: listed at its default too
    assert main(["validate", str(grid), "--set", "sweep.detach_flush=['range', 'p4d_stride']"]) == 0
    assert "  detach_flush: range, p4d_stride" in capsys.readouterr().out.splitlines()


def test_validate_refuses_broadcast_va_without_invlpgb(grid: Path, capsys):
    """broadcast_va, like broadcast, needs INVLPGB: a Skylake-SP point is an error (exit status 2)."""
    args = ["validate", str(grid), "--set", "sweep.uarch=['skylake_sp']", "--set", "pt_config=mshare"]
    assert main([*args, "--set", "strategy=broadcast_va"]) == 2
    assert "strategy 'broadcast_va' needs INVLPGB" in capsys.readouterr().err
    assert main(["validate", str(grid), "--set", "sweep.uarch=['zen3']", "--set", "strategy=broadcast_va"]) == 0


@pytest.mark.parametrize(
    "override, message",
    [
        (["events.enabled=true", "events.region='nowhere'"], "no region 'nowhere'"),
        (["workload.params.bogus=1"], "workload.params.bogus"),
        (["sweep.machine.n_cpus=[1, 0]"], "n_cpus"),
        (["events.enabled=true", "events.file='nope.csv'"], "nope.csv"),
    ],
)
def test_validate_reports_bad_points(grid: Path, override: list[str], message: str, capsys):
    args = ["validate", str(grid)]
    for o in override:
        args += ["--set", o]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "x/2", "1", "1/2/3"])
def test_parse_shard_rejects(text: str):
    with pytest.raises(ConfigError):
        parse_shard(text)


@pytest.mark.parametrize(("text", "shard"), [("2/3", (2, 3)), ("1/1", (1, 1))])
def test_parse_shard(text: str, shard: tuple[int, int]):
    assert parse_shard(text) == shard
