"""Radix page tables in real physical frames, from a deterministic bump allocator.

All tables of all mms live in one store; an entry's location is `table * 512 + index`, held in a dict
only once written (the engine holds sparse tables in a hash and full ones in dense blocks, for host
memory; the model is the same). An entry is 0 when not present, else `target << 2 | leaf << 1 | 1`,
where target is a child table index (non-leaf) or a 4 KiB data frame number (leaf). Every write bumps
the entry's version, which the coherence oracle compares against the version a TLB or PWC entry was
filled from.
"""

from __future__ import annotations

from collections import defaultdict

ENTRIES = 512


def index(va: int, level: int) -> int:
    return (va >> (12 + 9 * (level - 1))) & 511


def encode(target: int, leaf: bool) -> int:
    return (target << 2) | (2 if leaf else 0) | 1


def present(entry: int) -> bool:
    return entry & 1 == 1


def is_leaf(entry: int) -> bool:
    return entry & 2 == 2


def target(entry: int) -> int:
    return entry >> 2


class PageTables:
    def __init__(self, levels: int, dyn_frame_start: int):
        self.levels = levels
        self.entries: defaultdict[int, int] = defaultdict(int)  # loc -> entry (0: never written)
        self.versions: defaultdict[int, int] = defaultdict(int)
        self.table_level: list[int] = []
        self.table_frame: list[int] = []
        self.table_mm: list[int] = []
        self.pages_per_level = [0] * 6
        self.next_frame = dyn_frame_start

    def alloc_frame(self) -> int:
        f = self.next_frame
        self.next_frame += 1
        return f

    def alloc_frames(self, shift: int) -> int:
        """A naturally aligned block of frames for one page of size 1 << shift."""
        n = 1 << (shift - 12)
        f = (self.next_frame + n - 1) // n * n
        self.next_frame = f + n
        return f

    def new_table(self, level: int, mm: int) -> int:
        t = len(self.table_level)
        self.table_level.append(level)
        self.table_frame.append(self.alloc_frame())
        self.table_mm.append(mm)
        self.pages_per_level[level] += 1
        return t

    def entry_paddr(self, loc: int) -> int:
        return self.table_frame[loc // ENTRIES] * 4096 + (loc % ENTRIES) * 8

    def set_entry(self, loc: int, value: int) -> None:
        self.entries[loc] = value
        self.versions[loc] += 1

    def find(self, root: int, va: int, levels: int) -> tuple[int, int, list[int]]:
        """Descend the tree at `root` (of `levels` levels) along va without side effects: the location of va's
        leaf entry, or of the first non-present entry on the way; its level; the locations read, top first."""
        t, level, path = root, levels, []
        while True:
            loc = t * ENTRIES + index(va, level)
            path.append(loc)
            ent = self.entries[loc]
            if not present(ent) or is_leaf(ent):
                return loc, level, path
            t, level = target(ent), level - 1

    def descend(self, root: int, va: int, level: int) -> int:
        """The table at `level` on va's path from `root`, creating missing tables (owned by the mm
        that owns their parent)."""
        t = root
        lv = self.levels
        while lv > level:
            loc = t * ENTRIES + index(va, lv)
            e = self.entries[loc]
            if not present(e):
                child = self.new_table(lv - 1, self.table_mm[t])
                self.set_entry(loc, encode(child, False))
                t = child
            else:
                if is_leaf(e):
                    raise AssertionError("a huge-page leaf sits where a table was expected")
                t = target(e)
            lv -= 1
        return t

    def change_range(self, root: int, va: int, n_pages: int, shift: int, op: int) -> int:
        """Change the present leaf PTEs of n_pages pages from va: 0 clear (zap), 1 rewrite in place
        (protect), 2 point at a new frame (migrate). Returns how many were present."""
        count = 0
        for i in range(n_pages):
            page = va + (i << shift)
            t, level = root, self.levels
            while True:
                loc = t * ENTRIES + index(page, level)
                e = self.entries[loc]
                if not present(e):
                    break
                if is_leaf(e):
                    if op == 0:
                        self.set_entry(loc, 0)
                    elif op == 1:
                        self.set_entry(loc, e)
                    else:
                        self.set_entry(loc, encode(self.alloc_frames(12 + 9 * (level - 1)), True))
                    count += 1
                    break
                t, level = target(e), level - 1
        return count

    def locate(self, root: int, va: int, level: int) -> int:
        """The location of the entry at `level` on va's path from `root`, or -1 if an entry above it is not
        present (or a leaf)."""
        t, lv = root, self.levels
        while lv > level:
            e = self.entries[t * ENTRIES + index(va, lv)]
            if not present(e) or is_leaf(e):
                return -1
            t, lv = target(e), lv - 1
        return t * ENTRIES + index(va, level)

    def unlink(self, root: int, va: int, level: int) -> bool:
        """Clear the entry at `level` on va's path (a detach's p4d_clear)."""
        t, lv = root, self.levels
        while lv > level:
            e = self.entries[t * ENTRIES + index(va, lv)]
            if not present(e) or is_leaf(e):
                return False
            t, lv = target(e), lv - 1
        loc = t * ENTRIES + index(va, level)
        if not present(self.entries[loc]):
            return False
        self.set_entry(loc, 0)
        return True
