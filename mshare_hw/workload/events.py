"""Invalidation schedules: when, what kind, by whom and over which pages PTEs change.

A schedule is an iterator of `Event`s in time order, drawn from a seeded generator: a Poisson process
at a rate per simulated second, explicit times, or a CSV events file (`time,kind,proc,region,first_page,
n_pages`, e.g. converted from an strace capture).
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mshare_hw._engine import EventDraws
from mshare_hw.config.errors import ConfigError
from mshare_hw.engine.shootdown import KINDS, Event


def _draws(
    kinds: dict[str, float],
    region: str,
    region_pages: int,
    pages: list[int],
    initiators: list[int],
    rng: np.random.Generator,
    *,
    times: Iterator[int] | None = None,
    mean_gap: float = 0.0,
) -> Iterator[Event]:
    """At each time (`times`, or Poisson arrivals `mean_gap` cycles apart on average: t += exponential),
    kind by weight (bisect of a uniform draw in the normalised cumulative weights), size uniformly from
    `pages`, first page uniform over where that size fits, initiator uniform. The engine's EventDraws makes
    these draws in C, with numpy's own C functions in the order Generator.exponential, random and three
    integers calls would: the same events from the same seed at a fraction of the cost per event."""
    names = list(kinds)
    cumulative = np.cumsum([kinds[k] for k in names], dtype=float)
    cumulative = (cumulative / cumulative[-1]).tolist()
    return EventDraws(
        rng, Event, names, cumulative, region, region_pages, pages, initiators, times=times, mean_gap=mean_gap
    )


def _rng(seed: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64([seed, 0x5EED]))


def rate_schedule(
    *,
    rate_per_second: float,
    clock_ghz: float,
    kinds: dict[str, float],
    region: str,
    region_pages: int,
    pages: list[int],
    initiators: list[int],
    seed: int,
) -> Iterator[Event]:
    """Poisson arrivals at `rate_per_second` of simulated time (cycles at `clock_ghz`)."""
    mean_gap = clock_ghz * 1e9 / rate_per_second
    return _draws(kinds, region, region_pages, pages, initiators, _rng(seed), mean_gap=mean_gap)


def fixed_schedule(
    *,
    at: list[int],
    kinds: dict[str, float],
    region: str,
    region_pages: int,
    pages: list[int],
    initiators: list[int],
    seed: int,
) -> Iterator[Event]:
    """Events at the given points (cycles, or global access counts), kinds and sizes drawn as above."""
    return _draws(kinds, region, region_pages, pages, initiators, _rng(seed), times=iter(sorted(at)))


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
            if kind not in KINDS:
                raise ConfigError(f"{path}:{lineno}: unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
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
