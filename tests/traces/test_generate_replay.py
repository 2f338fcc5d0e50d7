"""`trace generate` (seeded, deterministic, native output) and replay equivalence across formats."""

from __future__ import annotations

import gzip

import numpy as np

from mshare_hw.cli import main
from mshare_hw.config.uarch import load_uarch
from mshare_hw.engine.driver import run_workload
from mshare_hw.engine.params import build_params
from mshare_hw.traces import NativeTrace, open_trace
from mshare_hw.workload.generators import uniform_workload
from mshare_hw.workload.manifest import build_manifest_workload

GEN_ARGS = ["-p", "n_processes=2", "-p", "accesses_per_process=3000", "-p", "working_set_bytes=1MiB", "-q"]


def _params(pt_config: str):
    return build_params(load_uarch("skylake_sp"), n_cpus=2, pt_config=pt_config)


def test_generate_is_deterministic_and_replays_like_the_generator(tmp_path):
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    assert main(["trace", "generate", "uniform", str(a), "--seed", "3", *GEN_ARGS]) == 0
    assert main(["trace", "generate", "uniform", str(b), "--seed", "3", *GEN_ARGS]) == 0
    assert main(["trace", "generate", "uniform", str(c), "--seed", "4", *GEN_ARGS]) == 0
    da = [s.digest() for _, s in open_trace(a)]
    assert da == [s.digest() for _, s in open_trace(b)]
    assert da != [s.digest() for _, s in open_trace(c)]
    direct = uniform_workload(2, 3000, 1 << 20, seed=3)
    assert da == direct.trace_digests()
    assert NativeTrace(a, "uniform1").verify()
    # the manifest written next to it replays exactly like the generator's own workload
    w = build_manifest_workload(a.with_suffix(".toml"))
    assert [(r.start, r.size, r.shared) for r in w.regions] == [(r.start, r.size, r.shared) for r in direct.regions]
    for pt in ("private", "mshare"):
        got = run_workload(w, _params(pt))["cpu_counters"]
        want = run_workload(direct, _params(pt))["cpu_counters"]
        assert np.array_equal(got, want)


def test_lackey_to_native_replays_the_same(tmp_path):
    rng = np.random.default_rng(5)
    for pid in (10, 11):
        n = 4000
        offs = rng.integers(0, 2 << 20, n)
        kinds = rng.choice([b"I ", b" L", b" S", b" M"], n)
        # half in a shared 2 MiB region at 0x10000000, half in private memory at 0x7f0000000000
        base = np.where(rng.random(n) < 0.5, 0x1000_0000, 0x7F00_0000_0000)
        body = b"".join(b"%s %x,%d\n" % (k, int(b + o), 8) for k, b, o in zip(kinds, base, offs))
        (tmp_path / f"trace.{pid}.gz").write_bytes(gzip.compress(b"==%d== hi\n" % pid + body))
    region = '[[regions]]\nname = "shm"\nstart = 0x10000000\nsize = "2MiB"\n'
    (tmp_path / "lackey.toml").write_text(
        '[[processes]]\ntrace = "trace.10.gz"\n[[processes]]\ntrace = "trace.11.gz"\n' + region
    )
    out = tmp_path / "n.h5"
    assert main(["trace", "convert", str(tmp_path / "trace.10.gz"), str(tmp_path / "trace.11.gz"), str(out), "-q"]) == 0
    (tmp_path / "native.toml").write_text(
        '[[processes]]\ntrace = "n.h5"\ntrace_process = 0\npid = 10\n'
        '[[processes]]\ntrace = "n.h5"\ntrace_process = 1\npid = 11\n' + region
    )
    wl = build_manifest_workload(tmp_path / "lackey.toml")
    wn = build_manifest_workload(tmp_path / "native.toml")
    assert wl.regions == wn.regions and wl.trace_digests() == wn.trace_digests()
    for pt in ("private", "mshare"):
        rl, rn = run_workload(wl, _params(pt)), run_workload(wn, _params(pt))
        assert np.array_equal(rl["cpu_counters"], rn["cpu_counters"])
        assert np.array_equal(rl["proc_counters"], rn["proc_counters"])
