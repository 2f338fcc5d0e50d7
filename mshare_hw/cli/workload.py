"""`mshare-hw workload init DIR`; imports are deferred so `mshare-hw --help` stays fast."""

from __future__ import annotations

import argparse

from mshare_hw.cli.common import command_group


def cmd_workload_init(args: argparse.Namespace) -> int:
    from mshare_hw.workload.init import summary_lines, write_manifest

    written = write_manifest(args.directory, name=args.name, overwrite=args.force)
    if not args.quiet:
        print("\n".join(summary_lines(*written)))
    return 0


def add_workload_parser(sub) -> None:
    wl_sub = command_group(sub, "workload", "workload manifests of captured traces")
    ini = wl_sub.add_parser(
        "init",
        help="write DIR/workload.toml from per-process traces (PREFIX.PID[.gz|.xz|.zst]) and maps snapshots",
        description="Scans DIR for lackey traces named PREFIX.PID (valgrind --log-file=PREFIX.%p), optionally "
        "compressed, and /proc/PID/maps snapshots named maps.PID or PREFIX.PID.maps; writes DIR/workload.toml "
        "with one process per trace and one region per shared mapping (flag 's') two or more processes map at "
        "the same address.",
    )
    ini.add_argument("directory", metavar="DIR")
    ini.add_argument("--name", help="workload name (default: the directory's name)")
    ini.add_argument("--force", action="store_true", help="replace an existing DIR/workload.toml")
    ini.add_argument("-q", "--quiet", action="store_true")
    ini.set_defaults(func=cmd_workload_init)
