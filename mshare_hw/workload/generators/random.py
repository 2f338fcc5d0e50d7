"""The generators' randomness: splitmix64 streams, Zipf draws and random permutations.

Randomness comes from an explicit splitmix64 stream (Steele, Lea and Flood, "Fast splittable
pseudorandom number generators", OOPSLA 2014) inside the Numba kernels, never NumPy's global state, and
random decisions compare integer draws with integer thresholds, so the output does not depend on the
NumPy or Numba version (the one float input, a Zipf CDF built by NumPy in float64, could only change a
draw that lands within an ulp of a CDF step). Every use of a seed mixes in its own tag, so independent
uses of one seed do not share a stream.
"""

from __future__ import annotations

import numba
import numpy as np

MASK64 = (1 << 64) - 1
_ONE53 = 1 << 53

TAG_POOL_PERM = 0x504F4F4C  # "POOL"
TAG_TEXT_PERM = 0x54455854  # "TEXT"
TAG_PROC = 0x50524F43  # "PROC"
TAG_CYCLE = 0x4359434C  # "CYCL"
TAG_MISC = 0x4D495343  # "MISC"


def mix64(x: int) -> int:
    """splitmix64's finaliser on a Python int (64-bit wrap-around)."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def derive_seed(seed: int, tag: int, index: int = 0) -> int:
    """A 64-bit stream seed for (seed, tag, index)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    return mix64(mix64(mix64(int(seed) & MASK64) ^ tag) ^ (index & MASK64))


@numba.njit(cache=True, inline="always")
def next_draw(state):
    """One splitmix64 step: (new state, 64-bit output)."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


def threshold(p: float) -> np.uint64:
    """Integer threshold T with P[(draw >> 11) < T] == p (to 2**-53)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability must be in [0, 1], got {p}")
    return np.uint64(round(p * _ONE53))


def zipf_distinct(n_items: int, s: float, draws: float) -> float:
    """Expected distinct items among `draws` independent Zipf(s) draws over n_items ranks:
    sum_k 1 - exp(-draws p_k), over the first 4,096 ranks one by one and the rest in ~2,000 geometric
    buckets (a few percent off at most; no array of n_items)."""
    n_items = int(n_items)
    exact = min(n_items, 4096)
    k = np.arange(1, exact + 1, dtype=np.float64) ** -float(s)
    edges = np.unique(np.geomspace(exact + 1, n_items + 1, 2048).astype(np.int64)) if n_items > exact else None
    weights, counts = [k], [np.ones(exact)]
    if edges is not None and len(edges) > 1:
        lo, hi = edges[:-1].astype(np.float64), edges[1:].astype(np.float64)
        if abs(s - 1.0) < 1e-12:
            mass = np.log(hi / lo)
        else:
            mass = (hi ** (1 - s) - lo ** (1 - s)) / (1 - s)
        weights.append(mass / (hi - lo))  # each rank of a bucket at the bucket's mean weight
        counts.append(hi - lo)
    w, c = np.concatenate(weights), np.concatenate(counts)
    p = w / float((w * c).sum())
    return float((c * -np.expm1(-draws * p)).sum())


def zipf_cdf(n_items: int, s: float) -> np.ndarray:
    """Cumulative distribution (float64, length n_items, last element exactly 1.0) of Zipf(s) over
    ranks 1..n_items: P(rank k) ∝ k**-s. s = 0 is uniform."""
    n_items = int(n_items)
    if n_items < 1:
        raise ValueError(f"zipf_cdf: n_items must be >= 1, got {n_items}")
    if not np.isfinite(s) or s < 0:
        raise ValueError(f"zipf_cdf: exponent s must be finite and >= 0, got {s}")
    w = np.arange(1, n_items + 1, dtype=np.float64)
    np.power(w, -float(s), out=w)
    np.cumsum(w, out=w)
    w /= w[-1]
    w[-1] = 1.0
    return w


@numba.njit(cache=True, inline="always")
def _first_above(cdf, u, lo, hi):
    """The first rank k in [lo, hi] with cdf[k] > u (hi if none): a binary search."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if cdf[mid] > u:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, inline="always")
def zipf_draw(cdf, z):
    """Rank (0-based) whose CDF interval holds the uniform draw z (first k with cdf[k] > u)."""
    u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    return _first_above(cdf, u, 0, cdf.shape[0] - 1)


GUIDE_BITS = 16  # a guide table's buckets: the top bits of a draw


def zipf_guide(cdf: np.ndarray) -> np.ndarray:
    """A guide table for `zipf_draw_guided`: entry b (0..2**GUIDE_BITS) is the first rank whose CDF value
    exceeds b / 2**GUIDE_BITS."""
    edges = np.arange((1 << GUIDE_BITS) + 1, dtype=np.float64) / (1 << GUIDE_BITS)
    return np.searchsorted(cdf, edges, side="right").astype(np.int64)


@numba.njit(cache=True, inline="always")
def zipf_draw_guided(cdf, guide, z):
    """`zipf_draw(cdf, z)`, the same rank for every z, with the binary search confined to the ranks of z's
    guide bucket: a draw u in [b, b + 1) / 2**GUIDE_BITS has its rank between guide[b] and guide[b + 1]
    (the last rank at most), so a search over a large CDF takes a few probes close together instead of
    ~log2(ranks) spread over it."""
    u = np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)
    b = z >> np.uint64(64 - GUIDE_BITS)  # floor(u * 2**GUIDE_BITS): the same top bits
    return _first_above(cdf, u, guide[b], min(guide[b + np.uint64(1)], cdf.shape[0] - 1))


@numba.njit(cache=True, nogil=True)
def _zipf_sample_kernel(cdf, n, state):
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        state, z = next_draw(state)
        out[i] = zipf_draw(cdf, z)
    return out


def zipf_sample(cdf: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n 0-based ranks (int64) drawn from a CDF made by `zipf_cdf`, deterministic in seed."""
    cdf = np.ascontiguousarray(cdf, dtype=np.float64)
    if cdf.ndim != 1 or cdf.size == 0:
        raise ValueError("zipf_sample: cdf must be a non-empty 1-D array")
    return _zipf_sample_kernel(cdf, int(n), np.uint64(derive_seed(seed, TAG_MISC)))


@numba.njit(cache=True, nogil=True)
def permutation_kernel(n, state, cyclic):
    """Fisher-Yates (cyclic=False) or Sattolo (cyclic=True: one single cycle) on 0..n-1."""
    p = np.arange(n).astype(np.int64)
    for i in range(n - 1, 0, -1):
        state, z = next_draw(state)
        if cyclic:
            j = np.int64(z % np.uint64(i))  # 0 <= j < i
        else:
            j = np.int64(z % np.uint64(i + 1))  # 0 <= j <= i
        t = p[i]
        p[i] = p[j]
        p[j] = t
    return p


def random_permutation(n: int, seed: int) -> np.ndarray:
    """A uniformly random permutation of 0..n-1 (int64), deterministic in seed."""
    if n < 1:
        raise ValueError(f"random_permutation: n must be >= 1, got {n}")
    return permutation_kernel(int(n), np.uint64(derive_seed(seed, TAG_MISC)), False)


def random_cycle(n: int, seed: int) -> np.ndarray:
    """A random cyclic permutation of 0..n-1 (Sattolo): following i -> p[i] visits all n elements
    before coming back. Deterministic in seed."""
    if n < 1:
        raise ValueError(f"random_cycle: n must be >= 1, got {n}")
    return permutation_kernel(int(n), np.uint64(derive_seed(seed, TAG_CYCLE)), True)
