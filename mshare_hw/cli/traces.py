"""`mshare-hw trace ...`: convert, inspect, capture and generate traces; imports are deferred so
`mshare-hw --help` stays fast."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import get_args

from mshare_hw.cli.common import command_group
from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import GeneratorName


def _fmt_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cmd_trace_convert(args: argparse.Namespace) -> int:
    from mshare_hw.traces import open_trace, write_native

    out = Path(args.output)
    if out.suffix not in (".h5", ".hdf5", ".mtrace"):
        raise ConfigError(f"{out}: output must be a native trace (.h5, .hdf5 or .mtrace)")
    sources: list[tuple[str, object]] = []
    for inp in args.inputs:
        if Path(inp).resolve() == out.resolve():
            raise ConfigError(f"{inp}: input and output are the same file")
        sources.extend(open_trace(inp, args.format, skip_bad_lines=args.skip_bad_lines))
    if args.name:
        if len(args.name) != len(sources):
            raise ConfigError(f"--name given {len(args.name)} times for {len(sources)} processes")
        sources = [(n, s) for n, (_, s) in zip(args.name, sources)]
    seen: dict[str, int] = {}
    renamed = []
    for n, s in sources:  # make names unique: a.trace, a.trace#2, ...
        seen[n] = seen.get(n, 0) + 1
        renamed.append((n if seen[n] == 1 else f"{n}#{seen[n]}", s))
    written = write_native(
        out, renamed, {"converted_from": ", ".join(map(str, args.inputs))}, compression=args.compression
    )
    if not args.quiet:
        for (name, src), w in zip(renamed, written):
            bad = getattr(src, "bad_lines", None)
            extra = f", {bad} bad lines skipped" if bad else ""
            print(
                f"{name}: {w['n_accesses']} accesses (ifetch {w['n_ifetch']}, load {w['n_load']}, "
                f"store {w['n_store']}){extra}; digest {w['digest']}"
            )
        print(f"wrote {out} ({_fmt_size(os.path.getsize(out))})")
    return 0


def cmd_trace_info(args: argparse.Namespace) -> int:
    from mshare_hw.traces import detect_format, file_compression, open_trace, trace_info

    p = Path(args.file)
    fmt = detect_format(p) if args.format == "auto" else args.format
    comp = file_compression(p) if fmt != "native" else None
    print(f"{p}: {fmt} trace{f' ({comp})' if comp else ''}, {_fmt_size(p.stat().st_size)} on disk")
    for name, src in open_trace(p, fmt, skip_bad_lines=args.skip_bad_lines):
        info = trace_info(src)
        n = info["accesses"]

        def pct(c: int, n: int = n) -> str:
            return f"{100 * c / n:.1f}%" if n else "-"

        print(f"process {name!r}" + (f" (pid {src.meta()['pid']})" if src.meta().get("pid", -1) >= 0 else ""))
        print(f"  accesses        {n}")
        for kind in ("ifetch", "load", "store"):
            print(f"  {kind:<15} {info[kind]} ({pct(info[kind])})")
        if n:
            print(f"  address range   {info['addr_min']:#x} .. {info['addr_max']:#x}")
        print(f"  distinct pages  {info['pages_4k']} x 4 KiB ({_fmt_size(info['pages_4k'] * 4096)})")
        bad = getattr(src, "bad_lines", None)
        if bad:
            print(f"  bad lines       {bad} (skipped)")
        if fmt == "native":
            print(f"  digest          {src.digest()}")
            print(f"  source          {src.meta()['source']} ({src.meta()['source_format']})")
    return 0


def cmd_trace_capture(args: argparse.Namespace) -> int:
    from mshare_hw.traces.capture import capture
    from mshare_hw.workload.init import summary_lines, write_manifest

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    say = (lambda _text: None) if args.quiet else print
    status = capture(args.output, command, interval=args.maps_interval, compression=args.compression, say=say)
    for line in summary_lines(*write_manifest(args.output, overwrite=True)):
        say(line)
    return 0 if status == 0 else 1


def cmd_trace_generate(args: argparse.Namespace) -> int:
    from mshare_hw.config.experiment import parse_override
    from mshare_hw.traces import write_native
    from mshare_hw.workload.generators import generator_params

    out = Path(args.output)
    if out.suffix not in (".h5", ".hdf5", ".mtrace"):
        raise ConfigError(f"{out}: output must be a native trace (.h5, .hdf5 or .mtrace)")
    params = dict(parse_override(text, option="-p", example="n_processes=4") for text in args.param)
    checked = generator_params(args.generator, params, args.seed)
    try:
        workload = checked.generate()
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--param: generator '{args.generator}': {e}") from None
    meta = {"generator": args.generator, "seed": args.seed, "params": params, "description": workload.description}
    pmeta = [{"source": f"generator {args.generator}", "source_format": "generator"} for _ in workload.processes]
    write_native(
        out,
        [(p.name, p.trace) for p in workload.processes],
        meta,
        compression=args.compression,
        process_meta=pmeta,
    )
    manifest = out.with_suffix(".toml")
    manifest.write_text(_generated_manifest(out, workload, args), encoding="utf-8")
    if not args.quiet:
        print(f"wrote {out} ({workload.total_accesses()} accesses, {len(workload.processes)} processes) and {manifest}")
    return 0


def _generated_manifest(out: Path, workload, args: argparse.Namespace) -> str:
    """A manifest replaying the generated file with the generator's regions where it put them."""
    import json

    q = json.dumps
    lines = [
        f"# written by `mshare-hw trace generate {args.generator} --seed {args.seed}`",
        f"name = {q(out.stem)}",
        f"description = {q(workload.description)}",
        "",
    ]
    for p in workload.processes:
        lines += ["[[processes]]", f"name = {q(p.name)}", f"trace = {q(out.name)}", f"trace_process = {q(p.name)}"]
        if p.cpu is not None:
            lines.append(f"cpu = {p.cpu}")
        lines.append("")
    names = [p.name for p in workload.processes]
    for r in workload.regions:
        lines += [
            "[[regions]]",
            f"name = {q(r.name)}",
            f"start = {r.start:#x}",
            f"size = {r.size:#x}",
            f"page_size = {q(r.page_size)}",
            f"kind = {q(r.kind)}",
            f"shared = {str(r.shared).lower()}",
            f"share_tables = {str(r.share_tables).lower()}",
            "relocate = false  # the generator already placed it",
        ]
        if r.processes is not None:
            lines.append(f"processes = {q([names[i] for i in r.processes])}")
        lines.append("")
    return "\n".join(lines)


def add_trace_parser(sub) -> None:
    """Add the `trace` command group to the top-level subparsers."""
    tr_sub = command_group(sub, "trace", "convert and inspect traces (lackey, ChampSim, native)")

    cv = tr_sub.add_parser(
        "convert",
        help="convert lackey / ChampSim / native traces into one native trace file",
        description="Each input becomes one process of OUT (a native file contributes all of its processes). "
        "The format is found from the content (HDF5 magic, text vs binary) and the name; gzip, xz and zstd "
        "inputs are read as streams.",
    )
    cv.add_argument("inputs", nargs="+", metavar="IN", help="input trace file(s)")
    cv.add_argument("output", metavar="OUT", help="native trace to write (.h5)")
    cv.add_argument(
        "--format",
        choices=["auto", "lackey", "champsim", "native"],
        default="auto",
        help="input format (default: detect)",
    )
    cv.add_argument("--skip-bad-lines", action="store_true", help="lackey: skip and count malformed lines")
    cv.add_argument("--name", action="append", help="process name, once per process (default: file name)")
    cv.add_argument(
        "--compression",
        choices=["lzf", "gzip", "none"],
        default="lzf",
        help="HDF5 compression (default lzf; none is the fastest to replay)",
    )
    cv.add_argument("-q", "--quiet", action="store_true")
    cv.set_defaults(func=cmd_trace_convert)

    inf = tr_sub.add_parser("info", help="counts by kind, address range, distinct pages and size of a trace")
    inf.add_argument("file", help="trace file (lackey, ChampSim or native)")
    inf.add_argument("--format", choices=["auto", "lackey", "champsim", "native"], default="auto")
    inf.add_argument("--skip-bad-lines", action="store_true", help="lackey: skip and count malformed lines")
    inf.set_defaults(func=cmd_trace_info)

    cp = tr_sub.add_parser(
        "capture",
        help="run a command under valgrind lackey: one trace and maps snapshot per process, then the manifest",
        description="Runs COMMAND under `valgrind --tool=lackey --trace-mem=yes --trace-children=yes` with "
        "--log-file=DIR/trace.%p, snapshots /proc/PID/maps of every traced process while it runs (DIR/maps.PID), "
        "compresses the traces and writes DIR/workload.toml (as `workload init` does). Put -- before COMMAND.",
    )
    cp.add_argument("-o", "--output", required=True, metavar="DIR", help="directory for traces, maps and manifest")
    cp.add_argument(
        "--maps-interval", type=float, default=0.05, metavar="SECONDS", help="maps snapshot period (default 0.05)"
    )
    cp.add_argument("--compression", choices=["zstd", "gzip", "none"], default="zstd", help="trace compression")
    cp.add_argument("-q", "--quiet", action="store_true")
    cp.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND", help="the program and its arguments")
    cp.set_defaults(func=cmd_trace_capture)

    gn = tr_sub.add_parser(
        "generate",
        help="write a generator's workload (seeded, deterministic) as a native trace plus its manifest",
        description="Writes OUT (native trace, one process per generated process) and OUT with .toml (a workload "
        "manifest with the generator's regions), runnable with `mshare-hw run OUT.toml -o RESULTS.h5` (without -o "
        "the results would go to OUT itself). Example: `mshare-hw trace generate uniform u.h5 -p n_processes=4 "
        "-p accesses_per_process=100000 -p working_set_bytes=64MiB`, then `mshare-hw run u.toml -o u_runs.h5`.",
    )
    # uniform_stream draws while it is replayed: it has no arrays to write
    gn.add_argument("generator", choices=[g for g in get_args(GeneratorName) if g != "uniform_stream"])
    gn.add_argument("output", metavar="OUT", help="native trace to write (.h5)")
    gn.add_argument("--seed", type=int, default=1)
    gn.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="generator parameter, e.g. -p n_processes=4 -p accesses_per_process=100000 -p working_set_bytes=64MiB "
        "(repeatable)",
    )
    gn.add_argument("--compression", choices=["lzf", "gzip", "none"], default="lzf")
    gn.add_argument("-q", "--quiet", action="store_true")
    gn.set_defaults(func=cmd_trace_generate)
