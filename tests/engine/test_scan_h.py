"""kernels/scan.h, the SSE2 set scans behind the engine's caches and TLBs, against a plain LRU list —
for the SSE2 build and for the portable build (what an ARM laptop compiles), through ctypes."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

SCAN_H = Path(__file__).resolve().parents[2] / "kernels" / "scan.h"
BLOCK = 16

WRAPPER = """
#include "scan.h"
int t_scan_tags(const uint32_t* tags, int n_blocks, uint32_t tag) { return scan_tags(tags, n_blocks, tag); }
int t_ranks_find(const uint8_t* r, int n_blocks, unsigned rank) { return ranks_find(r, n_blocks, rank); }
void t_ranks_touch(uint8_t* r, int n_blocks, int way) { ranks_touch(r, n_blocks, way); }
int t_ranks_replace(uint8_t* r, int n_blocks, unsigned ways) { return ranks_replace(r, n_blocks, ways); }
void t_ranks_drop(uint8_t* r, int n_blocks, unsigned ways, int way) { ranks_drop(r, n_blocks, ways, way); }
int t_set_touch(uint32_t* t, uint8_t* r, int n_blocks, unsigned ways, uint32_t tag) {
    return set_touch(t, r, n_blocks, ways, tag);
}
uint32_t t_key_tag(uint64_t key) { return key_tag(key); }
int t_find_key(const uint32_t* t, const uint64_t* k, int n_blocks, int ways, uint64_t key) {
    return find_key(t, k, n_blocks, ways, key);
}
"""


def _build(tmp: Path, portable: bool) -> ctypes.CDLL:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build scan.h with")
    src = tmp / "wrap.c"
    src.write_text(WRAPPER)
    out = tmp / ("portable.so" if portable else "sse2.so")
    flags = ["-U__SSE2__"] if portable else []
    cmd = [cc, "-O2", "-shared", "-fPIC", *flags, "-I", str(SCAN_H.parent), str(src), "-o", str(out)]
    subprocess.run(cmd, check=True)
    lib = ctypes.CDLL(str(out))
    u8p, u32p = ctypes.POINTER(ctypes.c_uint8), ctypes.POINTER(ctypes.c_uint32)
    lib.t_scan_tags.argtypes = [u32p, ctypes.c_int, ctypes.c_uint32]
    lib.t_ranks_find.argtypes = [u8p, ctypes.c_int, ctypes.c_uint]
    lib.t_ranks_touch.argtypes = [u8p, ctypes.c_int, ctypes.c_int]
    lib.t_ranks_replace.argtypes = [u8p, ctypes.c_int, ctypes.c_uint]
    lib.t_ranks_drop.argtypes = [u8p, ctypes.c_int, ctypes.c_uint, ctypes.c_int]
    lib.t_set_touch.argtypes = [u32p, u8p, ctypes.c_int, ctypes.c_uint, ctypes.c_uint32]
    lib.t_key_tag.argtypes = [ctypes.c_uint64]
    lib.t_key_tag.restype = ctypes.c_uint32
    lib.t_find_key.argtypes = [u32p, ctypes.POINTER(ctypes.c_uint64), ctypes.c_int, ctypes.c_int, ctypes.c_uint64]
    return lib


@pytest.fixture(scope="module", params=["sse2", "portable"])
def lib(request, tmp_path_factory):
    return _build(tmp_path_factory.mktemp(request.param), request.param == "portable")


class SetUnderTest:
    """One set in scan.h's layout, driven through the library, with the plain model beside it: `order`
    lists valid ways from most to least recent, invalid ways are kept apart."""

    def __init__(self, lib, ways: int, fused: bool = False) -> None:
        self.lib, self.ways, self.fused = lib, ways, fused
        self.blocks = (ways + BLOCK - 1) // BLOCK
        n = self.blocks * BLOCK
        self.tags = np.zeros(n, np.uint32)  # aligned enough: numpy allocates 16-byte aligned buffers
        self.ranks = np.array([w if w < ways else 127 for w in range(n)], np.uint8)
        self.valid: dict[int, int] = {}  # way -> tag
        self.order: list[int] = []

    def _p(self, a: np.ndarray, t):
        assert a.ctypes.data % 16 == 0
        return a.ctypes.data_as(ctypes.POINTER(t))

    def access(self, tag: int) -> bool:
        """A cache access: hit refreshes, miss replaces (first invalid way if any, else LRU)."""
        lib, r = self.lib, self._p(self.ranks, ctypes.c_uint8)
        expect = next((k for k, v in self.valid.items() if v == tag), -1)
        if self.fused:  # set_touch: lookup and update in one call
            before = self.tags.copy()
            hit = lib.t_set_touch(self._p(self.tags, ctypes.c_uint32), r, self.blocks, self.ways, tag)
            assert bool(hit) == (expect >= 0)
            changed = np.flatnonzero(before != self.tags)
            w = expect if hit else (int(changed[0]) if len(changed) else int(np.flatnonzero(self.tags == tag)[0]))
            assert len(changed) <= 1
        else:
            w = lib.t_scan_tags(self._p(self.tags, ctypes.c_uint32), self.blocks, tag)
            assert w == expect
            if w >= 0:
                lib.t_ranks_touch(r, self.blocks, w)
            else:
                w = lib.t_ranks_replace(r, self.blocks, self.ways)
        if expect >= 0:
            self.order.remove(w)
            self.order.insert(0, w)
            return True
        if len(self.valid) < self.ways:
            assert w not in self.valid  # an invalid way is taken while there is one
        else:
            assert w == self.order[-1]  # else the least recently used
            self.order.pop()
        self.tags[w] = tag
        self.valid[w] = tag
        self.order.insert(0, w)
        return False

    def drop(self, way: int) -> None:
        self.lib.t_ranks_drop(self._p(self.ranks, ctypes.c_uint8), self.blocks, self.ways, way)
        if way in self.valid:
            del self.valid[way]
            self.order.remove(way)
        self.tags[way] = 0

    def check(self) -> None:
        real = self.ranks[: self.ways]
        assert sorted(real.tolist()) == list(range(self.ways))  # a permutation of 0..ways-1
        assert (self.ranks[self.ways :] == 127).all()  # padding untouched
        assert [int(np.where(real == k)[0][0]) for k in range(len(self.order))] == self.order
        invalid = [w for w in range(self.ways) if w not in self.valid]
        assert all(real[i] > real[v] for i in invalid for v in self.valid)  # invalid ways are the oldest


def test_hand_computed_4_way_set(lib):
    s = SetUnderTest(lib, 4)
    for tag in (1, 2, 3, 4):  # fills the four ways
        assert not s.access(tag)
    assert s.access(1)  # 1 becomes most recent; LRU order now 2, 3, 4, 1
    assert not s.access(5)  # evicts 2
    assert not s.access(2)  # so 2 misses, evicting 3
    assert s.access(4) and s.access(1) and s.access(5)
    assert not s.access(3)
    s.check()


@settings(max_examples=150, deadline=None)
@given(
    ways=st.sampled_from([1, 2, 4, 8, 11, 12, 16, 20, 33]),
    ops=st.lists(st.tuples(st.sampled_from(["access", "access", "access", "drop"]), st.integers(1, 40)), max_size=80),
)
@pytest.mark.parametrize("fused", [False, True], ids=["scan+ranks", "set_touch"])
def test_scan_h_is_lru(lib, ways, ops, fused):
    s = SetUnderTest(lib, ways, fused)
    for op, x in ops:
        if op == "access":
            s.access(x)
        else:
            s.drop(x % ways)
        s.check()


@settings(max_examples=100, deadline=None)
@given(
    ways=st.sampled_from([1, 4, 8, 12, 16, 24, 72]),
    keys=st.lists(st.integers(1, 2**64 - 1), min_size=1, max_size=72, unique=True),
    probe=st.integers(1, 2**64 - 1),
    collide=st.booleans(),
)
def test_find_key_confirms_every_tag_match(lib, ways, keys, probe, collide):
    """find_key answers like a scan of the full keys, also when another way's tag equals the probe's
    (forced here; a real 32-bit hash collision is too rare to meet by chance)."""
    blocks = (ways + BLOCK - 1) // BLOCK
    stored = np.zeros(ways, np.uint64)
    stored[: min(ways, len(keys))] = keys[:ways]
    tags = np.zeros(blocks * BLOCK, np.uint32)
    for w in range(ways):
        tags[w] = lib.t_key_tag(int(stored[w])) if stored[w] else 0
    assert all(tags[w] != 0 for w in range(ways) if stored[w])  # 0 stays the invalid marker
    if collide and ways > 1 and stored[0] != probe:
        tags[0] = lib.t_key_tag(probe)  # way 0 claims the probe's tag but holds another key
    expect = next((w for w in range(ways) if stored[w] == probe), -1)
    got = lib.t_find_key(
        tags.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32)),
        stored.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64)),
        blocks,
        ways,
        probe,
    )
    assert got == expect
    tags[0] = lib.t_key_tag(int(stored[0]))
    for at in range(ways):  # and, with honest tags, every stored key is found where it is
        if stored[at]:
            ptr = tags.ctypes.data_as(ctypes.POINTER(ctypes.c_uint32))
            keys_ptr = stored.ctypes.data_as(ctypes.POINTER(ctypes.c_uint64))
            assert lib.t_find_key(ptr, keys_ptr, blocks, ways, int(stored[at])) == at
