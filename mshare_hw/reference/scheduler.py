"""Run queues, the choice of which CPU runs next, and the run loop. Mirrors kernels/scheduler.pxi.

`pinned`: each process stays on its home CPU; a CPU's processes share it round-robin with a quantum.
`global`: one FIFO run queue for all CPUs, so processes migrate. The engine always advances the CPU
whose clock is lowest (ties: lowest CPU number) by one slice.

Sleeps (Layout.sleeps): at a given position of its trace a process blocks for a number of cycles. It
leaves its CPU as if done (the next queued process runs, else the CPU idles in lazy TLB mode, as Linux's
idle task does through enter_lazy_tlb) and wakes when the simulated time reaches its wake time: the
earliest wake-up is taken before any running CPU whose clock is not below it. A woken process is queued;
an idle CPU that can run it (pinned: its home CPU; global: the CPU it last ran on if idle, else the lowest
idle one) jumps its clock to the wake time and runs it at once.
"""

from __future__ import annotations

from collections import deque

from mshare_hw.engine.layout import Layout
from mshare_hw.engine.params import SimParams
from mshare_hw.reference.asid import enter_lazy

IDLE, RUNNING = 0, 1
NO_CHECKPOINT = 1 << 62
NO_EVENT = 1 << 62
NO_WAKE = 1 << 62  # wake time of a process that is not sleeping


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
        n = layout.n_procs
        self.sleeps = [tuple(layout.sleeps[p]) if p < len(layout.sleeps) else () for p in range(n)]
        self.sleep_idx = [0] * n
        self.wake_time = [NO_WAKE] * n
        self.last_cpu = [-1] * n
        self.next_wake = NO_WAKE

    def next_sleep_pos(self, proc: int) -> int:
        """The trace position at which `proc` sleeps next (NO_WAKE: none left)."""
        i = self.sleep_idx[proc]
        return self.sleeps[proc][i][0] if i < len(self.sleeps[proc]) else NO_WAKE

    def earliest_wake(self) -> int:
        """The sleeping process that wakes first (ties: lowest number), -1 if none."""
        best = -1
        for p, t in enumerate(self.wake_time):
            if t != NO_WAKE and (best < 0 or t < self.wake_time[best]):
                best = p
        return best

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
        s.last_cpu[proc] = cpu
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

    def on_sleep(self, cpu: int, proc: int) -> None:
        """`proc` blocks on `cpu` at its next sleep position: it leaves the CPU until its wake time."""
        s = self.sched
        cycles = s.sleeps[proc][s.sleep_idx[proc]][1]
        s.sleep_idx[proc] += 1
        s.wake_time[proc] = self.clock[cpu] + cycles
        s.next_wake = min(s.next_wake, s.wake_time[proc])
        self.charge(cpu, proc, "sleeps", 1)
        self.charge(cpu, proc, "sleep_cycles", cycles)
        self.on_done(cpu)

    def wake(self, proc: int) -> None:
        """`proc`'s wake time has come: queue it, and if an idle CPU can run it, run it there from then."""
        s = self.sched
        t = s.wake_time[proc]
        s.wake_time[proc] = NO_WAKE
        p = s.earliest_wake()
        s.next_wake = s.wake_time[p] if p >= 0 else NO_WAKE
        if s.pinned:
            cpu = self.layout.home_cpu[proc]
            cpu = cpu if s.state[cpu] != RUNNING else -1
        else:
            cpu = s.last_cpu[proc]
            if cpu < 0 or s.state[cpu] == RUNNING:
                cpu = next((c for c in range(self.p.n_cpus) if s.state[c] != RUNNING), -1)
        if cpu < 0:
            s.queue(self.layout.home_cpu[proc]).append(proc)
            return
        self.clock[cpu] = max(self.clock[cpu], t)
        self.begin(cpu, proc)

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
                now = self.clock[c] if c >= 0 else NO_WAKE
                if s.next_wake != NO_WAKE and s.next_wake <= now:
                    if s.next_wake >= self.next_event_time:
                        events.fire(self)
                        self.next_event_time = events.next_time()
                    else:
                        self.wake(s.earliest_wake())
                    continue
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
            sleep_at = s.next_sleep_pos(proc)
            if self.pos[proc] == sleep_at:
                self.end_slice(cpu, proc)
                self.on_sleep(cpu, proc)
                cur = -1
                continue
            if self.clock[cpu] >= s.quantum_end[cpu]:
                self.end_slice(cpu, proc)
                self.on_quantum(cpu)
                cur = -1
                continue
            if self.clock[cpu] >= self.next_event_time or self.clock[cpu] >= s.next_wake or done >= slice_len:
                self.end_slice(cpu, proc)
                cur = -1
                continue
            lim = min(slice_len - done, n - self.pos[proc], nxt - self.global_accesses, sleep_at - self.pos[proc])
            addrs, kinds = self.addrs[proc], self.kinds[proc]
            stop = min(s.quantum_end[cpu], self.next_event_time, s.next_wake)
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
