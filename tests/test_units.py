"""Byte sizes: parsing "300GiB" and friends, printing in the largest binary unit."""

from __future__ import annotations

import pytest

from mshare_hw.units import format_bytes, parse_size

GiB = 1 << 30
MiB = 1 << 20


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("300GiB", 300 * GiB),
        ("300GB", 300 * GiB),
        ("300 gib", 300 * GiB),
        ("300G", 300 * GiB),
        ("4K", 4096),
        ("4KB", 4096),
        ("4kib", 4096),
        ("2M", 2 * MiB),
        ("2MiB", 2 * MiB),
        ("1T", 1 << 40),
        ("1TiB", 1 << 40),
        ("1.5K", 1536),
        ("0.5 GiB", GiB // 2),
        ("4096", 4096),
        ("4096B", 4096),
        (" 7 b ", 7),
        (12345, 12345),
    ],
)
def test_parse_size_good(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "GiB", "12 XB", "-4K", "1.1B", "0.3K", "4 K B", "1e3", "12.3.4G", "300 GiB/s", -1]
)
def test_parse_size_bad(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)


@pytest.mark.parametrize("value", [None, 1.5, True, b"4K"])
def test_parse_size_wrong_type(value):
    with pytest.raises(TypeError, match="invalid size"):
        parse_size(value)


def test_format_bytes():
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1024) == "1 KiB"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(600 * MiB) == "600 MiB"
    assert format_bytes(300 * GiB) == "300 GiB"
    assert format_bytes(1500 * 600 * MiB) == "878.9 GiB"
    assert format_bytes(1500 * 600 * MiB, precision=3) == "878.906 GiB"
    assert format_bytes(-2048) == "-2 KiB"
