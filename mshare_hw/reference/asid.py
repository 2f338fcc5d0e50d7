"""Linux's per-CPU dynamic ASIDs (arch/x86/mm/tlb.c: choose_new_asid, switch_mm_irqs_off).

Six slots `ctxs[0..5] = {ctx_id, tlb_gen}` per CPU, PCID = ASID + 1, round-robin allocation starting
as Linux boots (slot 0 holds init_mm, next_asid = 1). A slot hit flushes only if its tlb_gen is behind
the mm's; a miss always flushes the slot it takes.

Global ASIDs (Linux 6.18 with INVLPGB): an mm given one (the kernel side decides, flush.py) is loaded
under it on every CPU, never flushed on a switch (INVLPGB keeps it up to date); ASIDs from 6 upwards
(TLB_NR_DYN_ASIDS), so their PCIDs never collide with the dynamic slots'.
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
    global_asid: int = 0  # 0: none
    transition: bool = False  # given a global ASID that some CPU running it may not use yet


def is_global_asid(asid: int) -> bool:
    return asid >= N_DYN_ASIDS


@dataclass
class SwitchOutcome:
    switched: bool  # a different mm was loaded
    flush: bool  # CR3 written without NOFLUSH: the new PCID's entries are gone
    slot_hit: bool
    recycled: bool  # the slot taken held another user mm
    lazy_catchup: bool  # same mm after lazy mode, flushed because its tlb_gen moved on
    global_asid: bool = False  # loaded under the mm's global ASID (no slot looked up)


def switch_mm(st: CpuTlbState, cpu: int, mm_id: int, mm: MmState, pcid_enabled: bool) -> SwitchOutcome:
    was_lazy = st.is_lazy
    st.is_lazy = False
    if st.loaded_mm == mm_id:
        # needs_global_asid_reload: the mm got a global ASID since this CPU loaded it
        if mm.global_asid and st.asid != mm.global_asid:
            st.asid = mm.global_asid
            return SwitchOutcome(True, False, False, False, False, True)
        if is_global_asid(st.asid):  # kept up to date by INVLPGB
            return SwitchOutcome(False, False, True, False, False)
        if was_lazy and st.ctx_gens[st.asid] < mm.tlb_gen:
            st.ctx_gens[st.asid] = mm.tlb_gen
            return SwitchOutcome(False, True, True, False, True)
        return SwitchOutcome(False, False, True, False, False)
    mm.cpumask.add(cpu)
    if not pcid_enabled:
        asid, flush, hit, recycled = 0, True, False, False
    elif mm.global_asid:
        st.loaded_mm = mm_id
        st.asid = mm.global_asid
        return SwitchOutcome(True, False, False, False, False, True)
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
