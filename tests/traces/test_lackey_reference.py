"""The lackey parser against a plain-Python reading of the format (the module docstring's rules), on
Hypothesis-drawn valid traces that mix the exact lines lackey writes (the parser's fast path) with valid
variants only the general path accepts (leading blanks, tabs, CRLF, upper-case or zero-padded hex,
trailing blanks), valgrind messages and blank lines, read through small buffers so lines straddle them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mshare_hw.config.errors import ConfigError
from mshare_hw.traces import LackeyTrace

PAGE = 4096
VA_LIMIT = 1 << 57
KINDS = {"I": [0], "L": [1], "S": [2], "M": [1, 2]}  # an M is a load, then a store


def reference(text: str) -> list[tuple[int, int]]:
    out = []
    for line in text.split("\n"):
        body = line.rstrip(" \t\r")
        if not body.strip(" \t") or body.lstrip(" \t").startswith("==") or body.startswith("--"):
            continue
        kind, rest = body.lstrip(" \t")[0], body.lstrip(" \t")[1:].lstrip(" \t")
        addr_text, size_text = rest.split(",")
        addr, size = int(addr_text, 16), int(size_text)
        pages = [addr] + list(range((addr // PAGE + 1) * PAGE, addr + size, PAGE))
        out += [(a, k) for k in KINDS[kind] for a in pages]
    return out


@st.composite
def lines(draw) -> str:
    what = draw(st.sampled_from(["access"] * 8 + ["message", "blank"]))
    if what == "message":
        return f"=={draw(st.integers(1, 99999))}== {draw(st.sampled_from(['Lackey', 'Command: ./a', '']))}"
    if what == "blank":
        return draw(st.sampled_from(["", "  ", "\t", "\r"]))
    kind = draw(st.sampled_from("ILSM"))
    size = draw(st.integers(1, 16) | st.integers(1, 3 * PAGE) | st.just(1 << 20))
    addr = draw(st.integers(0, 0xFFFFFFFF) | st.integers(0, VA_LIMIT - size))
    if draw(st.integers(0, 3)) > 0:  # as lackey writes it
        head = "I  " if kind == "I" else f" {kind} "
        return f"{head}{addr:x},{size}"
    hex_text = f"{addr:0{draw(st.integers(1, 18))}x}"
    if draw(st.booleans()):
        hex_text = hex_text.upper()
    lead = draw(st.sampled_from(["", " ", "  ", "\t"]))
    gap = draw(st.sampled_from([" ", "  ", "\t", " \t"]))
    tail = draw(st.sampled_from(["", " ", "\t", "\r", " \r"]))
    return f"{lead}{kind}{gap}{hex_text},{size}{tail}"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.lists(lines(), min_size=1, max_size=80), final_newline=st.booleans(), buf=st.integers(64, 4096))
def test_parser_matches_a_plain_reading(tmp_path, body, final_newline, buf):
    text = "\n".join(body) + ("\n" if final_newline else "")
    path = tmp_path / "t.lackey"
    path.write_bytes(text.encode())
    want = reference(text)
    if not want:  # a trace without accesses is refused
        with pytest.raises(ConfigError, match="empty trace"):
            list(LackeyTrace(path, buf_bytes=buf).chunks(97))
        return
    chunks = list(LackeyTrace(path, buf_bytes=buf).chunks(97))
    addrs = np.concatenate([a for a, _ in chunks])
    kinds = np.concatenate([k for _, k in chunks])
    assert list(zip(addrs.tolist(), kinds.tolist())) == want
