"""`mshare-hw` (the console script) and `python -m mshare_hw`."""

from mshare_hw.cli import run

if __name__ == "__main__":
    run()
