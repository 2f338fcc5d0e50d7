"""`mshare-hw uarch list|show` and `mshare-hw ptmem`: the modelled machines and the analytic page-table
memory."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from mshare_hw.cli.common import command_group, fmt_bytes
from mshare_hw.config.errors import ConfigError


def cmd_uarch_list(args: argparse.Namespace) -> int:
    from mshare_hw.config.uarch import UARCH_PATH_ENV, load_uarch, uarch_catalog

    table = Table(title=f"microarchitectures (shipped, then ${UARCH_PATH_ENV})")
    for head in ("name", "vendor", "description", "PCID", "INVLPGB", "LA57", "file"):
        table.add_column(head)
    for entry in uarch_catalog():
        where = "shipped" if entry.shipped else str(entry.path)
        if entry.error is not None:
            table.add_row(entry.name, "", f"[red]does not load:[/red] {entry.error}", "", "", "", where)
            continue
        u = load_uarch(entry.path)
        f = u.features
        table.add_row(entry.name, u.vendor, u.description, _yn(f.pcid), _yn(f.invlpgb), _yn(f.la57), where)
    Console().print(table)
    return 0


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def cmd_uarch_show(args: argparse.Namespace) -> int:
    from mshare_hw.config.uarch import load_uarch, uarch_path

    u = load_uarch(args.name)
    console = Console()
    console.print(f"[bold]{u.name}[/bold]: {u.description}")
    table = Table(title="TLBs")
    for head in ("level", "page sizes", "entries", "ways", "sets", "index", "replacement"):
        table.add_column(head)
    for level in ("l1i", "l1d", "l2d", "l2i"):
        for s in getattr(u.tlb, level) or []:
            policy = s.replacement or u.tlb.replacement
            table.add_row(level, "+".join(s.sizes), str(s.entries), str(s.ways), str(s.sets), s.index, policy)
    console.print(table)
    console.print(f"L2 TLB hit latency: {u.tlb.l2_hit_latency} cycles")
    pwc = u.pwc.model_dump(exclude_none=True, exclude={"replacement"})
    console.print(
        "page-walk caches: "
        + ", ".join(f"{k} {v['entries']}x{v['ways']}-way" for k, v in pwc.items())
        + f" ({u.pwc.replacement})"
    )
    c = u.caches
    console.print(
        f"caches: L1D {c.l1d.size_kib} KiB {c.l1d.ways}-way {c.l1d.latency} cyc {c.l1d.replacement}; "
        f"L2 {c.l2.size_kib} KiB {c.l2.ways}-way {c.l2.latency} cyc {c.l2.replacement}; "
        f"LLC {c.llc.size_kib_per_cpu} KiB/CPU {c.llc.ways}-way {c.llc.latency} cyc {c.llc.replacement}; "
        f"DRAM {c.dram_latency} cyc"
    )
    if u.core is not None:
        console.print("core: " + ", ".join(f"{k}={v}" for k, v in u.core.model_dump().items()))
    if u.nested is not None:
        n = u.nested
        console.print(
            f"nested (2-D walks): TLB {n.tlb.entries}x{n.tlb.ways}-way, PWC {n.pwc.entries}x{n.pwc.ways}-way "
            f"per host level ({n.replacement})"
        )
    console.print("features: " + ", ".join(f"{k}={v}" for k, v in u.features.model_dump().items()))
    console.print(
        "costs (cycles): " + ", ".join(f"{k}={v}" for k, v in u.costs.model_dump(exclude={"virtualized"}).items())
    )
    if u.costs.virtualized is not None:
        virt = u.costs.virtualized.model_dump()
        console.print("costs in a guest (cycles): " + ", ".join(f"{k}={v}" for k, v in virt.items()))
    console.print(f"sources: comments in {uarch_path(args.name)}")
    return 0


def cmd_ptmem(args: argparse.Namespace) -> int:
    from mshare_hw.analysis.ptmem import ptmem

    try:
        m = ptmem(args.processes, args.region, args.page_size, args.share_level, args.levels)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None
    table = Table(
        title=f"page-table memory: {args.processes} processes x {fmt_bytes(m.region_bytes)} region, "
        f"{args.page_size} pages, sharing at {args.share_level}"
    )
    for head in ("level", "private pages", "private", "shared pages", "shared"):
        table.add_column(head, justify="right")
    for name in m.private_pages:
        p, s = m.private_pages[name], m.shared_pages[name]
        table.add_row(name, f"{p:,}", fmt_bytes(p * 4096), f"{s:,}", fmt_bytes(s * 4096))
    table.add_row(
        "total",
        f"{sum(m.private_pages.values()):,}",
        fmt_bytes(m.private_total_bytes),
        f"{sum(m.shared_pages.values()):,}",
        fmt_bytes(m.shared_total_bytes),
    )
    Console().print(table)
    return 0


def add_uarch_parser(sub) -> None:
    ua_sub = command_group(sub, "uarch", "list or show microarchitecture files")
    ua_list = ua_sub.add_parser("list", help="list the shipped microarchitectures and those on $MSHARE_HW_UARCH_PATH")
    ua_list.set_defaults(func=cmd_uarch_list)
    ua_show = ua_sub.add_parser("show", help="show one microarchitecture's parameters")
    ua_show.add_argument("name", help="a uarch name or the path of a uarch file (.toml)")
    ua_show.set_defaults(func=cmd_uarch_show)


def add_ptmem_parser(sub) -> None:
    pm = sub.add_parser("ptmem", help="analytic page-table memory, private vs shared, per level")
    pm.add_argument("--processes", type=int, required=True, help="number of processes mapping the region")
    pm.add_argument("--region", required=True, help="region size, e.g. 300GiB (units are binary)")
    pm.add_argument("--page-size", choices=["4K", "2M", "1G"], default="4K")
    pm.add_argument(
        "--share-level",
        choices=["p4d", "pud", "pmd"],
        default="p4d",
        help="p4d = mshare (default); pud, pmd = what-if sharing levels",
    )
    pm.add_argument("--levels", type=int, choices=[4, 5], default=4, help="paging levels (5 = LA57)")
    pm.set_defaults(func=cmd_ptmem)


def add_calibrate_parser(sub) -> None:
    from mshare_hw.calibrate.command import add_arguments, main

    cal = sub.add_parser(
        "calibrate",
        help="measure this machine's TLB, cache, fault and shootdown costs into a uarch file, and validate it",
    )
    add_arguments(cal)
    cal.set_defaults(func=main)
