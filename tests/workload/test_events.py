"""Invalidation schedules (mshare_hw.workload.events): the drawn schedules' specifications, and CSV events
files with their line-by-line checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from mshare_hw.config.errors import ConfigError
from mshare_hw.workload.events import DrawnSchedule, Event, file_schedule, fixed_schedule, rate_schedule

# ---- drawn schedules (drawn by mshare_hw.engine.event_draws; tests/engine/test_event_draws.py) -------------


def test_rate_schedule_spec():
    s = rate_schedule(
        rate_per_second=1000.0, clock_ghz=3.0, kinds={"zap": 3.0, "protect": 1.0}, region="pool",
        region_pages=4096, pages=[1, 4], initiators=[0, 2], seed=7,
    )  # fmt: skip
    assert s == DrawnSchedule(
        kinds=("zap", "protect"), cumulative=(0.75, 1.0), region="pool", region_pages=4096, pages=(1, 4),
        initiators=(0, 2), seed=7, times=None, mean_gap=3e6,
    )  # fmt: skip


def test_fixed_schedule_spec_sorts_the_times():
    s = fixed_schedule(at=[500, 100, 300], kinds={"zap": 1.0}, region="shm", region_pages=64, pages=[1],
                       initiators=[1], seed=5)  # fmt: skip
    assert s.times == (100, 300, 500) and s.mean_gap == 0.0 and s.cumulative == (1.0,)


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
