"""Invalidation schedules (mshare_hw.workload.events): the Poisson rate schedule, fixed times, and CSV
events files with their line-by-line checks."""

from __future__ import annotations

import bisect
import itertools
from pathlib import Path

import numpy as np
import pytest
from mshare_hw._engine import EventDraws

from mshare_hw.config.errors import ConfigError
from mshare_hw.engine.shootdown import KINDS, Event
from mshare_hw.workload.events import file_schedule, fixed_schedule, rate_schedule


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
    return rate_schedule(**args)


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
    counts = {k: sum(e.kind == k for e in ev) for k in KINDS}
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
    ev = list(fixed_schedule(at=at, seed=5, **kw))
    assert [e.time for e in ev] == [100, 300, 300, 500]
    assert ev == list(fixed_schedule(at=at, seed=5, **kw))
    for e in ev:
        assert e.kind in ("zap", "detach") and e.n_pages in (1, 2) and e.proc in (1, 2) and e.region == "shm"
        assert 0 <= e.first_page <= 64 - e.n_pages
    assert list(fixed_schedule(at=[], seed=5, **kw)) == []


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
    rng = np.random.Generator(np.random.PCG64([seed, 0x5EED]))
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
    assert take(rate_schedule(**args), 3000) == take(numpy_rate(**args), 3000)


def test_fixed_schedule_equals_numpy_generator_calls():
    at = [900, 5, 5, 70, 10**12]
    kw = dict(region="r", initiators=[3, 1]) | DRAW_CASES[0]
    rng = np.random.Generator(np.random.PCG64([42, 0x5EED]))
    assert list(fixed_schedule(at=at, seed=42, **kw)) == list(numpy_calls(sorted(at), rng=rng, **kw))


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


# ---- file_schedule -----------------------------------------------------------------------------------------

REGIONS = {"shm", "heap0"}


def write(tmp_path: Path, text: str, name: str = "events.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_file_schedule_parses_a_good_file(tmp_path):
    p = write(
        tmp_path,
        "time,kind,proc,region,first_page,n_pages\n"
        "# captured with strace, converted\n"
        "100,zap,0,shm,0,1\n"
        "\n"
        "100, protect ,2, heap0 ,5,40\n"
        "2500,reclaim,1,shm,7,3\n"
        "9000,detach,1,shm,0,1\n"
        "9000,migrate,0,shm,63,1\n",
    )
    ev = list(file_schedule(p, n_procs=3, regions=REGIONS))
    assert ev == [
        Event(100, "zap", 0, "shm", 0, 1),
        Event(100, "protect", 2, "heap0", 5, 40),
        Event(2500, "reclaim", 1, "shm", 7, 3),
        Event(9000, "detach", 1, "shm", 0, 1),
        Event(9000, "migrate", 0, "shm", 63, 1),
    ]


def test_file_schedule_without_header(tmp_path):
    p = write(tmp_path, "0,zap,0,shm,0,1\n5,zap,0,shm,1,1\n")
    assert [e.time for e in file_schedule(p, 1, REGIONS)] == [0, 5]


def test_file_schedule_empty_file(tmp_path):
    assert list(file_schedule(write(tmp_path, ""), 1, REGIONS)) == []
    assert list(file_schedule(write(tmp_path, "time,kind,proc,region,first_page,n_pages\n"), 1, REGIONS)) == []


BAD_LINES = {
    "too few fields": ("200,zap,0,shm,0", "expected 6 fields"),
    "too many fields": ("200,zap,0,shm,0,1,9", "expected 6 fields"),
    "time not an integer": ("2e3,zap,0,shm,0,1", "integers"),
    "proc not an integer": ("200,zap,one,shm,0,1", "integers"),
    "first_page not an integer": ("200,zap,0,shm,0.5,1", "integers"),
    "n_pages not an integer": ("200,zap,0,shm,0,", "integers"),
    "unknown kind": ("200,munmap,0,shm,0,1", "unknown kind 'munmap'"),
    "unknown region": ("200,zap,0,pool,0,1", "unknown region 'pool'"),
    "proc out of range": ("200,zap,3,shm,0,1", "process 3 does not exist"),
    "negative proc": ("200,zap,-1,shm,0,1", "process -1 does not exist"),
    "decreasing time": ("99,zap,0,shm,0,1", "not decrease"),
    "negative first_page": ("200,zap,0,shm,-1,1", "first_page"),
    "zero n_pages": ("200,zap,0,shm,0,0", "n_pages"),
    "header not on line 1": ("time,kind,proc,region,first_page,n_pages", "integers"),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_file_schedule_bad_line_names_file_and_line(tmp_path, case):
    line, why = BAD_LINES[case]
    # line 1 header, line 2 a comment, line 3 a good event, line 4 blank, line 5 the bad one
    p = write(tmp_path, f"time,kind,proc,region,first_page,n_pages\n# x\n100,zap,0,shm,0,1\n\n{line}\n")
    with pytest.raises(ConfigError) as e:
        file_schedule(p, n_procs=3, regions=REGIONS)
    msg = str(e.value)
    assert f"{p}:5:" in msg
    assert why in msg


def test_file_schedule_missing_file(tmp_path):
    p = tmp_path / "nope.csv"
    with pytest.raises(ConfigError, match="cannot open events file") as e:
        file_schedule(p, 1, REGIONS)
    assert str(p) in str(e.value)


def test_file_schedule_checks_the_whole_file_up_front(tmp_path):
    # an error on the last line is reported before any event is handed out
    p = write(tmp_path, "1,zap,0,shm,0,1\n2,zap,0,shm,0,1\n3,zap,7,shm,0,1\n")
    with pytest.raises(ConfigError, match=r":3: process 7"):
        file_schedule(p, 2, REGIONS)


def test_file_schedule_refuses_negative_time(tmp_path):
    p = write(tmp_path, "-1,zap,0,shm,0,1\n")
    with pytest.raises(ConfigError, match=":1:"):
        file_schedule(p, 1, REGIONS)
