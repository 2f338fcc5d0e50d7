"""Hypothesis: whatever a manifest holds (random TOML-ish structures, random bytes), loading and
building it raises ConfigError or nothing at all."""

from __future__ import annotations

import gzip
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mshare_hw.config.errors import ConfigError
from mshare_hw.workload.manifest import build_manifest_workload, load_run_file

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

MAPS = "10000000-10004000 rw-s 00000000 00:01 7 /dev/shm/pool\n20000000-20001000 rw-p 00000000 00:00 0\n"
TRACE = b"==100== x\nI  00400000,4\n L 10000008,8\n S 10001ff8,8\n"

_keys = st.sampled_from(
    ["trace", "name", "pid", "format", "trace_process", "maps", "cpu", "skip_bad_lines", "start", "size",
     "from_maps", "maps_start", "kind", "page_size", "shared", "processes", "share_tables", "relocate",
     "n_cpus", "description", "kind", "quantum_cycles", "warmup_accesses", "warmup_fraction", "bogus"]
)  # fmt: skip
_strings = st.sampled_from(
    ["trace.100", "trace.100.gz", "maps.100", "missing", "/dev/shm/pool", "largest_shared", "4K", "2M", "1G",
     "shmem", "anon", "file", "auto", "native", "lackey", "champsim", "0x10000000", "4MiB", "-1", "", "pid100",
     "dir", "../..", "\x00", "a" * 300, "1e400"]
) | st.text(max_size=12)  # fmt: skip
_ints = st.one_of(st.integers(-5, 70), st.sampled_from([0x1000_0000, 1 << 39, 1 << 47, 1 << 57, 1 << 63, -(1 << 63)]))
_scalars = st.one_of(_ints, _strings, st.booleans(), st.floats(allow_nan=False, allow_infinity=False, width=32))
_values = st.one_of(_scalars, st.lists(_scalars, max_size=3))
_tables = st.dictionaries(_keys, _values, max_size=6)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if "." in repr(v) or "e" in repr(v) else repr(v) + ".0"
    if isinstance(v, str):
        return json.dumps(v)
    return "[" + ", ".join(_toml_value(x) for x in v) + "]"


def _toml(top: dict, procs: list[dict], regions: list[dict], extra: dict[str, dict]) -> str:
    lines = [f"{k} = {_toml_value(v)}" for k, v in top.items()]
    for name, rows in (("processes", procs), ("regions", regions)):
        for row in rows:
            lines.append(f"[[{name}]]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in row.items()]
    for name, table in extra.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


def _setup(d):
    (d / "trace.100").write_bytes(TRACE)
    (d / "trace.100.gz").write_bytes(gzip.compress(TRACE)[:-3])  # truncated
    (d / "maps.100").write_text(MAPS)
    (d / "dir").mkdir(exist_ok=True)


def _check(path):
    try:
        w = build_manifest_workload(path)
        for p in w.processes:
            for _ in p.trace.chunks(2):
                pass
    except ConfigError:
        pass
    try:
        load_run_file(path)
    except ConfigError:
        pass


@SETTINGS
@given(
    top=st.dictionaries(st.sampled_from(["name", "page_size", "n_cpus", "description", "bogus"]), _values, max_size=3),
    procs=st.lists(_tables, max_size=3),
    regions=st.lists(_tables, max_size=2),
    extra=st.dictionaries(st.sampled_from(["scheduler", "run", "machine"]), _tables, max_size=2),
)
def test_manifest_structures(tmp_path, top, procs, regions, extra):
    _setup(tmp_path)
    p = tmp_path / "w.toml"
    p.write_text(_toml(top, procs, regions, extra))
    _check(p)


@SETTINGS
@given(
    procs=st.lists(
        st.fixed_dictionaries(
            {"trace": st.sampled_from(["trace.100", "trace.100.gz", "maps.100", "dir"])},
            optional={"maps": st.sampled_from(["maps.100", "trace.100", "nope"]), "pid": _ints, "cpu": _ints},
        ),
        min_size=1,
        max_size=3,
    ),
    regions=st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["a", "b"])},
            optional={
                "from_maps": st.sampled_from(["/dev/shm/pool", "largest_shared", ""]),
                "start": _ints,
                "size": st.one_of(_ints, st.sampled_from(["4KiB", "2MiB", "x"])),
                "page_size": st.sampled_from(["4K", "2M", "1G", "3K"]),
                "processes": st.lists(st.one_of(_ints, st.sampled_from(["pid100", "x"])), max_size=2),
                "relocate": st.booleans(),
                "shared": st.booleans(),
            },
        ),
        max_size=2,
    ),
)
def test_manifest_near_valid(tmp_path, procs, regions):
    _setup(tmp_path)
    p = tmp_path / "w.toml"
    p.write_text(_toml({}, procs, regions, {}))
    _check(p)


@SETTINGS
@given(data=st.binary(max_size=300))
def test_manifest_random_bytes(tmp_path, data):
    p = tmp_path / "w.toml"
    p.write_bytes(data)
    _check(p)
