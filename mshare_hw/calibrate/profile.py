"""From probe results to a uarch file: the values a probe measured (with the probe, the host, the date
and the spread of its trials) over the nearest shipped part, which the file `extends`.

What the probes cannot see (page-walk caches, INVLPGB/TLBSYNC latency, CR3 and INVPCID costs, secondary
MMUs) stays inherited and is listed, commented out, with the part it comes from.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mshare_hw.calibrate.fit import (
    fastest,
    fastest_placement,
    find_rises,
    ipi_costs,
    linear_fit,
    spread,
    to_cycles,
)
from mshare_hw.calibrate.host import Host, nearest_part
from mshare_hw.calibrate.probes import FAULT_AROUND_PAGES
from mshare_hw.config.uarch import load_uarch


@dataclass(frozen=True)
class Value:
    key: str  # dotted uarch key, e.g. "costs.invlpg_cycles"
    value: int | bool
    probe: str
    spread: float | None  # relative spread (max - min) / min of the trials behind it; None: not a timing
    note: str = ""


# an IPI pair row's series, pooled over its bursts
PAIR_KEYS = ("alone_ns", "held_ns", "responder_ns", "interrupts_per_round")


def _series(m: dict, rows: list[dict], remote: int) -> dict[int, float]:
    return {r["pages"]: fastest(m, r["ns"]) for r in rows if r["remote"] == remote}


def _chase_spread(chase: dict, lo: float = 0, hi: float = float("inf")) -> float:
    """The median spread of a chase's trials over its working sets in (lo, hi]."""
    picked = [spread(t) for s, t in zip(chase["sizes"], chase["trials"]) if lo < s <= hi]
    return float(np.median(picked)) if picked else 0.0


def cache_levels(host: Host) -> list[tuple[str, int]]:
    """(uarch key, capacity in 64-byte lines) for L1D, L2 and the LLC as a whole, from sysfs."""
    out = []
    for level, key in ((1, "l1d"), (2, "l2"), (3, "llc")):
        c = host.cache(level)
        if c is not None and c.size_kib:
            out.append((key, c.size_kib * 1024 // 64))
    return out


def plateau_ns(sizes: list[int], ns: list[float], lo: float, hi: float) -> float | None:
    """The median latency of the working sets in (lo, hi] lines: inside one cache level."""
    pick = [v for s, v in zip(sizes, ns) if lo < s <= hi]
    return float(np.median(pick)) if pick else None


def derive(m: dict, host: Host) -> list[Value]:
    """The uarch values the measurements support, each with its probe and spread."""
    ghz = m["core_ghz"]
    vals: list[Value] = []
    cyc = lambda ns: to_cycles(ns, ghz)  # noqa: E731

    # cache geometry (sysfs) and latencies (plateaus of the line chase on huge pages, inside each level)
    lines = m["fit.chase_lines"]
    levels = cache_levels(host)
    prev = 0
    for key, cap in levels:
        c = host.cache({"l1d": 1, "l2": 2, "llc": 3}[key])
        size_key = "size_kib_per_cpu" if key == "llc" else "size_kib"
        size = c.size_kib // (c.shared_cpus if key == "llc" else 1)
        if size * 1024 // 64 % c.ways == 0:
            vals.append(Value(f"caches.{key}.{size_key}", size, "sysfs cache info", None))
            vals.append(Value(f"caches.{key}.ways", c.ways, "sysfs cache info", None))
        lat = plateau_ns(lines["sizes"], lines["ns"], prev * 1.5, cap * 0.5)
        if lat is not None:
            sp = _chase_spread(lines, prev * 1.5, cap * 0.5)
            vals.append(Value(f"caches.{key}.latency", cyc(lat), "chase_lines", sp, f"{lat:.2f} ns"))
        prev = cap
    if levels:
        dram = plateau_ns(lines["sizes"], lines["ns"], levels[-1][1] * 4, float("inf"))
        if dram is not None:
            sp = _chase_spread(lines, levels[-1][1] * 4)
            vals.append(Value("caches.dram_latency", cyc(dram), "chase_lines", sp, f"{dram:.1f} ns"))

    # TLB reach: rises of the page chase that are not a cache level's (one line per page); a rise, not a
    # step, because a TLB's reach runs out over a range of sizes (random pages, non-LRU replacement) and its
    # height is the level after it less the level before
    pages = m["fit.chase_pages"]
    steps = find_rises(pages["sizes"], pages["ns"])
    cache_caps = [cap for _, cap in levels]
    tlb_steps = [s for s in steps if all(not (cap / 1.6 <= s.position <= cap * 1.6) for cap in cache_caps)]
    # entries: CPUID where the CPU reports them (the reach-curve rise is the cross-check), else the rise
    for i, level in enumerate(("l1d", "l2d")):
        step = f"reach-curve rise at {int(tlb_steps[i].position)} pages" if len(tlb_steps) > i else "no rise"
        if f"{level}_4k" in host.cpuid_tlb:
            vals.append(Value(f"tlb.{level}.4K.entries", host.cpuid_tlb[f"{level}_4k"], "cpuid", None, step))
        elif len(tlb_steps) > i:
            vals.append(Value(f"tlb.{level}.4K.entries", int(tlb_steps[i].position), "chase_pages", None, step))
    if tlb_steps:
        h = tlb_steps[0].height
        sp = _chase_spread(pages, tlb_steps[0].position / 2, tlb_steps[0].position * 2)
        vals.append(Value("tlb.l2_hit_latency", cyc(h), "chase_pages", sp, f"first TLB rise {h:.2f} ns"))

    # page faults
    anon = m["fit.fault_anon_ns"]
    vals.append(Value("costs.fault_cycles", cyc(fastest(m, anon)), "fault_anon", spread(anon)))
    one, around = m["fit.fault_shmem_one_ns"], m["fit.fault_shmem_around_ns"]
    extra = (fastest(m, around) - fastest(m, one)) / (FAULT_AROUND_PAGES - 1)
    sp = max(spread(one), spread(around))
    vals.append(Value("costs.fault_per_page_cycles", max(0, round(extra * ghz)), "fault_shmem", sp))

    # shootdowns: for each count of remote CPUs, the initiator's extra time and each responder's lost time
    # under the fastest vCPU placement in the paired rounds (`fastest_placement`), on one page: the least
    # flush work on either side, which the model adds itself
    pairs = m.get("fit.ipi_pairs", [])
    remotes = sorted({r["remote"] for r in pairs})
    if remotes:
        fits = {}
        for k in remotes:
            rows = [r for r in pairs if r["remote"] == k]
            fits[k] = fastest_placement(*([x for r in rows for x in r[key]] for key in PAIR_KEYS))
        ipi = ipi_costs(remotes, [fits[k].extra_ns for k in remotes], [fits[k].responder_ns for k in remotes])
        sp = max(f.spread for f in fits.values())
        kept = ", ".join(f"{fits[k].kept} of {fits[k].valid}" for k in remotes)
        note = f"{pairs[0]['pages']}-page rounds; pairs under the fastest placement: {kept}"
        per_target = ipi.per_target_ns
        if per_target is None:  # one remote CPU: base and per-target are not separable
            per_target = load_uarch(nearest_part(host)).costs.ipi_per_target_cycles / ghz
            note += "; one remote CPU: base = extra - responder - the inherited per-target cost"
        else:
            vals.append(Value("costs.ipi_per_target_cycles", cyc(per_target), "madvise_ipi_pairs", sp, note))
        base = ipi.base_ns - (per_target if ipi.per_target_ns is None else 0.0)
        if base < 0:  # cyc() keeps 1 cycle: the model cannot wait less than its responders work
            note += f"; extra - responder = {base:.0f} ns < 0: base kept at 1 cycle"
        vals.append(Value("costs.ipi_initiator_base_cycles", cyc(base), "madvise_ipi_pairs", sp, note))
        vals.append(Value("costs.ipi_responder_cycles", cyc(ipi.responder_ns), "madvise_ipi_pairs", sp, note))
    # mprotect round trip: two PTE changes and two single-page flushes per page (below Linux's 33-page
    # tlb_single_page_flush_ceiling, arch/x86/mm/tlb.c): half the slope bounds INVLPG from above
    mp = _series(m, m["fit.mprotect"], 0)
    f = linear_fit(list(mp), list(mp.values()))
    vals.append(Value("costs.invlpg_cycles", cyc(f.slope / 2), "mprotect", f.spread, "upper bound: PTE update in"))

    # context switch: half a ping-pong round trip less the same pipe syscalls without a switch
    pp, pipe = m["fit.pingpong_ns"], m["fit.pipe_self_ns"]
    cs = (fastest(m, pp) - fastest(m, pipe)) / 2
    sp = max(spread(pp), spread(pipe))
    vals.append(Value("costs.context_switch_cycles", max(0, round(cs * ghz)), "pingpong", sp))

    # features the CPU reports
    for feat in ("pcid", "invpcid", "invlpgb", "la57"):
        vals.append(Value(f"features.{feat}", feat in host.flags, "/proc/cpuinfo flags", None))
    vals.append(Value("features.hypervisor", host.hypervisor, "CPUID.1:ECX[31] and /proc/cpuinfo", None))
    # Linux's X86_BUG_CPU_MELTDOWN, which turns PTI on by default (machine.pti = "auto")
    vals.append(Value("features.meltdown", "cpu_meltdown" in host.bugs, "/proc/cpuinfo bugs", None))
    return vals


def _clock_samples(m: dict) -> str:
    samples = m.get("core_ghz_samples", [m["core_ghz"]])
    if len(samples) == 1:
        return "one sample"
    return f"the fastest of {len(samples)} samples over the calibration, {min(samples):.3f}-{max(samples):.3f}"


def _toml(v: int | bool) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def render(vals: list[Value], host: Host, m: dict, name: str, parent: str, when: datetime.date) -> str:
    """The uarch file's text: measured keys set and marked, the parent's other keys listed commented out."""
    base = load_uarch(parent).model_dump()
    where = f"{host.model_name}{' (virtual machine)' if host.hypervisor else ''}"
    by_key = {v.key: v for v in vals}

    def mark(v: Value) -> str:
        note = f"; {v.note}" if v.note else ""
        sp = "" if v.spread is None else f", spread {v.spread:.0%}"
        return f"# MEASURED: probe {v.probe}, {host.model_name}, {when.isoformat()}{sp}{note}"

    lines = [
        f"# Measured profile of {where}, written by `mshare-hw calibrate`.",
        f"# Core clock {m['core_ghz']:.3f} GHz (dependent-add chain, {_clock_samples(m)}), TSC {m['tsc_ghz']:.3f} GHz:",
        "# ns -> cycles at the core clock. Keys marked MEASURED come from a probe on this host; the commented-out",
        f"# keys are inherited from {parent} (see its file for their sources).",
    ]
    if host.hypervisor:
        lines.append(
            "# Under a hypervisor: page walks are two-dimensional and IPIs are virtualised; the costs say so, and"
        )
        lines.append(
            '# `features.hypervisor = true` makes the validation replay with machine.virtualization = "nested".'
        )
    desc = f"{where}, measured {when.isoformat()} over {parent}"
    lines += [f'extends = "{parent}"', f'name = "{name}"', f'description = "{desc}"', ""]
    for table in ("features", "tlb", "caches", "costs"):
        lines.append(f"[{table}]")
        for k, v in base[table].items():
            if isinstance(v, dict | list):
                continue
            key = f"{table}.{k}"
            if key in by_key:
                lines.append(f"{k} = {_toml(by_key[key].value)}  {mark(by_key[key])}")
            else:
                lines.append(f"# {k} = {_toml(v) if v is not None else ''}  # inherited from {parent}")
        if table == "caches":
            for level in ("l1d", "l2", "llc"):
                lines.append(f"[caches.{level}]")
                for k, v in base["caches"][level].items():
                    key = f"caches.{level}.{k}"
                    if key in by_key:
                        lines.append(f"{k} = {by_key[key].value}  {mark(by_key[key])}")
                    else:
                        lines.append(f"# {k} = {v}  # inherited from {parent}")
        if table == "tlb":
            lines += _tlb_levels(base["tlb"], by_key, parent, mark)
        lines.append("")
    walk = by_key.get("nested.walk_cycles")
    if walk is not None:  # under a hypervisor: the 2-D walk's own cost, fitted on the page chase
        lines += ["[nested]", f"walk_cycles = {walk.value}  {mark(walk)}"]
        tlb = by_key.get("nested.tlb.entries")
        fitted = {"walk_cycles"} | ({"tlb"} if tlb is not None else set())
        inherited = {k: v for k, v in (base["nested"] or {}).items() if k not in fitted}
        lines += [f"# {k} = {v}  # inherited from {parent}" for k, v in inherited.items()]
        if tlb is not None:  # the nested TLB's reach, fitted on the page chase's walk regime
            ways = min(tlb.value, base["nested"]["tlb"]["ways"])
            lines += ["[nested.tlb]", f"entries = {tlb.value}  {mark(tlb)}"]
            lines.append(f"ways = {ways}  # inherited from {parent} (at most the entries)")
        lines.append("")
    return "\n".join(lines)


def _tlb_levels(tlb: dict, by_key: dict[str, Value], parent: str, mark) -> list[str]:
    """A measured 4K entry count replaces its level's structure list whole (lists do not merge)."""
    out = []
    for level in ("l1d", "l2d"):
        v = by_key.get(f"tlb.{level}.4K.entries")
        if v is None:
            continue
        for s in tlb[level]:
            out.append(f"[[tlb.{level}]]")
            out.append(f"sizes = {_list(s['sizes'])}")
            if "4K" in s["sizes"]:
                ways = s["entries"] if s["ways"] == s["entries"] else s["ways"]
                entries = max(ways, round(v.value / ways) * ways) if ways != s["entries"] else v.value
                out.append(f"entries = {entries}  {mark(v)}")
                ways = entries if ways == s["entries"] else ways
                out.append(f"ways = {ways}  # associativity inherited from {parent}")
            else:
                out.append(f"entries = {s['entries']}  # inherited from {parent}")
                out.append(f"ways = {s['ways']}  # inherited from {parent}")
            out.append(f'index = "{s["index"]}"  # inherited from {parent}')
    return out


def _list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def write_profile(path: Path, m: dict, host: Host, when: datetime.date | None = None) -> list[Value]:
    """Write the profile the measurements support; under a hypervisor, with `[nested] walk_cycles` fitted
    (`fit_walk_cycles`: the profile is written once without it to replay the chase)."""
    parent = nearest_part(host)
    vals = derive(m, host)
    when = when or datetime.date.today()

    def write(values: list[Value]) -> None:
        path.write_text(render(values, host, m, path.stem, parent, when))
        load_uarch(path)  # what it wrote must load

    if host.hypervisor and load_uarch(parent).nested is not None:
        fits = {}
        for entries in NESTED_TLB_ENTRIES:
            tlb = Value("nested.tlb.entries", entries, "chase_pages", None)
            write(vals + [tlb, Value("nested.walk_cycles", 0, "chase_pages", None)])
            walk = fit_walk_cycles(path, m)
            write(vals + [tlb, walk])
            err, note = walk_regime_error(path, m)
            fits[entries] = (err, Value("nested.tlb.entries", entries, "chase_pages", None, note), walk)
        best = pick_nested_tlb({e: f[0] for e, f in fits.items()})
        vals += list(fits[best][1:])
    write(vals)
    return vals


def walk_regime_error(profile: Path, m: dict) -> tuple[float, str]:
    """How far the model's replay of the random page chase is from the measurement where every load walks
    (`_walk_regime`): the mean |log(predicted / measured)| (the nested TLB sizes differ at the largest
    working sets, whose trials are spread over the calibration so that the host's slow spells drop out of
    their minimum), and a note with the worst point."""
    from mshare_hw.calibrate.replay import chase
    from mshare_hw.calibrate.validate import random_cycle_order

    ghz = m["core_ghz"]
    at = _walk_regime(profile, m)
    errs = [abs(np.log(chase(profile, random_cycle_order(s), ghz).ns / ns)) for s, ns in at]
    worst = float(np.expm1(max(errs)))
    return float(np.mean(errs)), f"the chase at {at[0][0]}-{at[-1][0]} pages replayed within {worst:.0%}"


# nested TLB sizes tried under a hypervisor (its reach sets where 2-D walks start missing it; the ways stay
# the parent's): the one whose replay of the page chase's walk regime is closest to the measurement
NESTED_TLB_ENTRIES = (32, 256, 2048)
NESTED_TLB_TIE = 0.01  # a larger TLB must fit better by this much (mean |log ratio|) to be taken


def pick_nested_tlb(errors: dict[int, float]) -> int:
    """The nested TLB size to keep, from each size's walk-regime error: the smallest, unless a larger one
    fits better by more than NESTED_TLB_TIE (a larger TLB only where the measurement asks for its reach)."""
    best = None
    for entries in sorted(errors):
        if best is None or errors[entries] < errors[best] - NESTED_TLB_TIE:
            best = entries
    return best


def fit_walk_cycles(profile: Path, m: dict) -> Value:
    """`[nested] walk_cycles` for a profile measured in a guest: over the random page chase's working sets
    where nearly every load walks (`_walk_regime`: eight times the L2 TLB's reach and more), the median of
    the measured ns per load less the model's replay with walk_cycles = 0, in cycles (each load pays it
    once). The median over the regime, not one point: the model's walk reads miss the caches more as the
    working set grows, the real walker's less. The profile at `profile` has walk_cycles = 0."""
    from mshare_hw.calibrate.replay import chase
    from mshare_hw.calibrate.validate import random_cycle_order

    ghz = m["core_ghz"]
    at = _walk_regime(profile, m)
    gaps = [ns - chase(profile, random_cycle_order(s), ghz).ns for s, ns in at]
    walk = max(0, round(float(np.median(gaps)) * ghz))
    pages = m["fit.chase_pages"]
    sp = _chase_spread(pages, at[0][0] / 1.2, at[-1][0] * 1.2)
    note = f"median over {len(at)} working sets of {at[0][0]}-{at[-1][0]} pages of measured less modelled ns"
    return Value("nested.walk_cycles", walk, "chase_pages", sp, note)


WALK_REGIME_FROM = 8  # the walk regime starts at this many times the L2 TLB's 4K entries


def _walk_regime(profile: Path, m: dict) -> list[tuple[int, float]]:
    """(pages, measured ns) of the random page chase at working sets of at least WALK_REGIME_FROM times the
    L2 TLB's 4K entries, two per octave (the largest working set if none is that large): five points from
    16384 to 65536 pages with a 2048-entry L2 TLB. From there at most one load in eight can hit the L2 TLB,
    so the gap between measurement and model is the walk's, not a difference in TLB hit rates (from twice
    the entries, walk_cycles moved 18% between two runs, from eight times 6% over four); and those are the
    working sets the calibration repeats. The nested TLB sizes differ only there (the model's 32 and 256
    entries predict 23% apart at 32768 pages, 31% at 65536), which is why the chase reaches 256 MiB."""
    u = load_uarch(profile)
    pages = m["fit.chase_pages"]
    l2 = sum(s.entries for s in u.tlb.l2d if "4K" in s.sizes)
    half_octave = lambda s: abs(2 * np.log2(s) - round(2 * np.log2(s))) < 0.01  # noqa: E731
    at = [(s, ns) for s, ns in zip(pages["sizes"], pages["ns"]) if s >= WALK_REGIME_FROM * l2 and half_octave(s)]
    return at or [(pages["sizes"][-1], pages["ns"][-1])]
