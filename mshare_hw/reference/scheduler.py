"""Run queues and the choice of which CPU runs next.

`pinned`: each process stays on its home CPU; a CPU's processes share it round-robin with a quantum.
`global`: one FIFO run queue for all CPUs, so processes migrate. The engine always advances the CPU
whose clock is lowest (ties: lowest CPU number) by one slice.
"""

from __future__ import annotations

from collections import deque

from mshare_hw.engine.layout import Layout
from mshare_hw.engine.params import SimParams

IDLE, RUNNING = 0, 1


class Scheduler:
    def __init__(self, params: SimParams, layout: Layout):
        self.pinned = params.scheduler == "pinned"
        self.quantum = params.quantum_cycles
        n_cpus = params.n_cpus
        self.state = [IDLE] * n_cpus
        self.current = [-1] * n_cpus
        self.quantum_end = [0] * n_cpus
        if self.pinned:
            self.queues = [deque(p for p in range(layout.n_procs) if layout.home_cpu[p] == c) for c in range(n_cpus)]
        else:
            self.queues = [deque(range(layout.n_procs))]

    def queue(self, cpu: int) -> deque:
        return self.queues[cpu] if self.pinned else self.queues[0]

    def next_cpu(self, clocks: list[int]) -> int:
        best = -1
        for c, st in enumerate(self.state):
            if st == RUNNING and (best < 0 or clocks[c] < clocks[best]):
                best = c
        return best
