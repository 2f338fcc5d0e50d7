"""Hand-computed replacement cases on both engines: tree-PLRU in a TLB set and in the LLC, and the seeded
random policy. Conventions: tests/engine/machines.py.

Tree-PLRU (mshare_hw/reference/set_array.py): the ways are the leaves of a binary tree padded to a power
of two; node bits are written (root, left node, right node) for 4 leaves. A hit or fill of a way sets
each node on its path to point away from it (1 = right); the victim follows the bits from the root,
never into a subtree of padding leaves. Invalid ways are filled first, lowest index first.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from machines import ALL, BASE, PAGE, Drive, tiny

from mshare_hw.engine.params import SetAssoc, TLBStruct


def l1_hits(d, pages: str) -> str:
    """Load each named page (one letter each) on CPU 0; 'h' per L1 DTLB hit, 'm' per miss."""
    out = []
    for name in pages:
        before = d.total("l1_dtlb_hits")
        d.load(0, BASE + (ord(name) - ord("A")) * PAGE)
        out.append("h" if d.total("l1_dtlb_hits") > before else "m")
    return "".join(out)


def one_set_l1(ways: int, policy: str):
    return tiny(l1d=(TLBStruct(ALL, 1, ways, False, replacement=policy),))


def test_four_way_tree_plru_victim_order(drive):
    d = drive(one_set_l1(4, "plru"))
    d.switch_to(0, 0)
    # A B C D fill ways 0-3 -> bits (0,0,0). Hits A (1,1,0), B (1,0,0), C (0,0,1).
    # E: root 0 -> left, left node 0 -> way 0: evicts A (LRU would evict D); E in way 0 -> (1,1,1).
    # D hit (way 3) -> (0,1,0). F: left, left node 1 -> way 1: evicts B -> (1,0,0). C hit -> (0,0,1).
    # G: left, left node 0 -> way 0: evicts E -> (1,1,1). A: right, right node 1 -> way 3: evicts D -> (0,1,0).
    # F hit (way 1) -> (1,0,0). B: right, right node 0 -> way 2: evicts C -> (0,0,1).
    # Now G A F B are held: four hits; then C misses.
    assert l1_hits(d, "ABCD" + "ABC" + "E" + "D" + "F" + "C" + "G" + "A" + "F" + "B") == "mmmm" + "hhh" + "mhmhmmhm"
    assert l1_hits(d, "GAFB") == "hhhh"
    assert l1_hits(d, "C") == "m"


def test_three_way_tree_plru_skips_the_padding_leaf(drive):
    d = drive(one_set_l1(3, "plru"))
    d.switch_to(0, 0)
    # 3 ways padded to 4 leaves: leaf 3 is padding. A B C fill ways 0-2 -> (0,0,1).
    # D: left, left node 0 -> way 0: evicts A -> (1,1,1). E: root 1 -> right; right node 1 points at the
    # padding leaf -> way 2: evicts C -> (0,1,1). B hit (way 1) -> (1,0,1). F: right -> way 2: evicts E
    # -> (0,0,1). D hit (way 0) -> (1,1,1). G: right -> way 2: evicts F -> (0,1,1).
    # I: left, left node 1 -> way 1: evicts B -> (1,0,1). D hit -> (1,1,1); G hit -> (0,1,1); I hit ->
    # (1,0,1). B: right -> way 2: evicts G -> (0,0,1). D hit -> (1,1,1), I hit -> (1,0,1); G misses.
    assert l1_hits(d, "ABCDEBFDGIDGIBDIG") == "mmmmmhmhmmhhhmhhm"


def test_llc_tree_plru(drive):
    llc = SetAssoc(1, 4, 40, replacement="plru")
    d = drive(tiny(llc=llc))
    lines = {name: i * 64 for i, name in enumerate("ABCDE")}
    for name in "ABCD":
        assert d.eng.llc_read(lines[name])[0] == 3  # DRAM: fills ways 0-3 -> (0,0,0)
    for name in "ABC":
        assert d.eng.llc_read(lines[name])[0] == 2  # LLC hits -> (1,0,0) then (0,0,1)
    assert d.eng.llc_read(lines["E"])[0] == 3  # evicts A (way 0), not the LRU line D
    assert d.eng.llc_read(lines["D"])[0] == 2
    assert d.eng.llc_read(lines["A"])[0] == 3


def random_run(kind: str, seed: int) -> list[str]:
    """L1 DTLB hits and misses over 300 loads of 8 pages, and LLC levels over 300 reads of 8 lines: a
    4-way set of each, random replacement, on engine `kind`."""
    params = dataclasses.replace(one_set_l1(4, "random"), seed=seed, llc=SetAssoc(1, 4, 40, replacement="random"))
    d = Drive(kind, params)
    d.switch_to(0, 0)
    rng = np.random.default_rng(7)
    pages = "".join(chr(ord("A") + int(x)) for x in rng.integers(0, 8, 300))
    llc = "".join(str(d.eng.llc_read(int(x) * 64)[0]) for x in rng.integers(0, 8, 300))
    return [l1_hits(d, pages), llc]


def test_random_replacement_is_seeded_and_equal_in_both_engines():
    got = {seed: random_run("cython", seed) for seed in (1, 2)}
    assert got[1] == random_run("cython", 1)  # same seed, same victims
    assert got[1] != got[2]  # another seed, other victims
    assert 0 < got[1][0].count("h") < 300 and 0 < got[1][1].count("2") < 300
    assert all(random_run("reference", seed) == got[seed] for seed in (1, 2))


@pytest.mark.parametrize("policy", ["plru", "random"])
def test_wide_fully_associative_set_equal_in_both_engines(policy):
    """A 72-way set (AMD's fully associative L1 DTLB): 128 PLRU leaves, two words of tree bits."""
    rng = np.random.default_rng(3)
    pages = "".join(chr(0x100 + int(x)) for x in rng.integers(0, 90, 600))
    runs = []
    for kind in ("cython", "reference"):
        d = Drive(kind, dataclasses.replace(one_set_l1(72, policy), seed=5))
        d.switch_to(0, 0)
        runs.append(l1_hits(d, pages))
    assert runs[0] == runs[1] and 0 < runs[0].count("h") < 600
