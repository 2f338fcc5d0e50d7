"""A set-associative structure's sets and their replacement, shared by the TLB arrays (tlb.py), the
page-walk caches (pwc.py) and the data caches (caches.py). Mirrors kernels/set_array.pxi.

`entries` holds sets x ways entries (None = invalid). A fill takes the set's first invalid way, else the
policy's victim:
  lru:    every hit or fill stamps the way with the next tick; the victim has the oldest stamp.
  plru:   textbook tree-PLRU over the ways padded to a power of two: a hit or fill sets the bits on the
          way's path to point away from it; the victim follows the bits from the root, never into a
          subtree of padding leaves.
  random: a way drawn uniformly from the structure's xorshift64* stream (stream_seed).
"""

from __future__ import annotations

from mshare_hw.names import REPLACEMENT_STREAMS

MASK64 = (1 << 64) - 1


def splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def stream_seed(seed: int, kind: str, index: int, cpu: int) -> int:
    """The first state of a structure's random-replacement stream: the experiment's seed mixed with the
    structure kind (a REPLACEMENT_STREAMS name), its index among that kind's structures and its CPU (0 for
    the shared LLC); never 0 (xorshift's fixed point)."""
    x = splitmix64(splitmix64(splitmix64((seed & MASK64) ^ REPLACEMENT_STREAMS.index(kind)) ^ index) ^ cpu)
    return x or 1


def plru_touch(tree: list[int], base: int, leaves: int, way: int) -> None:
    """Point every node on `way`'s path away from it (1: the victim search goes right). Node n of a set's
    tree is tree[base + n]; its children are 2n and 2n + 1; leaf node leaves + w is way w."""
    n = leaves + way
    while n > 1:
        tree[base + (n >> 1)] = 0 if n & 1 else 1
        n >>= 1


def plru_victim(tree: list[int], base: int, leaves: int, ways: int) -> int:
    n, lo, half = 1, 0, leaves >> 1
    while half:
        if tree[base + n] and lo + half < ways:
            n, lo = 2 * n + 1, lo + half
        else:
            n = 2 * n
        half >>= 1
    return lo


class SetArray:
    def __init__(self, sets: int, ways: int, policy: str = "lru", stream: int = 1):
        self.sets = sets
        self.ways = ways
        self.entries: list = [None] * (sets * ways)
        self.policy = policy
        self.stamps = [0] * (sets * ways)
        self.tick = 0
        self.leaves = 1 << (ways - 1).bit_length()
        self.tree = [0] * (sets * self.leaves) if policy == "plru" else []
        self.rng = stream

    def touch(self, i: int) -> None:
        """A hit on entry `i` (counting ways over all sets)."""
        if self.policy == "lru":
            self.tick += 1
            self.stamps[i] = self.tick
        elif self.policy == "plru":
            set_, way = divmod(i, self.ways)
            plru_touch(self.tree, set_ * self.leaves, self.leaves, way)

    def random_way(self) -> int:
        x = self.rng
        x ^= x >> 12
        x ^= (x << 25) & MASK64
        x ^= x >> 27
        self.rng = x
        return (((x * 0x2545F4914F6CDD1D) & MASK64) >> 32) % self.ways

    def victim(self, set_: int) -> int:
        """The way a fill of set `set_` takes: its first invalid way, else the policy's victim."""
        base = set_ * self.ways
        for w in range(self.ways):
            if self.entries[base + w] is None:
                return w
        if self.policy == "lru":
            return min(range(self.ways), key=lambda w: self.stamps[base + w])
        if self.policy == "plru":
            return plru_victim(self.tree, set_ * self.leaves, self.leaves, self.ways)
        return self.random_way()

    def fill_set(self, set_: int, e) -> None:
        """Put `e` into set `set_` (victim) and touch it."""
        i = set_ * self.ways + self.victim(set_)
        self.entries[i] = e
        self.touch(i)

    def drop(self, i: int, removed) -> None:
        """Invalidate entry `i`; `removed[owner]` counts it (if given)."""
        if removed is not None:
            removed[self.entries[i].owner] += 1
        self.entries[i] = None
