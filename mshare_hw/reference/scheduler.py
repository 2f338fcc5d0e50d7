"""Run queues, the choice of which CPU runs next, and the run loop. Mirrors kernels/scheduler.pxi.

`pinned`: each process stays on its home CPU; a CPU's processes share it round-robin with a quantum.
`global`: one FIFO run queue for all CPUs, so processes migrate. The engine always advances the CPU
whose clock is lowest (ties: lowest CPU number) by one slice.
"""

from __future__ import annotations

from collections import deque

from mshare_hw.engine.layout import Layout
from mshare_hw.engine.params import SimParams
from mshare_hw.reference.asid import enter_lazy

IDLE, RUNNING = 0, 1
NO_CHECKPOINT = 1 << 62
NO_EVENT = 1 << 62


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


class SchedulingLoop:
    """The run loop of ReferenceMachine (a mixin): slices of accesses on the CPU with the lowest clock,
    quanta, checkpoints and events."""

    def start(self) -> None:
        s = self.sched
        for cpu in range(self.p.n_cpus):
            q = s.queue(cpu)
            if q:
                self.begin(cpu, q.popleft())

    def end_slice(self, cpu: int, proc: int) -> None:
        """`cpu` stops running `proc` for now: it waits for its accesses in flight."""
        self._cpu, self._proc = cpu, proc
        self.drain(cpu)

    def drain_running(self) -> None:
        """Every running CPU waits for its accesses in flight, counted to the process it runs."""
        s = self.sched
        for cpu in range(self.p.n_cpus):
            if s.state[cpu] == RUNNING:
                self.end_slice(cpu, s.current[cpu])

    def begin(self, cpu: int, proc: int) -> None:
        s = self.sched
        s.state[cpu] = RUNNING
        s.current[cpu] = proc
        self.switch_to(cpu, proc)
        s.quantum_end[cpu] = self.clock[cpu] + s.quantum

    def on_done(self, cpu: int) -> None:
        s = self.sched
        q = s.queue(cpu)
        if q:
            self.begin(cpu, q.popleft())
        else:
            s.state[cpu] = IDLE
            s.current[cpu] = -1
            enter_lazy(self.cpu_state[cpu])

    def on_quantum(self, cpu: int) -> None:
        s = self.sched
        q = s.queue(cpu)
        if q:
            q.append(s.current[cpu])
            self.begin(cpu, q.popleft())
        else:
            s.quantum_end[cpu] = self.clock[cpu] + s.quantum

    def next_checkpoint(self, events=None, devices=None) -> int:
        nxt = NO_CHECKPOINT
        if events is not None and events.by_accesses:
            nxt = events.next_time()
        if devices is not None:
            nxt = min(nxt, devices.next_time())
        w, k = self.p.warmup_accesses, self.p.interval_accesses
        g = self.global_accesses
        if w > g:
            nxt = min(nxt, w)
        if k > 0:
            nxt = min(nxt, (g // k + 1) * k)
        return nxt

    def checkpoint(self, events=None, devices=None) -> None:
        g = self.global_accesses
        self.drain_running()
        if g == self.p.warmup_accesses:
            self.warmup_snapshot = (self.cpu_ctr.copy(), self.proc_ctr.copy())
            if devices is not None:
                devices.snapshot_warmup()
        if self.p.interval_accesses and g % self.p.interval_accesses == 0:
            self.intervals.append((g, self.cpu_ctr.sum(axis=0)))
        if devices is not None and devices.next_time() == g:
            devices.run_due(self, g)
        while events is not None and events.by_accesses and events.next_time() == g:
            events.fire(self)

    def run(self, events=None, devices=None) -> None:
        """Replay everything. `events` (an EventLoop) is fired whenever every running CPU's clock has
        reached its next event's time; `devices` (SecondaryMMUs) run their bursts when due."""
        self.start()
        s = self.sched
        slice_len = self.p.slice_accesses
        nxt = self.next_checkpoint(events, devices)
        self.next_event_time = events.next_time() if events and not events.by_accesses else NO_EVENT
        cur, done = -1, 0
        while True:
            if cur < 0:
                c = s.next_cpu(self.clock)
                if c < 0:
                    break
                if self.clock[c] >= self.next_event_time:
                    events.fire(self)
                    self.next_event_time = events.next_time()
                    continue
                cur = c
                done = 0
            cpu = cur
            proc = s.current[cpu]
            n = len(self.addrs[proc])
            if self.pos[proc] == n:
                self.end_slice(cpu, proc)
                self.on_done(cpu)
                cur = -1
                continue
            if self.clock[cpu] >= s.quantum_end[cpu]:
                self.end_slice(cpu, proc)
                self.on_quantum(cpu)
                cur = -1
                continue
            if self.clock[cpu] >= self.next_event_time or done >= slice_len:
                self.end_slice(cpu, proc)
                cur = -1
                continue
            lim = min(slice_len - done, n - self.pos[proc], nxt - self.global_accesses)
            addrs, kinds = self.addrs[proc], self.kinds[proc]
            stop = min(s.quantum_end[cpu], self.next_event_time)
            for _ in range(lim):
                i = self.pos[proc]
                self.access(cpu, proc, int(addrs[i]), int(kinds[i]))
                self.pos[proc] = i + 1
                done += 1
                self.global_accesses += 1
                if self.clock[cpu] >= stop:
                    break
            if self.global_accesses == nxt:
                self.checkpoint(events, devices)
                nxt = self.next_checkpoint(events, devices)
