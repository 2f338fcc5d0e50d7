"""Workload manifests: maps snapshots, relocation, loading, errors (expected values worked out by hand)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from mshare_hw.cli import main
from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import load_experiment
from mshare_hw.runner import _id_config
from mshare_hw.workload.generators.sleeps import sleep_schedule
from mshare_hw.workload.init import write_manifest
from mshare_hw.workload.manifest import build_manifest_workload, load_manifest, load_run_file
from mshare_hw.workload.maps import Mapping, common_shared, find_mapping, parse_maps_text
from mshare_hw.workload.model import ArrayTrace
from mshare_hw.workload.relocate import Move, RelocatedTrace, pick_bases, used_slots

SLOT = 1 << 39

MAPS_100 = """\
00400000-00401000 r-xp 00000000 08:01 11 /usr/bin/prog
10000000-10002000 rw-s 00000000 00:01 7 /dev/shm/pool
10002000-10004000 r--s 00002000 00:01 7 /dev/shm/pool
20000000-20001000 rw-s 00000000 00:01 8 /dev/shm/small
7ffc0000-7ffc1000 rw-p 00000000 00:00 0 [stack]
"""
MAPS_101 = """\
00400000-00401000 r-xp 00000000 08:01 11 /usr/bin/prog
10000000-10004000 rw-s 00000000 00:01 7 /dev/shm/pool
30000000-30001000 rw-s 00000000 00:01 8 /dev/shm/small
"""
# pid 100: a private access, two accesses to the pool (pages 0 and 1); pid 101: pool page 3, and a load
# in the 512 GiB slot 1, so the relocated pool must go to slot 2.
TRACE_100 = b"==100== Parent PID: 1\nI  00400000,4\n L 00005000,8\n S 10000008,8\n L 10001ff8,8\n"
TRACE_101 = b"==101== Parent PID: 100\nI  00400004,4\n L 10003000,4\n L 8000000010,8\n"


def _write_capture(d: Path) -> None:
    (d / "trace.100").write_bytes(TRACE_100)
    (d / "trace.101.gz").write_bytes(gzip.compress(TRACE_101))
    (d / "maps.100").write_text(MAPS_100)
    (d / "maps.101").write_text(MAPS_101)


def _all(src) -> tuple[np.ndarray, np.ndarray]:
    parts = list(src.chunks(3))
    return np.concatenate([a for a, _ in parts]), np.concatenate([k for _, k in parts])


# ---------------------------------------------------------------------------------------------- maps
def test_parse_maps_merges_split_vmas():
    maps = parse_maps_text(MAPS_100, "m")
    pool = [m for m in maps if m.path == "/dev/shm/pool"]
    assert pool == [Mapping(0x10000000, 0x10004000, "rw-s", "/dev/shm/pool")]
    assert pool[0].kind == "shmem" and pool[0].shared
    assert [m.kind for m in maps] == ["file", "shmem", "shmem", "anon"]
    with pytest.raises(ConfigError, match="m: line 2: not a /proc/PID/maps line"):
        parse_maps_text("00400000-00401000 r-xp 0 08:01 1 /x\nnonsense\n", "m")


def test_common_shared_needs_same_address():
    maps = {0: parse_maps_text(MAPS_100, "a"), 1: parse_maps_text(MAPS_101, "b")}
    common = common_shared(maps)
    # /dev/shm/small is shared in both but at different addresses: not common
    assert [(m.path, m.start, m.size, p) for m, p in common] == [("/dev/shm/pool", 0x10000000, 0x4000, (0, 1))]
    assert find_mapping(maps, "largest_shared", None, "w")[0].start == 0x10000000
    with pytest.raises(ConfigError, match="mapped at several addresses"):
        find_mapping(maps, "/dev/shm/small", None, "w")
    assert find_mapping(maps, "/dev/shm/small", 0x30000000, "w")[1] == (1,)
    with pytest.raises(ConfigError, match="no mapping '/dev/shm/nope'"):
        find_mapping(maps, "/dev/shm/nope", None, "w")


# ---------------------------------------------------------------------------------------------- relocation
def test_relocated_trace_moves_only_the_range():
    a = np.array([0x0FFF_FFF8, 0x1000_0000, 0x1000_3FFF, 0x1000_4000, 0x5000], dtype=np.uint64)
    k = np.array([1, 1, 2, 1, 0], dtype=np.uint8)
    inner = ArrayTrace(a, k)
    rt = RelocatedTrace(inner, [Move(0x1000_0000, 0x1000_4000, 2 * SLOT)])
    got, kinds = _all(rt)
    assert got.tolist() == [0x0FFF_FFF8, 2 * SLOT, 2 * SLOT + 0x3FFF, 0x1000_4000, 0x5000]
    assert kinds.tolist() == [1, 1, 2, 1, 0]
    assert inner.addrs[1] == 0x1000_0000  # the wrapped trace is not modified
    assert rt.digest() != inner.digest() and len(rt) == 5
    assert RelocatedTrace(inner, []).digest() == inner.digest()
    # moving down works too (unsigned wrap-around of the offset)
    one = ArrayTrace(np.array([3 * SLOT + 8], np.uint64), np.array([1], np.uint8))
    down = RelocatedTrace(one, [Move(3 * SLOT, 4 * SLOT, SLOT)])
    assert _all(down)[0].tolist() == [SLOT + 8]


def test_used_slots_and_pick_bases():
    t = ArrayTrace(np.array([0x5000, SLOT + 1, 5 * SLOT, 0x1000_0000], np.uint64), np.zeros(4, np.uint8))
    assert used_slots(t) == {0, 1, 5}
    assert used_slots(t, [(SLOT, 2 * SLOT)]) == {0, 5}
    assert pick_bases([4096, 3 * SLOT, 1], {0, 1, 5}, 1, 255, ["a", "b", "c"]) == [2 * SLOT, 6 * SLOT, 3 * SLOT]
    with pytest.raises(ConfigError, match="region 'x': no 2 free"):
        pick_bases([2 * SLOT], {1, 3}, 1, 3, ["x"])


# ---------------------------------------------------------------------------------------------- manifests
def test_init_then_build(tmp_path):
    _write_capture(tmp_path)
    assert main(["workload", "init", str(tmp_path), "-q"]) == 0
    m = load_manifest(tmp_path / "workload.toml")
    assert [(p.pid, p.trace, p.maps) for p in m.processes] == [
        (100, "trace.100", "maps.100"),
        (101, "trace.101.gz", "maps.101"),
    ]
    assert [(r.name, r.from_maps, r.maps_start) for r in m.regions] == [("pool", "/dev/shm/pool", 0x10000000)]
    w = build_manifest_workload(tmp_path / "workload.toml")
    assert [p.name for p in w.processes] == ["pid100", "pid101"]
    (r,) = w.regions
    # slots 0 (everything) and 1 (pid 101's load at 0x8000000010) are used: the pool goes to slot 2
    assert (r.name, r.start, r.size, r.shared, r.kind, r.processes) == ("pool", 2 * SLOT, 0x4000, True, "shmem", None)
    a0, k0 = _all(w.processes[0].trace)
    assert a0.tolist() == [0x400000, 0x5000, 2 * SLOT + 8, 2 * SLOT + 0x1FF8]
    assert k0.tolist() == [0, 1, 2, 1]
    a1, _ = _all(w.processes[1].trace)
    assert a1.tolist() == [0x400004, 2 * SLOT + 0x3000, SLOT + 0x10]


def test_init_parent_maps_and_hand_names(tmp_path):
    (tmp_path / "run.100").write_bytes(TRACE_100)
    (tmp_path / "run.101.gz").write_bytes(gzip.compress(TRACE_101))
    (tmp_path / "run.100.maps").write_text(MAPS_100)  # pid 101 has none: it inherits its parent's (100)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "log.7").write_bytes(b"==7== only valgrind chatter\n")
    assert main(["workload", "init", str(tmp_path)]) == 0
    m = load_manifest(tmp_path / "workload.toml")
    assert [(p.pid, p.maps) for p in m.processes] == [(100, "run.100.maps"), (101, "run.100.maps")]
    # both use one snapshot, so both shared mappings are common (largest first)
    assert [(r.name, r.from_maps) for r in m.regions] == [("pool", "/dev/shm/pool"), ("small", "/dev/shm/small")]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ConfigError, match="no traces found"):
        write_manifest(tmp_path / "nothing")


def _manifest(d: Path, text: str) -> Path:
    p = d / "w.toml"
    p.write_text(text)
    return p


def test_explicit_regions_members_and_no_relocation(tmp_path):
    _write_capture(tmp_path)
    p = _manifest(
        tmp_path,
        """
n_cpus = 2
[[processes]]
name = "a"
trace = "trace.100"
cpu = 1
[[processes]]
name = "b"
trace = "trace.101.gz"
cpu = 0
[[regions]]
name = "pool"
start = "0x10000000"
size = "16KiB"
processes = ["a", 101]
[[regions]]
name = "heap"
start = 0x5000
size = 4096
shared = false
[run]
warmup_accesses = 2
""",
    )
    w = build_manifest_workload(p)
    pool, heap = w.regions
    assert (pool.start, pool.size, pool.kind, pool.processes) == (2 * SLOT, 0x4000, "shmem", None)
    assert (heap.start, heap.shared, heap.kind) == (0x5000, False, "anon")  # private regions stay put
    assert [pr.cpu for pr in w.processes] == [1, 0]
    exp = load_run_file(p)
    assert exp.machine.n_cpus == 2 and exp.run.warmup_accesses == 2
    assert exp.sweep == {"pt_config": ["private", "mshare"]}
    assert exp.workload.manifest == str(p.resolve()) and exp.workload.generator is None


P100 = '[[processes]]\ntrace = "trace.100"\n'
REG = '[[regions]]\nname = "r"\n'


@pytest.mark.parametrize(
    "body, match",
    [
        ('[[processes]]\ntrace = "missing.trace"\n', r"w.toml: key 'processes\[0\].trace': .*missing.trace: no such"),
        (P100 + "colour = 1\n", r"w.toml: key 'processes\[0\].colour': unknown key"),
        ("processes = []\n", r"w.toml: key 'processes'"),
        (
            P100 + 'maps = "maps.100"\n' + REG + 'from_maps = "/dev/shm/gone"\n',
            r"w.toml: key 'regions\[0\]' \(r\): no mapping '/dev/shm/gone'",
        ),
        (P100 + REG + 'from_maps = "largest_shared"\n', r"needs maps snapshots"),
        (P100 + REG + "start = 0\n", r"needs both start and size"),
        (P100 + REG + 'start = 0\nsize = "lots"\n', r"regions\[0\].size"),
        (P100 + REG + 'start = 0x1000\nsize = 4096\nprocesses = ["zz"]\n', r"no process 'zz'"),
        (P100 + P100, r"used twice"),
        (
            P100 + REG + "start = 0x1000\nsize = 8192\n" + '[[regions]]\nname = "s"\nstart = 0x2000\nsize = 4096\n',
            r"regions 'r' and 's' overlap at their captured addresses",
        ),
        (P100 + 'maps = "nomaps"\n', r"processes\[0\].maps.*not found"),
        ("[[processes]\n", r"not valid TOML"),
    ],
)
def test_manifest_errors(tmp_path, body, match):
    _write_capture(tmp_path)
    p = _manifest(tmp_path, body)
    with pytest.raises(ConfigError, match=match):
        build_manifest_workload(p)


def test_run_manifest_cli_and_bad_lines(tmp_path, capsys, caplog):
    _write_capture(tmp_path)
    (tmp_path / "trace.101.gz").write_bytes(gzip.compress(TRACE_101 + b" L zz,8\n"))
    assert main(["workload", "init", str(tmp_path), "-q"]) == 0
    out = tmp_path / "o.h5"
    assert main(["run", str(tmp_path / "workload.toml"), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "trace.101.gz: line 5: bad address" in err and not out.exists()
    assert main(["run", str(tmp_path / "workload.toml"), "-o", str(out), "-q", "--skip-bad-lines"]) == 0
    assert "process 'pid101': 1 bad trace lines skipped" in caplog.text
    assert main(["validate", str(tmp_path / "workload.toml"), "--set", "workload.skip_bad_lines=true"]) == 0
    assert "2 points" in capsys.readouterr().out
    import mshare_hw

    df = mshare_hw.load_summary(out)
    assert sorted(df.pt_config) == ["mshare", "private"] and set(df.accesses) == {7}


def test_experiment_with_manifest(tmp_path):
    _write_capture(tmp_path)
    main(["workload", "init", str(tmp_path), "-q"])
    sub = tmp_path / "exp"
    sub.mkdir()
    (sub / "e.toml").write_text('name = "e"\n[workload]\nmanifest = "../workload.toml"\n[sweep]\nuarch = ["zen3"]\n')
    exp = load_run_file(sub / "e.toml")
    assert exp.workload.manifest == str((tmp_path / "workload.toml").resolve())
    (sub / "bad.toml").write_text('name = "e"\n[workload]\nmanifest = "../workload.toml"\ngenerator = "uniform"\n')
    with pytest.raises(ConfigError, match="generator or manifest, not both"):
        load_run_file(sub / "bad.toml")
    # generator experiments hash as before: the manifest keys are not part of their run ids
    assert set(_id_config(load_experiment())["workload"]) == {"generator", "params"}
    assert "manifest" in _id_config(exp)["workload"]


# ---------------------------------------------------------------------------------------------- sleeps
def test_manifest_sleeps(tmp_path):
    """A process's `sleeps` list is taken as written; the manifest-wide sleep_* keys draw the others' (the
    same draw as a generator's for that process index and seed); none without either."""
    _write_capture(tmp_path)
    head = '[[processes]]\ntrace = "trace.100"\nsleeps = [[1, 500], [3, 0]]\n[[processes]]\ntrace = "trace.101.gz"\n'
    (tmp_path / "m.toml").write_text(head)
    w = build_manifest_workload(tmp_path / "m.toml")
    assert [p.sleeps for p in w.processes] == [((1, 500), (3, 0)), ()]
    (tmp_path / "m.toml").write_text("sleep_every_accesses = 1\nsleep_cycles = 1000\nsleep_seed = 7\n" + head)
    w = build_manifest_workload(tmp_path / "m.toml")
    # every_accesses 1: a sleep after every access but the last (3 accesses: positions 1, 2)
    assert w.processes[0].sleeps == ((1, 500), (3, 0))
    assert [a for a, _ in w.processes[1].sleeps] == [1, 2]
    assert w.processes[1].sleeps == sleep_schedule(3, 1, 1000, 7, 1)
    (tmp_path / "m.toml").write_text("sleep_cycles = 1000\n" + head)
    with pytest.raises(ConfigError, match="sleep_every_accesses and sleep_cycles go together"):
        build_manifest_workload(tmp_path / "m.toml")
    (tmp_path / "m.toml").write_text(head.replace("[[1, 500], [3, 0]]", "[[3, 500], [3, 0]]"))
    with pytest.raises(ConfigError, match="positions must increase"):
        build_manifest_workload(tmp_path / "m.toml")


def test_manifest_threads(tmp_path):
    """pid 101 as a thread of pid 100: it shares 100's mm, so the pool (found in 100's maps) is mapped by the
    one process (no `processes` list needed) and 101's trace is relocated with it, like 100's."""
    _write_capture(tmp_path)
    body = (
        '[[processes]]\ntrace = "trace.100"\nmaps = "maps.100"\n'
        '[[processes]]\ntrace = "trace.101.gz"\nthread_of = 100\n'
        '[[regions]]\nname = "pool"\nfrom_maps = "/dev/shm/pool"\n'
    )
    (tmp_path / "m.toml").write_text(body)
    w = build_manifest_workload(tmp_path / "m.toml")
    assert [p.thread_of for p in w.processes] == [None, 0]
    (r,) = w.regions
    assert (r.start, r.processes) == (2 * SLOT, None)
    a1, _ = _all(w.processes[1].trace)
    assert a1.tolist() == [0x400004, 2 * SLOT + 0x3000, SLOT + 0x10]
    (tmp_path / "m.toml").write_text(body.replace("thread_of = 100", "thread_of = 101"))
    with pytest.raises(ConfigError, match=r"processes\[1\].thread_of.*another process"):
        build_manifest_workload(tmp_path / "m.toml")
    (tmp_path / "m.toml").write_text(body.replace("thread_of = 100", 'thread_of = "nobody"'))
    with pytest.raises(ConfigError, match="no process 'nobody'"):
        build_manifest_workload(tmp_path / "m.toml")
