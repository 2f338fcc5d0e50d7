"""The record of one run, as the runner produces it and a results file stores it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RunRecord:
    """One replayed grid point: what `write_results` writes and `read_runs` reads back."""

    run_id: str
    row: dict  # the summary row (results.summary: STABLE_COLUMNS then EXTRA_COLUMNS)
    config: dict  # the resolved single-point experiment
    seed: int
    trace_digests: list[str]
    proc_names: list[str]
    result: dict  # what the engine's driver returned (counter arrays, clocks, page-table pages, ...)
