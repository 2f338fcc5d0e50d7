"""The executable specification: a small, plain-Python model with the engine's exact semantics.

Each module mirrors one file of the Cython engine in `kernels/` under the same name (machine.py mirrors
_engine.pyx; set_array, tlb, pwc, caches, pagetables, asid, oracle, walker, nested, scheduler, flush, kernel);
differential tests demand identical counters from both.
"""

from mshare_hw.reference.machine import ReferenceMachine

__all__ = ["ReferenceMachine"]
