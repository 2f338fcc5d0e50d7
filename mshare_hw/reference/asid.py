"""Linux's per-CPU dynamic ASIDs (arch/x86/mm/tlb.c: choose_new_asid, switch_mm_irqs_off).

Six slots `ctxs[0..5] = {ctx_id, tlb_gen}` per CPU, PCID = ASID + 1, round-robin allocation starting
as Linux boots (slot 0 holds init_mm, next_asid = 1). A slot hit flushes only if its tlb_gen is behind
the mm's; a miss always flushes the slot it takes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

N_DYN_ASIDS = 6
INIT_MM = -1  # the kernel's init_mm, loaded on every CPU at boot
INIT_MM_CTX_ID = 1  # ctx_ids count from 1 (init_mm); user mms get 2, 3, ...


@dataclass
class CpuTlbState:
    loaded_mm: int = INIT_MM
    asid: int = 0
    is_lazy: bool = False
    next_asid: int = 1
    ctx_ids: list[int] = field(default_factory=lambda: [INIT_MM_CTX_ID] + [0] * (N_DYN_ASIDS - 1))
    ctx_gens: list[int] = field(default_factory=lambda: [0] * N_DYN_ASIDS)


@dataclass
class MmState:
    ctx_id: int
    tlb_gen: int = 0
    cpumask: set[int] = field(default_factory=set)


@dataclass
class SwitchOutcome:
    switched: bool  # a different mm was loaded
    flush: bool  # CR3 written without NOFLUSH: the new PCID's entries are gone
    slot_hit: bool
    recycled: bool  # the slot taken held another user mm
    lazy_catchup: bool  # same mm after lazy mode, flushed because its tlb_gen moved on


def switch_mm(st: CpuTlbState, cpu: int, mm_id: int, mm: MmState, pcid_enabled: bool) -> SwitchOutcome:
    was_lazy = st.is_lazy
    st.is_lazy = False
    if st.loaded_mm == mm_id:
        if was_lazy and st.ctx_gens[st.asid] < mm.tlb_gen:
            st.ctx_gens[st.asid] = mm.tlb_gen
            return SwitchOutcome(False, True, True, False, True)
        return SwitchOutcome(False, False, True, False, False)
    mm.cpumask.add(cpu)
    if not pcid_enabled:
        asid, flush, hit, recycled = 0, True, False, False
    else:
        asid = -1
        for slot in range(N_DYN_ASIDS):
            if st.ctx_ids[slot] == mm.ctx_id:
                asid = slot
                break
        if asid >= 0:
            hit, recycled = True, False
            flush = st.ctx_gens[asid] < mm.tlb_gen
        else:
            asid = st.next_asid
            st.next_asid += 1
            if st.next_asid >= N_DYN_ASIDS:
                st.next_asid = 0
            hit, flush = False, True
            recycled = st.ctx_ids[asid] > INIT_MM_CTX_ID
    if flush:
        st.ctx_ids[asid] = mm.ctx_id
        st.ctx_gens[asid] = mm.tlb_gen
    st.loaded_mm = mm_id
    st.asid = asid
    return SwitchOutcome(True, flush, hit, recycled, False)


def enter_lazy(st: CpuTlbState) -> None:
    """Nothing to run: keep the mm loaded (and in its cpumask); catch up through tlb_gen later."""
    st.is_lazy = True
