"""`mshare-hw validate` checks every grid point from its parameters: no trace is drawn or digested, so a
grid of 8 x 3 x 10^8 accesses validates as quickly as a small one (it used to generate the whole
workload: 21 GB)."""

from __future__ import annotations

import pytest

from mshare_hw.cli import main
from mshare_hw.workload.generators.blocks import BlockTrace
from mshare_hw.workload.generators.database import DatabaseParams
from mshare_hw.workload.generators.working_set import PointerChaseParams

BIG = """
name = "big"
seed = 1
[machine]
n_cpus = 4
[workload]
generator = "{generator}"
[workload.params]
n_processes = 8
accesses_per_process = 300_000_000
{params}
[sweep]
uarch = ["skylake_sp", "zen3"]
pt_config = ["private", "mshare"]
"workload.params.sleep_every_accesses+workload.params.sleep_cycles" = [[0, 0], [20_000, 300_000]]
"""


@pytest.fixture
def no_drawing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("validate drew a trace")

    for name in ("chunks", "digest", "to_array"):
        monkeypatch.setattr(BlockTrace, name, refuse)
    monkeypatch.setattr(DatabaseParams, "tables", refuse)  # the pool's popularity tables: built when drawn
    monkeypatch.setattr(PointerChaseParams, "cycle", refuse)


@pytest.mark.parametrize(
    ("generator", "params"),
    [
        ("database", 'pool_bytes = "1GiB"'),
        ("pointer_chase", 'working_set_bytes = "1GiB"'),
    ],
)
def test_validate_draws_no_trace(tmp_path, capsys, no_drawing, generator, params):
    exp = tmp_path / "big.toml"
    exp.write_text(BIG.format(generator=generator, params=params))
    assert main(["validate", str(exp)]) == 0
    assert "OK, experiment 'big', 8 points" in capsys.readouterr().out


def test_validate_still_refuses_a_bad_point(tmp_path, capsys, no_drawing):
    exp = tmp_path / "big.toml"
    exp.write_text(BIG.format(generator="database", params='pool_bytes = "1GiB"'))
    assert main(["validate", str(exp), "--set", "run.warmup_accesses=2400000000"]) == 2
    assert "run.warmup_accesses" in capsys.readouterr().err
