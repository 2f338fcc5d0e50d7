"""Results files the report tests draw from: a small events sweep, a small ASID sweep (both run once per
session) and the committed results."""

from __future__ import annotations

from pathlib import Path

import pytest

from mshare_hw.config.experiment import Experiment
from mshare_hw.runner import run_experiment

SHIPPED = Path(__file__).resolve().parents[2] / "results"


def database(n_processes, accesses: int = 4000, **extra) -> dict:
    return {"generator": "database", "params": {"n_processes": n_processes, "accesses_per_process": accesses,
                                                "pool_bytes": "16MiB", "private_bytes": "1MiB",
                                                "text_bytes": "256KiB", **extra}}  # fmt: skip


@pytest.fixture(scope="session")
def events_file(tmp_path_factory) -> Path:
    """Sharers plus one unrelated process, invalidation events on and off, three strategies, private and
    mshare, 1 and 2 sharers: every plot but the ASID one has data."""
    exp = Experiment.model_validate(
        {
            "name": "mini_flush",
            "uarch": "zen3",
            "pt_config": "mshare",
            "machine": {"n_cpus": 3},
            "scheduler": {"slice_accesses": 256},
            "workload": database(2, 6000, n_unrelated=1, n_sharer_cpus=2),
            "events": {"enabled": True, "rate_per_second": 200_000, "pages": [1, 64]},
            "sweep": {
                "workload.params.n_processes": [1, 2],
                "pt_config": ["private", "mshare"],
                "strategy": ["flush_all", "host_mm_only", "union_batch"],
                "events.enabled": [True, False],
            },
            "exclude": [
                {"pt_config": "private", "strategy": "host_mm_only"},
                {"pt_config": "private", "strategy": "union_batch"},
                {"events.enabled": False, "strategy": "host_mm_only"},
                {"events.enabled": False, "strategy": "union_batch"},
            ],
        }
    )
    out = tmp_path_factory.mktemp("report") / "mini_flush.h5"
    run_experiment(exp, out)
    return out


@pytest.fixture(scope="session")
def asid_file(tmp_path_factory) -> Path:
    """4 and 8 processes on one CPU, private and mshare: 8 exceed Linux's 6 ASID slots per CPU."""
    exp = Experiment.model_validate(
        {
            "name": "asid",
            "machine": {"n_cpus": 1},
            "scheduler": {"quantum_cycles": 20_000},
            "workload": database(4, 3000),
            "sweep": {"workload.params.n_processes": [4, 8], "pt_config": ["private", "mshare"]},
        }
    )
    out = tmp_path_factory.mktemp("report") / "asid.h5"
    run_experiment(exp, out)
    return out


REACH_PAGES = (16, 64, 72, 81, 512, 1536, 1728, 3072, 3456)


@pytest.fixture(scope="session")
def reach_file(tmp_path_factory) -> Path:
    """The TLB-reach loop (a one-load-per-page pointer chase, first lap warm-up) at a few working sets on
    zen4 and skylake_sp, two timing modes: a reach plot with two panels of two lines."""
    points = [[n * 4096, n + max(3 * n, 4000), n] for n in REACH_PAGES]
    exp = Experiment.model_validate(
        {
            "name": "mini_reach",
            "machine": {"n_cpus": 1, "oracle": False},
            "workload": {"generator": "pointer_chase",
                         "params": {"n_processes": 1, "accesses_per_process": 1, "working_set_bytes": 4096,
                                    "shared": False}},
            "sweep": {
                "uarch": ["zen4", "skylake_sp"],
                "machine.timing": ["translation", "latency"],
                "workload.params.working_set_bytes+workload.params.accesses_per_process+run.warmup_accesses": points,
            },
        }
    )  # fmt: skip
    out = tmp_path_factory.mktemp("report") / "mini_reach.h5"
    run_experiment(exp, out)
    return out


@pytest.fixture
def shipped():
    """The committed results file `name`.h5 (skips if it is absent)."""

    def path(name: str) -> Path:
        p = SHIPPED / f"{name}.h5"
        if not p.exists():
            pytest.skip(f"no shipped {p.name}")
        return p

    return path
