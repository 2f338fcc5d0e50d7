"""Byte sizes and page sizes: reading "300GiB", printing 943718400 as "900 MiB", the page-size names.

Every unit is binary: K = KB = KiB = 1024, and so on. "GB" means GiB on purpose: the figures every
mshare cover letter repeats ("Add support for shared PTEs across processes", Khalid Aziz then Anthony
Yznaga, linux-mm 2022-2025: a "300 GB SGA" mapped by 1500 clients needs "878 GB+" of PTEs) only add up
in binary units (300 GiB / 4 KiB x 8 B x 1500 = 878.9 GiB), and memory sizes in kernel discussions are
binary.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Literal

__all__ = ["PAGE_SIZES", "PageSize", "format_bytes", "parse_size"]

PageSize = Literal["4K", "2M", "1G"]
PAGE_SIZES: dict[str, int] = {"4K": 1 << 12, "2M": 1 << 21, "1G": 1 << 30}  # bytes per page-size name

_UNITS = {
    "": 0,
    "b": 0,
    "k": 1,
    "kb": 1,
    "kib": 1,
    "m": 2,
    "mb": 2,
    "mib": 2,
    "g": 3,
    "gb": 3,
    "gib": 3,
    "t": 4,
    "tb": 4,
    "tib": 4,
    "p": 5,
    "pb": 5,
    "pib": 5,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Bytes in a size such as "300GiB", "4K", "2 MiB", "1.5T", "4096" (bytes) or an int.
    Units (case-insensitive): B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB, P/PB/PiB — all binary
    (GB = GiB, as in the mshare cover letters). The result must be a whole number of bytes.
    Raises ValueError for a malformed string, TypeError for a non-int, non-str argument."""
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise TypeError(f"invalid size {text!r}: expected a number of bytes or a string like '300GiB'")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"invalid size {text!r}: must not be negative")
        return text
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(
            f"invalid size {text!r}: expected a non-negative number and an optional unit "
            "(B, K/KiB, M/MiB, G/GiB, T/TiB, P/PiB), e.g. '300GiB'"
        )
    number, unit = m.group(1), m.group(2).lower()
    if unit not in _UNITS:
        raise ValueError(
            f"invalid size {text!r}: unknown unit {m.group(2)!r} "
            "(use B, K/KB/KiB, M/MB/MiB, G/GB/GiB, T/TB/TiB or P/PB/PiB; all binary)"
        )
    try:
        value = Decimal(number) * (1 << (10 * _UNITS[unit]))
    except InvalidOperation as e:  # pragma: no cover - the regex admits only valid decimals
        raise ValueError(f"invalid size {text!r}") from e
    if value != value.to_integral_value():
        raise ValueError(f"invalid size {text!r}: not a whole number of bytes ({value} B)")
    return int(value)


def format_bytes(n: float, precision: int = 1) -> str:
    """A byte count in the largest binary unit it reaches: 943718400 -> "900 MiB",
    943718400000 -> "878.9 GiB". Whole values print without decimals."""
    if n < 0:
        return "-" + format_bytes(-n, precision)
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    i = 0
    while i + 1 < len(units) and n >= 1 << (10 * (i + 1)):
        i += 1
    value = n / (1 << (10 * i))
    if i == 0 or value == int(value):
        return f"{int(value) if value == int(value) else value} {units[i]}"
    return f"{value:.{precision}f} {units[i]}"
