"""The executable specification: a small, plain-Python model with the engine's exact semantics.

Each module mirrors one file of the Cython engine in `kernels/` (tlb, pwc, caches, pagetables, asid,
scheduler, oracle); differential tests demand identical counters from both.
"""

from mshare_hw.reference.machine import ReferenceMachine

__all__ = ["ReferenceMachine"]
