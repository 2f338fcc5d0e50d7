"""Step detection and the linear fits on synthetic curves with known answers (deterministic)."""

from __future__ import annotations

import numpy as np
import pytest

from mshare_hw.calibrate.fit import (
    fastest_placement,
    find_rises,
    find_steps,
    ipi_costs,
    linear_fit,
    plateaus,
    spread,
    to_cycles,
    typical,
)


def _sizes(lo: int = 8, hi: int = 65536, per_octave: int = 4) -> np.ndarray:
    n = int(np.log2(hi / lo) * per_octave) + 1
    return np.unique(np.round(lo * 2 ** (np.arange(n) / per_octave)).astype(int))


def _cliffs(x: np.ndarray, steps: list[tuple[int, float]], base: float) -> np.ndarray:
    y = np.full(len(x), base)
    for cap, height in steps:
        y[x > cap] += height
    return y


def test_four_cliffs_are_found_at_their_capacities_with_their_heights():
    x = _sizes()
    truth = [(64, 1.0), (512, 3.0), (2048, 8.0), (16384, 40.0)]
    y = _cliffs(x, truth, 1.2)
    steps = find_steps(x, y)
    assert len(steps) == 4
    for s, (cap, height) in zip(steps, truth):
        assert s.position == max(v for v in x if v <= cap)
        assert s.height == pytest.approx(height)


def test_noise_below_the_threshold_adds_no_step():
    x = _sizes()
    rng = np.random.default_rng(7)
    y = _cliffs(x, [(72, 2.0), (3072, 20.0)], 1.0) * (1 + rng.uniform(-0.04, 0.04, len(x)))
    steps = find_steps(x, y)
    assert [s.position for s in steps] == [max(v for v in x if v <= 72), max(v for v in x if v <= 3072)]
    assert steps[0].height == pytest.approx(2.0, rel=0.1) and steps[1].height == pytest.approx(20.0, rel=0.1)


def test_gradual_rise_starts_where_the_rise_begins():
    x = _sizes(16, 16384)
    y = np.where(x <= 2400, 3.0, 3.0 + 10.0 * np.minimum(1.0, np.log2(x / 2400) / np.log2(2)))
    steps = find_steps(x, y, min_rise=0.15)
    assert 2400 <= steps[0].position <= 2400 * 1.1  # the first size past 2400 is still within 15% of 3.0
    assert steps[-1].after == pytest.approx(13.0)


def test_flat_curve_has_no_steps_and_one_plateau():
    x = _sizes(16, 1024)
    assert find_steps(x, np.full(len(x), 4.0)) == []
    assert plateaus(x, np.full(len(x), 4.0)) == [4.0]


def test_plateaus_lowest_first():
    x = _sizes()
    assert plateaus(x, _cliffs(x, [(64, 1.0), (16384, 50.0)], 1.0)) == pytest.approx([1.0, 2.0, 52.0])


def test_find_steps_refuses_bad_input():
    with pytest.raises(ValueError):
        find_steps([1, 2, 2], [1, 1, 1])
    with pytest.raises(ValueError):
        find_steps([1, 2], [1, 0])


def test_linear_fit_exact_and_spread():
    f = linear_fit([1, 8, 32, 64], [100 + 250 * p for p in (1, 8, 32, 64)])
    assert (f.intercept, f.slope) == pytest.approx((100, 250))
    assert f.spread == pytest.approx(0, abs=1e-12)
    assert linear_fit([0, 1, 2, 3], [0, 2, 0, 2]).spread > 0.3


def test_ipi_costs_from_a_series_with_several_targets():
    k = [1, 2, 3, 1, 2, 3]
    extra = [1000 + 200 * n + 500 for n in k]  # the initiator waits for the responder's 500 ns handler
    c = ipi_costs(k, extra, [500, 520, 480])
    assert c.base_ns == pytest.approx(1000) and c.per_target_ns == pytest.approx(200) and c.responder_ns == 500


def test_ipi_costs_with_one_remote_cpu_is_base_only():
    c = ipi_costs([1, 1, 1], [1800, 1900, 2000], [700])
    assert c.base_ns == 1200 and c.per_target_ns is None
    with pytest.raises(ValueError):
        ipi_costs([0, 1], [0, 1], [1])


def _placements(clusters: list[tuple[int, float, float]], alone: float = 4000.0):
    """Pairs from (count, extra, responder) clusters, each pair's times jittered by a few ns (seeded); a
    cluster with no responder time sent no IPIs (no interrupts)."""
    rng = np.random.default_rng(7)
    a, h, r, n = [], [], [], []
    for count, extra, resp in clusters:
        for _ in range(count):
            base = alone + rng.uniform(-10, 10)
            a.append(base)
            h.append(base + extra + rng.uniform(-5, 5))
            r.append(resp + rng.uniform(-5, 5) if resp else 0.0)  # a skipped IPI interrupts no responder
            n.append(1.0 if resp else 0.0)
    return a, h, r, n


def test_fastest_placement_keeps_the_fastest_cluster_of_pairs():
    """Three placements (extras 3300, 4250 and 4400 ns; held rounds 7300, 8250, 8400) and pairs whose IPI
    was skipped (extra ~0, no responder time): the kept pairs are the 7300-ns cluster, its medians returned."""
    a, h, r, n = _placements([(30, 4250, 4000), (12, 3300, 2800), (40, 4400, 3350), (5, 0, 0), (3, 10, 600)])
    f = fastest_placement(a, h, r, n)
    assert f.kept == 12 and f.valid == 82
    assert f.extra_ns == pytest.approx(3300, abs=15) and f.responder_ns == pytest.approx(2800, abs=5)
    assert f.spread < 0.01


def test_fastest_placement_keeps_a_placement_within_the_tolerance():
    """Held rounds 7300 and 7450 ns (2% apart) are one placement at a 3% tolerance, two at 1%."""
    pairs = _placements([(10, 3300, 2800), (10, 3450, 2900)])
    assert fastest_placement(*pairs, tol=0.03).kept == 20
    assert fastest_placement(*pairs, tol=0.01).kept == 10


def test_fastest_placement_refuses_pairs_without_ipis():
    with pytest.raises(ValueError, match="no pair sent an IPI"):
        fastest_placement(*_placements([(5, 0, 0)]))
    with pytest.raises(ValueError):
        fastest_placement([1.0], [2.0, 3.0], [1.0], [1.0])


def test_spread_and_cycles():
    assert spread([100, 110, 105]) == pytest.approx(0.1)
    assert to_cycles(10.0, 2.5) == 25 and to_cycles(0.01, 1.0) == 1


def test_a_gradual_rise_is_one_rise_at_its_middle():
    """A cliff at 100 and a gradual rise from 1000 to 4000 (levels 2 -> 4 -> 16, geometric middle 8 at
    2000): two rises; the cliff's middle lies between its last low and first high point."""
    x = [25, 50, 100, 125, 250, 500, 1000, 1414, 2000, 2828, 4000, 8000, 16000]
    y = [2, 2, 2, 4, 4, 4, 4, 5.66, 8, 11.3, 16, 16, 16]
    rises = find_rises(x, y)
    assert [round(r.before, 2) for r in rises] == [2, 4] and [round(r.after, 2) for r in rises] == [4, 16]
    assert 100 < rises[0].position < 125
    assert abs(rises[1].position / 2000 - 1) < 0.01
    assert len(find_steps(x, y)) > len(rises)  # the plain steps split the gradual rise


def test_a_creeping_plateau_separates_two_rises_and_close_points_do_not():
    """Levels 4 -> ~20 (a cliff after 3000), a plateau creeping 20 -> 21.6 (8%) over 3500..9000 (1.4 doublings),
    then a gradual rise to 40 through two close points (27 and 28.5 at 14000 and 15000: 6% apart, but a tenth
    of a doubling): two rises, the second from the plateau to 40, its middle (geometric mean of the levels,
    ~28.5) reached at ~15000."""
    x = [1000, 2000, 3000, 3500, 4000, 5000, 9000, 14000, 15000, 20000, 30000, 40000]
    y = [4, 4, 4, 20, 20.2, 20.5, 21.6, 27, 28.5, 35, 40, 40]
    rises = find_rises(x, y)
    assert len(rises) == 2
    assert 3000 < rises[0].position < 3500
    assert 20 <= rises[1].before <= 21.6 and rises[1].after == pytest.approx(40, rel=0.05)
    assert 14000 < rises[1].position < 16000


def test_a_plateau_ending_in_a_rising_point_still_separates_two_rises():
    """Levels 1.2 -> 3.4 (a cliff after 64) -> 6.2 (a gradual rise after 256 whose first point, 304 at 3.9,
    the step fit may keep on the lower level): the flat 76..256 is a plateau, so two rises, the first 2.2
    high."""
    x = [16, 32, 64, 76, 91, 108, 128, 152, 181, 215, 256, 304, 362, 431, 512, 609, 724, 861, 1024, 1218]
    y = [1.23] * 3 + [3.41] * 8 + [3.93, 4.79, 4.55, 5.12, 5.37, 5.97, 6.16, 6.24, 6.23]
    rises = find_rises(x, y)
    assert len(rises) == 2
    assert rises[0].height == pytest.approx(2.18, abs=0.01) and 64 < rises[0].position < 76
    assert rises[1].after == pytest.approx(6.2, abs=0.1)


def test_nested_tlb_pick_takes_the_smallest_unless_a_larger_fits_clearly_better():
    from mshare_hw.calibrate.profile import NESTED_TLB_TIE, pick_nested_tlb

    assert pick_nested_tlb({32: 0.30, 256: 0.05, 2048: 0.05}) == 256  # 2048 no better than 256: the smaller
    assert pick_nested_tlb({32: 0.05, 256: 0.05 - NESTED_TLB_TIE / 2, 2048: 0.01}) == 2048
    assert pick_nested_tlb({2048: 0.10, 32: 0.10, 256: 0.10}) == 32  # all alike: the smallest
    assert pick_nested_tlb({32: 0.20, 256: 0.10, 2048: 0.30}) == 256  # a larger one that fits worse is not taken


def test_walk_regime_takes_two_working_sets_per_octave_from_eight_times_the_l2_tlb():
    """Zen 3's L2 DTLB holds 2048 4K entries: the regime starts at eight times that, 16384 pages, and keeps
    the half-octave sizes of a four-per-octave plan up to its largest working set."""
    from mshare_hw.calibrate.probes import _geometric
    from mshare_hw.calibrate.profile import _walk_regime

    sizes = _geometric(16, 65536, 4)
    at = _walk_regime("zen3", {"fit.chase_pages": {"sizes": sizes, "ns": [1.0] * len(sizes)}})
    assert [s for s, _ in at] == [16384, 23170, 32768, 46341, 65536]


def test_typical_is_the_median_of_each_bursts_fastest_trial():
    """Three bursts of three trials: fastest 1.9 (a fast host state), 2.2 and 2.5 (a slow one): 2.2; one
    burst: its fastest trial."""
    assert typical([2.0, 1.9, 1.95, 2.3, 2.2, 2.4, 2.5, 2.6, 2.7], 3) == pytest.approx(2.2)
    assert typical([2.3, 2.2, 2.4], 3) == pytest.approx(2.2)
    assert typical([2.3, 2.2, 2.4, 1.0], 3) == pytest.approx(1.6)  # a short last burst counts as one
    with pytest.raises(ValueError):
        typical([], 3)
