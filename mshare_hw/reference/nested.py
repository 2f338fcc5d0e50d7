"""Two-dimensional (nested) walks: the guest-physical -> host-physical translation each guest table read and
the final data address need under `virtualization = "nested"`. Mirrors kernels/nested.pxi.

Host physical = guest physical (the host backs guest memory contiguously), and the host page tables are laid
out arithmetically in a reserved frame range (SimParams.host_table_base), so their entries are real lines
in the same caches. Per CPU: a nested TLB (keyed by gPA >> host page shift) and one nested PWC per host
level above the host leaf level (keyed by gPA >> that level's entry span), both never flushed by the guest.
A translation: nested TLB hit -> nothing read; else the lowest nested-PWC hit gives the start level, then
one cached read per host level down to the leaf, filling the nested PWCs and the nested TLB.

A mixin of ReferenceMachine (mshare_hw.reference.machine), whose caches and counters it uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from mshare_hw.engine.params import HOST_LEVELS, SetAssoc, SimParams
from mshare_hw.reference.pwc import entry_shift
from mshare_hw.reference.set_array import SetArray, stream_seed

HOST_LEAF_LEVEL = {12: 1, 21: 2, 30: 3}


@dataclass
class NestedEntry:
    tag: int
    owner: int = 0


class NestedArray(SetArray):
    """A nested TLB or one host level's nested PWC: tags only (the host address follows from the tag)."""

    def __init__(self, spec: SetAssoc, stream: int):
        super().__init__(spec.sets, spec.ways, spec.replacement, stream)

    def lookup(self, tag: int) -> bool:
        base = (tag % self.sets) * self.ways
        for w in range(self.ways):
            e = self.entries[base + w]
            if e is not None and e.tag == tag:
                self.touch(base + w)
                return True
        return False

    def fill(self, tag: int) -> None:
        self.fill_set(tag % self.sets, NestedEntry(tag))


class NestedStructures:
    """One CPU's nested TLB and nested PWCs (None where the machine has none)."""

    def __init__(self, params: SimParams, cpu: int):
        leaf = HOST_LEAF_LEVEL[params.host_page_shift]
        tlb, spec = params.nested_tlb, params.nested_pwc
        self.tlb = NestedArray(tlb, stream_seed(params.seed, "nested_tlb", 0, cpu)) if tlb is not None else None
        self.pwc = (
            {
                lv: NestedArray(spec, stream_seed(params.seed, "nested_pwc", lv - 2, cpu))
                for lv in range(leaf + 1, HOST_LEVELS + 1)
            }
            if spec is not None
            else {}
        )


class NestedWalker:
    def init_nested(self, params: SimParams, n_cpus: int) -> None:
        self.nested = params.virtualization == "nested"
        self.host_leaf = HOST_LEAF_LEVEL[params.host_page_shift]
        self.host_base = params.host_table_base if self.nested else ()
        self.nested_structs = [NestedStructures(params, c) for c in range(n_cpus)] if self.nested else []

    def host_entry_paddr(self, gpa: int, level: int) -> int:
        """The address of the level-`level` host entry mapping guest-physical `gpa`."""
        table = self.host_base[level] + (gpa >> (12 + 9 * level))
        return table * 4096 + ((gpa >> entry_shift(level)) & 511) * 8

    def nested_translate(self, cpu: int, gpa: int) -> int:
        """Translate guest-physical `gpa` for a walk on `cpu`; returns the host reads' cycles."""
        ns = self.nested_structs[cpu]
        page = gpa >> self.p.host_page_shift
        if ns.tlb is not None and ns.tlb.lookup(page):
            return 0
        cycles = self.p.nested_walk_cycles  # a host walk's own cost beyond its reads
        self.add("nested_walk_cycles", cycles)
        self.add("walk_cycles", cycles)
        level = HOST_LEVELS
        for lv in range(self.host_leaf + 1, HOST_LEVELS + 1):
            if lv in ns.pwc and ns.pwc[lv].lookup(gpa >> entry_shift(lv)):
                level = lv - 1
                break
        while True:
            _, lat = self.caches.read(cpu, self.host_entry_paddr(gpa, level))
            self.add("nested_walk_reads")
            self.add("nested_walk_cycles", lat)
            self.add("walk_cycles", lat)
            cycles += lat
            if level == self.host_leaf:
                break
            if level in ns.pwc:
                ns.pwc[level].fill(gpa >> entry_shift(level))
            level -= 1
        if ns.tlb is not None:
            ns.tlb.fill(page)
        return cycles
