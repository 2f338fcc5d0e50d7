"""Workload hand-off files: what a worker maps is the client's workload, byte for byte, read-only."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mshare_hw.workload.generators import database_workload
from mshare_hw.workload.generators.blocks import to_array
from mshare_hw.workload.generators.stream import uniform_stream_workload
from mshare_hw.workload.handoff import can_hand_off, load_workload, save_workload


def test_round_trip(tmp_path):
    w = database_workload(
        n_processes=2,
        accesses_per_process=5_000,
        pool_bytes=4 << 20,
        private_bytes=1 << 20,
        text_bytes=256 << 10,
        seed=5,
        cpu_of=[1, 0],
    )
    for p in w.processes:  # generated traces are drawn while read: hand-off files are for traces in memory
        p.trace = to_array(p.trace)
    digests = w.trace_digests()
    assert can_hand_off(w)
    meta, files = save_workload(w, digests, tmp_path / "shards", "key")
    # temporary-file names of this process: a later sweep removes them if this one is killed
    assert all(p.name.startswith(".") and p.name.endswith(f".tmp.{os.getpid()}") for p in files)
    assert meta in files and len(files) == 2 * 2 + 1

    back, back_digests = load_workload(meta)
    assert back_digests == digests
    assert back.trace_digests() == digests  # recomputed from the mapped bytes
    assert back.regions == w.regions and back.description == w.description
    assert [p.name for p in back.processes] == [p.name for p in w.processes]
    assert [p.cpu for p in back.processes] == [1, 0]  # as placed by cpu_of
    for a, b in zip(w.processes, back.processes, strict=True):
        np.testing.assert_array_equal(a.trace.addrs, b.trace.addrs)
        np.testing.assert_array_equal(a.trace.kinds, b.trace.kinds)
        assert not b.trace.addrs.flags.writeable  # mapped read-only, shared through the page cache
        with pytest.raises(ValueError):
            b.trace.addrs[0] = 0


def test_streams_are_not_handed_off():
    assert not can_hand_off(uniform_stream_workload(1, 10, 1 << 16, seed=1))
    assert not can_hand_off(database_workload(n_processes=1, accesses_per_process=10, pool_bytes=1 << 20, seed=1))
