"""Hand-computed cases on both engines: the latency and overlap timing modes, and dependent processes.
Conventions: tests/engine/machines.py. tiny()'s latencies: L1D 4, L2 14, LLC 40, DRAM 200, L2 TLB 7."""

from __future__ import annotations

from machines import PAGE, A, SetAssoc, pick, tiny

from mshare_hw.workload.model import Region

X1, X2 = A + 64, A + 128  # other lines of A's page: one L1 TLB entry serves all three
DRAM = 200


def _warm(d, proc: int = 0) -> None:
    """Map A and bring its translation into the L1 TLB; every access afterwards hits it."""
    d.switch_to(0, proc)
    d.load(proc, A)
    d.end_slice(0, proc)


def test_latency_mode_charges_the_serving_level(drive):
    # a one-line L1D and a two-line L2: the three loads are served by the L1D, the L2 and DRAM
    d = drive(tiny(timing="latency", data_caches=True, l1d_cache=SetAssoc(1, 1, 4), l2_cache=SetAssoc(1, 2, 14)))
    _warm(d)
    d.load(0, X1)  # DRAM: now the L1D holds X1, the L2 A and X1
    snap, c0 = d.totals(), d.clock()
    d.load(0, X1)  # L1D hit
    d.load(0, A)  # L1D miss, L2 hit
    d.load(0, X2)  # never touched: DRAM
    got = d.since(snap)
    assert pick(got, "data_l1d_hits", "data_l2_hits", "data_llc_hits", "data_dram_reads", "l1_dtlb_hits") == {
        "data_l1d_hits": 1,
        "data_l2_hits": 1,
        "data_llc_hits": 0,
        "data_dram_reads": 1,
        "l1_dtlb_hits": 3,
    }
    # the load-to-use latencies replace access_cycles; no translation stall (L1 TLB hits)
    assert got["cycles"] == got["data_cycles"] == 4 + 14 + DRAM
    assert d.clock() - c0 == 4 + 14 + DRAM


def test_latency_mode_adds_the_translation_stall(drive):
    d = drive(tiny(timing="latency", data_caches=True))
    d.switch_to(0, 0)
    snap = d.totals()
    d.load(0, A)  # cold: walk, fault, walk; data from DRAM
    got = d.since(snap)
    assert got["translation_cycles"] == 7 + 804  # as in test_hand_walker's cold walk
    assert got["cycles"] == 7 + 804 + got["fault_cycles"] + DRAM
    assert got["data_cycles"] == DRAM


def test_translation_mode_charges_no_data_latency(drive):
    d = drive(tiny(data_caches=True))
    _warm(d)
    snap = d.totals()
    d.load(0, X1)
    d.load(0, X2)
    got = d.since(snap)
    assert got["cycles"] == 2 and "data_cycles" not in got
    assert got["data_dram_reads"] == 2


def _two_misses(d, proc: int = 0) -> tuple[int, dict]:
    """Two loads of untouched lines (both from DRAM) after a warm TLB; returns the clock's move and the
    counters, the CPU drained."""
    _warm(d, proc)
    snap, c0 = d.totals(), d.clock()
    d.load(proc, X1)
    d.load(proc, X2)
    d.end_slice(0, proc)
    return d.clock() - c0, d.since(snap)


def overlap(**kw):
    base = {"timing": "overlap", "data_caches": True, "load_queue": 4, "l1d_miss_buffers": 2, "page_walkers": 1}
    return tiny(**(base | kw))


def test_overlap_independent_misses_overlap(drive):
    # access 1 issues at 0, done at 200 (miss buffer 0); access 2 issues at 1 (access_cycles), done at 201
    # (miss buffer 1); the drain waits for 201
    moved, got = _two_misses(drive(overlap()))
    assert moved == 1 + DRAM < 2 * DRAM
    assert got["cycles"] == moved
    assert got["data_cycles"] == 2 * DRAM  # the latencies of the work, overlapped or not


def test_overlap_dependent_process_gets_latency_semantics(drive):
    moved, got = _two_misses(drive(overlap(), n_procs=1, dependent=[True]))
    assert moved == got["cycles"] == 2 * DRAM


def test_overlap_one_miss_buffer_serialises_the_misses(drive):
    # access 2 waits for the only miss buffer: 200 + 200
    moved, _ = _two_misses(drive(overlap(l1d_miss_buffers=1)))
    assert moved == 2 * DRAM


def test_overlap_full_load_queue_waits_for_its_oldest(drive):
    d = drive(overlap(load_queue=1))
    _warm(d)
    c0 = d.clock()
    d.load(0, X1)  # issues at 0, done at 200
    d.load(0, X2)  # the one load-queue entry is busy until 200: issues then, done at 400
    assert d.clock() - c0 == DRAM + 1  # the issue clock: 200 + access_cycles
    d.end_slice(0, 0)
    assert d.clock() - c0 == 2 * DRAM


def test_overlap_walks_share_the_page_walkers(drive):
    # two pages mapped by one fault (a file region's fault-around), never translated: each load walks;
    # with one walker the second walk waits for the first
    region = Region("f", A - 3 * PAGE, 16 * PAGE, kind="file")
    d = drive(overlap(page_walkers=1, l1d_miss_buffers=4), regions=[region])
    d.switch_to(0, 0)
    d.load(0, A)  # faults the region's 16 pages in
    d.end_slice(0, 0)
    pages = [A + PAGE, A + 2 * PAGE]  # mapped, never translated
    snap, c0 = d.totals(), d.clock()
    for va in pages:
        d.load(0, va)
    d.end_slice(0, 0)
    got = d.since(snap)
    assert got["walks"] == 2 and "page_faults" not in got
    # the PDE cache (filled by the warm-up) leaves one read per walk: the PTE line both pages share, an
    # L1D hit (4 cycles). Walk 1 starts at 7 (L2 TLB latency) and ends at 11, its data at 211 (miss
    # buffer 0); walk 2 (issued at 1) waits for the one walker until 11, ends at 15, its data at 215.
    assert pick(got, "walk_reads", "walk_cycles", "pwc_hits_pd") == {
        "walk_reads": 2,
        "walk_cycles": 8,
        "pwc_hits_pd": 2,
    }
    assert d.clock() - c0 == 7 + 4 + 4 + DRAM
    assert got["translation_cycles"] == 2 * (7 + 4)  # the stalls' work, overlapped or not
