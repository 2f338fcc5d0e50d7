"""Valgrind lackey `--trace-mem=yes` traces: a streaming reader with a Numba parser.

Lines (one access each; the file is one process's log, e.g. from `--log-file=PREFIX.%p`):

    I  04017a0,3          instruction fetch of 3 bytes
     L 1ffefffd68,8       load
     S 1ffefffd60,8       store
     M 0421f6d8,4         modify = a load, then a store
    ==12345== ...         valgrind's own messages (and `--PID--` ones): skipped

An access whose bytes span several 4 KiB pages yields one access per page touched (the first at its
own address, the others at the start of each later page), since each page needs its own translation;
an `M` yields the loads of all its pages, then the stores. Blank lines are skipped. Everything else is
an error naming the file and the line, unless `skip_bad_lines` is set (then such lines are counted in
`bad_lines`). The parser runs over 16 MiB byte buffers read from the (possibly gzip/xz/zstd-compressed)
file, so memory stays flat however long the trace.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numba as nb
import numpy as np

from mshare_hw.config.errors import ConfigError
from mshare_hw.traces._io import UTF8_BOM, VA_BITS, ScannedFile, fill, open_stream, read_head
from mshare_hw.traces.source import DEFAULT_CHUNK

BUF_BYTES = 16 << 20
MAX_SIZE = 1 << 20  # largest access size accepted (bytes); real ones are <= a few KiB (xsave)
MAX_PER_LINE = 2 * ((MAX_SIZE >> 12) + 2)  # accesses one line can yield (an M spanning the most pages)

# error codes of the parser
E_KIND, E_HEX, E_NOSIZE, E_SIZE, E_WIDTH = 1, 2, 3, 4, 5
_EXPECTED = {
    E_KIND: "unknown access kind; expected a line 'I  ADDR,SIZE', ' L ADDR,SIZE', ' S ADDR,SIZE' or ' M ADDR,SIZE'",
    E_HEX: "bad address; expected a hexadecimal address after the kind",
    E_NOSIZE: "missing size; expected ',SIZE' after the address",
    E_SIZE: f"bad size; expected a decimal size from 1 to {MAX_SIZE} bytes and nothing after it",
    E_WIDTH: f"address beyond the {VA_BITS}-bit virtual address width",
}


def _hex_table() -> np.ndarray:
    t = np.full(256, 255, dtype=np.uint8)
    for i, c in enumerate(b"0123456789"):
        t[c] = i
    for i, c in enumerate(b"abcdef"):
        t[c] = 10 + i
        t[c - 32] = 10 + i
    return t


_HEX = _hex_table()


@nb.njit(cache=True, inline="always")
def _data_kind(c):
    """The access kind of a data line's letter: L(oad) 1, S(tore) 2, M(odify) 3; -1 for anything else."""
    if c == 76:
        return 1
    if c == 83:
        return 2
    if c == 77:
        return 3
    return -1


@nb.njit(cache=True, inline="always", boundscheck=False)
def _emit(out_a, out_k, n_out, addr, first, last, kind):
    """One access of `kind` at addr, then one at each further 4 KiB page up to `last`; the new n_out."""
    page = np.uint64(4096)
    out_a[n_out] = addr
    out_k[n_out] = kind
    n_out += 1
    pg = first + page
    while pg <= last:
        out_a[n_out] = pg
        out_k[n_out] = kind
        n_out += 1
        pg += page
    return n_out


@nb.njit(cache=True, nogil=True, boundscheck=False)
def _parse(buf, pos, end, out_a, out_k, n_out, stop_at, skip_bad, hexv):
    """Parse complete lines of buf[pos:end] into out_a/out_k from n_out on, until no complete line is
    left or n_out >= stop_at. Returns (pos, n_out, lines, bad, err, err_pos): `lines` newlines
    consumed, `err` an E_* code (0: none) for the line starting at err_pos (not consumed)."""
    lines = 0
    bad = 0
    one = np.uint64(1)
    limit = np.uint64(1) << np.uint64(57)
    page_mask = ~np.uint64(4095)
    four = np.uint64(4)
    while n_out < stop_at:
        # fast path: a line exactly as lackey writes it ("I  ADDR,SIZE" or " K ADDR,SIZE", then '\n');
        # anything else (or a line cut at the buffer's end) goes through the general parser below
        ok = False
        if pos + 3 < end:
            c0 = buf[pos]
            c1 = buf[pos + 1]
            kind = -1
            if buf[pos + 2] == 32:
                if c0 == 73 and c1 == 32:
                    kind = 0
                elif c0 == 32:
                    kind = _data_kind(c1)
            if kind >= 0:
                p = pos + 3
                addr = np.uint64(0)
                nd = 0
                while p < end:
                    v = hexv[buf[p]]
                    if v == 255:
                        break
                    addr = (addr << four) | np.uint64(v)
                    nd += 1
                    p += 1
                if 0 < nd <= 15 and p < end and buf[p] == 44:  # 15 digits: no overflow before the width check
                    p += 1
                    size = np.uint64(0)
                    nd = 0
                    while p < end and nd < 8 and buf[p] >= 48 and buf[p] <= 57:
                        size = size * np.uint64(10) + np.uint64(buf[p] - 48)
                        nd += 1
                        p += 1
                    if (
                        nd > 0
                        and p < end
                        and buf[p] == 10
                        and size != np.uint64(0)
                        and size <= np.uint64(1048576)
                        and addr + size - one < limit
                    ):
                        ok = True
                        nxt = p + 1
        if not ok:
            # find the end of the line
            j = pos
            while j < end and buf[j] != 10:
                j += 1
            if j >= end:
                break
            s = pos
            e = j
            nxt = j + 1
            while e > s and (buf[e - 1] == 13 or buf[e - 1] == 32 or buf[e - 1] == 9):
                e -= 1
            p = s
            while p < e and (buf[p] == 32 or buf[p] == 9):
                p += 1
            if p == e:  # blank
                pos = nxt
                lines += 1
                continue
            c = buf[p]
            if c == 61 or (c == 45 and p == s and p + 1 < e and buf[p + 1] == 45):  # '==PID==' or '--PID--'
                pos = nxt
                lines += 1
                continue
            kind = 0 if c == 73 else _data_kind(c)
            err = E_KIND if kind < 0 else 0
            addr = np.uint64(0)
            size = np.uint64(0)
            if err == 0:
                p += 1
                if p >= e or not (buf[p] == 32 or buf[p] == 9):
                    err = E_KIND
                else:
                    while p < e and (buf[p] == 32 or buf[p] == 9):
                        p += 1
                    nd = 0
                    while p < e:
                        v = hexv[buf[p]]
                        if v == 255:
                            break
                        addr = (addr << four) | np.uint64(v)
                        nd += 1
                        p += 1
                        if addr >= limit:
                            err = E_WIDTH
                            break
                    if err == 0:
                        if nd == 0:
                            err = E_HEX
                        elif p >= e:
                            err = E_NOSIZE
                        elif buf[p] != 44:
                            err = E_HEX
                        else:
                            p += 1
                            nd = 0
                            while p < e and buf[p] >= 48 and buf[p] <= 57:
                                size = size * np.uint64(10) + np.uint64(buf[p] - 48)
                                nd += 1
                                p += 1
                                if size > np.uint64(1048576):
                                    break
                            if nd == 0:
                                err = E_NOSIZE if p >= e else E_SIZE
                            elif p != e or size == np.uint64(0) or size > np.uint64(1048576):
                                err = E_SIZE
                            elif addr + size - one >= limit:
                                err = E_WIDTH
            if err != 0:
                if skip_bad:
                    bad += 1
                    pos = nxt
                    lines += 1
                    continue
                return pos, n_out, lines, bad, err, pos
        first = addr & page_mask
        last = (addr + size - one) & page_mask
        n_out = _emit(out_a, out_k, n_out, addr, first, last, 1 if kind == 3 else kind)
        if kind == 3:  # a modify is a load, then a store
            n_out = _emit(out_a, out_k, n_out, addr, first, last, 2)
        pos = nxt
        lines += 1
    return pos, n_out, lines, bad, 0, pos


def _snippet(buf: np.ndarray, s: int, end: int) -> str:
    j = s
    stop = min(end, s + 80)
    while j < stop and buf[j] != 10:
        j += 1
    return bytes(buf[s:j]).decode("latin-1").rstrip("\r")


_PID_RE = re.compile(rb"^==(\d+)==", re.M)
_PID_NAME_RE = re.compile(r"\.(\d+)(?:\.[A-Za-z0-9]+)*$")


class LackeyTrace(ScannedFile):
    """A lackey trace file as a TraceSource. `len()` and `digest()` need one pass over the file (cached,
    keyed on the file's size and mtime, also on disk: mshare_hw.traces.digest_cache); `bad_lines` is known
    after a full pass (or from the cached one)."""

    format_name = "lackey"

    def __init__(self, path: str | Path, skip_bad_lines: bool = False, buf_bytes: int = BUF_BYTES) -> None:
        self.path = Path(path)
        self.skip_bad_lines = bool(skip_bad_lines)
        self.buf_bytes = int(buf_bytes)
        self.bad_lines: int | None = None
        self.lines: int | None = None
        open_stream(self.path)[0].close()  # missing file etc. -> ConfigError now

    # -- TraceSource -------------------------------------------------------------------------------
    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if chunk_size < 1:
            raise ValueError("chunk_size must be >= 1")
        path = self.path
        fh, comp = open_stream(path)
        try:
            bufsize = self.buf_bytes
            buf = np.empty(bufsize + 1, dtype=np.uint8)
            mv = memoryview(buf)
            cap = chunk_size + MAX_PER_LINE
            out_a = np.empty(cap, dtype=np.uint64)
            out_k = np.empty(cap, dtype=np.uint8)
            n_out = 0
            tail = 0  # carried-over bytes of an incomplete line at buf[:tail]
            offset = 0  # decompressed offset of buf[0]
            line_no = 1  # number of the line starting at buf[0]
            total = 0
            bad = 0
            eof = False
            first = True
            while not eof:
                n = fill(
                    fh, mv[tail:bufsize], path, comp, offset + tail, where=lambda _g, ln=line_no: f"near line {ln}"
                )
                end = tail + n
                if end < bufsize:
                    eof = True
                    if end > 0 and buf[end - 1] != 10:
                        buf[end] = 10
                        end += 1
                # an editor's BOM; only within what was read (the rest of buf is uninitialised)
                bom = first and end >= len(UTF8_BOM) and bytes(buf[: len(UTF8_BOM)]) == UTF8_BOM
                pos = len(UTF8_BOM) if bom else 0
                first = False
                while True:
                    pos, n_out, lines, nbad, err, epos = _parse(
                        buf, pos, end, out_a, out_k, n_out, chunk_size, self.skip_bad_lines, _HEX
                    )
                    line_no += lines
                    bad += nbad
                    if err:
                        raise ConfigError(f"{path}: line {line_no}: {_EXPECTED[err]}; got {_snippet(buf, epos, end)!r}")
                    if n_out >= chunk_size:
                        yield out_a[:chunk_size].copy(), out_k[:chunk_size].copy()
                        total += chunk_size
                        rem = n_out - chunk_size
                        out_a[:rem] = out_a[chunk_size:n_out]
                        out_k[:rem] = out_k[chunk_size:n_out]
                        n_out = rem
                        continue
                    break
                tail = end - pos
                if tail >= bufsize:
                    raise ConfigError(
                        f"{path}: line {line_no}: longer than {bufsize} bytes; expected a lackey trace "
                        "(short 'KIND ADDR,SIZE' lines)"
                    )
                offset += pos
                if tail:
                    buf[:tail] = buf[pos:end]
            if n_out:
                yield out_a[:n_out].copy(), out_k[:n_out].copy()
                total += n_out
            self.bad_lines = bad
            self.lines = line_no - 1
            if total == 0:
                extra = f" ({bad} bad lines skipped)" if bad else ""
                raise ConfigError(
                    f"{path}: empty trace: no accesses in {line_no - 1} lines{extra}; expected lackey "
                    "--trace-mem=yes lines such as ' L 1ffefffd68,8'"
                )
        finally:
            fh.close()

    def _pieces(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        return self.chunks()

    def _scan_options(self) -> dict:
        return {"skip_bad_lines": self.skip_bad_lines}

    def _scan_extras(self) -> dict:
        return {"bad_lines": self.bad_lines, "lines": self.lines}

    def _restore_extras(self, extras: dict) -> None:
        self.bad_lines, self.lines = extras.get("bad_lines"), extras.get("lines")

    # -- metadata ----------------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The process id: from the first `==PID==` line, else from a `.PID` file-name suffix."""
        m = _PID_RE.search(read_head(self.path, 1 << 16))
        if m:
            return int(m.group(1))
        m = _PID_NAME_RE.search(self.path.name)
        return int(m.group(1)) if m else None

    def meta(self) -> dict:
        pid = self.pid()
        return {"source": str(self.path), "source_format": "lackey", "pid": -1 if pid is None else pid}

    def __repr__(self) -> str:
        return f"LackeyTrace({str(self.path)!r})"
