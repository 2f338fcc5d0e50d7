"""The sweep tests' grid (12 runs) and the sweeps that several test files compare against."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mshare_hw.config.experiment import load_experiment
from mshare_hw.runner import run_experiment

# the tiny experiment on 2 uarchs x 2 page-table configurations x 3 CPU counts: 12 runs (N_POINTS in the tests)
GRID_AXES = '[sweep]\nuarch = ["skylake_sp", "zen3"]\n'
GRID_CPUS = '"machine.n_cpus" = [1, 2, 4]\n'


@pytest.fixture(scope="package")
def grid(tmp_path_factory, tiny_text) -> Path:
    p = tmp_path_factory.mktemp("grid") / "grid12.toml"
    p.write_text(tiny_text(seed=3, accesses=60_000).replace("[sweep]\n", GRID_AXES) + GRID_CPUS)
    return p


@pytest.fixture(scope="package")
def serial(grid: Path) -> Path:
    out = grid.parent / "serial.h5"
    run_experiment(load_experiment(grid), out)
    return out


@pytest.fixture(scope="session")
def sweep_command() -> Callable[..., list[str]]:
    """`sweep_command(grid, out, *extra)`: the `mshare-hw sweep` command line (`python -m mshare_hw`) of a
    2-worker local sweep."""

    def command(grid: Path, out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "mshare_hw", "sweep", str(grid), "-o", str(out), "--workers", "2", *extra]

    return command


@pytest.fixture(scope="session")
def subprocess_env() -> dict[str, str]:
    """A subprocess imports the mshare_hw this test imported (installed, or a source tree built in place)."""
    import mshare_hw

    return {**os.environ, "PYTHONPATH": str(Path(mshare_hw.__file__).resolve().parents[1])}


@pytest.fixture(scope="package")
def swept(grid: Path, sweep_command, subprocess_env) -> tuple[Path, str]:
    """The uninterrupted sweep on a LocalCluster of 2 worker threads (`mshare-hw sweep` in a subprocess,
    so that a cluster that cannot start fails the test instead of hanging it): its file and its stderr."""
    out = grid.parent / "swept.h5"
    cmd = sweep_command(grid, out)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=grid.parent, env=subprocess_env)
    assert done.returncode == 0, done.stderr
    return out, done.stderr


@pytest.fixture(scope="session")
def no_temp_files() -> Callable[..., bool]:
    """`no_temp_files(*dirs)`: no temporary file (mshare_hw.fileio's pattern) is left in any of `dirs`."""
    from mshare_hw.fileio import TEMP_MARK

    def check(*dirs: Path) -> bool:
        return not any(p.name.startswith(".") and TEMP_MARK in p.name for d in dirs if d.is_dir() for p in d.iterdir())

    return check


@pytest.fixture
def count_calls(monkeypatch) -> Callable[..., None]:
    """`count_calls(module, name, key)` replaces `module.name` with a wrapper that counts its calls under
    `key` in `count_calls.calls` (a dict; 0 until called)."""
    calls: dict[str, int] = {}

    def count(module, name: str, key: str) -> None:
        real = getattr(module, name)
        calls[key] = 0

        def wrapped(*args, **kwargs):
            calls[key] += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapped)

    count.calls = calls  # type: ignore[attr-defined]
    return count
