"""Trace scans kept on disk (mshare_hw.traces.digest_cache): a run reads each trace file once when its
scan is recorded, a changed file is scanned again, and a fresh or changing file is not recorded."""

from __future__ import annotations

import gzip
import os
import time
from collections import Counter
from pathlib import Path

import pytest

from mshare_hw.cli import main
from mshare_hw.results.hdf5 import load_summary
from mshare_hw.traces import digest_cache
from mshare_hw.traces.lackey import LackeyTrace

TRACE_100 = b"==100== Parent PID: 1\nI  00400000,4\n L 00005000,8\n S 10000008,8\n L 10001ff8,8\n"
TRACE_101 = b"==101== Parent PID: 100\nI  00400004,4\n L 10003000,4\n S 10000010,8\n"
MAPS = "00400000-00401000 r-xp 00000000 08:01 11 /usr/bin/prog\n10000000-10004000 rw-s 00000000 00:01 7 /dev/shm/pool\n"
AN_HOUR_AGO = time.time() - 3600


def _age(path: Path, seconds_ago: float = 3600) -> None:
    t = time.time() - seconds_ago
    os.utime(path, (t, t))


@pytest.fixture
def capture(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MSHARE_HW_CACHE_DIR", str(tmp_path / "cache"))
    d = tmp_path / "cap"
    d.mkdir()
    (d / "trace.100").write_bytes(TRACE_100)
    (d / "trace.101.gz").write_bytes(gzip.compress(TRACE_101))
    (d / "maps.100").write_text(MAPS)
    (d / "maps.101").write_text(MAPS)
    for f in d.iterdir():
        _age(f)
    assert main(["workload", "init", str(d), "-q"]) == 0
    return d


@pytest.fixture
def passes(monkeypatch) -> Counter:
    """Full passes over each trace file (every scan and every replay reads through `chunks`)."""
    counts: Counter = Counter()
    chunks = LackeyTrace.chunks

    def counting(self, *args, **kwargs):
        counts[self.path.name] += 1
        return chunks(self, *args, **kwargs)

    monkeypatch.setattr(LackeyTrace, "chunks", counting)
    return counts


def _run(capture: Path, out: Path) -> list[str]:
    assert main(["run", str(capture / "workload.toml"), "-o", str(out), "-q", "--overwrite"]) == 0
    return sorted(load_summary(out).run_id)


def test_a_recorded_trace_is_read_once_per_run(capture, passes, tmp_path):
    out = tmp_path / "o.h5"
    first = _run(capture, out)  # 2 runs (private, mshare): one scan to name each file, then one read per run
    assert passes == {"trace.100": 3, "trace.101.gz": 3}
    # per file: its scan, and the 512 GiB slots it uses (the manifest relocates the pool), found in that pass
    assert len(list((tmp_path / "cache" / "trace-digests").glob("*.json"))) == 4
    passes.clear()
    assert _run(capture, out) == first  # a new process would find the same: fresh objects, the scans on disk
    assert passes == {"trace.100": 2, "trace.101.gz": 2}


def test_a_changed_file_is_scanned_again(capture, passes, tmp_path):
    out = tmp_path / "o.h5"
    first = _run(capture, out)
    trace = capture / "trace.100"
    trace.write_bytes(TRACE_100 + b" L 10002000,8\n")  # one more access
    _age(trace, 1800)
    passes.clear()
    second = _run(capture, out)
    assert passes == {"trace.100": 3, "trace.101.gz": 2}
    assert set(second).isdisjoint(first)  # new digest, new run ids
    assert set(load_summary(out).accesses) == {8}


def test_same_size_and_mtime_but_replaced_is_scanned_again(capture, tmp_path):
    trace = capture / "trace.100"
    a = LackeyTrace(trace)
    digest = a.digest()
    st = os.stat(trace)
    swapped = capture / "swap"
    swapped.write_bytes(TRACE_100.replace(b"L 00005000", b"L 00006000"))  # same size, other content
    os.utime(swapped, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(swapped, trace)  # another inode, the same size and mtime
    assert LackeyTrace(trace).digest() != digest


def test_options_are_part_of_the_key_and_extras_come_back(capture):
    trace = capture / "trace.101.gz"
    trace.write_bytes(gzip.compress(TRACE_101 + b" L zz,8\n"))
    _age(trace)
    first = LackeyTrace(trace, skip_bad_lines=True)
    assert len(first) == 3 and first.bad_lines == 1
    again = LackeyTrace(trace, skip_bad_lines=True)
    assert len(again) == 3 and again.bad_lines == 1  # from the cache: no pass, the count comes back
    strict = LackeyTrace(trace)
    with pytest.raises(Exception, match="bad address"):
        len(strict)  # not the lenient reader's scan


def test_fresh_file_and_unwritable_cache_are_not_recorded(capture, tmp_path, monkeypatch):
    trace = capture / "trace.100"
    os.utime(trace)  # modified just now: it may still be being written
    LackeyTrace(trace).digest()
    assert not list((tmp_path / "cache").glob("trace-digests/*.json"))
    _age(trace)
    blocked = tmp_path / "a_file"
    blocked.write_text("")
    monkeypatch.setenv("MSHARE_HW_CACHE_DIR", str(blocked / "sub"))  # cannot be made a directory
    assert len(LackeyTrace(trace)) == 4  # scanned, nothing recorded, no error
    assert digest_cache.lookup(trace, "lackey", {}, ("mshare_hw.traces.lackey",)) is None
