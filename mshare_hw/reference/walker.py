"""The page walker: one access at a time through the L1 and L2 TLBs, the page walk (PWCs, then cached entry
reads), faults, fills and the data read. Mirrors kernels/walker.pxi.

Order of work per access (both engines): count it; charge the base cost; look up the L1 TLB of its
kind; on a miss charge the L2 TLB latency and look it up; on a miss walk (PWCs deepest level first,
then one cached read per remaining level, each preceded under nested virtualization by the nested
translation of the entry's guest-physical address, and the data's after the leaf), taking and retrying
faults; fill L2 then L1; then, if data
caches are on, read the data line. The oracle checks every TLB and PWC hit.

A mixin of ReferenceMachine (mshare_hw.reference.machine), whose TLBs, PWCs, caches, page tables and
counters it uses.
"""

from __future__ import annotations

from mshare_hw.engine.layout import LEAF_LEVEL
from mshare_hw.reference.oracle import WHERE_L1, WHERE_L2, WHERE_PWC
from mshare_hw.reference.pagetables import ENTRIES, encode, index, is_leaf, present, target
from mshare_hw.reference.timing import TR_L1, TR_STLB, TR_WALK
from mshare_hw.reference.tlb import TLBEntry

IFETCH, LOAD, STORE = 0, 1, 2  # the codes of mshare_hw.names.ACCESS_KINDS
WALK_ATTEMPTS = 4  # link fault, page fault, then a present walk


class Walker:
    # -- regions -------------------------------------------------------------------------------
    def find_region(self, proc: int, va: int):
        for r in self.layout.regions[proc]:
            if r.start <= va < r.end:
                return r
        return None

    def slot_host(self, proc: int, va: int) -> int:
        for s in self.layout.slots[proc]:
            if s.start <= va < s.end:
                return s.host
        return -1

    def pmd_span(self, proc: int, va: int) -> int:
        """The PUD span (hugetlb PMD sharing) of proc's that holds va, or -1."""
        if self.layout.pmd_slots:
            for s in self.layout.pmd_slots[proc]:
                if s.start <= va < s.end:
                    return s.host
        return -1

    def huge_pmd_share(self, mm: int, va: int, span: int) -> None:
        """huge_pte_alloc for a fault in a shareable PUD span (mm/hugetlb.c): pud_alloc in mm; if its PUD entry
        is none, huge_pmd_share() links it to the span's PMD table if another mm has one (counted in
        pmd_shares), else pmd_alloc() gives mm a table of its own, which later faulters will share."""
        pt = self.pt
        t = pt.descend(self.roots[mm], va, 3)
        loc = t * ENTRIES + index(va, 3)
        if present(pt.entries[loc]):
            return
        if self.pmd_table[span] >= 0:
            pt.set_entry(loc, encode(self.pmd_table[span], False))
            self.pmd_users[span] += 1
            self.add("pmd_shares")
        else:
            table = pt.new_table(2, mm)
            pt.set_entry(loc, encode(table, False))
            self.pmd_table[span] = table
            self.pmd_users[span] = 1

    # -- page walk and faults ------------------------------------------------------------------
    def read_pt_entry(self, cpu: int, loc: int) -> int:
        level, lat = self.caches.read(cpu, self.pt.entry_paddr(loc))
        self.add("walk_reads")
        self.add(("walk_reads_l1d", "walk_reads_l2", "walk_reads_llc", "walk_reads_dram")[level])
        self.add("walk_cycles", lat)
        return lat

    def walk(self, cpu: int, proc: int, va: int, pcid: int):
        """Returns (cycles, fault, a, b, c): on success (loc, pfn, shift), on a fault (table, level). Nested:
        every guest entry's address and the data's are nested-translated (nested_translate) first."""
        self.add("walks")
        cycles = 0
        if self.nested:  # a 2-D walk's own cost beyond its reads
            cycles = self.p.nested_walk_cycles
            self.add("walk_cycles", cycles)
        pt = self.pt
        levels = self.p.levels
        table, level = self.roots[proc], levels
        for lv in range(2, levels + 1):
            e = self.pwc[cpu].lookup(lv, pcid, va)
            if e is not None:
                self.add(("", "", "pwc_hits_pd", "pwc_hits_pdpt", "pwc_hits_pml4", "pwc_hits_pml5")[lv])
                if self.oracle.is_stale(e.version, pt.versions[e.loc]):
                    self.add("stale_translations")
                    self.oracle.record(self.clock[cpu], cpu, proc, va, WHERE_PWC)
                table, level = e.child, lv - 1
                break
        while True:
            loc = table * ENTRIES + index(va, level)
            if self.nested:
                cycles += self.nested_translate(cpu, pt.entry_paddr(loc))
            cycles += self.read_pt_entry(cpu, loc)
            ent = pt.entries[loc]
            if not present(ent):
                return cycles, True, table, level, 0
            if is_leaf(ent):
                shift = 12 + 9 * (level - 1)
                if self.nested:  # the data page's guest-physical address
                    cycles += self.nested_translate(cpu, target(ent) * 4096 + (va & ((1 << shift) - 1)))
                return cycles, False, loc, target(ent), shift
            child = target(ent)
            self.pwc[cpu].fill(level, pcid, va, child, loc, pt.versions[loc], proc)
            table, level = child, level - 1

    def handle_fault(self, cpu: int, proc: int, va: int, kind: int, table: int, level: int) -> None:
        pt = self.pt
        link_level = self.p.link_level
        host = self.slot_host(proc, va) if link_level else -1
        if host >= 0 and pt.table_mm[table] == self.mm_of[proc] and level >= link_level:
            t = pt.descend(self.roots[proc], va, link_level)
            shared = pt.descend(self.roots[self.layout.n_procs + host], va, link_level - 1)
            pt.set_entry(t * ENTRIES + index(va, link_level), encode(shared, False))
            self.add("link_faults")
            self.add("fault_cycles", self.p.link_fault_cycles)
            self.charge_serial(self.p.link_fault_cycles)
            return
        if self.p.pt_config == "hugetlb_pmd_share":
            # hugetlb PMD sharing: a shared PMD table belongs to whichever mm allocated it; the fault descends
            # through the faulting mm's own PUD entry, linked first if the span is shareable (huge_pmd_share)
            root = self.roots[self.mm_of[proc]]
            span = self.pmd_span(proc, va)
            if span >= 0:
                self.huge_pmd_share(self.mm_of[proc], va, span)
        else:
            root = self.roots[pt.table_mm[table]]
        region = self.find_region(proc, va)
        shift = region.shift if region is not None else 12
        leaf_level = LEAF_LEVEL[shift]
        if region is not None and region.fault_around and kind != STORE:
            span = self.p.fault_around_pages << 12
            lo = max(va & ~(span - 1), region.start)
            hi = min((va & ~(span - 1)) + span, region.end)
            pages = range(lo, hi, 1 << 12)
        else:
            pages = range(va & ~((1 << shift) - 1), (va & ~((1 << shift) - 1)) + 1, 1)
        mapped = 0
        for page in pages:
            t = pt.descend(root, page, leaf_level)
            loc = t * ENTRIES + index(page, leaf_level)
            if not present(pt.entries[loc]):
                if region is not None:
                    frame = region.frame_base + ((page - region.start) >> 12)
                else:
                    frame = pt.alloc_frame()
                pt.set_entry(loc, encode(frame, True))
                mapped += 1
        cost = self.p.fault_cycles + self.p.fault_per_page_cycles * mapped
        self.add("page_faults")
        self.add("pages_mapped", mapped)
        self.add("fault_cycles", cost)
        self.charge_serial(cost)

    def charge_serial(self, cycles: int) -> None:
        """Serial work (a fault handler): waits for the accesses in flight, then takes `cycles`."""
        self.drain(self._cpu)
        self.spend(cycles)

    def drain(self, cpu: int) -> None:
        """A serialising point: `cpu`'s clock waits for every access still outstanding (counted to the
        current (cpu, proc))."""
        moved = self.timing[cpu].drain(self.clock[cpu]) - self.clock[cpu]
        if moved:
            self.spend(moved)

    # -- one access ----------------------------------------------------------------------------
    def access(self, cpu: int, proc: int, va: int, kind: int) -> None:
        self._cpu, self._proc = cpu, proc
        p = self.p
        self.add("accesses")
        self.add(("ifetches", "loads", "stores")[kind])
        cost = p.ifetch_cycles if kind == IFETCH else p.access_cycles
        pcid = self.pcid(cpu)
        l1 = self.l1i[cpu] if kind == IFETCH else self.l1d[cpu]
        stall, path = 0, TR_L1
        e = l1.lookup(pcid, va)
        if e is not None:
            self.add("l1_itlb_hits" if kind == IFETCH else "l1_dtlb_hits")
            self.check(e, cpu, proc, va, WHERE_L1)
        else:
            self.add("l1_itlb_misses" if kind == IFETCH else "l1_dtlb_misses")
            l2 = self.l2i[cpu] if kind == IFETCH else self.l2d[cpu]
            stall = p.l2_latency
            e = l2.lookup(pcid, va)
            if e is not None:
                self.add("stlb_hits")
                path = TR_STLB
                self.check(e, cpu, proc, va, WHERE_L2)
                l1.fill(e)
            else:
                self.add("stlb_misses")
                path = TR_WALK
                for _ in range(WALK_ATTEMPTS):
                    cycles, fault, a, b, c = self.walk(cpu, proc, va, pcid)
                    stall += cycles
                    if not fault:
                        break
                    self.handle_fault(cpu, proc, va, kind, a, b)
                    if p.pti:  # the fault's kernel entry and exit
                        cost_pti = self.pti_crossing(cpu, proc)
                        self.add("fault_cycles", cost_pti)
                        self.charge_serial(cost_pti)
                else:
                    raise RuntimeError("a page walk kept faulting (internal error)")
                e = TLBEntry(va >> c, c, pcid, b, a, self.pt.versions[a], proc)
                l2.fill(e)
                l1.fill(e)
            self.add("translation_cycles", stall)
            cost += stall
        if p.data_caches and kind != IFETCH:
            pa = e.pfn * 4096 + (va & ((1 << e.shift) - 1))
            level, lat = self.caches.read(cpu, pa)
            self.add(("data_l1d_hits", "data_l2_hits", "data_llc_hits", "data_dram_reads")[level])
            if p.timing != "translation":
                self.add("data_cycles", lat)
                if p.timing == "overlap" and not self.dependent[proc]:
                    now = self.clock[cpu]
                    self.spend(self.timing[cpu].overlap(p, now, path, stall - p.l2_latency, level, lat) - now)
                    return
                cost += lat - p.access_cycles  # the load-to-use latency replaces the base cost
        self.spend(cost)

    def check(self, e: TLBEntry, cpu: int, proc: int, va: int, where: int) -> None:
        if self.oracle.is_stale(e.pte_version, self.pt.versions[e.pte_loc]):
            self.add("stale_translations")
            self.oracle.record(self.clock[cpu], cpu, proc, va, where)
