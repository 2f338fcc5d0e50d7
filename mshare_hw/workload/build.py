"""Turn an experiment's [workload] table into a Workload: a generator's, or a manifest's traces."""

from __future__ import annotations

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import WorkloadCfg
from mshare_hw.workload.generators import generator_params
from mshare_hw.workload.manifest import build_manifest_workload
from mshare_hw.workload.model import Workload


def build_workload(cfg: WorkloadCfg, seed: int) -> Workload:
    if cfg.manifest is not None:
        return build_manifest_workload(cfg.manifest, skip_bad_lines=cfg.skip_bad_lines)
    params = generator_params(cfg.generator, cfg.params, seed)
    try:
        return params.generate()
    except (ValueError, TypeError) as e:
        raise ConfigError(f"workload.params: generator '{cfg.generator}': {e}") from None
