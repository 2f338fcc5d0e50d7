"""Trace readers against hand-written files, an independent struct decode, round trips and bad input."""

from __future__ import annotations

import gzip
import lzma
import struct

import numpy as np
import pytest
import zstandard

from mshare_hw.cli import main
from mshare_hw.config.errors import ConfigError
from mshare_hw.traces import (
    ChampSimTrace,
    LackeyTrace,
    NativeTrace,
    detect_format,
    open_trace,
    trace_info,
    write_native,
)
from mshare_hw.traces.source import ArrayTrace

LACKEY = b"""==4242== Lackey, an example Valgrind tool
==4242== Command: ./a.out
I  04017a0,3
 L 1ffefffd68,8
 S 0ffe,4
 M 3ffc,8

--4242-- some verbose line
I  0401fff,2\r
 L 0,1
==4242== Counted 1 call to main()
"""
EXPECTED = [
    (0x4017A0, 0),
    (0x1FFEFFFD68, 1),
    (0xFFE, 2),  # 0xffe..0x1001 crosses into page 0x1000
    (0x1000, 2),
    (0x3FFC, 1),  # M: loads of both pages, then stores
    (0x4000, 1),
    (0x3FFC, 2),
    (0x4000, 2),
    (0x401FFF, 0),
    (0x402000, 0),
    (0x0, 1),
]


def _concat(src, chunk_size=1 << 20):
    parts = list(src.chunks(chunk_size))
    return np.concatenate([a for a, _ in parts]), np.concatenate([k for _, k in parts])


def _compress(data: bytes, comp: str) -> bytes:
    return {
        "raw": lambda d: d,
        "gz": gzip.compress,
        "xz": lzma.compress,
        "zst": lambda d: zstandard.ZstdCompressor().compress(d),
    }[comp](data)


@pytest.mark.parametrize("comp", ["raw", "gz", "xz", "zst"])
@pytest.mark.parametrize("chunk", [1, 3, 1 << 20])
def test_lackey_hand_written(tmp_path, comp, chunk):
    p = tmp_path / ("t.lackey" + ("" if comp == "raw" else "." + comp))
    p.write_bytes(_compress(LACKEY, comp))
    t = LackeyTrace(p)
    sizes = [len(a) for a, _ in t.chunks(chunk)]
    assert all(s == chunk for s in sizes[:-1])
    a, k = _concat(t, chunk)
    assert list(zip(a.tolist(), k.tolist())) == EXPECTED
    assert len(t) == len(EXPECTED)
    assert t.digest() == ArrayTrace(a, k).digest()
    assert t.pid() == 4242
    assert t.bad_lines == 0
    assert detect_format(p) == "lackey"


def test_lackey_small_buffers_carry_lines(tmp_path):
    """Lines split across read buffers are carried over."""
    p = tmp_path / "t.txt"
    p.write_bytes(LACKEY)
    for buf in (48, 49, 57, 64):
        a, k = _concat(LackeyTrace(p, buf_bytes=buf))
        assert list(zip(a.tolist(), k.tolist())) == EXPECTED


def test_lackey_no_final_newline_and_zstd_multiframe(tmp_path):
    p = tmp_path / "t.zst"
    c = zstandard.ZstdCompressor()
    p.write_bytes(c.compress(b"I  1000,4\n") + c.compress(b" S 2000,8"))
    a, k = _concat(LackeyTrace(p))
    assert a.tolist() == [0x1000, 0x2000] and k.tolist() == [0, 2]


@pytest.mark.parametrize(
    "line, what",
    [
        (b" L 12g4,8", "bad address"),
        (b" L ,8", "bad address"),
        (b" L 1234", "missing size"),
        (b" L 1234,", "missing size"),
        (b" X 1234,8", "unknown access kind"),
        (b" Load 1234,8", "unknown access kind"),
        (b" L 1234,0", "bad size"),
        (b" L 1234,8x", "bad size"),
        (b" L 200000000000000,8", "beyond the 57-bit"),
        (b" L 1fffffffffffffc,8", "beyond the 57-bit"),
        (b" L ffffffffffffffffffff,8", "beyond the 57-bit"),
    ],
)
def test_lackey_bad_lines(tmp_path, line, what):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"I  1000,4\n==1== x\n" + line + b"\n L 10,4\n")
    with pytest.raises(ConfigError, match=rf"{p}: line 3: .*{what}"):
        list(LackeyTrace(p).chunks())
    t = LackeyTrace(p, skip_bad_lines=True)
    a, _ = _concat(t)
    assert a.tolist() == [0x1000, 0x10]
    assert t.bad_lines == 1


def test_lackey_empty_and_missing(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"==1== nothing traced\n\n")
    with pytest.raises(ConfigError, match="empty trace"):
        len(LackeyTrace(p))
    with pytest.raises(ConfigError, match="no such file"):
        LackeyTrace(tmp_path / "nope.txt")


@pytest.mark.parametrize("data", [b"", b"\n", b"\xef"])
def test_lackey_short_file_is_not_taken_for_a_bom(tmp_path, monkeypatch, data):
    """The BOM check reads only bytes of the file: a buffer whose unread tail happens to hold a BOM (numpy's
    empty arrays are uninitialised) once made a 0-2 byte file fail with a numpy broadcast error."""
    p = tmp_path / "short.txt"
    p.write_bytes(data)
    real_empty = np.empty

    def bom_filled(shape, dtype=float, **kw):
        a = real_empty(shape, dtype=dtype, **kw)
        if np.dtype(dtype) == np.uint8:
            a[:] = np.resize(np.frombuffer(b"\xef\xbb\xbf", np.uint8), a.shape)
        return a

    monkeypatch.setattr(np, "empty", bom_filled)
    with pytest.raises(ConfigError, match="empty trace|expected"):
        len(LackeyTrace(p, buf_bytes=64))


@pytest.mark.parametrize("comp", ["gz", "xz", "zst"])
def test_lackey_truncated_compressed(tmp_path, comp):
    rng = np.random.default_rng(0)
    body = b"".join(b" L %x,8\n" % int(x) for x in rng.integers(0, 1 << 40, 20000))
    data = _compress(body, comp)
    p = tmp_path / f"t.{comp}"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match=rf"{p}: .*byte offset \d+.*truncated or corrupt"):
        list(LackeyTrace(p).chunks())


# ---------------------------------------------------------------------------------------------- ChampSim
REC = struct.Struct("<QBB2B4B2Q4Q")
assert REC.size == 64


def _struct_decode(data: bytes):
    out = []
    for off in range(0, len(data), 64):
        f = REC.unpack_from(data, off)
        ip, dst, src = f[0], f[9:11], f[11:15]
        out.append((ip, 0))
        out += [(x, 1) for x in src if x]
        out += [(x, 2) for x in dst if x]
    return out


def _random_records(rng, n):
    recs = []
    for _ in range(n):
        mem = [int(x) if rng.random() < 0.4 else 0 for x in rng.integers(1, 1 << 47, 6)]
        regs = [int(x) for x in rng.integers(0, 256, 8)]
        recs.append(REC.pack(int(rng.integers(1, 1 << 47)), *regs, *mem))
    return b"".join(recs)


@pytest.mark.parametrize("comp", ["raw", "gz", "xz", "zst"])
def test_champsim_vs_struct(tmp_path, comp):
    rng = np.random.default_rng(7)
    data = _random_records(rng, 3000)
    p = tmp_path / ("t.champsimtrace" + ("" if comp == "raw" else "." + comp))
    p.write_bytes(_compress(data, comp))
    t = ChampSimTrace(p)
    a, k = _concat(t, 1000)
    assert list(zip(a.tolist(), k.tolist())) == _struct_decode(data)
    assert len(t) == len(a) and t.digest() == ArrayTrace(a, k).digest()
    assert detect_format(p) == "champsim"


def _le(x: int, n: int = 8) -> bytes:
    return x.to_bytes(n, "little")


def test_champsim_hand_written(tmp_path):
    # record: ip, is_branch, branch_taken, 2 destination regs, 4 source regs (16 bytes so far), then
    # 2 destination memory operands (stores) and 4 source memory operands (loads)
    r1 = _le(0x401000) + bytes([1, 1, 5, 0, 6, 7, 0, 0]) + _le(0x7FFE0010) + _le(0) + _le(0x601000) + _le(0x601008)
    r1 += _le(0) * 2
    r2 = _le(0x401004) + bytes(8) + _le(0) * 2 + _le(0) * 3 + _le(0x1234)
    assert len(r1) == len(r2) == 64
    p = tmp_path / "hand.champsim.gz"
    p.write_bytes(gzip.compress(r1 + r2))
    a, k = _concat(ChampSimTrace(p), 4)
    assert list(zip(a.tolist(), k.tolist())) == [
        (0x401000, 0),
        (0x601000, 1),
        (0x601008, 1),
        (0x7FFE0010, 2),
        (0x401004, 0),
        (0x1234, 1),
    ]


def test_champsim_errors(tmp_path):
    rng = np.random.default_rng(1)
    data = _random_records(rng, 5)
    p = tmp_path / "t.champsim"
    p.write_bytes(data + b"\x01" * 10)
    with pytest.raises(ConfigError, match=rf"{p}: byte offset 320: truncated record: 10 of 64"):
        list(ChampSimTrace(p).chunks())
    bad = bytearray(data)
    bad[64 + 32 : 64 + 40] = struct.pack("<Q", 1 << 60)
    p.write_bytes(bytes(bad))
    with pytest.raises(ConfigError, match=r"byte offset 96 \(record 1, source_memory\[0\]\).*57-bit"):
        list(ChampSimTrace(p).chunks())
    p.write_bytes(b"")
    with pytest.raises(ConfigError, match="empty trace"):
        len(ChampSimTrace(p))
    z = tmp_path / "t.champsim.xz"
    c = lzma.compress(data * 100)
    z.write_bytes(c[: len(c) - 20])
    with pytest.raises(ConfigError, match="truncated or corrupt"):
        list(ChampSimTrace(z).chunks())


# ---------------------------------------------------------------------------------------------- native
@pytest.mark.parametrize("compression", ["lzf", "gzip", "none"])
def test_lackey_native_roundtrip(tmp_path, compression):
    rng = np.random.default_rng(3)
    body = b"".join(
        b"%s %x,%d\n" % (b"ILSM"[int(c) : int(c) + 1], int(x), int(s))
        for c, x, s in zip(rng.integers(0, 4, 5000), rng.integers(0, 1 << 40, 5000), rng.choice([1, 8, 64, 5000], 5000))
    )
    src = tmp_path / "p.1234.gz"
    src.write_bytes(gzip.compress(b"==1234== hi\n" + body))
    lk = LackeyTrace(src)
    out = tmp_path / "n.h5"
    written = write_native(
        out, [("proc", lk), ("again", lk)], {"note": "test"}, compression=compression, chunk_size=777
    )
    assert written[0]["pid"] == 1234 and written[0]["source_format"] == "lackey"
    nt = NativeTrace(out, "proc")
    a1, k1 = _concat(lk, 1000)
    a2, k2 = _concat(nt, 1000)
    assert np.array_equal(a1, a2) and np.array_equal(k1, k2)
    assert nt.digest() == lk.digest() == ArrayTrace(a1, k1).digest()
    assert len(nt) == len(lk) and nt.verify()
    assert NativeTrace(out, 1).name == "again"
    assert [len(a) for a, _ in nt.chunks(2000)][:-1] == [2000] * (len(nt) // 2000)
    with pytest.raises(ConfigError, match="holds 2 processes"):
        NativeTrace(out)
    with pytest.raises(ConfigError, match="no process named"):
        NativeTrace(out, "x")


def test_native_not_a_trace(tmp_path):
    p = tmp_path / "x.h5"
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(ConfigError, match="not a readable HDF5"):
        NativeTrace(p)


def test_trace_info_counts():
    a = np.array([0x1000, 0x1008, 0x5000, 0x2000], dtype=np.uint64)
    k = np.array([0, 1, 2, 1], dtype=np.uint8)
    info = trace_info(ArrayTrace(a, k))
    assert info == {
        "accesses": 4,
        "ifetch": 1,
        "load": 2,
        "store": 1,
        "addr_min": 0x1000,
        "addr_max": 0x5000,
        "pages_4k": 3,
    }


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_convert_and_info(tmp_path, capsys):
    lk = tmp_path / "a.lackey.xz"
    lk.write_bytes(lzma.compress(LACKEY))
    cs = tmp_path / "b.champsimtrace.gz"
    cs.write_bytes(gzip.compress(_random_records(np.random.default_rng(2), 50)))
    out = tmp_path / "out.h5"
    assert main(["trace", "convert", str(lk), str(cs), str(out), "-q"]) == 0
    procs = open_trace(out)
    assert [n for n, _ in procs] == ["a.lackey", "b.champsimtrace"]
    assert procs[0][1].digest() == LackeyTrace(lk).digest()
    assert procs[1][1].digest() == ChampSimTrace(cs).digest()
    assert main(["trace", "info", str(lk)]) == 0
    text = capsys.readouterr().out
    assert "accesses        11" in text and "distinct pages  7" in text and "(pid 4242)" in text
    assert main(["trace", "info", str(out)]) == 0


def test_cli_bad_input_exit_code(tmp_path, capsys):
    p = tmp_path / "bad.txt"
    p.write_bytes(b"I  1000,4\n L 12,\n")
    out = tmp_path / "o.h5"
    assert main(["trace", "convert", str(p), str(out)]) == 2
    assert "line 2" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
    assert main(["trace", "convert", "--skip-bad-lines", str(p), str(out)]) == 0
    assert "1 bad lines skipped" in capsys.readouterr().out
    assert main(["trace", "info", str(tmp_path / "missing")]) == 2
