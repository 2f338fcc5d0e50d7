"""Sleeping clients: where in its trace a process blocks (I/O, a lock) and for how long.

Database clients block on I/O and on locks, and while they sleep their CPU runs another process or
idles in lazy TLB mode (Linux's idle task calls enter_lazy_tlb; arch/x86/mm/tlb.c). `sleep_schedule`
draws a process's sleeps from a seed: the accesses between two sleeps are geometric with mean
`every_accesses` (a memoryless arrival of blocking calls, at least one access apart), each sleep's
length exponential with mean `cycles` (rounded to whole cycles). The draws are splitmix64 streams
(mshare_hw.workload.generators.random) turned into floats of 53 bits; the inverse CDFs use float64
logarithms, so a draw could differ between platforms only where it lands within an ulp of a step.
"""

from __future__ import annotations

import math

from mshare_hw.workload.generators.random import MASK64, derive_seed, mix64

TAG_SLEEP = 0x534C5550  # "SLUP"
_ONE53 = 1 << 53


def _uniforms(seed: int):
    """Floats in (0, 1] from a splitmix64 stream."""
    state = seed
    while True:
        yield ((mix64(state) >> 11) + 1) / _ONE53
        state = (state + 0x9E3779B97F4A7C15) & MASK64


def sleep_schedule(n_accesses: int, every_accesses: int, cycles: int, seed: int, index: int) -> tuple:
    """Process `index`'s sleeps over a trace of n_accesses: ((position, cycles), ...) with positions in
    1..n_accesses-1 increasing. Nothing if every_accesses or cycles is 0."""
    if every_accesses <= 0 or cycles <= 0 or n_accesses < 2:
        return ()
    u = _uniforms(derive_seed(seed, TAG_SLEEP, index))
    # geometric on 1, 2, ... with mean every_accesses: P(gap > k) = (1 - 1/every)^k
    log_q = math.log1p(-1.0 / every_accesses) if every_accesses > 1 else -math.inf
    out = []
    pos = 0
    while True:
        gap = 1 if log_q == -math.inf else 1 + int(math.log(next(u)) / log_q)
        pos += gap
        length = round(-math.log(next(u)) * cycles)
        if pos >= n_accesses:
            return tuple(out)
        out.append((pos, length))


def describe_sleeps(every_accesses: int, cycles: int) -> str:
    if every_accesses <= 0 or cycles <= 0:
        return ""
    return f"; sleeps every ~{every_accesses} accesses for ~{cycles} cycles (geometric/exponential)"
