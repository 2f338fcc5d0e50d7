"""The shipped microarchitecture files load, cite a source for every number, and bad files are refused
with a message that names the file, the key and the reason."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.uarch import Uarch, list_uarchs, load_uarch, uarch_dir

SHIPPED = ["icelake_sp", "sapphire_rapids", "skylake_sp", "zen3", "zen4", "zen5"]

# What each part supports: LA57 is CPUID.(EAX=07H,ECX=0):ECX[16] (Intel SDM vol. 2A, CPUID), INVLPGB is
# CPUID Fn8000_0008_EBX[3] (AMD APM vol. 3, appendix E); the shipped files' CPUID sources say which part has which.
EXPECTED = {
    #                  vendor   la57   invlpgb
    "skylake_sp": ("intel", False, False),
    "icelake_sp": ("intel", True, False),
    "sapphire_rapids": ("intel", True, False),
    "zen3": ("amd", False, True),
    "zen4": ("amd", True, True),
    "zen5": ("amd", True, True),
}

# A comment must cite a source key ([S*] hardware, [L*] Linux, [T*] timing and virtualization; listed in
# docs/uarch.md) or say it is an estimate.
SOURCE_MARK = re.compile(r"\[[SLT]\d+[a-z]?\]|ESTIMATE|SIMPLIFICATION")


def _path(name: str) -> Path:
    return uarch_dir() / f"{name}.toml"


# ---------------------------------------------------------------------------------------------------
# Shipped files


def test_list_uarchs_lists_all_six():
    assert set(SHIPPED) <= set(list_uarchs())
    assert list_uarchs() == sorted(list_uarchs())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_file_loads_and_name_matches_stem(name):
    u = load_uarch(name)
    assert isinstance(u, Uarch)
    assert u.name == name == _path(name).stem
    assert u.description and "\n" not in u.description


@pytest.mark.parametrize("name", SHIPPED)
def test_load_by_path_equals_load_by_name(name):
    assert load_uarch(_path(name)) == load_uarch(name)


@pytest.mark.parametrize("name", SHIPPED)
def test_part_features(name):
    vendor, la57, invlpgb = EXPECTED[name]
    u = load_uarch(name)
    assert u.vendor == vendor
    assert u.features.la57 is la57
    assert u.features.invlpgb is invlpgb
    assert u.features.pcid and u.features.invpcid
    if invlpgb:
        assert u.features.invlpgb_count_max == 8
        assert u.costs.invlpgb_cycles > 0 and u.costs.tlbsync_cycles > 0
    else:
        assert u.features.invlpgb_count_max == 0
        assert u.costs.invlpgb_cycles == 0 and u.costs.tlbsync_cycles == 0


@pytest.mark.parametrize("name", SHIPPED)
def test_part_structure(name):
    u = load_uarch(name)
    if u.vendor == "intel":
        # Unified STLB: no separate L2 ITLB; per-level paging-structure caches.
        assert u.tlb.l2i is None
        assert u.pwc.unified is None and u.pwc.pd is not None
        assert (u.pwc.pml5 is not None) is u.features.la57
    else:
        # Split L2 ITLB / L2 DTLB; fully associative L1 TLBs; one unified page-walk cache.
        assert u.tlb.l2i is not None
        for s in u.tlb.l1i + u.tlb.l1d:
            assert s.ways == s.entries
        assert u.pwc.unified is not None
    # Every page size is reachable through the data path.
    for level in (u.tlb.l1d, u.tlb.l2d):
        assert {size for s in level for size in s.sizes} == {"4K", "2M", "1G"}
    # Latencies grow down the hierarchy.
    c = u.caches
    assert c.l1d.latency < c.l2.latency < c.llc.latency < c.dram_latency
    assert u.costs.cr3_flush_cycles >= u.costs.cr3_noflush_cycles


def _split_comment(line: str) -> tuple[str, str | None]:
    """Split a TOML line into code and comment, ignoring '#' inside strings."""
    quote = None
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#":
            return line[:i], line[i + 1 :]
        i += 1
    return line, None


def _strip_strings(code: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', '""', code)


def _numeric_lines(path: Path) -> list[tuple[int, str, str]]:
    """(line number, code, comment text: inline + the comment block directly above) for each numeric line."""
    lines = path.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        code, inline = _split_comment(line)
        if "=" not in code or code.lstrip().startswith("["):
            continue
        value = _strip_strings(code.split("=", 1)[1])
        if not re.search(r"\d", value):
            continue
        above = []
        j = i - 1
        while j >= 0 and lines[j].lstrip().startswith("#"):
            above.append(lines[j])
            j -= 1
        out.append((i + 1, code.strip(), " ".join(above + [inline or ""])))
    return out


@pytest.mark.parametrize("name", SHIPPED)
def test_every_number_has_a_comment(name):
    path = _path(name)
    lines = path.read_text().splitlines()
    numeric = _numeric_lines(path)
    assert len(numeric) > 30  # the parser found the numbers
    missing = []
    for lineno, code, _ in numeric:
        _, inline = _split_comment(lines[lineno - 1])
        prev = lines[lineno - 2].lstrip() if lineno >= 2 else ""
        if not (inline and inline.strip()) and not prev.startswith("#"):
            missing.append(f"{path.name}:{lineno}: {code}")
    assert not missing, "numbers without a comment:\n" + "\n".join(missing)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_comment_cites_a_source_or_says_estimate(name):
    path = _path(name)
    bad = [f"{path.name}:{n}: {code}" for n, code, comment in _numeric_lines(path) if not SOURCE_MARK.search(comment)]
    assert not bad, "numbers whose comment names no source and no ESTIMATE:\n" + "\n".join(bad)


@pytest.mark.parametrize("name", SHIPPED)
def test_header_comment(name):
    text = _path(name).read_text()
    header = text[: text.index("name =")]
    assert all(line.startswith("#") for line in header.strip().splitlines())
    assert "GHz" in header
    assert "Sources:" in header and "docs/uarch.md" in header


def test_line_parser_on_tricky_lines(tmp_path):
    p = tmp_path / "x.toml"
    p.write_text(
        'description = "a # b 4K"\n'  # string only: not numeric
        "# cited above\n"
        "a = 1\n"
        "b = { entries = 2, ways = 2 }  # inline\n"
        'sizes = ["4K", "2M"]\n'
        "[caches.l1d]\n"
        "c = 3\n"
    )
    found = {code: comment for _, code, comment in _numeric_lines(p)}
    assert set(found) == {"a = 1", "b = { entries = 2, ways = 2 }", "c = 3"}
    assert "cited above" in found["a = 1"]
    assert found["c = 3"].strip() == ""


# ---------------------------------------------------------------------------------------------------
# Errors


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(type(v))


def _write(tmp_path: Path, data: dict, fname: str = "bad.toml") -> Path:
    p = tmp_path / fname
    p.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in data.items()))
    return p


def _base(name: str) -> dict:
    with open(_path(name), "rb") as f:
        return tomllib.load(f)


@pytest.mark.parametrize("name", SHIPPED)
def test_writer_round_trips(tmp_path, name):
    assert load_uarch(_write(tmp_path, _base(name), f"{name}.toml")) == load_uarch(name)


def _set(dotted: str, value) -> Callable[[dict], None]:
    """Mutator setting a dotted path; integer parts index lists."""

    def mutate(d: dict) -> None:
        parts = [int(p) if p.isdigit() else p for p in dotted.split(".")]
        for p in parts[:-1]:
            d = d[p]
        d[parts[-1]] = value

    return mutate


def _chain(*mutators: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        for m in mutators:
            m(d)

    return mutate


def _delete(dotted: str) -> Callable[[dict], None]:
    def mutate(d: dict) -> None:
        parts = dotted.split(".")
        for p in parts[:-1]:
            d = d[p]
        del d[parts[-1]]

    return mutate


BAD_CASES = [
    # id, base file, mutation, dotted key in message, reason in message
    ("unknown-top-key", "skylake_sp", _set("clock_ghz", 3), "clock_ghz", "unknown key"),
    ("unknown-nested-key", "skylake_sp", _set("tlb.l1d.0.assoc", 4), "tlb.l1d[0].assoc", "unknown key"),
    (
        "ways-not-dividing",
        "skylake_sp",
        _set("tlb.l1d.0.ways", 5),
        "tlb.l1d[0]",
        "ways (5) must divide entries (64)",
    ),
    ("zero-tlb-latency", "skylake_sp", _set("tlb.l2_hit_latency", 0), "tlb.l2_hit_latency", "greater than 0"),
    ("zero-cache-latency", "zen3", _set("caches.l2.latency", 0), "caches.l2.latency", "greater than 0"),
    ("zero-dram-latency", "zen3", _set("caches.dram_latency", 0), "caches.dram_latency", "greater than 0"),
    (
        "negative-cost",
        "skylake_sp",
        _set("costs.fault_per_page_cycles", -1),
        "costs.fault_per_page_cycles",
        "greater than or equal to 0",
    ),
    ("zero-positive-cost", "zen4", _set("costs.invlpg_cycles", 0), "costs.invlpg_cycles", "greater than 0"),
    (
        "invalid-page-size",
        "skylake_sp",
        _set("tlb.l1d.0.sizes", ["4M"]),
        "tlb.l1d[0].sizes[0]",
        "'4K', '2M' or '1G'",
    ),
    (
        "duplicate-page-size-across-structures",
        "skylake_sp",
        _set("tlb.l1d.1.sizes", ["4K"]),
        "tlb",
        "l1d: page size 4K is held by two structures",
    ),
    (
        "repeated-page-size-in-structure",
        "zen3",
        _set("tlb.l1i.0.sizes", ["4K", "4K"]),
        "tlb.l1i[0]",
        "repeats",
    ),
    ("empty-level", "zen3", _set("tlb.l2i", []), "tlb", "l2i needs at least one structure"),
    (
        "xor-non-power-of-two-sets",
        "zen4",
        _chain(_set("tlb.l2i.0.index", "xor"), _set("tlb.l2i.0.entries", 384)),  # 384 / 4 ways = 96 sets
        "tlb.l2i[0]",
        "power-of-two",
    ),
    (
        "invlpgb-without-count",
        "skylake_sp",
        _set("features.invlpgb", True),
        "features",
        "invlpgb = true needs invlpgb_count_max >= 1",
    ),
    (
        "invlpgb-without-costs",
        "zen3",
        _set("costs.tlbsync_cycles", 0),
        "(top level)",
        "invlpgb = true needs costs.invlpgb_cycles and costs.tlbsync_cycles >= 1",
    ),
    (
        "pwc-unified-and-per-level",
        "skylake_sp",
        _set("pwc.unified", {"entries": 24, "ways": 24}),
        "pwc",
        "not both",
    ),
    (
        "pwc-ways-not-dividing",
        "zen5",
        _set("pwc.unified.ways", 5),
        "pwc.unified",
        "ways (5) must divide entries (24)",
    ),
    (
        "cache-ways-not-dividing-lines",
        "skylake_sp",
        _set("caches.llc.ways", 13),
        "caches.llc",
        "must divide the number of 64-byte lines per CPU",
    ),
    ("bad-vendor", "zen3", _set("vendor", "arm"), "vendor", "'intel' or 'amd'"),
    ("missing-key", "zen3", _delete("costs.invlpg_cycles"), "costs.invlpg_cycles", "Field required"),
]


@pytest.mark.parametrize(("base", "mutate", "key", "reason"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_file_names_file_key_and_reason(tmp_path, base, mutate, key, reason):
    data = copy.deepcopy(_base(base))
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_uarch(path)
    msg = str(info.value)
    assert str(path) in msg
    assert f"key '{key}'" in msg
    assert reason in msg


def test_unknown_uarch_lists_known_ones():
    with pytest.raises(ConfigError) as info:
        load_uarch("pentium4")
    msg = str(info.value)
    assert "unknown uarch 'pentium4'" in msg
    for name in SHIPPED:
        assert name in msg


def test_toml_syntax_error_names_file(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text('name = "broken"\n[tlb\nl2_hit_latency = 9\n')
    with pytest.raises(ConfigError) as info:
        load_uarch(p)
    assert str(p) in str(info.value)
    assert "not valid TOML" in str(info.value)


def test_missing_file_names_file(tmp_path):
    p = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_uarch(p)
    assert str(p) in str(info.value)
    assert "not found" in str(info.value)
