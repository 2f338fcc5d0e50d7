"""`mshare-hw` (the console script) and `python -m mshare_hw`: a Ctrl-C while the command's modules
are still loading exits 130 like one during the command, without a traceback."""

import sys


def entry() -> None:
    try:
        from mshare_hw.cli import run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(130)
    run()


if __name__ == "__main__":
    entry()
