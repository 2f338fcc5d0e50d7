"""Invalidation schedules: when, what kind, by whom and over which pages PTEs change.

A schedule is `Event`s in time order: drawn from a seeded generator (a `DrawnSchedule`: a Poisson process at
a rate per simulated second, or explicit times), or read from a CSV events file (`time,kind,proc,region,
first_page,n_pages`, e.g. converted from an strace capture). The engine layer draws a DrawnSchedule's
events (mshare_hw.engine.event_draws) when a run starts.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from mshare_hw.config.errors import ConfigError
from mshare_hw.names import EVENT_KINDS


class Event(NamedTuple):
    time: int  # cycles: happens once every running CPU's clock has reached it (or a global access count)
    kind: str
    proc: int  # initiating process
    region: str
    first_page: int  # page index inside the region (pages of the region's page size)
    n_pages: int


@dataclass(frozen=True)
class DrawnSchedule:
    """Events drawn at random: at each time (`times`, or Poisson arrivals `mean_gap` cycles apart on average
    when `times` is None: t += exponential), kind by weight (bisect of a uniform draw in `cumulative`, the
    normalised cumulative weights of `kinds`), size uniformly from `pages`, first page uniform over where
    that size fits in the region's `region_pages`, initiator uniform from `initiators`; the generator is
    seeded with `seed`."""

    kinds: tuple[str, ...]
    cumulative: tuple[float, ...]
    region: str
    region_pages: int
    pages: tuple[int, ...]
    initiators: tuple[int, ...]
    seed: int
    times: tuple[int, ...] | None = None
    mean_gap: float = 0.0


def _drawn(
    *,
    kinds: dict[str, float],
    region: str,
    region_pages: int,
    pages: list[int],
    initiators: list[int],
    seed: int,
    times: tuple[int, ...] | None = None,
    mean_gap: float = 0.0,
) -> DrawnSchedule:
    names = tuple(kinds)
    cumulative = np.cumsum([kinds[k] for k in names], dtype=float)
    cumulative = (cumulative / cumulative[-1]).tolist()
    return DrawnSchedule(
        names, tuple(cumulative), region, region_pages, tuple(pages), tuple(initiators), seed, times, mean_gap
    )


def rate_schedule(*, rate_per_second: float, clock_ghz: float, **draws) -> DrawnSchedule:
    """Poisson arrivals at `rate_per_second` of simulated time (cycles at `clock_ghz`). `draws`: kinds (name ->
    weight), region, region_pages, pages, initiators, seed, as DrawnSchedule describes."""
    return _drawn(**draws, mean_gap=clock_ghz * 1e9 / rate_per_second)


def fixed_schedule(*, at: list[int], **draws) -> DrawnSchedule:
    """Events at the given points (cycles, or global access counts), kinds and sizes drawn as above."""
    return _drawn(**draws, times=tuple(sorted(at)))


def file_schedule(path: str | Path, n_procs: int, regions: set[str]) -> Iterator[Event]:
    """Read a CSV events file, checking every line; events must be in time order."""
    path = Path(path)
    try:
        f = open(path, newline="")
    except OSError as e:
        raise ConfigError(f"{path}: cannot open events file: {e.strerror}") from None
    events = []
    with f:
        reader = csv.reader(f)
        last = -1
        for lineno, row in enumerate(reader, 1):
            if not row or row[0].startswith("#") or (lineno == 1 and row[0] == "time"):
                continue
            if len(row) != 6:
                raise ConfigError(f"{path}:{lineno}: expected 6 fields time,kind,proc,region,first_page,n_pages")
            try:
                t, proc, first, n = int(row[0]), int(row[2]), int(row[4]), int(row[5])
            except ValueError:
                raise ConfigError(f"{path}:{lineno}: time, proc, first_page and n_pages must be integers") from None
            kind, region = row[1].strip(), row[3].strip()
            if kind not in EVENT_KINDS:
                raise ConfigError(f"{path}:{lineno}: unknown kind {kind!r} (expected one of {', '.join(EVENT_KINDS)})")
            if region not in regions:
                raise ConfigError(f"{path}:{lineno}: unknown region {region!r}")
            if not 0 <= proc < n_procs:
                raise ConfigError(f"{path}:{lineno}: process {proc} does not exist (there are {n_procs})")
            if t < 0 or t < last or first < 0 or n < 1:
                raise ConfigError(
                    f"{path}:{lineno}: times must be >= 0 and not decrease, first_page >= 0, n_pages >= 1"
                )
            last = t
            events.append(Event(t, kind, proc, region, first, n))
    return iter(events)
