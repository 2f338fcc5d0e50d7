"""Synthetic workload generators, one module per family: a database-like workload (`database`), the
micro-benchmarks over one working set (`working_set`: uniform, strided, pointer chase) and the uniform
pattern generated while it is replayed (`stream`).

Every generator is a pydantic model of its parameters (`GENERATORS`, by the name experiment files use)
whose `generate()` is seeded and deterministic: the same parameters give bit-identical traces.
Addresses are uint64 byte addresses, kinds uint8 (0 = ifetch, 1 = load, 2 = store).
"""

from __future__ import annotations

from typing import Any

from mshare_hw.config.errors import ConfigError
from mshare_hw.workload.generators.database import (
    HEAP_TOP,
    TEXT_BASE,
    DatabaseParams,
    database_workload,
    pool_block_order,
)
from mshare_hw.workload.generators.params import SLOT_BYTES, GeneratorParams, ParamError
from mshare_hw.workload.generators.random import random_cycle, random_permutation, zipf_cdf, zipf_sample
from mshare_hw.workload.generators.stream import UniformStreamParams, uniform_stream_workload
from mshare_hw.workload.generators.working_set import (
    PointerChaseParams,
    StridedParams,
    UniformParams,
    pointer_chase_workload,
    strided_workload,
    uniform_workload,
)

__all__ = [
    "GENERATORS",
    "HEAP_TOP",
    "SLOT_BYTES",
    "TEXT_BASE",
    "database_workload",
    "default_params",
    "generator_params",
    "pointer_chase_workload",
    "pool_block_order",
    "random_cycle",
    "random_permutation",
    "strided_workload",
    "uniform_stream_workload",
    "uniform_workload",
    "zipf_cdf",
    "zipf_sample",
]

GENERATORS: dict[str, type[GeneratorParams]] = {
    "database": DatabaseParams,
    "uniform": UniformParams,
    "strided": StridedParams,
    "pointer_chase": PointerChaseParams,
    "uniform_stream": UniformStreamParams,
}


def default_params(name: str) -> dict[str, Any]:
    """Generator `name`'s parameters that have a default, with it (required ones are left out)."""
    fields = GENERATORS[name].model_fields
    return {k: f.default for k, f in fields.items() if not f.is_required()}


def generator_params(name: str, params: dict[str, Any], seed: int, where: str = "workload.params") -> GeneratorParams:
    """Generator `name`'s checked parameters: `params` (sizes may be written as "1GiB") and the seed. A bad
    one is a `ConfigError` of one line naming `where`.KEY."""
    model = GENERATORS[name]
    for key in params:
        if key not in model.model_fields or key == "seed":
            allowed = ", ".join(k for k in model.model_fields if k != "seed")
            raise ConfigError(
                f"{where}.{key}: unknown parameter of generator '{name}' "
                f"(allowed: {allowed}; the seed is the experiment's `seed`)"
            )
    try:
        return model.checked(**params, seed=seed)
    except ParamError as e:
        raise ConfigError(f"{where}{'.' + e.key if e.key else ''}: generator '{name}': {e.reason}") from None
