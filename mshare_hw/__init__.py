"""mshare-hw: a cycle-approximate x86-64 MMU model for private vs shared (mshare) page tables."""

__version__ = "0.1.0"

from mshare_hw.results.hdf5 import load_run, load_summary  # noqa: E402

__all__ = ["__version__", "load_run", "load_summary"]
