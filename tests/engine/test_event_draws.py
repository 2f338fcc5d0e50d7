"""Drawing invalidation schedules (mshare_hw.engine.event_draws): a DrawnSchedule's events, Poisson arrivals
at a rate or fixed times, drawn in C exactly as numpy's Generator calls would draw them."""

from __future__ import annotations

import bisect
import itertools

import numpy as np
import pytest
from mshare_hw._engine import EventDraws

from mshare_hw.engine.event_draws import draw_events, schedule_rng
from mshare_hw.names import EVENT_KINDS
from mshare_hw.workload.events import Event, fixed_schedule, rate_schedule


def rate(**kw):
    args = dict(
        rate_per_second=1000.0,
        clock_ghz=3.0,
        kinds={"zap": 1.0},
        region="pool",
        region_pages=4096,
        pages=[1],
        initiators=[0],
        seed=7,
    )
    args.update(kw)
    return draw_events(rate_schedule(**args))


def fixed(**kw):
    return draw_events(fixed_schedule(**kw))


def take(it, n: int) -> list[Event]:
    return list(itertools.islice(it, n))


# ---- rate_schedule -----------------------------------------------------------------------------------------


def test_rate_schedule_is_deterministic():
    kw = dict(kinds={"zap": 2.0, "protect": 1.0, "migrate": 1.0}, pages=[1, 4, 64], initiators=[0, 3, 5])
    a = take(rate(seed=11, **kw), 2000)
    b = take(rate(seed=11, **kw), 2000)
    assert a == b
    c = take(rate(seed=12, **kw), 2000)
    assert a != c
    assert [e.time for e in a] != [e.time for e in c]


def test_rate_schedule_is_infinite_and_in_time_order():
    ev = take(rate(), 5000)
    assert len(ev) == 5000
    t = np.array([e.time for e in ev])
    assert (np.diff(t) >= 0).all() and t[0] >= 0
    assert all(isinstance(e.time, int) for e in ev)


@pytest.mark.parametrize("rate_per_second,clock_ghz", [(1000.0, 3.0), (50_000.0, 2.0), (7.5, 1.0)])
def test_rate_schedule_mean_gap(rate_per_second, clock_ghz):
    n = 10_000
    ev = take(rate(rate_per_second=rate_per_second, clock_ghz=clock_ghz, seed=3), n)
    t = np.array([e.time for e in ev], dtype=np.float64)
    mean_gap = clock_ghz * 1e9 / rate_per_second
    gaps = np.diff(np.concatenate([[0.0], t]))
    # exponential gaps: the sample mean of n draws has relative standard error 1/sqrt(n) = 1%
    assert gaps.mean() == pytest.approx(mean_gap, rel=0.03)
    # and a Poisson process's gaps have standard deviation equal to their mean
    assert gaps.std() == pytest.approx(mean_gap, rel=0.05)
    # events per simulated second
    seconds = t[-1] / (clock_ghz * 1e9)
    assert n / seconds == pytest.approx(rate_per_second, rel=0.03)


def test_rate_schedule_kinds_by_weight():
    n = 10_000
    ev = take(rate(kinds={"zap": 3.0, "protect": 1.0, "reclaim": 0.0}), n)
    counts = {k: sum(e.kind == k for e in ev) for k in EVENT_KINDS}
    assert counts["reclaim"] == 0  # weight 0: never
    assert counts["migrate"] == counts["detach"] == 0  # not listed: never
    assert counts["zap"] / n == pytest.approx(0.75, abs=0.02)
    assert counts["protect"] / n == pytest.approx(0.25, abs=0.02)
    # weights need not sum to 1
    ev2 = take(rate(kinds={"zap": 30.0, "protect": 10.0, "reclaim": 0.0}), n)
    assert [e.kind for e in ev2] == [e.kind for e in ev]


def test_rate_schedule_sizes_first_pages_and_initiators():
    pages = [1, 8, 33, 34, 512]
    region_pages = 1000
    initiators = [2, 4, 9]
    ev = take(rate(pages=pages, region_pages=region_pages, initiators=initiators, region="buffer_pool"), 10_000)
    sizes = [e.n_pages for e in ev]
    assert set(sizes) == set(pages)  # only sizes from the list, and every one of them
    for s in pages:  # uniformly
        assert sizes.count(s) / len(ev) == pytest.approx(1 / len(pages), abs=0.03)
    for e in ev:
        assert e.region == "buffer_pool"
        assert e.proc in initiators
        assert 0 <= e.first_page and e.first_page + e.n_pages <= region_pages  # the range fits the region
    assert {e.proc for e in ev} == set(initiators)
    firsts = np.array([e.first_page for e in ev if e.n_pages == 1])
    assert firsts.min() < 50 and firsts.max() > region_pages - 50  # spread over the whole region


def test_rate_schedule_range_larger_than_the_region_starts_at_page_0():
    ev = take(rate(pages=[64], region_pages=16), 200)
    assert {e.first_page for e in ev} == {0}
    assert {e.n_pages for e in ev} == {64}  # clipped to the region by the kernel side, not here


# ---- fixed_schedule ----------------------------------------------------------------------------------------


def test_fixed_schedule_sorted_times_and_draws():
    at = [500, 100, 300, 300]
    kw = dict(kinds={"zap": 1.0, "detach": 1.0}, region="shm", region_pages=64, pages=[1, 2], initiators=[1, 2])
    ev = list(fixed(at=at, seed=5, **kw))
    assert [e.time for e in ev] == [100, 300, 300, 500]
    assert ev == list(fixed(at=at, seed=5, **kw))
    for e in ev:
        assert e.kind in ("zap", "detach") and e.n_pages in (1, 2) and e.proc in (1, 2) and e.region == "shm"
        assert 0 <= e.first_page <= 64 - e.n_pages
    assert list(fixed(at=[], seed=5, **kw)) == []


# ---- the draws in C are numpy's Generator calls ----------------------------------------------------------


def numpy_calls(times, kinds, region, region_pages, pages, initiators, rng):
    """The schedule's definition through numpy's Python API: per event (after the time) one random() for the
    kind, then integers() for the size, the first page and the initiator."""
    names = list(kinds)
    cumulative = np.cumsum([kinds[k] for k in names], dtype=float)
    cumulative = (cumulative / cumulative[-1]).tolist()
    for t in times:
        kind = names[min(bisect.bisect_right(cumulative, rng.random()), len(names) - 1)]
        n = int(pages[int(rng.integers(len(pages)))])
        first = int(rng.integers(max(1, region_pages - n + 1)))
        proc = int(initiators[int(rng.integers(len(initiators)))])
        yield Event(int(t), kind, proc, region, first, n)


def numpy_rate(*, rate_per_second, clock_ghz, seed, **kw):
    rng = schedule_rng(seed)
    mean_gap = clock_ghz * 1e9 / rate_per_second

    def arrivals():
        t = 0.0
        while True:
            t += rng.exponential(mean_gap)
            yield t

    return numpy_calls(arrivals(), rng=rng, **kw)


DRAW_CASES = [
    # the experiment's mix
    dict(kinds={"zap": 0.6, "protect": 0.2, "migrate": 0.2}, region_pages=65536, pages=[1, 1, 1, 2, 4, 16, 64]),
    # every kind, one never drawn, uneven weights; sizes larger than the region; one initiator
    dict(kinds={"zap": 3.0, "protect": 0.0, "migrate": 1.0, "reclaim": 0.5, "detach": 1e-3}, region_pages=3,
         pages=[1, 2, 5], initiators=[4]),
    # a one-page region: first page 0 without a draw of its own
    dict(kinds={"detach": 1.0}, region_pages=1, pages=[1]),
    # ranges beyond 32 bits take numpy's 64-bit bounded draw
    dict(kinds={"zap": 1.0, "protect": 1.0}, region_pages=1 << 40, pages=[1, 7, 1 << 35]),
]  # fmt: skip


@pytest.mark.parametrize("case", range(len(DRAW_CASES)))
@pytest.mark.parametrize("seed", [0, 1, 7, 123456789])
def test_rate_schedule_equals_numpy_generator_calls(case, seed):
    kw = dict(region="r", initiators=[0, 1, 2, 5, 9]) | DRAW_CASES[case]
    args = dict(rate_per_second=20_000.0 * (seed % 5 + 1), clock_ghz=3.0, seed=seed, **kw)
    assert take(draw_events(rate_schedule(**args)), 3000) == take(numpy_rate(**args), 3000)


def test_fixed_schedule_equals_numpy_generator_calls():
    at = [900, 5, 5, 70, 10**12]
    kw = dict(region="r", initiators=[3, 1]) | DRAW_CASES[0]
    rng = schedule_rng(42)
    assert list(fixed(at=at, seed=42, **kw)) == list(numpy_calls(sorted(at), rng=rng, **kw))


def test_event_draws_refuses_what_numpy_would():
    rng = np.random.default_rng(0)
    good = dict(names=["zap"], cumulative=[1.0], region="r", region_pages=4, pages=[1], initiators=[0])
    for bad in (dict(pages=[]), dict(initiators=[]), dict(names=["zap", "protect"]), dict(names=[], cumulative=[])):
        with pytest.raises(ValueError):
            EventDraws(rng, Event, **(good | bad), mean_gap=1.0)
    with pytest.raises(ValueError, match="mean_gap"):
        EventDraws(rng, Event, **good, mean_gap=-1.0)
    with pytest.raises(TypeError, match="tuple subclass"):
        EventDraws(rng, dict, **good, mean_gap=1.0)


def test_event_draws_share_the_generator_state():
    """Draws advance the Generator they were given, as numpy's own calls would: a draw made after 10 events
    through numpy directly equals the one after 10 events through EventDraws."""
    rng_a = np.random.Generator(np.random.PCG64([5, 0x5EED]))
    rng_b = np.random.Generator(np.random.PCG64([5, 0x5EED]))
    kw = dict(region="r", initiators=[0, 1]) | DRAW_CASES[0]
    names = list(kw["kinds"])
    cumulative = (np.cumsum([kw["kinds"][k] for k in names]) / sum(kw["kinds"].values())).tolist()
    d = EventDraws(rng_a, Event, names, cumulative, "r", kw["region_pages"], kw["pages"], kw["initiators"],
                   times=range(10))  # fmt: skip
    assert list(d) == list(numpy_calls(range(10), rng=rng_b, **kw))
    assert rng_a.random() == rng_b.random()
