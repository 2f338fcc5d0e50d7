"""Trace-reading speed (issue 3 targets, not asserted: lackey parsing >= 20 M lines/s, native read
>= 200 M accesses/s on one core). Rates are in extra_info (`lines_per_s`, `accesses_per_s`).

Run for real with: pytest tests/benchmarks/test_traces.py --benchmark-enable
"""

from __future__ import annotations

import numpy as np
import pytest

from mshare_hw.traces import LackeyTrace, NativeTrace, write_native
from mshare_hw.workload.model import ArrayTrace

LACKEY_LINES = 2_000_000
NATIVE_ACCESSES = 20_000_000
ROUNDS = 3


@pytest.fixture(scope="module")
def lackey_file(tmp_path_factory):
    """~2M lackey lines: 1/4 each I/L/S/M, sizes 1..16, addresses over 2 GiB (a few cross pages)."""
    rng = np.random.default_rng(1)
    kinds = rng.integers(0, 4, LACKEY_LINES)
    addrs = rng.integers(0x400000, 0x7FFF0000, LACKEY_LINES)
    sizes = rng.choice([1, 2, 4, 8, 16], LACKEY_LINES)
    pre = np.array(["I  ", " L ", " S ", " M "])
    lines = np.char.add(np.char.add(np.char.add(pre[kinds], np.char.mod("%08x", addrs)), ","), sizes.astype(str))
    p = tmp_path_factory.mktemp("lackey") / "bench.lackey"
    p.write_text("==1== Lackey\n" + "\n".join(lines.tolist()) + "\n")
    return p


@pytest.fixture(scope="module")
def native_files(tmp_path_factory):
    rng = np.random.default_rng(2)
    pages = (rng.zipf(1.2, NATIVE_ACCESSES) % 65536).astype(np.uint64)
    a = (
        np.uint64(0x7F0000000000)
        + pages * np.uint64(4096)
        + rng.integers(0, 512, NATIVE_ACCESSES).astype(np.uint64) * np.uint64(8)
    )
    k = rng.choice(np.array([0, 1, 2], np.uint8), NATIVE_ACCESSES, p=[0.5, 0.35, 0.15])
    d = tmp_path_factory.mktemp("native")
    out = {}
    for comp in ("none", "lzf"):
        out[comp] = d / f"bench_{comp}.h5"
        write_native(out[comp], [("p", ArrayTrace(a, k))], compression=comp)
    return out


def _drain(src) -> int:
    n = 0
    for a, _ in src.chunks(1 << 20):
        n += len(a)
    return n


def test_lackey_parse_rate(benchmark, timed, lackey_file):
    benchmark.group = "traces"
    t = LackeyTrace(lackey_file)
    _drain(t)  # JIT compile (cached on disk afterwards), page cache warm
    run = timed(_drain)
    benchmark.pedantic(run, args=(t,), rounds=ROUNDS, iterations=1)
    n = run.result
    assert n > LACKEY_LINES  # M lines give two accesses
    info = benchmark.extra_info
    info["lines"] = LACKEY_LINES
    info["accesses"] = n
    info["lines_per_s"] = LACKEY_LINES / run.mean()
    info["lines_per_s_best"] = LACKEY_LINES / run.best()
    info["accesses_per_s"] = n / run.mean()


@pytest.mark.parametrize("comp", ["none", "lzf"])
def test_native_read_rate(benchmark, timed, native_files, comp):
    benchmark.group = "traces"
    t = NativeTrace(native_files[comp])
    _drain(t)
    run = timed(_drain)
    benchmark.pedantic(run, args=(t,), rounds=ROUNDS, iterations=1)
    assert run.result == NATIVE_ACCESSES
    info = benchmark.extra_info
    info["compression"] = comp
    info["accesses"] = NATIVE_ACCESSES
    info["accesses_per_s"] = NATIVE_ACCESSES / run.mean()
    info["accesses_per_s_best"] = NATIVE_ACCESSES / run.best()
    info["file_bytes"] = native_files[comp].stat().st_size
