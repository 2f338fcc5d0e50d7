"""Hypothesis: whatever the bytes, the readers yield valid chunks or raise ConfigError, nothing else."""

from __future__ import annotations

import gzip

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mshare_hw.config.errors import ConfigError
from mshare_hw.traces import ChampSimTrace, LackeyTrace, detect_format, open_trace

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

_tokens = st.sampled_from(
    [
        b"I",
        b"L",
        b"S",
        b"M",
        b"X",
        b" ",
        b"  ",
        b"\t",
        b",",
        b"\n",
        b"\r",
        b"==1==",
        b"--",
        b"0",
        b"7f",
        b"ffffffffffffffff",
        b"1fffffffffffff",
        b"abc",
        b"g",
        b"8",
        b"4096",
        b"0000",
        b"1048577",
        b"\xff",
    ]
)
lackey_like = st.lists(_tokens, max_size=60).map(b"".join)
any_bytes = st.one_of(st.binary(max_size=400), lackey_like)


def _drain(src):
    n = 0
    for a, k in src.chunks(7):
        assert a.dtype == np.uint64 and k.dtype == np.uint8 and len(a) == len(k)
        assert (k <= 2).all() and (a < np.uint64(1 << 57)).all()
        n += len(a)
    return n


@SETTINGS
@given(data=any_bytes, skip=st.booleans(), compress=st.booleans(), cut=st.integers(0, 30))
def test_lackey_fuzz(tmp_path, data, skip, compress, cut):
    p = tmp_path / "f.txt"
    if compress:
        c = gzip.compress(data)
        data = c[: max(0, len(c) - cut)]
    p.write_bytes(data)
    try:
        t = LackeyTrace(p, skip_bad_lines=skip, buf_bytes=64)
        n = _drain(t)
        assert n == len(t)
    except ConfigError:
        pass


@SETTINGS
@given(data=st.binary(max_size=400), n_rec=st.integers(0, 5), compress=st.booleans())
def test_champsim_fuzz(tmp_path, data, n_rec, compress):
    rng = np.random.default_rng(len(data))
    recs = rng.integers(0, 1 << 47, n_rec * 8, dtype=np.uint64).tobytes()
    raw = recs + data
    p = tmp_path / "f.champsim"
    p.write_bytes(gzip.compress(raw)[: -(len(data) % 7)] if compress and data else raw)
    try:
        _drain(ChampSimTrace(p))
    except ConfigError:
        pass


@SETTINGS
@given(data=st.binary(max_size=300))
def test_detect_and_open_fuzz(tmp_path, data):
    p = tmp_path / "f.bin"
    p.write_bytes(data)
    try:
        detect_format(p)
        for _, src in open_trace(p):
            _drain(src)
    except ConfigError:
        pass


def _native_bytes(tmp_path) -> bytes:
    from mshare_hw.traces import write_native
    from mshare_hw.traces.source import ArrayTrace

    rng = np.random.default_rng(9)
    t = ArrayTrace(rng.integers(0, 1 << 40, 3000, dtype=np.uint64), rng.integers(0, 3, 3000, dtype=np.uint8))
    p = tmp_path / "good.h5"
    if not p.exists():
        write_native(p, [("a", t), ("b", t)], compression="gzip")
    return p.read_bytes()


@SETTINGS
@given(data=st.data())
def test_native_fuzz(tmp_path, data):
    raw = bytearray(_native_bytes(tmp_path))
    cut = data.draw(st.integers(8, len(raw)))
    raw = raw[:cut]
    for _ in range(data.draw(st.integers(0, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    p = tmp_path / "f.h5"
    p.write_bytes(bytes(raw))
    try:
        for _, src in open_trace(p):
            _drain(src)
    except ConfigError:
        pass
