"""An experiment's [workload] table -> a Workload: parameter checking, size strings, the seed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import WorkloadCfg, expand, load_experiment
from mshare_hw.runner import WorkloadCache
from mshare_hw.workload import generators
from mshare_hw.workload.build import build_workload
from mshare_hw.workload.generators import generator_params
from mshare_hw.workload.generators.blocks import to_array

SMALL_DB = {
    "n_processes": 2,
    "accesses_per_process": 500,
    "pool_bytes": "16MiB",
    "private_bytes": "1MiB",
    "text_bytes": "256KiB",
}


def params_of(cfg: WorkloadCfg, seed: int) -> dict:
    return generator_params(cfg.generator, cfg.params, seed).model_dump()


def db(**extra) -> WorkloadCfg:
    return WorkloadCfg(generator="database", params={**SMALL_DB, **extra})


@pytest.mark.parametrize("generator", ["database", "uniform", "strided", "pointer_chase"])
def test_unknown_param_names_key(generator: str):
    cfg = WorkloadCfg(generator=generator, params={"n_processes": 1, "bogus_knob": 3})
    with pytest.raises(ConfigError) as ei:
        params_of(cfg, 1)
    msg = str(ei.value)
    assert msg.startswith("workload.params.bogus_knob:")
    assert f"generator '{generator}'" in msg
    assert "n_processes" in msg  # lists what is allowed
    with pytest.raises(ConfigError, match=r"workload\.params\.bogus_knob"):
        build_workload(cfg, 1)


def test_seed_is_not_a_param():
    with pytest.raises(ConfigError) as ei:
        params_of(db(seed=5), 1)
    msg = str(ei.value)
    assert msg.startswith("workload.params.seed:")
    assert "`seed`" in msg  # points at the experiment's seed


def test_unknown_param_from_experiment_file(tmp_path: Path):
    p = tmp_path / "e.toml"
    p.write_text('name = "e"\n[workload]\ngenerator = "uniform"\n[workload.params]\nworking_set = 4096\n')
    (point,) = expand(load_experiment(p))  # the params table is free-form until the workload is built
    with pytest.raises(ConfigError, match=r"^workload\.params\.working_set:"):
        build_workload(point.workload, point.seed)


@pytest.mark.parametrize(
    ("text", "value"),
    [("64MiB", 64 << 20), ("16MiB", 16 << 20), ("256KiB", 256 << 10), ("1.5 MiB", 3 << 19), ("4K", 4096)],
)
def test_size_strings(text: str, value: int):
    kw = params_of(db(pool_bytes=text), 1)
    assert kw["pool_bytes"] == value
    assert type(kw["pool_bytes"]) is int


def test_sizes_as_integers_pass_through():
    kw = params_of(db(pool_bytes=1 << 24, private_bytes=1 << 20), 1)
    assert kw["pool_bytes"] == 1 << 24
    assert kw["private_bytes"] == 1 << 20


def test_size_strings_build_the_same_workload_as_integers():
    a = build_workload(db(), 4)
    b = build_workload(db(pool_bytes=16 << 20, private_bytes=1 << 20, text_bytes=256 << 10), 4)
    assert a.trace_digests() == b.trace_digests()
    assert a.regions == b.regions
    pool = next(r for r in a.regions if r.name == "buffer_pool")
    assert pool.size == 16 << 20


def test_size_strings_for_micro_benchmarks():
    cfg = WorkloadCfg(
        generator="strided",
        params={"n_processes": 1, "accesses_per_process": 10, "working_set_bytes": "64KiB", "stride_bytes": "4KiB"},
    )
    w = build_workload(cfg, 1)
    assert w.regions[0].size == 64 << 10
    addrs = to_array(w.processes[0].trace).addrs
    assert len(addrs) == 10
    assert all(int(b - a) % (64 << 10) == 4096 for a, b in zip(addrs[:-1], addrs[1:]))


def test_bad_size_string_names_key():
    with pytest.raises(ConfigError) as ei:
        params_of(db(pool_bytes="lots"), 1)
    msg = str(ei.value)
    assert msg.startswith("workload.params.pool_bytes:")
    assert "lots" in msg


def test_seed_comes_from_experiment():
    kw = params_of(db(), 7)
    assert kw["seed"] == 7
    w7 = build_workload(db(), 7)
    direct = generators.database_workload(**SMALL_DB, seed=7)  # sizes as strings work in direct calls too
    assert w7.trace_digests() == direct.trace_digests()
    assert build_workload(db(), 8).trace_digests() != w7.trace_digests()
    assert build_workload(db(), 7).trace_digests() == w7.trace_digests()  # deterministic


def test_experiment_seed_reaches_the_workload(tmp_path: Path):
    p = tmp_path / "e.toml"
    lines = "\n".join(f"{k} = {v!r}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in SMALL_DB.items())
    p.write_text(f'name = "e"\nseed = 11\n[workload]\ngenerator = "database"\n[workload.params]\n{lines}\n')
    (point,) = expand(load_experiment(p))
    workload, digests = WorkloadCache().get(point)
    assert digests == build_workload(db(), 11).trace_digests()
    (point2,) = expand(load_experiment(p, ["seed=12"]))
    assert WorkloadCache().get(point2)[1] == build_workload(db(), 12).trace_digests()
    assert WorkloadCache().get(point2)[1] != digests


def test_missing_required_params():
    cfg = WorkloadCfg(generator="uniform", params={"n_processes": 1})
    with pytest.raises(ConfigError) as ei:
        params_of(cfg, 1)
    msg = str(ei.value)
    assert "generator 'uniform'" in msg
    assert "accesses_per_process" in msg and "working_set_bytes" in msg


def test_defaults_fill_unnamed_params():
    w = build_workload(WorkloadCfg(generator="database", params={**SMALL_DB, "n_processes": 3}), 1)
    assert len(w.processes) == 3
    assert all(len(p.trace) == 500 for p in w.processes)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"n_processes": 0}, "n_processes"),
        ({"zipf_s": -1.0}, "zipf"),
        ({"pool_page_size": "3K"}, "page_size"),
    ],
)
def test_generator_value_errors_become_config_errors(params: dict, fragment: str):
    with pytest.raises(ConfigError) as ei:
        build_workload(db(**params), 1)
    msg = str(ei.value)
    assert msg.startswith("workload.params")
    assert "generator 'database'" in msg
    assert fragment in msg
