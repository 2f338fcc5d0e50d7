"""Drawing an invalidation schedule's events: the Cython engine's EventDraws (kernels/event_draws.pxi) makes a
DrawnSchedule's random draws in C, with numpy's own C functions in the order Generator.exponential, random
and three integers calls would: the same events from the same seed at a fraction of the cost per event."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from mshare_hw._engine import EventDraws
from mshare_hw.workload.events import DrawnSchedule, Event


def schedule_rng(seed: int) -> np.random.Generator:
    """The generator a DrawnSchedule of `seed` draws from."""
    return np.random.Generator(np.random.PCG64([seed, 0x5EED]))


def draw_events(schedule: DrawnSchedule) -> Iterator[Event]:
    """A fresh iterator over the schedule's events."""
    s = schedule
    times = iter(s.times) if s.times is not None else None
    return EventDraws(
        schedule_rng(s.seed),
        Event,
        list(s.kinds),
        list(s.cumulative),
        s.region,
        s.region_pages,
        list(s.pages),
        list(s.initiators),
        times=times,
        mean_gap=s.mean_gap,
    )


def event_iter(events: DrawnSchedule | Iterable[Event]) -> Iterator[Event]:
    """The events of a schedule: drawn for a DrawnSchedule, else iterated."""
    return draw_events(events) if isinstance(events, DrawnSchedule) else iter(events)
