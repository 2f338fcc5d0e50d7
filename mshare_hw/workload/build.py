"""Turn an experiment's [workload] table into a Workload: a generator's, or a manifest's traces."""

from __future__ import annotations

import os
from pathlib import Path

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import WorkloadCfg
from mshare_hw.units import format_bytes
from mshare_hw.workload.generators import generator_params
from mshare_hw.workload.manifest import build_manifest_workload
from mshare_hw.workload.model import Workload


def build_workload(cfg: WorkloadCfg, seed: int) -> Workload:
    if cfg.manifest is not None:
        return build_manifest_workload(cfg.manifest, skip_bad_lines=cfg.skip_bad_lines)
    params = generator_params(cfg.generator, cfg.params, seed)
    need, have = params.trace_bytes(), available_memory()
    if need > have:
        raise ConfigError(
            f"workload.params.n_processes: generator '{cfg.generator}' would hold about "
            f"{format_bytes(need)} of trace chunks, more than "
            f"the {format_bytes(have)} of memory available; use fewer processes"
        )
    try:
        return params.generate()  # cheap: each trace is drawn block by block while it is read
    except (ValueError, TypeError) as e:
        raise ConfigError(f"workload.params: generator '{cfg.generator}': {e}") from None
    except MemoryError:
        raise ConfigError(
            f"workload.params: generator '{cfg.generator}': out of memory generating the traces; use fewer accesses"
        ) from None


def available_memory() -> int:
    """Bytes of memory the system can give without swapping (MemAvailable), else its physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
