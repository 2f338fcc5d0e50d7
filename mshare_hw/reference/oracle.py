"""The coherence oracle: a TLB or PWC hit on an entry whose page-table entry has changed since the
fill is a stale translation (on hardware: a use-after-free or a protection bypass)."""

from __future__ import annotations

from dataclasses import dataclass

WHERE_L1 = 0
WHERE_L2 = 1
WHERE_PWC = 2


@dataclass(frozen=True)
class StaleExample:
    cycle: int
    cpu: int
    proc: int
    va: int
    where: int  # WHERE_L1, WHERE_L2 or WHERE_PWC


class Oracle:
    def __init__(self, enabled: bool, max_examples: int):
        self.enabled = enabled
        self.max_examples = max_examples
        self.examples: list[StaleExample] = []

    def is_stale(self, filled_version: int, current_version: int) -> bool:
        return self.enabled and filled_version != current_version

    def record(self, cycle: int, cpu: int, proc: int, va: int, where: int) -> None:
        if len(self.examples) < self.max_examples:
            self.examples.append(StaleExample(cycle, cpu, proc, va, where))
