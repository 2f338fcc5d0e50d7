"""What the commands share: the error console, status lines, the sweep progress bar, byte sizes."""

from __future__ import annotations

from rich.console import Console

err_console = Console(stderr=True)


def fmt_bytes(n: float) -> str:
    from mshare_hw.units import format_bytes

    return format_bytes(n)


def say(quiet: bool, text: str) -> None:
    """A status line on stderr (none with --quiet)."""
    if not quiet:
        err_console.print(text, highlight=False, soft_wrap=True)


def command_group(sub, name: str, help: str):
    """Add the command group `mshare-hw NAME ...` to the top-level subparsers; returns its subparsers."""
    group = sub.add_parser(name, help=help)
    return group.add_subparsers(dest=f"{name}_command", required=True)
