"""The `mshare-hw` command: run, uarch list/show, ptmem; exit codes and messages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mshare_hw.cli import main
from mshare_hw.config.uarch import list_uarchs
from mshare_hw.results.hdf5 import load_run, load_summary

UARCHS = ("skylake_sp", "icelake_sp", "sapphire_rapids", "zen3", "zen4", "zen5")

# --------------------------------------------------------------------------------------------------
# run


def test_run_quiet(tiny: Path, tmp_path: Path, capsys):
    out = tmp_path / "out.h5"
    assert main(["run", str(tiny), "-o", str(out), "-q"]) == 0
    assert out.is_file()
    df = load_summary(out)
    assert list(df["pt_config"]) == ["private", "mshare"]
    assert list(df["n_cpus"]) == [2, 2]
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error" not in captured.err


def test_run_with_set(tiny: Path, tmp_path: Path, capsys):
    out = tmp_path / "out.h5"
    rc = main(
        ["run", str(tiny), "-o", str(out), "-q", "--set", "machine.n_cpus=1", "--set", "sweep.pt_config=['mshare']"]
    )
    assert rc == 0
    df = load_summary(out)
    assert list(df["n_cpus"]) == [1]
    assert list(df["pt_config"]) == ["mshare"]
    run = load_run(out, df["run_id"][0])
    assert run["config"]["machine"]["n_cpus"] == 1
    assert len(run["cpu_counters"]) == 1
    assert run["cpu_counters"]["context_switches"].sum() >= 1  # two processes share the one CPU


def test_run_nested_workload_set(tiny: Path, tmp_path: Path):
    out = tmp_path / "out.h5"
    assert main(["run", str(tiny), "-o", str(out), "-q", "--set", "workload.params.n_processes=3"]) == 0
    df = load_summary(out)
    assert list(df["n_processes"]) == [3, 3]
    assert list(df["accesses"]) == [3000, 3000]


def test_run_prints_table_and_comparison(tiny: Path, tmp_path: Path, capsys):
    out = tmp_path / "out.h5"
    assert main(["run", str(tiny), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tiny: totals over all CPUs and processes" in text
    assert "page faults" in text and "page-table memory" in text
    assert "skylake_sp: mshare vs private:" in text
    assert "results:" in text and "out.h5" in text.replace("\n", "")


def test_run_default_output_name(tiny: Path, tmp_path: Path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["run", str(tiny), "-q"]) == 0
    assert [p.name for p in work.iterdir()] == ["tiny.h5"]


def test_run_builtin_default_experiment(tmp_path: Path):
    """No file: the shipped default (2 uarchs x 2 page-table configurations x awake/sleeping clients with a
    4 KiB pool, then 2 uarchs x 3 configurations with a 2 MiB pool, awake), shrunk with --set (the pool stays
    1 GiB: hugetlb PMD sharing needs a whole PUD-aligned GiB)."""
    out = tmp_path / "d.h5"
    rc = main(
        [
            "run",
            "-o",
            str(out),
            "-q",
            "--set",
            "workload.params.accesses_per_process=300",
        ]
    )
    assert rc == 0
    df = load_summary(out)
    assert list(zip(df["pool_page_size"], df["uarch"], df["pt_config"], df["sleep_every_accesses"])) == [
        ("4K", u, c, s) for u in ("skylake_sp", "zen3") for c in ("private", "mshare") for s in (0, 20_000)
    ] + [("2M", u, c, 0) for u in ("skylake_sp", "zen3") for c in ("private", "mshare", "hugetlb_pmd_share")]
    assert list(df["experiment"]) == ["default"] * 14
    # one PMD table for the 2 MiB pool: the clients after the first share it (7 links per uarch)
    shared = df[df["pt_config"] == "hugetlb_pmd_share"]
    assert list(shared["pmd_shares"]) == [7, 7]


@pytest.mark.parametrize(
    ("setting", "names"),
    [
        ("machine.nosuch=1", "machine.nosuch"),
        ("nosuch=1", "nosuch"),
        ("uarch=pentium4", "pentium4"),
        ("machine.n_cpus", "machine.n_cpus"),  # no '='
        ("sweep.bogus=[1, 2]", "bogus"),  # only caught when the grid is expanded
        ("workload.params.bogus=1", "workload.params.bogus"),  # only caught when the workload is built
    ],
)
def test_run_bad_set_exits_2(tiny: Path, tmp_path: Path, capsys, setting: str, names: str):
    out = tmp_path / "out.h5"
    rc = main(["run", str(tiny), "-o", str(out), "-q", "--set", setting])
    assert rc == 2
    err = capsys.readouterr().err
    assert "error:" in err
    assert names in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tiny.toml"]  # no temporary file either


def test_run_missing_file_exits_2(tmp_path: Path, capsys):
    missing = tmp_path / "nope.toml"
    assert main(["run", str(missing), "-o", str(tmp_path / "o.h5"), "-q"]) == 2
    assert "nope.toml" in capsys.readouterr().err
    assert not (tmp_path / "o.h5").exists()


# --------------------------------------------------------------------------------------------------
# uarch


def test_uarch_list(capsys):
    assert main(["uarch", "list"]) == 0
    text = capsys.readouterr().out
    assert sorted(list_uarchs()) == sorted(UARCHS)
    for name in UARCHS:
        assert name in text
    assert "intel" in text and "amd" in text


def test_uarch_show(capsys):
    assert main(["uarch", "show", "zen3"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("zen3:")
    for fragment in ("TLBs", "L2 TLB hit latency", "page-walk caches", "caches: L1D", "features:", "costs (cycles):"):
        assert fragment in text
    assert "invlpgb=True" in text


@pytest.mark.parametrize("name", UARCHS)
def test_uarch_show_every_shipped_part(name: str, capsys):
    assert main(["uarch", "show", name]) == 0
    assert capsys.readouterr().out.startswith(f"{name}:")


def test_uarch_show_unknown(capsys):
    assert main(["uarch", "show", "nosuch"]) == 2
    captured = capsys.readouterr()
    assert "unknown uarch 'nosuch'" in captured.err
    assert "zen3" in captured.err  # lists the known ones
    assert captured.out == ""


# --------------------------------------------------------------------------------------------------
# ptmem


def test_ptmem_cover_letter_numbers(capsys):
    """The mshare cover letter: 1,500 processes x 300 GB buffer pool -> ~879 GB of last-level PTEs."""
    assert main(["ptmem", "--processes", "1500", "--region", "300GiB"]) == 0
    text = capsys.readouterr().out
    assert "878.9 GiB" in text  # private PTE pages
    assert "600 MiB" in text  # one shared copy


def test_ptmem_options(capsys):
    rc = main(["ptmem", "--processes", "8", "--region", "1GiB", "--page-size", "2M", "--share-level", "pud"])
    assert rc == 0
    assert "sharing at pud" in capsys.readouterr().out
    assert main(["ptmem", "--processes", "2", "--region", "1GiB", "--levels", "5"]) == 0


@pytest.mark.parametrize("region", ["bogus", "-1GiB", "1.0001K"])
def test_ptmem_bad_region(region: str, capsys):
    assert main(["ptmem", "--processes", "4", f"--region={region}"]) == 2
    captured = capsys.readouterr()
    assert "invalid size" in captured.err
    assert captured.out == ""


def test_ptmem_bad_processes(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["ptmem", "--processes", "many", "--region", "1GiB"])
    assert ei.value.code == 2


# --------------------------------------------------------------------------------------------------
# argparse


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["run", "--help"],
        ["uarch", "--help"],
        ["uarch", "list", "--help"],
        ["uarch", "show", "--help"],
        ["ptmem", "--help"],
    ],
)
def test_help(argv: list[str], capsys):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 0
    assert "usage: mshare-hw" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["uarch"], ["uarch", "show"], ["ptmem"]])
def test_usage_errors(argv: list[str], capsys):
    with pytest.raises(SystemExit) as ei:
        main(argv)
    assert ei.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_console_script():
    exe = shutil.which("mshare-hw")
    if exe is None:
        pytest.skip("mshare-hw console script not installed (package not pip-installed)")
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    assert "usage: mshare-hw" in proc.stdout


@pytest.fixture
def env() -> dict[str, str]:
    """A subprocess's environment that imports this source tree's mshare_hw."""
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


@pytest.mark.parametrize("module", ["mshare_hw", "mshare_hw.cli"])
def test_python_dash_m_is_the_command(module: str, tmp_path: Path, env: dict[str, str]):
    """`python -m mshare_hw` (and `python -m mshare_hw.cli`) run the console script's entry point and pass
    its exit code to the shell."""
    ok = subprocess.run([sys.executable, "-m", module, "uarch", "list"], env=env, cwd=tmp_path,
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "zen3" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", module, "uarch", "show", "nosuch"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "unknown uarch" in bad.stderr


def test_console_script_runs_exit_handlers_and_flushes(tmp_path: Path, env: dict[str, str]):
    """The `mshare-hw` entry point ends the process without the interpreter's teardown: the exit handlers
    (here one registered before the command) must still run, piped output must arrive whole, and the exit
    code must reach the shell."""
    marker = tmp_path / "atexit-ran"
    script = (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').write('yes'))\n"
        "sys.argv = ['mshare-hw', *sys.argv[1:]]\n"
        "from mshare_hw.cli import run\n"
        "run()\n"
    )
    ok = subprocess.run([sys.executable, "-c", script, "uarch", "list"], env=env, cwd=tmp_path,
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "skylake_sp" in ok.stdout and "zen3" in ok.stdout
    assert marker.read_text() == "yes"
    marker.unlink()
    bad = subprocess.run([sys.executable, "-c", script, "uarch", "show", "nosuch"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode == 2 and "unknown uarch" in bad.stderr
    assert marker.read_text() == "yes"


def test_hugetlb_pmd_share_with_nothing_to_share_is_refused(capsys):
    """The default experiment's 4 KiB pool under hugetlb PMD sharing: one line, exit 2 (validate builds every
    point's layout)."""
    argv = ["validate", "configs/experiments/default.toml", "--set", "sweep={}", "--set", "exclude=[]"]
    assert main([*argv, "--set", "pt_config=hugetlb_pmd_share"]) == 2
    err = capsys.readouterr().err
    assert "no shared 2M-page region covers a whole PUD-aligned 1 GiB span" in err
    assert err.strip().count("\n") == 0
    assert main([*argv, "--set", "pt_config=hugetlb_pmd_share", "--set", "workload.params.pool_page_size=2M"]) == 0
    assert "pt_config: hugetlb_pmd_share" in capsys.readouterr().out
