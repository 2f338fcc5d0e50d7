"""The probe plan: which C probes (mshare_hw._probes) run, with which sizes and repetitions, in what
order; raw results gathered into one JSON-able dict (saved beside the profile so `--check` can replay).

Fitted series and held-out series are kept apart: `fit.*` feed the profile, `held_out.*` only the
validation table. Every timing keeps all its trials (a list of ns); a fitted probe's trials come in
bursts spread over the calibration (`repeat`), and its value is the median of the bursts' fastest trials
(`fit.typical`; a held-out probe runs once: its fastest trial). The profile reports their spread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mshare_hw.calibrate.fit import typical
from mshare_hw.calibrate.host import Host

FIT_PAGES = (1, 8, 32, 64)  # madvise series with the mm on 0, 1, ... N-1 other CPUs (raw data, saved)
IPI_PAGES = 1  # the paired madvise rounds the IPI costs are fitted on: the least flush work on either side
HELD_OUT_PAGES = (16, 48)  # madvise and mprotect series only the validation uses (48: above the 33-page ceiling)
MPROTECT_FIT_PAGES = (1, 8, 32)
CHASE_RANDOM, CHASE_SEQUENTIAL = 0, 1  # the chase probe's node orders
STRIDED_SPACING = 8192  # the held-out random chase's node spacing: every other page (half the nodes per PTE line)
PINGPONG_PAGES = 64  # pages each side of the held-out ping-pong touches per round
RESPONDER_GAP_NS = 300  # a gap longer than this in a spinning responder's clock reads was taken by the kernel
# a gap longer than this is not an IPI (tens of us even through a VM exit) but the host descheduling the vCPU
RESPONDER_GAP_MAX_NS = 50_000
SHMEM_PAGES = 4096
FAULT_AROUND_PAGES = 16  # Linux's default fault_around_bytes (64 KiB) in 4 KiB pages


@dataclass(frozen=True)
class Plan:
    page_sizes: list[int]  # pointer chase over random pages: working sets in pages
    sequential_sizes: list[int]  # the held-out chase over pages in address order
    strided_sizes: list[int]  # the held-out chase over random nodes two pages apart
    line_sizes: list[int]  # pointer chase over random lines (huge pages): working sets in lines
    loads: int
    trials: int
    rounds: int  # madvise / mprotect rounds per trial (and per half of an IPI pair)
    pingpong_rounds: int
    ipi_pairs: int  # IPI pairs per burst and remote CPU count
    ipi_bursts: int  # bursts spread over the calibration: the host moves vCPUs every few seconds
    repeats: int  # later bursts of the fitted probes, spread over the calibration

    @classmethod
    def make(cls, quick: bool) -> Plan:
        per_octave = 2 if quick else 4
        return cls(
            page_sizes=_geometric(16, 16384 if quick else 65536, per_octave),  # to 256 MiB: the 2-D walk's reach
            sequential_sizes=_geometric(32, 8192 if quick else 16384, 1 if quick else 2),
            strided_sizes=_geometric(16, 16384 if quick else 32768, 2),
            line_sizes=_geometric(64, 1 << (18 if quick else 22), per_octave),  # past 4x a 32 MiB LLC: DRAM
            loads=100_000 if quick else 400_000,
            trials=3 if quick else 7,
            rounds=200 if quick else 1500,
            pingpong_rounds=2000 if quick else 20000,
            ipi_pairs=10 if quick else 40,
            ipi_bursts=2 if quick else 5,
            repeats=1 if quick else 2,
        )


def _geometric(lo: int, hi: int, per_octave: int) -> list[int]:
    n = int(round(np.log2(hi / lo) * per_octave)) + 1
    return sorted({int(round(lo * 2 ** (i / per_octave))) for i in range(n)})


Step = tuple[str, Callable[[], None]]


def steps(plan: Plan, host: Host, cpus: list[int], out: dict) -> list[Step]:
    """The probes as (label, run) pairs that fill `out`; the caller runs them in order (a progress bar)."""
    from mshare_hw import _probes as p

    tsc_threshold = tsc_ceiling = 0

    def core_clock() -> None:
        """Sample the core clock: the host's boost lowers it for seconds when the host is busy, so the
        calibration samples it with every repeated probe and converts ns to cycles at the fastest sample, as
        every timing is the fastest of its trials."""
        samples = out.setdefault("core_ghz_samples", [])
        samples.append(p.core_ghz(20000, 9))
        out["core_ghz"] = max(samples)

    def clocks() -> None:
        nonlocal tsc_threshold, tsc_ceiling
        out["tsc_ghz"] = p.tsc_ghz(50.0)
        out["trials_per_burst"] = plan.trials  # a repeated probe's trials come in bursts of this many
        core_clock()
        tsc_threshold = int(RESPONDER_GAP_NS * out["tsc_ghz"])
        tsc_ceiling = int(RESPONDER_GAP_MAX_NS * out["tsc_ghz"])

    def chase(key: str, sizes: list[int], spacing: int, huge: bool, order: int = CHASE_RANDOM) -> Step:
        def run() -> None:
            trials = p.chase(sizes, spacing, huge, plan.loads, plan.trials, 1, order)
            out[key] = {"sizes": sizes, "ns": [typical(t, plan.trials) for t in trials], "trials": trials}

        unit = key.rsplit("_", 1)[-1]
        what = f"{unit} in address order" if order == CHASE_SEQUENTIAL else f"random {unit}"
        apart = f" {spacing // 1024} KiB apart" if spacing > 4096 else ""
        return (f"pointer chase over {what}{apart}", run)

    def add(key: str, trials: list[float]) -> None:
        out[key] = out.get(key, []) + trials

    def chase_again(key: str, spacing: int, huge: bool, seed: int, below: int = 0, octaves: int = 64) -> None:
        """The chase's working sets up to `below` nodes and in its largest `octaves` octaves once more (a
        new random cycle), their trials added to the first run's as a new burst."""
        rec = out[key]
        last = rec["sizes"][-1]
        again = [i for i, s in enumerate(rec["sizes"]) if s <= below or s >= last / 2**octaves]
        trials = p.chase([rec["sizes"][i] for i in again], spacing, huge, plan.loads, plan.trials, seed)
        for i, t in zip(again, trials):
            rec["trials"][i] = rec["trials"][i] + t
            rec["ns"][i] = typical(rec["trials"][i], plan.trials)

    def faults() -> None:
        add("fit.fault_anon_ns", p.fault_anon(2048, plan.trials))
        add("fit.fault_shmem_one_ns", p.fault_shmem(SHMEM_PAGES, FAULT_AROUND_PAGES, False, plan.trials))
        add("fit.fault_shmem_around_ns", p.fault_shmem(SHMEM_PAGES, FAULT_AROUND_PAGES, True, plan.trials))

    def shootdown(kind: str, op: int, pages: tuple[int, ...]) -> Step:
        def run() -> None:
            series = []
            for remote in range(len(cpus)):
                for n in pages:
                    ns, stolen = p.shootdown(
                        cpus[: remote + 1], n, op, plan.rounds, plan.trials, tsc_threshold, tsc_ceiling
                    )
                    series.append(
                        {"remote": remote, "pages": n, "ns": ns, "responder_ns": [s / out["tsc_ghz"] for s in stolen]}
                    )
            for row, earlier in zip(series, out.get(kind, [])):  # a repeat: each row's trials added
                for k in ("ns", "responder_ns"):
                    row[k] = earlier[k] + row[k]
            out[kind] = series

        held = " (held out)" if kind.startswith("held_out") else ""
        return (f"{kind.split('.')[-1]}{held} on {len(cpus)} CPUs", run)

    def context_switches() -> None:
        add("fit.pipe_self_ns", p.pingpong(cpus[0], plan.pingpong_rounds, 0, plan.trials, False))
        add("fit.pingpong_ns", p.pingpong(cpus[0], plan.pingpong_rounds, 0, plan.trials, True))

    def repeat(r: int) -> Step:
        """The fitted probes once more, their trials added to the first run's as a burst (`fit.typical`): the
        host's slow and fast spells last seconds, so the bursts are spread over the calibration. The
        held-out probes run once."""

        def run() -> None:
            core_clock()
            chase_again("fit.chase_pages", 4096, False, 1 + r * len(plan.page_sizes))  # all of it: 5 s
            # the cache levels' plateaus and DRAM; the working sets between (30 s, the LLC giving way) run once
            chase_again("fit.chase_lines", 64, True, 1 + r * len(plan.line_sizes), below=1 << 18, octaves=1)
            faults()
            shootdown("fit.mprotect", 1, MPROTECT_FIT_PAGES)[1]()
            context_switches()

        return (f"fitted probes again ({r} of {plan.repeats})", run)

    def ipi_pairs(burst: int) -> Step:
        def run() -> None:
            core_clock()
            rows = out.setdefault("fit.ipi_pairs", [])
            for remote in range(1, len(cpus)):
                alone, held, gap, per_round = p.shootdown_pairs(
                    cpus[: remote + 1], IPI_PAGES, plan.rounds, plan.ipi_pairs, tsc_threshold, tsc_ceiling
                )
                rows.append(
                    {
                        "remote": remote,
                        "pages": IPI_PAGES,
                        "burst": burst,
                        "alone_ns": alone,
                        "held_ns": held,
                        "responder_ns": [g / out["tsc_ghz"] for g in gap],
                        "interrupts_per_round": per_round,
                    }
                )

        return (f"IPI pairs on {len(cpus)} CPUs ({burst + 1} of {plan.ipi_bursts})", run)

    def pingpong() -> None:
        context_switches()
        out["held_out.pingpong_touch"] = {
            "pages": PINGPONG_PAGES,
            "rounds": plan.pingpong_rounds // 4,
            "ns": p.pingpong(cpus[0], plan.pingpong_rounds // 4, PINGPONG_PAGES, plan.trials, True),
        }

    probes = [
        chase("fit.chase_pages", plan.page_sizes, 4096, False),
        chase("fit.chase_lines", plan.line_sizes, 64, True),
        chase("held_out.chase_sequential_pages", plan.sequential_sizes, 4096, False, CHASE_SEQUENTIAL),
        chase("held_out.chase_strided_pages", plan.strided_sizes, STRIDED_SPACING, False),
        ("page faults", faults),
        shootdown("fit.madvise", 0, FIT_PAGES),
        shootdown("held_out.madvise", 0, HELD_OUT_PAGES),
        shootdown("fit.mprotect", 1, MPROTECT_FIT_PAGES),
        shootdown("held_out.mprotect", 1, HELD_OUT_PAGES),
        ("context switches", pingpong),
    ]
    # the repeated probes spread between the others, so that they sample the host's states over the whole
    # calibration: the IPI pairs from the start, the fitted probes again once both chases have run
    ipi = [ipi_pairs(b) for b in range(plan.ipi_bursts)]
    again = [repeat(r + 1) for r in range(plan.repeats)]
    return [("clocks", clocks), *_spread(_spread(probes, again, after=2), ipi, after=0)]


def _spread(steps: list[Step], extra: list[Step], after: int) -> list[Step]:
    """`steps` with `extra` inserted at even intervals after the first `after` of them, each in the middle
    of its interval."""
    if not extra:
        return steps
    head, tail = steps[:after], steps[after:]
    every = len(tail) / len(extra)
    at = {int((k + 0.5) * every): k for k in range(len(extra))}
    out = list(head)
    for i, step in enumerate(tail):
        if i in at:
            out.append(extra[at[i]])
        out.append(step)
    return out
