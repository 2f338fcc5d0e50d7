"""Experiment files: loading, `--set` overrides, sweep expansion, and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import (
    Experiment,
    default_experiment_path,
    expand,
    load_experiment,
    parse_override,
)


def write(tmp_path: Path, text: str, name: str = "exp.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def edited(tiny: Path, old: str, new: str) -> Path:
    """The tiny experiment (tests/conftest.py) with `old` replaced by `new`."""
    text = tiny.read_text()
    assert old in text
    tiny.write_text(text.replace(old, new, 1))
    return tiny


def load_error(path: Path, overrides: list[str] | None = None) -> str:
    """The message of the ConfigError that loading `path` with `overrides` raises."""
    with pytest.raises(ConfigError) as ei:
        load_experiment(path, overrides)
    return str(ei.value)


def expand_error(path: Path, overrides: list[str] | None = None) -> str:
    """The message of the ConfigError that expanding the experiment at `path` raises."""
    exp = load_experiment(path, overrides)
    with pytest.raises(ConfigError) as ei:
        expand(exp)
    return str(ei.value)


# --------------------------------------------------------------------------------------------------
# the shipped default


def test_default_experiment_loads():
    exp = load_experiment(None)
    assert isinstance(exp, Experiment)
    assert exp.name == "default"
    assert exp == load_experiment(default_experiment_path())
    assert exp.sweep == {
        "workload.params.pool_page_size": ["4K", "2M"],
        "uarch": ["skylake_sp", "zen3"],
        "pt_config": ["private", "mshare", "hugetlb_pmd_share"],
        "workload.params.sleep_every_accesses+workload.params.sleep_cycles": [[0, 0], [20_000, 300_000]],
    }


def test_default_expands_to_grid_last_axis_fastest():
    exp = load_experiment(None)
    points = expand(exp)
    sleeps = [(p.workload.params["sleep_every_accesses"], p.workload.params["sleep_cycles"]) for p in points]
    pages = [p.workload.params["pool_page_size"] for p in points]
    assert [(g, p.uarch, p.pt_config, s) for g, p, s in zip(pages, points, sleeps)] == [
        ("4K", u, c, s)
        for u in ("skylake_sp", "zen3")
        for c in ("private", "mshare")  # hugetlb PMD sharing needs the 2 MiB pool
        for s in ((0, 0), (20_000, 300_000))  # awake clients, sleeping clients
    ] + [
        ("2M", u, c, (0, 0))  # awake clients only
        for u in ("skylake_sp", "zen3")
        for c in ("private", "mshare", "hugetlb_pmd_share")
    ]
    for p in points:
        assert isinstance(p, Experiment)
        assert p.sweep == {}
        # everything that is not a sweep axis (or an exclusion rule) is carried over unchanged
        assert p.model_dump(exclude={"uarch", "pt_config", "sweep", "exclude", "workload"}) == exp.model_dump(
            exclude={"uarch", "pt_config", "sweep", "exclude", "workload"}
        )
        params = {k: v for k, v in p.workload.params.items() if not k.startswith("sleep_") and k != "pool_page_size"}
        assert params == exp.workload.params


def test_expand_without_sweep_is_one_point(tiny: Path):
    exp = load_experiment(tiny, ["sweep={}"])
    assert exp.sweep == {}
    (point,) = expand(exp)
    assert point == exp


def test_dotted_sweep_axis_from_set(tiny: Path):
    # `--set` splits its key on every '.', making a [sweep.machine] table; the experiment flattens the
    # sweep back into dotted axes, so the override means the axis "machine.n_cpus".
    exp = load_experiment(tiny, ["sweep.machine.n_cpus=[1, 2]"])
    assert exp.sweep["machine.n_cpus"] == [1, 2]
    assert sorted({p.machine.n_cpus for p in expand(exp)}) == [1, 2]


def test_expand_dotted_axes(tiny: Path):
    p = edited(
        tiny,
        '[sweep]\npt_config = ["private", "mshare"]',
        '[sweep]\n"machine.n_cpus" = [1, 2]\n"workload.params.n_processes" = [2, 3]\npt_config = ["private", "mshare"]',
    )
    points = expand(load_experiment(p))
    got = [(q.machine.n_cpus, q.workload.params["n_processes"], q.pt_config) for q in points]
    assert got == [
        (n, k, c) for n in (1, 2) for k in (2, 3) for c in ("private", "mshare")
    ]  # first axis slowest, last fastest
    for q in points:
        # a nested sweep key replaces one value, not the whole table
        assert q.workload.params["pool_bytes"] == "16MiB"
        assert q.machine.data_caches is True


# --------------------------------------------------------------------------------------------------
# --set overrides


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("machine.n_cpus=16", "machine.n_cpus", 16),
        ("machine.data_caches=false", "machine.data_caches", False),
        ("machine.oracle=true", "machine.oracle", True),
        ("uarch=zen4", "uarch", "zen4"),  # not TOML: read as a bare string
        ('uarch="zen4"', "uarch", "zen4"),  # TOML string
        ("workload.params.zipf_s=1.2", "workload.params.zipf_s", 1.2),
        ("workload.params.pool_bytes=64MiB", "workload.params.pool_bytes", "64MiB"),
        ("sweep.uarch=['zen3', 'zen4']", "sweep.uarch", ["zen3", "zen4"]),
        ("name=a=b", "name", "a=b"),  # split at the first '='
        (" machine.n_cpus = 8", "machine.n_cpus", 8),
    ],
)
def test_parse_override(text, key, value):
    k, v = parse_override(text)
    assert k == key
    assert v == value
    assert type(v) is type(value)


def test_overrides_apply(tiny: Path):
    exp = load_experiment(
        tiny,
        [
            "machine.n_cpus=1",
            "machine.data_caches=false",
            "uarch=zen3",
            "description=from the command line",
            "workload.params.n_processes=2",
            "workload.params.accesses_per_process=5",
            "run.warmup_accesses=10",
        ],
    )
    assert exp.machine.n_cpus == 1
    assert exp.machine.data_caches is False
    assert exp.machine.oracle is True  # untouched siblings keep their values
    assert exp.uarch == "zen3"
    assert exp.description == "from the command line"
    assert exp.workload.params == {
        "n_processes": 2,
        "accesses_per_process": 5,
        "pool_bytes": "16MiB",
        "private_bytes": "1MiB",
        "text_bytes": "256KiB",
    }
    assert exp.run.warmup_accesses == 10
    assert exp.seed == 1


def test_later_override_wins(tiny: Path):
    exp = load_experiment(tiny, ["machine.n_cpus=1", "machine.n_cpus=3"])
    assert exp.machine.n_cpus == 3


def test_override_replaces_sweep_axis(tiny: Path):
    exp = load_experiment(tiny, ["sweep.pt_config=['mshare']", "sweep.uarch=['zen3', 'zen4']"])
    assert [(p.uarch, p.pt_config) for p in expand(exp)] == [("zen3", "mshare"), ("zen4", "mshare")]


def test_override_creates_missing_table(tmp_path: Path):
    p = write(tmp_path, 'name = "bare"\n')
    exp = load_experiment(p, ["workload.params.n_processes=2", "run.fault_around_pages=1"])
    assert exp.workload.params == {"n_processes": 2}
    assert exp.run.fault_around_pages == 1


def test_overrides_do_not_touch_file(tiny: Path):
    before = tiny.read_text()
    load_experiment(tiny, ["machine.n_cpus=1"])
    assert tiny.read_text() == before
    assert load_experiment(tiny).machine.n_cpus == 2


# --------------------------------------------------------------------------------------------------
# bad inputs: a ConfigError that names the file and the key


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        ('name = "tiny"', 'bogus = 1\nname = "tiny"', ["'bogus'", "unknown key"]),
        ("n_cpus = 2", "n_cpus = 2\nn_cpu = 4", ["machine.n_cpu'", "unknown key"]),
        # lists the known ones
        ('uarch = "skylake_sp"', 'uarch = "pentium4"', ["unknown uarch 'pentium4'", "skylake_sp", "zen3"]),
        ("[machine]", 'pt_config = "shared"\n\n[machine]', ["'pt_config'", "private", "mshare"]),
        ('pt_config = ["private", "mshare"]', "pt_config = []", ["key 'sweep.pt_config'", "at least 1 item"]),
        (
            "[sweep]",
            "[run]\nwarmup_accesses = 100\nwarmup_fraction = 0.1\n\n[sweep]",
            ["'run'", "warmup_accesses or warmup_fraction"],
        ),
    ],
)
def test_bad_file_names_file_and_key(tiny: Path, old: str, new: str, fragments: list[str]):
    p = edited(tiny, old, new)
    msg = load_error(p)
    assert str(p) in msg
    for fragment in fragments:
        assert fragment in msg


def test_unknown_key_from_override(tiny: Path):
    msg = load_error(tiny, ["machine.nosuch=1"])
    assert "machine.nosuch" in msg
    assert "unknown key" in msg


@pytest.mark.parametrize(
    ("override", "key"),
    [("uarch=pentium4", "uarch"), ("sweep.uarch=[]", "sweep.uarch")],
)
def test_experiment_level_errors_name_their_key(tiny: Path, override: str, key: str):
    msg = load_error(tiny, [override])
    assert f"key '{key}'" in msg


def test_bad_pt_config_in_sweep_fails_at_expand(tiny: Path):
    msg = expand_error(tiny, ["sweep.pt_config=['private', 'shared']"])
    assert "pt_config" in msg
    assert "tiny" in msg


def test_sweep_axis_unknown_key_fails_at_expand(tiny: Path):
    msg = expand_error(tiny, ["sweep.nosuch=[1, 2]"])  # the axis name is only checked per point
    assert "'nosuch'" in msg and "unknown key" in msg
    assert "sweep point" in msg and "tiny" in msg


def test_sweep_axis_unknown_nested_key_fails_at_expand(tiny: Path):
    p = edited(tiny, 'pt_config = ["private", "mshare"]', '"machine.ncpus" = [1, 2]')
    msg = expand_error(p)
    assert "machine.ncpus" in msg


def test_sweep_axis_bad_value_fails_at_expand(tiny: Path):
    p = edited(tiny, 'pt_config = ["private", "mshare"]', '"machine.n_cpus" = [2, 0]')
    msg = expand_error(p)
    assert "key 'machine.n_cpus'" in msg
    assert "'machine.n_cpus': 0" in msg  # names the failing point


def test_sweep_axis_not_a_list(tiny: Path):
    msg = load_error(tiny, ["sweep.uarch=zen3"])
    assert "sweep.uarch" in msg


@pytest.mark.parametrize("text", ["machine.n_cpus", "machine.n_cpus:4", ""])
def test_set_without_equals(tiny: Path, text: str):
    with pytest.raises(ConfigError) as ei:
        parse_override(text)
    assert "KEY=VALUE" in str(ei.value)
    assert repr(text) in str(ei.value)
    with pytest.raises(ConfigError):
        load_experiment(tiny, [text])


def test_set_empty_key(tiny: Path):
    with pytest.raises(ConfigError, match="empty key"):
        load_experiment(tiny, ["=4"])


def test_set_into_a_scalar(tiny: Path):
    msg = load_error(tiny, ["uarch.name=zen3"])
    assert "uarch.name" in msg and "not a table" in msg


def test_one_warmup_is_fine(tiny: Path):
    assert load_experiment(tiny, ["run.warmup_accesses=100"]).run.warmup_accesses == 100
    assert load_experiment(tiny, ["run.warmup_fraction=0.25"]).run.warmup_fraction == 0.25


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("machine.n_cpus=0", "machine.n_cpus"),
        ("run.warmup_fraction=1.0", "run.warmup_fraction"),
        ("scheduler.kind=fifo", "scheduler.kind"),
        ("share_level=pgd", "share_level"),
        ("workload.generator=tpcc", "workload.generator"),
        ("seed=abc", "seed"),
    ],
)
def test_bad_values_name_their_key(tiny: Path, override: str, key: str):
    msg = load_error(tiny, [override])
    assert f"key '{key}'" in msg
    assert str(tiny) in msg


def test_missing_name(tmp_path: Path):
    p = write(tmp_path, "seed = 1\n")
    msg = load_error(p)
    assert "'name'" in msg and str(p) in msg


def test_missing_file(tmp_path: Path):
    p = tmp_path / "nope.toml"
    msg = load_error(p)
    assert str(p) in msg


def test_invalid_toml(tmp_path: Path):
    p = write(tmp_path, "name = \n")
    msg = load_error(p)
    assert str(p) in msg
    assert "TOML" in msg


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_exclude_unless_feature_drops_broadcast_only_where_the_uarch_lacks_invlpgb(tmp_path):
    from mshare_hw.config.experiment import expand

    (tmp_path / "noinvlpgb.toml").write_text('extends = "zen3"\nname = "noinvlpgb"\n[features]\ninvlpgb = false\n')
    exp = Experiment.model_validate(
        {
            "name": "t",
            "pt_config": "mshare",
            "sweep": {"uarch": ["zen3", str(tmp_path / "noinvlpgb.toml")], "strategy": ["flush_all", "broadcast"]},
            "exclude": [{"strategy": "broadcast", "unless_feature": "invlpgb"}],
        }
    )
    kept = [(p.uarch.rsplit("/", 1)[-1], p.strategy) for p in expand(exp)]
    assert kept == [("zen3", "flush_all"), ("zen3", "broadcast"), ("noinvlpgb.toml", "flush_all")]


def test_exclude_unless_feature_must_name_a_feature():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="unless_feature"):
        Experiment.model_validate({"name": "t", "exclude": [{"strategy": "broadcast", "unless_feature": "avx"}]})
