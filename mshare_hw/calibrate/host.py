"""Facts about the machine at hand that need no timing: CPU identity and flags, hypervisor, cache geometry
(sysfs), TLB entries (CPUID where the CPU reports them), the CPUs the process may pin to, and the
shipped uarch file nearest to it."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

CPU_SYSFS = Path("/sys/devices/system/cpu")


@dataclass
class CacheInfo:
    level: int
    type: str  # Data, Instruction, Unified
    size_kib: int
    ways: int
    shared_cpus: int


@dataclass
class Host:
    model_name: str
    vendor: str  # "amd", "intel" or the CPUID vendor string lowercased
    family: int
    model: int
    flags: list[str]
    hypervisor: bool
    cpus: list[int]  # CPUs this process may run on
    caches: list[CacheInfo] = field(default_factory=list)
    cpuid_tlb: dict[str, int] = field(default_factory=dict)  # e.g. {"l1d_4k": 64, "l2d_4k": 2048}
    bugs: list[str] = field(default_factory=list)  # /proc/cpuinfo "bugs" (Linux's X86_BUG_* names)

    def cache(self, level: int) -> CacheInfo | None:
        return next((c for c in self.caches if c.level == level and c.type in ("Data", "Unified")), None)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Host:
        return cls(**{**d, "caches": [CacheInfo(**c) for c in d.get("caches", [])]})


def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return out
    for line in text.split("\n\n")[0].splitlines():
        k, _, v = line.partition(":")
        out[k.strip()] = v.strip()
    return out


def _size_kib(text: str) -> int:
    m = re.fullmatch(r"(\d+)([KMG]?)", text.strip())
    if not m:
        return 0
    return int(m.group(1)) * {"": 1 / 1024, "K": 1, "M": 1024, "G": 1024 * 1024}[m.group(2)]


def _cpu_count(cpulist: str) -> int:
    n = 0
    for part in filter(None, cpulist.strip().split(",")):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def sysfs_caches(cpu: int = 0) -> list[CacheInfo]:
    out = []
    for d in sorted((CPU_SYSFS / f"cpu{cpu}" / "cache").glob("index*")):
        try:
            f = {k: (d / k).read_text().strip() for k in ("level", "type", "size", "ways_of_associativity")}
            shared = _cpu_count((d / "shared_cpu_list").read_text())
            ways = int(f["ways_of_associativity"])
            out.append(CacheInfo(int(f["level"]), f["type"], int(_size_kib(f["size"])), ways, shared))
        except (OSError, ValueError):
            continue
    return out


def cpuid_tlb(vendor: str) -> dict[str, int]:
    """4K data-TLB entries from AMD's extended leaves (AMD APM vol. 3, CPUID Fn8000_0005 EBX[23:16] and
    Fn8000_0006 EBX[27:16]); Intel's leaf 2 / 0x18 descriptors are not decoded (entries come from the
    reach curve alone there)."""
    from mshare_hw import _probes

    if vendor != "amd":
        return {}
    out = {}
    l1 = _probes.cpuid(0x80000005)[1]
    l2 = _probes.cpuid(0x80000006)[1]
    if (l1 >> 16) & 0xFF:
        out["l1d_4k"] = (l1 >> 16) & 0xFF
    if (l2 >> 16) & 0xFFF:
        out["l2d_4k"] = (l2 >> 16) & 0xFFF
    return out


def detect() -> Host:
    from mshare_hw import _probes

    info = _cpuinfo()
    a, b, c, d = _probes.cpuid(0)
    vendor_id = (b.to_bytes(4, "little") + d.to_bytes(4, "little") + c.to_bytes(4, "little")).decode(errors="replace")
    vendor = {"AuthenticAMD": "amd", "GenuineIntel": "intel"}.get(vendor_id, vendor_id.lower())
    eax, _, ecx, _ = _probes.cpuid(1)
    family = (eax >> 8) & 0xF
    model = (eax >> 4) & 0xF
    if family in (6, 15):  # extended family and model (Intel SDM vol. 2A, CPUID leaf 1 EAX)
        model |= ((eax >> 16) & 0xF) << 4
    if family == 15:
        family += (eax >> 20) & 0xFF
    flags = info.get("flags", "").split()
    # CPUID.1:ECX bit 31 is reserved for hypervisors to set; Linux shows it as the "hypervisor" flag
    hypervisor = bool(ecx >> 31 & 1) or "hypervisor" in flags
    return Host(
        model_name=info.get("model name", vendor_id),
        vendor=vendor,
        family=family,
        model=model,
        flags=flags,
        hypervisor=hypervisor,
        cpus=sorted(os.sched_getaffinity(0)),
        caches=sysfs_caches(),
        cpuid_tlb=cpuid_tlb(vendor),
        bugs=info.get("bugs", "").split(),
    )


def nearest_part(host: Host) -> str:
    """The shipped uarch closest to the host by vendor, family and model (the newest known part beyond)."""
    if host.vendor == "amd":
        if host.family >= 0x1A:
            return "zen5"
        if host.family == 0x19 and (0x10 <= host.model <= 0x1F or host.model >= 0x60):
            return "zen4"
        return "zen3"  # Zen 3 (family 19h, models 00-0Fh, 20-5Fh) and older parts
    if host.model <= 0x55 or host.family != 6:
        return "skylake_sp"
    return "icelake_sp" if host.model < 0x8F else "sapphire_rapids"


class CannotProbe(Exception):
    """A probe cannot run here; the message is one line for the user."""


def pinnable_cpus(requested: list[int] | None, host: Host) -> list[int]:
    """The CPUs to pin probes to: `requested` (checked) or every allowed CPU; at least two, each pinnable."""
    cpus = requested or host.cpus
    bad = sorted(set(cpus) - set(host.cpus))
    if bad:
        raise CannotProbe(f"CPU {bad[0]} is not available to this process (allowed: {host.cpus})")
    if len(cpus) < 2:
        raise CannotProbe(
            f"calibrate needs two or more CPUs to pin probes on (shootdowns need a second CPU); {len(cpus)} available"
        )
    saved = os.sched_getaffinity(0)
    try:
        for cpu in cpus:
            os.sched_setaffinity(0, {cpu})
    except OSError as e:
        raise CannotProbe(f"cannot pin to CPU {cpu} ({e.strerror}); calibrate needs permission to pin") from None
    finally:
        os.sched_setaffinity(0, saved)
    return list(cpus)
