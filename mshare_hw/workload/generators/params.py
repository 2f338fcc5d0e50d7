"""What every generator's parameter model shares: the field types, one-line errors, the CPU placement.

A generator is a pydantic model of its parameters whose `generate()` draws the workload. Fractions and
exponents keep the type they were given (an int stays an int), because workload descriptions print them
as given. Sizes (`*_bytes`) may be written as "64MiB" (`mshare_hw.units.parse_size`).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Self

from pydantic import BeforeValidator, Field, NonNegativeInt, PositiveInt, ValidationError, model_validator

from mshare_hw.config.uarch import Strict
from mshare_hw.traces.source import HELD_TRACE_BYTES, buffer_bytes
from mshare_hw.units import parse_size
from mshare_hw.workload.generators.sleeps import describe_sleeps, sleep_schedule
from mshare_hw.workload.model import Workload

GIB = 1 << 30
SLOT_BYTES = 1 << 39  # 512 GiB: what one PML4/P4D entry maps; mshare's alignment
USER_TOP = 1 << 47  # end of the 4-level user address space (128 TiB)


def _size(v: Any) -> Any:
    return parse_size(v) if isinstance(v, str) else v


Bytes = Annotated[PositiveInt, BeforeValidator(_size)]
Fraction = Annotated[int | float, Field(ge=0, le=1)]


class ParamError(ValueError):
    """A bad generator parameter: `key` ("" for a rule over several) and why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}" if key else reason)
        self.key = key
        self.reason = reason


def param_error(err: ValidationError) -> ParamError:
    """The first of pydantic's errors as one line naming the parameter (all missing ones at once)."""
    missing = [str(e["loc"][0]) for e in err.errors() if e["type"] == "missing"]
    if missing:
        return ParamError("", f"needs {', '.join(missing)}")
    first = err.errors()[0]
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown parameter"
    return ParamError(".".join(str(x) for x in first["loc"][:1]), msg)


class GeneratorParams(Strict):
    """A generator's parameters; subclasses add theirs and `generate()`."""

    label: ClassVar[str]  # how its workload descriptions start
    positional: ClassVar[tuple[str, ...]] = ()  # the parameters its function takes by position

    # sleeping clients (mshare_hw.workload.generators.sleeps): each process blocks after ~every accesses
    # (geometric) for ~cycles (exponential), drawn from the seed per process; 0 and 0: never
    sleep_every_accesses: NonNegativeInt = 0
    sleep_cycles: NonNegativeInt = 0

    @model_validator(mode="after")
    def _check_sleeps(self) -> Self:
        if (self.sleep_every_accesses == 0) != (self.sleep_cycles == 0):
            raise ValueError("sleep_every_accesses and sleep_cycles go together: both 0 (no sleeps) or both > 0")
        return self

    def with_sleeps(self, workload: Workload) -> Workload:
        """`workload` with each process's sleeps drawn (none unless sleep_every_accesses is set)."""
        every, cycles = self.sleep_every_accesses, self.sleep_cycles
        if not every:
            return workload
        seed = self.seed  # type: ignore[attr-defined]  # every generator has one
        for i, p in enumerate(workload.processes):
            p.sleeps = sleep_schedule(len(p.trace), every, cycles, seed, i)
        workload.description += describe_sleeps(every, cycles)
        return workload

    @classmethod
    def call(cls, args: tuple, params: dict[str, Any]) -> Workload:
        """The workload of `positional` arguments `args` and keyword `params` (for direct calls)."""
        if len(args) > len(cls.positional):
            raise TypeError(f"{cls.label}: at most {len(cls.positional)} positional arguments, got {len(args)}")
        return cls.checked(**dict(zip(cls.positional, args)), **params).generate()

    @classmethod
    def checked(cls, **params: Any) -> Self:
        """The validated parameters, or a `ParamError` naming the first bad one."""
        try:
            return cls.model_validate(params)
        except ValidationError as e:
            raise param_error(e) from None

    def generate(self) -> Workload:
        raise NotImplementedError

    def n_traces(self) -> int:
        """The workload's traces (processes, or threads)."""
        return getattr(self, "n_processes", 1) + getattr(self, "n_unrelated", 0)

    def trace_bytes(self) -> int:
        """The memory the traces take while replayed: a small workload's whole traces (held across the runs
        that replay it, up to `HELD_TRACE_BYTES`), else the chunks drawn as they are read
        (`mshare_hw.traces.source.buffer_bytes`): then the accesses do not set it."""
        n, per = self.n_traces(), getattr(self, "accesses_per_process", 0)
        whole = n * per * 9
        return whole if whole <= HELD_TRACE_BYTES else buffer_bytes(n, per)

    def scratch_bytes(self) -> int:
        """Memory `generate()` takes besides the traces (popularity tables and the like), at its peak."""
        return 0

    def leaf_entries(self, fault_around: int, shared_tables: bool) -> int:
        """An estimate of the leaf page-table entries present at the end of a run, every process's (those
        of regions whose tables are shared counted once when `shared_tables`), for the memory check
        (mshare_hw.engine.footprint). Here the bound: each access faults in `fault_around` new pages."""
        processes = getattr(self, "n_processes", 1) + getattr(self, "n_unrelated", 0)
        return processes * getattr(self, "accesses_per_process", 0) * fault_around

    def check_cpu_of(self, n: int) -> None:
        """`cpu_of`, if given, names a home CPU for each of the `n` processes."""
        cpu_of = getattr(self, "cpu_of", None)
        if cpu_of is not None and len(cpu_of) != n:
            raise ValueError(f"cpu_of has {len(cpu_of)} entries for {n} processes")
