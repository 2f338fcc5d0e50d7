"""Where the shipped config files are: inside the installed package, or in a source checkout."""

from __future__ import annotations

from pathlib import Path


def config_dir() -> Path:
    here = Path(__file__).resolve().parent.parent  # mshare_hw/
    installed = here / "configs"
    if installed.is_dir():
        return installed
    return here.parent / "configs"
