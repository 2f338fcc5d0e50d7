"""mshare-hw: a cycle-approximate x86-64 MMU model for private vs shared (mshare) page tables."""

from mshare_hw.version import __version__

__all__ = ["__version__", "load_run", "load_summary"]


def __getattr__(name: str):
    # the readers load h5py and pandas: imported on first use, so that `import mshare_hw.<module>` (every
    # command, every Dask worker) does not pay for them
    if name in ("load_run", "load_summary"):
        from mshare_hw.results import hdf5

        return getattr(hdf5, name)
    raise AttributeError(f"module 'mshare_hw' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
