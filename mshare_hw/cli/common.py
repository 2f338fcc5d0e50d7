"""What the commands share: the error console, status lines, the sweep progress bar, byte sizes."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from mshare_hw.config.errors import ConfigError

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


def earlier_runs(out: Path) -> int:
    """How many runs an existing results file `out` holds (0 when there is no file)."""
    from mshare_hw.results.merge import MergeError, summary_run_ids

    if not out.exists():
        return 0
    try:
        return len(summary_run_ids(out, strict=False))
    except (OSError, MergeError) as e:
        raise ConfigError(
            f"{out}: exists and is not a readable mshare-hw results file ({e}); choose another output"
        ) from None


def add_output_policy(parser, *, what: str) -> None:
    """`--append` / `--overwrite`: what a command does with a results file that exists already."""
    policy = parser.add_mutually_exclusive_group()
    policy.add_argument(
        "--append",
        action="store_true",
        help=f"an existing OUTPUT keeps its runs and gains {what}; runs it already holds are not replayed",
    )
    policy.add_argument("--overwrite", action="store_true", help="replace an existing OUTPUT")
