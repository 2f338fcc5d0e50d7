"""Set-associative TLBs tagged by (PCID, VPN, page size); replacement: set_array.py."""

from __future__ import annotations

from dataclasses import dataclass

from mshare_hw.engine.params import TLBStruct
from mshare_hw.reference.set_array import SetArray, stream_seed

ANY_PCID = -1  # invlpg in every PCID (INVLPGB by address without a PCID)


@dataclass
class TLBEntry:
    vpn: int
    shift: int
    pcid: int
    pfn: int  # 4 KiB frame number of the page's first byte
    pte_loc: int  # where the leaf PTE lives (table * 512 + index), for the oracle
    pte_version: int
    owner: int  # process that filled it
    is_global: bool = False


class TLBArray(SetArray):
    """One structure: sets x ways, holding the page sizes in `shifts`."""

    def __init__(self, spec: TLBStruct, stream: int = 1):
        super().__init__(spec.sets, spec.ways, spec.replacement, stream)
        self.spec = spec
        self.set_bits = spec.sets.bit_length() - 1

    def set_index(self, vpn: int) -> int:
        if self.spec.xor_index:
            return (vpn ^ (vpn >> self.set_bits)) & (self.sets - 1)
        return vpn % self.sets

    def find(self, pcid: int, va: int) -> int:
        """The index of the first entry mapping `va` in `pcid` or global (page sizes in spec order), or -1.
        pcid ANY_PCID: in any PCID."""
        for shift in self.spec.shifts:
            vpn = va >> shift
            base = self.set_index(vpn) * self.ways
            for w in range(self.ways):
                e = self.entries[base + w]
                if e is not None and e.shift == shift and e.vpn == vpn and (e.pcid == pcid or e.is_global or pcid < 0):
                    return base + w
        return -1

    def lookup(self, pcid: int, va: int) -> TLBEntry | None:
        i = self.find(pcid, va)
        if i < 0:
            return None
        self.touch(i)
        return self.entries[i]

    def fill(self, e: TLBEntry) -> None:
        self.fill_set(self.set_index(e.vpn), e)

    def flush_pcid(self, pcid: int, removed=None) -> int:
        """Every non-global entry of `pcid` (CR3 write without NOFLUSH, INVPCID type 1)."""
        n = 0
        for i, e in enumerate(self.entries):
            if e is not None and e.pcid == pcid and not e.is_global:
                self.drop(i, removed)
                n += 1
        return n

    def flush_all(self, removed) -> None:
        for i, e in enumerate(self.entries):
            if e is not None:
                self.drop(i, removed)

    def invlpg(self, pcid: int, va: int, removed) -> None:
        """The entries mapping `va` at any page size, in `pcid` (ANY_PCID: every PCID) or global."""
        while (i := self.find(pcid, va)) >= 0:
            self.drop(i, removed)


class TLBLevel:
    """The structures of one level (e.g. L1 DTLB 4K + 2M + 1G arrays), probed together. Array i of the
    level of kind `kind` (a REPLACEMENT_STREAMS name) on `cpu` draws from stream_seed(seed, kind, i, cpu)."""

    def __init__(self, specs: tuple[TLBStruct, ...], kind: str = "l1d", cpu: int = 0, seed: int = 0):
        self.arrays = [TLBArray(s, stream_seed(seed, kind, i, cpu)) for i, s in enumerate(specs)]

    def lookup(self, pcid: int, va: int) -> TLBEntry | None:
        for a in self.arrays:
            e = a.lookup(pcid, va)
            if e is not None:
                return e
        return None

    def fill(self, e: TLBEntry) -> None:
        for a in self.arrays:
            if e.shift in a.spec.shifts:
                a.fill(TLBEntry(e.vpn, e.shift, e.pcid, e.pfn, e.pte_loc, e.pte_version, e.owner, e.is_global))
                return

    def flush_pcid(self, pcid: int, removed=None) -> int:
        return sum(a.flush_pcid(pcid, removed) for a in self.arrays)

    def flush_all(self, removed) -> None:
        for a in self.arrays:
            a.flush_all(removed)

    def invlpg(self, pcid: int, va: int, removed) -> None:
        for a in self.arrays:
            a.invlpg(pcid, va, removed)
