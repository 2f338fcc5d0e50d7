"""Fits that turn probe timings into uarch values (pure numpy, no timing of its own).

* `find_steps`: a latency-vs-working-set curve as plateaus: the optimal piecewise-constant fit of
  log latency over the sizes (dynamic programming, one penalty per segment), adjacent plateaus closer than
  `min_rise` merged. A step's position is the largest working set still on the lower plateau, which is the
  capacity for an LRU structure (its cliff is right after it); on a gradual rise (non-LRU replacement, set
  conflicts) it is where the rise begins.
* `linear_fit`: least squares y = intercept + slope x, with the spread of the residuals.
* `fastest_placement`: from paired madvise rounds (the mm on the caller's CPU only, then on k more), the
  initiator's extra time and the responder's lost time under the fastest vCPU placement the host used.
* `ipi_costs`: the initiator's base and per-target cost and the responder's cost from the extras at each
  remote CPU count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Step:
    position: float  # the last working set on the lower plateau
    before: float  # the lower plateau's level
    after: float  # the upper plateau's level

    @property
    def height(self) -> float:
        return self.after - self.before


@dataclass(frozen=True)
class LinearFit:
    intercept: float
    slope: float
    spread: float  # root-mean-square residual over the mean |y|, as a fraction (0 for an exact line)


def segment(y: np.ndarray, penalty: float) -> list[tuple[int, int]]:
    """Optimal partition of y into runs [start, end) minimising the sum of squared deviations from each
    run's mean plus `penalty` per run (the classic optimal-partitioning recursion)."""
    n = len(y)
    c1 = np.concatenate([[0.0], np.cumsum(y)])
    c2 = np.concatenate([[0.0], np.cumsum(y * y)])

    def sse(i: int, j: int) -> float:
        s = c1[j] - c1[i]
        return float(c2[j] - c2[i] - s * s / (j - i))

    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    prev = np.zeros(n + 1, dtype=int)
    for j in range(1, n + 1):
        for i in range(j):
            cost = best[i] + sse(i, j) + penalty
            if cost < best[j]:
                best[j], prev[j] = cost, i
    runs = []
    j = n
    while j > 0:
        runs.append((int(prev[j]), j))
        j = prev[j]
    return runs[::-1]


def find_steps(sizes, latencies, min_rise: float = 0.15) -> list[Step]:
    """The upward steps of a latency curve, in order of size. `min_rise` is the smallest relative rise
    that counts as a step (noise on a quiet machine stays well below it)."""
    x = np.asarray(sizes, dtype=float)
    y = np.asarray(latencies, dtype=float)
    if len(x) != len(y) or len(x) < 2 or np.any(y <= 0) or np.any(np.diff(x) <= 0):
        raise ValueError("find_steps needs >= 2 increasing sizes and positive latencies of the same length")
    logy = np.log(y)
    runs = segment(logy, penalty=np.log1p(min_rise) ** 2)
    merged: list[list[int]] = []
    for i, j in runs:  # merge neighbours closer than min_rise (the penalty alone lets small ones through)
        if merged and abs(np.mean(logy[i:j]) - np.mean(logy[merged[-1][0] : merged[-1][1]])) < np.log1p(min_rise):
            merged[-1][1] = j
        else:
            merged.append([i, j])
    levels = [float(np.exp(np.median(logy[i:j]))) for i, j in merged]
    steps = []
    for k in range(1, len(merged)):
        if levels[k] > levels[k - 1]:
            steps.append(Step(position=float(x[merged[k - 1][1] - 1]), before=levels[k - 1], after=levels[k]))
    return steps


def find_rises(sizes, latencies, min_rise: float = 0.15, flat: float = 0.10, span: float = 2**0.5) -> list[Step]:
    """The rises of a latency curve: `find_steps`' steps, with neighbours joined where the curve between
    them is no plateau, so that a gradual transition (set conflicts, random replacement, a structure's reach
    running out page by page) is one rise. A plateau is two or more points within `flat` of each other that
    span a working-set ratio of at least `span` (half a doubling): a slow creep (walk lines drifting to a
    slower level) stays a plateau, while two close points halfway up a gradual rise do not make one. A
    rise's position is where the curve crosses the geometric mean of its two levels (interpolated on
    log-log axes): its midpoint."""
    x = np.asarray(sizes, dtype=float)
    y = np.asarray(latencies, dtype=float)
    steps = find_steps(x, y, min_rise)
    groups: list[list[Step]] = []
    for s in steps:
        if groups:
            inside = (x > groups[-1][-1].position) & (x <= s.position)
            if not _has_plateau(x[inside], y[inside], flat, span):
                groups[-1].append(s)
                continue
        groups.append([s])
    rises = []
    for g in groups:
        before, after = g[0].before, g[-1].after
        mid = float(np.sqrt(before * after))
        k = int(np.argmax((x > g[0].position) & (y >= mid)))  # the first point past the middle
        if k == 0 or y[k - 1] >= mid:
            position = float(x[k])
        else:
            t = (np.log(mid) - np.log(y[k - 1])) / (np.log(y[k]) - np.log(y[k - 1]))
            position = float(np.exp(np.log(x[k - 1]) + t * (np.log(x[k]) - np.log(x[k - 1]))))
        rises.append(Step(position=position, before=before, after=after))
    return rises


def _has_plateau(x: np.ndarray, y: np.ndarray, flat: float, span: float) -> bool:
    """Whether consecutive points within `flat` of each other span a working-set ratio of `span` or more
    (one point off the level, such as the next step's first rising point, does not undo a plateau)."""
    for i in range(len(x)):
        lo = hi = y[i]
        for j in range(i + 1, len(x)):
            lo, hi = min(lo, y[j]), max(hi, y[j])
            if hi / lo - 1 > flat:
                break
            if x[j] / x[i] >= span:
                return True
    return False


def plateaus(sizes, latencies, min_rise: float = 0.15) -> list[float]:
    """The plateau levels of a curve, lowest first: the first level, then each step's upper level."""
    steps = find_steps(sizes, latencies, min_rise)
    first = steps[0].before if steps else float(np.median(latencies))
    return [first] + [s.after for s in steps]


def linear_fit(x, y) -> LinearFit:
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError("linear_fit needs two or more distinct x")
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (intercept + slope * x)
    spread = float(np.sqrt(np.mean(resid**2)) / max(np.mean(np.abs(y)), 1e-300))
    return LinearFit(float(intercept), float(slope), spread)


@dataclass(frozen=True)
class IpiCosts:
    base_ns: float
    per_target_ns: float | None  # None: one remote CPU only, the base and per-target costs are not separable
    responder_ns: float


def ipi_costs(remote_counts, extra_ns, responder_ns) -> IpiCosts:
    """IPI costs from a shootdown series: `extra_ns[k]` is the initiator's time per round with
    `remote_counts[k]` other CPUs holding the mm less its time with none (same pages), `responder_ns[k]` the
    time each remote CPU lost per round. The model's initiator sends the IPIs, runs its own flush while the
    responders run theirs and waits for the slowest (smp_call_function_many_cond, kernel/smp.c): with the
    same flush on both sides, extra = base + per_target * k + responder. With two or more remote counts, a
    line through the extras gives base + responder (intercept) and per target (slope); with one, the
    extra less the responder is the base. A base below zero (the responders lose more time than the
    initiator waits, as with virtualised IPIs whose exit follows the release) is kept: the caller says so."""
    k = np.asarray(remote_counts, dtype=float)
    e = np.asarray(extra_ns, dtype=float)
    if len(k) == 0 or np.any(k < 1):
        raise ValueError("ipi_costs needs series with >= 1 remote CPU")
    responder = float(np.median(responder_ns))
    if len(np.unique(k)) == 1:
        return IpiCosts(float(np.median(e)) - responder, None, responder)
    f = linear_fit(k, e)
    return IpiCosts(f.intercept - responder, f.slope, responder)


@dataclass(frozen=True)
class PairedExtra:
    extra_ns: float  # the initiator's time with the mm held elsewhere less without: median of the kept pairs
    responder_ns: float  # the time an IPI takes from a responder: median of the kept pairs
    kept: int  # pairs under the fastest placement
    valid: int  # pairs whose IPIs were sent
    spread: float  # relative spread of the kept pairs' extras


PLACEMENT_TOL = 0.03  # pairs this close to the fastest held-mm round share its placement
SKIPPED_IPI = 0.5  # a pair with fewer interrupts per round, or an extra below this fraction of the median, sent no IPI


def fastest_placement(alone_ns, held_ns, responder_ns, interrupts, tol: float = PLACEMENT_TOL) -> PairedExtra:
    """The IPI's share of paired rounds under the fastest placement the host gave the vCPUs.

    On a virtual machine the host moves vCPUs between physical cores every few seconds, and each placement
    has its own IPI latency: pairs of rounds fall in clusters a few hundred ns apart (the spread inside one is
    about 1%). Pairs whose held-mm round is within `tol` of the fastest are kept, and the medians of their
    extras (held - alone) and responder times returned: the least the host adds, as every other timing
    here takes the least of its trials. A pair whose responders were interrupted in fewer than SKIPPED_IPI
    of its rounds (`interrupts` per round), or whose extra is below SKIPPED_IPI of the median, sent no IPI
    in most rounds (KVM's paravirtual flush only marks a preempted vCPU to flush on its next entry,
    kvm_flush_tlb_multi in arch/x86/kernel/kvm.c) and is left out before the fastest is looked for."""
    a, h, r, n = (np.asarray(v, dtype=float) for v in (alone_ns, held_ns, responder_ns, interrupts))
    if not (len(a) == len(h) == len(r) == len(n)) or len(a) == 0:
        raise ValueError("fastest_placement needs equally long, non-empty series")
    extra = h - a
    valid = (n >= SKIPPED_IPI) & (extra >= SKIPPED_IPI * np.median(extra))
    if not valid.any():
        raise ValueError("no pair sent an IPI: the responders lost no time")
    keep = valid & (h <= h[valid].min() * (1 + tol))
    return PairedExtra(
        float(np.median(extra[keep])), float(np.median(r[keep])), int(keep.sum()), int(valid.sum()), spread(extra[keep])
    )


def typical(trials, per_burst: int) -> float:
    """A repeated probe's value: the median over its bursts (consecutive runs of `per_burst` trials, taken
    at different times in the calibration) of each burst's fastest trial. The fastest within a burst drops
    the moments the host interrupted; the median across bursts drops a burst the host slowed, or sped up,
    throughout (a host state that lasts seconds: page faults 1.9 us in one burst and 2.3 us in the others).
    One burst: its fastest trial."""
    v = np.asarray(trials, dtype=float)
    if len(v) == 0 or per_burst < 1:
        raise ValueError("typical needs trials and a positive burst length")
    return float(np.median([v[i : i + per_burst].min() for i in range(0, len(v), per_burst)]))


def fastest(m: dict, trials) -> float:
    """A fitted probe's value from its trials in measurements `m` (`typical` over bursts of
    `m["trials_per_burst"]`; one burst where the measurements predate bursts)."""
    return typical(trials, m.get("trials_per_burst", len(trials)))


def spread(values) -> float:
    """Relative spread of repeated measurements: (max - min) / min."""
    v = np.asarray(values, dtype=float)
    return float((v.max() - v.min()) / v.min()) if v.min() > 0 else 0.0


def to_cycles(ns: float, ghz: float) -> int:
    """ns at a core clock of `ghz` cycles per ns, rounded; at least 1."""
    return max(1, int(round(ns * ghz)))
