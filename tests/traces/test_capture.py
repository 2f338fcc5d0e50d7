"""`mshare-hw trace capture` end to end: a real multi-process C program under valgrind lackey, then
`mshare-hw run DIR/workload.toml` (the issue's acceptance test)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

import mshare_hw
from mshare_hw.cli import main
from mshare_hw.config.errors import ConfigError
from mshare_hw.traces import capture as capture_mod
from mshare_hw.workload.manifest import build_manifest_workload, load_manifest

REGION_BYTES = 4 << 20
WORKERS = 3

# The parent maps a 4 MiB MAP_SHARED|MAP_ANONYMOUS region and forks 3 workers; each worker reads every
# page of it, writes every third page, and touches 64 pages of private heap. They sleep a little so the
# maps poller sees them.
PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#define REGION (%(region)du)
#define WORKERS %(workers)d
int main(void) {
    unsigned char *shared = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) { perror("mmap"); return 1; }
    for (int w = 0; w < WORKERS; w++) {
        pid_t pid = fork();
        if (pid < 0) { perror("fork"); return 1; }
        if (pid == 0) {
            unsigned char *priv = malloc(64 * 4096);
            unsigned long sum = 0;
            for (unsigned long off = 0; off < REGION; off += 4096) sum += shared[off];
            for (unsigned long off = w * 4096; off < REGION; off += 3 * 4096) shared[off] = (unsigned char)w;
            for (unsigned long off = 0; off < 64 * 4096; off += 4096) priv[off] = (unsigned char)sum;
            usleep(200000);
            _exit(0);
        }
    }
    for (int w = 0; w < WORKERS; w++) wait(NULL);
    return 0;
}
"""


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (CI installs it: apt-get install valgrind gcc)")
    return path


def test_capture_then_run_end_to_end(tmp_path, capsys):
    _need("valgrind")
    cc = shutil.which("cc") or _need("gcc")
    src = tmp_path / "shm.c"
    src.write_text(PROGRAM % {"region": REGION_BYTES, "workers": WORKERS})
    exe = tmp_path / "shm"
    subprocess.run([cc, "-O1", "-o", str(exe), str(src)], check=True)
    cap = tmp_path / "cap"
    assert main(["trace", "capture", "-o", str(cap), "--maps-interval", "0.02", "--", str(exe)]) == 0
    traces = sorted(cap.glob("trace.*.zst"))
    assert len(traces) == 1 + WORKERS and not list(cap.glob("trace.[0-9]*[0-9]"))  # compressed, originals gone
    m = load_manifest(cap / "workload.toml")
    assert len(m.processes) == 1 + WORKERS
    # the shared region is found from the maps snapshots: the 4 MiB shared anonymous mapping
    (region,) = m.regions
    assert region.from_maps == "/dev/zero (deleted)"
    w = build_manifest_workload(cap / "workload.toml")
    (r,) = w.regions
    assert r.size == REGION_BYTES and r.shared and r.kind == "shmem" and r.start % (1 << 39) == 0
    assert r.processes is None  # all four processes map it
    out = tmp_path / "out.h5"
    assert main(["run", str(cap / "workload.toml"), "-o", str(out), "-q"]) == 0
    df = mshare_hw.load_summary(out).set_index("pt_config")
    assert df.loc["mshare", "page_faults"] < df.loc["private", "page_faults"]
    assert df.loc["mshare", "accesses"] == df.loc["private", "accesses"] == w.total_accesses()


def test_capture_without_valgrind(tmp_path, monkeypatch):
    monkeypatch.setattr(capture_mod.shutil, "which", lambda _name: None)
    with pytest.raises(ConfigError, match=r"valgrind is not installed.*apt-get install valgrind.*dnf install valgrind"):
        capture_mod.capture(tmp_path / "d", ["true"])
    assert main(["trace", "capture", "-o", str(tmp_path / "d"), "--", "true"]) == 2


def test_capture_refuses_used_directory_and_no_command(tmp_path):
    (tmp_path / "trace.5").write_text("I  1000,4\n")
    with pytest.raises(ConfigError, match="already holds traces"):
        capture_mod.capture(tmp_path, ["true"], valgrind="/bin/false")
    with pytest.raises(ConfigError, match="no command given"):
        capture_mod.capture(tmp_path / "x", [], valgrind="/bin/false")
