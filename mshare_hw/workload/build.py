"""Turn an experiment's [workload] table into a Workload: a generator's, or a manifest's traces."""

from __future__ import annotations

import inspect

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import WorkloadCfg
from mshare_hw.units import parse_size
from mshare_hw.workload import generators, streams
from mshare_hw.workload.model import Workload

GENERATOR_FUNCS = {
    "database": generators.database_workload,
    "uniform": generators.uniform_workload,
    "strided": generators.strided_workload,
    "pointer_chase": generators.pointer_chase_workload,
    "uniform_stream": streams.uniform_stream_workload,
}


def generator_kwargs(cfg: WorkloadCfg, seed: int) -> dict:
    """Checked keyword arguments for the generator; sizes may be written as "1GiB"."""
    fn = GENERATOR_FUNCS[cfg.generator]
    sig = inspect.signature(fn)
    kwargs = {}
    for key, value in cfg.params.items():
        if key not in sig.parameters or key == "seed":
            allowed = ", ".join(k for k in sig.parameters if k != "seed")
            raise ConfigError(
                f"workload.params.{key}: unknown parameter of generator '{cfg.generator}' "
                f"(allowed: {allowed}; the seed is the experiment's `seed`)"
            )
        if key.endswith("_bytes") and isinstance(value, str):
            try:
                value = parse_size(value)
            except ValueError as e:
                raise ConfigError(f"workload.params.{key}: {e}") from None
        kwargs[key] = value
    kwargs["seed"] = seed
    missing = [k for k, p in sig.parameters.items() if p.default is inspect.Parameter.empty and k not in kwargs]
    if missing:
        raise ConfigError(f"workload.params: generator '{cfg.generator}' needs {', '.join(missing)}")
    return kwargs


def build_workload(cfg: WorkloadCfg, seed: int) -> Workload:
    if cfg.manifest is not None:
        from mshare_hw.workload.manifest import build_manifest_workload

        return build_manifest_workload(cfg.manifest, skip_bad_lines=cfg.skip_bad_lines)
    kwargs = generator_kwargs(cfg, seed)
    try:
        return GENERATOR_FUNCS[cfg.generator](**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"workload.params: generator '{cfg.generator}': {e}") from None
