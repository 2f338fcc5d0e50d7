"""ChampSim binary traces: a stream of 64-byte `input_instr` records (inc/trace_instruction.h), raw or
gzip/xz/zstd-compressed, native byte order (little-endian x86-64):

    offset  field
    0       uint64 ip
    8       uint8  is_branch
    9       uint8  branch_taken
    10      uint8  destination_registers[2]
    12      uint8  source_registers[4]
    16      uint64 destination_memory[2]
    32      uint64 source_memory[4]

(Newer ChampSim sources add a `load_type` byte to the struct, which would make it 72 bytes; the
published trace sets, DPC-3/CRC-2, are the 64-byte layout read here.)

Each record yields an instruction fetch at `ip`, then a load per non-zero `source_memory` slot, then
a store per non-zero `destination_memory` slot (in slot order). Records carry no access sizes, so no
page-crossing split is made.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mshare_hw.config.errors import ConfigError
from mshare_hw.traces._io import VA_BITS, VA_LIMIT, ScannedFile, fill, open_stream, rechunk
from mshare_hw.traces.source import DEFAULT_CHUNK

RECORD = np.dtype(
    [
        ("ip", "<u8"),
        ("is_branch", "u1"),
        ("branch_taken", "u1"),
        ("destination_registers", "u1", (2,)),
        ("source_registers", "u1", (4,)),
        ("destination_memory", "<u8", (2,)),
        ("source_memory", "<u8", (4,)),
    ]
)
assert RECORD.itemsize == 64
RECORD_BYTES = 64
RECORDS_PER_READ = 1 << 16  # 4 MiB per read
# access order within a record: ip, source_memory[0..3], destination_memory[0..1]
_KIND_ROW = np.array([0, 1, 1, 1, 1, 2, 2], dtype=np.uint8)
_FIELD_OFFSET = np.array([0, 32, 40, 48, 56, 16, 24], dtype=np.int64)
_FIELD_NAME = ["ip"] + [f"source_memory[{i}]" for i in range(4)] + [f"destination_memory[{i}]" for i in range(2)]


def decode_records(raw: np.ndarray, first_offset: int = 0, path: str | Path = "<buffer>"):
    """Accesses of a whole number of records given as a uint8 array. Returns (addrs, kinds)."""
    rec = raw.view(RECORD)
    n = len(rec)
    m = np.empty((n, 7), dtype=np.uint64)
    m[:, 0] = rec["ip"]
    m[:, 1:5] = rec["source_memory"]
    m[:, 5:7] = rec["destination_memory"]
    mask = m != 0
    mask[:, 0] = True
    addrs = m[mask]
    over = addrs >= np.uint64(VA_LIMIT)
    if over.any():
        bad = (m >= np.uint64(VA_LIMIT)) & mask
        r, c = np.argwhere(bad)[0]
        off = first_offset + int(r) * RECORD_BYTES + int(_FIELD_OFFSET[c])
        raise ConfigError(
            f"{path}: byte offset {off} (record {first_offset // RECORD_BYTES + int(r)}, {_FIELD_NAME[c]}): "
            f"address {int(m[r, c]):#x} beyond the {VA_BITS}-bit virtual address width; expected 64-byte "
            "ChampSim input_instr records"
        )
    kinds = np.broadcast_to(_KIND_ROW, (n, 7))[mask]
    return addrs, np.ascontiguousarray(kinds)


class ChampSimTrace(ScannedFile):
    """A ChampSim trace file as a TraceSource (`len()`/`digest()` take one cached pass)."""

    format_name = "champsim"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: int | None = None
        open_stream(self.path)[0].close()

    def _pieces(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        path = self.path
        fh, comp = open_stream(path)
        try:
            buf = np.empty(RECORDS_PER_READ * RECORD_BYTES, dtype=np.uint8)
            mv = memoryview(buf)
            offset = 0
            while True:
                n = fill(fh, mv, path, comp, offset)
                whole = n - n % RECORD_BYTES
                if whole:
                    yield decode_records(buf[:whole].copy(), offset, path)
                if n % RECORD_BYTES:
                    where = " (decompressed)" if comp else ""
                    raise ConfigError(
                        f"{path}: byte offset {offset + whole}{where}: truncated record: {n % RECORD_BYTES} of "
                        f"{RECORD_BYTES} bytes; expected whole 64-byte ChampSim input_instr records"
                    )
                offset += n
                if n < len(buf):
                    break
            self.records = offset // RECORD_BYTES
            if offset == 0:
                raise ConfigError(f"{path}: empty trace: no records; expected 64-byte ChampSim input_instr records")
        finally:
            fh.close()

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return rechunk(self._pieces(), chunk_size)

    def meta(self) -> dict:
        return {"source": str(self.path), "source_format": "champsim", "pid": -1}

    def __repr__(self) -> str:
        return f"ChampSimTrace({str(self.path)!r})"
