"""`python -m mshare_hw.cli`: the `mshare-hw` command."""

from mshare_hw.cli import run

run()
