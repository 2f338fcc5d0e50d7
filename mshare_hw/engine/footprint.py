"""The peak host memory of one run, estimated from its settings before anything is generated or
replayed, so that a run which cannot fit is refused with the figure (`check_memory`) instead of being
killed by the kernel part-way.

The parts, each from the structures that hold it (kernels/state.pxi, kernels/pagetables.pxi):
- the interpreter with numpy, numba and h5py loaded (`BASE_BYTES`);
- per simulated CPU: its TLBs, PWCs, L1D and L2 (every way's tag and rank byte, padded to 16-way blocks;
  TLB and PWC ways also their packed key and payload), its counters and scheduler state;
- the shared LLC's tags;
- per process: its counters, its share of the workload's Python objects and its cpumask row (one byte
  per CPU per mm, two mms per process at most);
- per leaf page-table entry expected present (the generator's `leaf_entries`): its share of a sparse
  table's hash slot at the lowest load, and the table it sits in;
- per interval row: one row of counters;
- the generated traces: whole for a workload of at most 256 MiB of them, which the runner draws once and
  holds for its grid points (at most that much in all, so other points' held traces add at most the same
  again), else the chunks drawn while they are replayed; and the generator's popularity tables, which are
  freed before the replay: the peak holds them or the page tables, whichever is larger.
"""

from __future__ import annotations

from dataclasses import dataclass

from mshare_hw.engine.params import SimParams
from mshare_hw.units import format_bytes

BASE_BYTES = 256 << 20  # the interpreter with numpy, numba, h5py and the engine loaded (~180 MiB measured)
TLB_WAY_BYTES = 40 + 8  # TLBEntry and its packed key
PWC_WAY_BYTES = 32 + 8  # PWCEntry and its packed key
SLOT_BYTES = 4 + 1  # a set slot's tag and rank byte (16 slots per block)
# A present leaf PTE: its share of a 72-byte slot holding a run of 8 (fault-around fills runs of 16: two
# slots; a store fault's page has a slot of its own), plus its leaf table's 16-byte upper-level slot
# shared with ~16 entries, at a hash segment's lowest load (35%, right after it grows): 9 / 0.35 + 1 / 0.35.
# ESTIMATE: sparse trees of one fault-around per leaf table, the cover letter's case (measured 10-40
# bytes per PTE by tests/benchmarks/test_scale.py); dense tables cost 8-16 bytes per entry, below it.
PT_ENTRY_BYTES = 32
PT_TABLE_BYTES = 2 * 21 + 8  # a table's fields (arrays grown by doubling) and the host PTE of its slice
PROCESS_BYTES = 16 << 10  # counters (4 copies), layout rows, the Process and trace objects, results
COUNTERS_BYTES = 64 * 8  # one row of counters (with room for appended ones)
INTERVAL_ROW_BYTES = COUNTERS_BYTES + 128


@dataclass(frozen=True)
class Footprint:
    base: int
    cpus: int
    llc: int
    processes: int
    page_tables: int
    intervals: int
    traces: int
    scratch: int = 0

    @property
    def total(self) -> int:
        fixed = self.base + self.cpus + self.llc + self.processes + self.intervals + self.traces
        return fixed + max(self.page_tables, self.scratch)

    def largest(self) -> str:
        """The part that takes the most, by name."""
        parts = {k: getattr(self, k) for k in ("cpus", "processes", "page_tables", "intervals", "traces", "scratch")}
        return max(parts, key=parts.__getitem__)


def _set_bytes(sets: int, ways: int, way_bytes: int) -> int:
    return sets * (-(-ways // 16) * 16) * SLOT_BYTES + sets * ways * way_bytes


def per_cpu_bytes(params: SimParams) -> int:
    """One simulated CPU's structures."""
    total = 0
    for level in (params.l1i, params.l1d, params.l2d, params.l2i or ()):
        total += sum(_set_bytes(t.sets, t.ways, TLB_WAY_BYTES) for t in level)
    total += sum(_set_bytes(p.sets, p.ways, PWC_WAY_BYTES) for p in params.pwc_structs)
    total += _set_bytes(params.l1d_cache.sets, params.l1d_cache.ways, 0)
    total += _set_bytes(params.l2_cache.sets, params.l2_cache.ways, 0)
    for nested in (params.nested_tlb, params.nested_pwc):
        if nested is not None:
            total += 4 * _set_bytes(nested.sets, nested.ways, TLB_WAY_BYTES)  # NESTED_PWCS <= 4 per CPU
    return total + 4 * COUNTERS_BYTES + 1024  # counters (the engine's, a copy, a warm-up snapshot), scheduler


def estimate(
    params: SimParams,
    n_processes: int,
    leaf_entries: int,
    interval_rows: int,
    trace_bytes: int,
    scratch_bytes: int = 0,
) -> Footprint:
    """The peak host memory of a run of `n_processes` on the machine `params`, with `leaf_entries` leaf
    PTEs expected present, `interval_rows` interval rows, `trace_bytes` of traces held and
    `scratch_bytes` taken while they are generated."""
    tables = leaf_entries // 16 + 4 * n_processes  # fault-around fills 16 entries of a table; the upper levels
    return Footprint(
        base=BASE_BYTES,
        cpus=params.n_cpus * per_cpu_bytes(params),
        llc=_set_bytes(params.llc.sets, params.llc.ways, 0),
        processes=n_processes * (PROCESS_BYTES + 2 * params.n_cpus),
        page_tables=leaf_entries * PT_ENTRY_BYTES + tables * PT_TABLE_BYTES,
        intervals=interval_rows * INTERVAL_ROW_BYTES,
        traces=trace_bytes,
        scratch=scratch_bytes,
    )


def describe(fp: Footprint) -> str:
    """The estimate and its largest parts, for one line."""
    parts = [
        (fp.page_tables, "page tables"),
        (fp.traces, "traces"),
        (fp.scratch, "generator tables"),
        (fp.cpus, "simulated CPUs"),
        (fp.processes, "processes"),
        (fp.intervals, "interval rows"),
    ]
    shown = ", ".join(f"{name} {format_bytes(b)}" for b, name in sorted(parts, reverse=True) if b >= (64 << 20))
    return f"about {format_bytes(fp.total)}" + (f" ({shown})" if shown else "")
