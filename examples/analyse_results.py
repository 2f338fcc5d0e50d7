"""Analysing mshare-hw results with plain h5py, pandas and matplotlib (no mshare-hw needed).

Rebuilds, from two results files:

* the flush-strategy table of the README (Zen 3, 4 CPUs, 6 sharers and one unrelated process), as
  `mshare-hw table results/flush_strategies.h5 --markdown --where uarch=zen3 --where n_cpus=4
  --where n_processes=7 --where sleep_every_accesses=0 --columns ...` prints it;
* a plot of the default experiment: page faults, page-walk cycles and DRAM walk reads, private vs mshare
  page tables, per uarch (`private_vs_mshare.png`, with the numbers it draws in `private_vs_mshare.csv`).

Run from the repository root:

    python examples/analyse_results.py results/default.h5 results/flush_strategies.h5 -o analysis

Needs h5py, pandas, tabulate (for `DataFrame.to_markdown`) and matplotlib, all installed with mshare-hw.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

FLUSH_COLUMNS = [
    "pt_config", "strategy", "events_fired", "ipis_sent", "invlpg", "invlpgb", "full_flushes",
    "shootdown_cycles_initiator", "shootdown_cycles_responder", "collateral_entries_flushed",
    "bystander_stlb_misses", "bystander_walk_cycles", "stale_translations",
]  # fmt: skip
METRICS = [("page_faults", "page faults"), ("walk_cycles", "page-walk cycles"), ("walk_reads_dram", "DRAM walk reads")]


def read_summary(path: Path) -> pd.DataFrame:
    """The /summary table: one row per run. Its text columns (run_id, uarch, pt_config, strategy, ...) are
    fixed-length HDF5 strings, which h5py returns as bytes: decode them to compare with str."""
    with h5py.File(path, "r") as f:
        df = pd.DataFrame(f["summary"][()])
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(lambda v: v.decode() if isinstance(v, bytes) else v)
    return df


def flush_strategy_table(summary: pd.DataFrame) -> str:
    """The README's table: Zen 3, 4 CPUs, 7 processes (6 sharers + 1 unrelated), every strategy."""
    rows = summary[
        (summary["uarch"] == "zen3")
        & (summary["n_cpus"] == 4)
        & (summary["n_processes"] == 7)
        & (summary["sleep_every_accesses"] == 0)
    ]
    return rows[FLUSH_COLUMNS].to_markdown(index=False)


def private_vs_mshare(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per uarch and metric: the private and the mshare run's totals and mshare's change in %, clients
    awake (the default experiment also runs them sleeping) and the pool in 4 KiB pages (it also runs a 2 MiB
    pool; files made before that variant have no pool_page_size column)."""
    rows = []
    awake = summary[summary["sleep_every_accesses"] == 0]
    if "pool_page_size" in awake.columns:
        awake = awake[awake["pool_page_size"] == "4K"]
    for uarch, runs in awake.groupby("uarch", sort=False):
        private = runs[runs["pt_config"] == "private"].iloc[0]
        mshare = runs[runs["pt_config"] == "mshare"].iloc[0]
        for key, _ in METRICS:
            change = 100.0 * (mshare[key] - private[key]) / private[key]
            rows.append({"uarch": uarch, "metric": key, "private": private[key], "mshare": mshare[key],
                         "change_%": change})  # fmt: skip
    return pd.DataFrame(rows)


def plot_private_vs_mshare(data: pd.DataFrame, path: Path) -> None:
    fig, axes = plt.subplots(1, len(METRICS), figsize=(12, 4), layout="constrained")
    for ax, (key, title) in zip(axes, METRICS):
        d = data[data["metric"] == key]
        x = range(len(d))
        ax.bar([i - 0.2 for i in x], d["private"], 0.4, color="#d95f02", label="private page tables")
        ax.bar([i + 0.2 for i in x], d["mshare"], 0.4, color="#1b9e77", label="mshare (shared page tables)")
        for i, (m, change) in enumerate(zip(d["mshare"], d["change_%"])):
            ax.annotate(f"{change:+.0f}%", (i + 0.2, m), ha="center", va="bottom", fontsize=9)
        ax.set_xticks(list(x), list(d["uarch"]))
        ax.set_title(title)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=2)
    fig.suptitle("Private vs mshare page tables (default experiment)")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("default", type=Path, help="results of the default experiment (results/default.h5)")
    ap.add_argument("flush_strategies", type=Path, help="results/flush_strategies.h5")
    ap.add_argument("-o", "--out", type=Path, default=Path("analysis"), help="output directory")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    print(flush_strategy_table(read_summary(args.flush_strategies)))
    data = private_vs_mshare(read_summary(args.default))
    data.to_csv(args.out / "private_vs_mshare.csv", index=False)
    plot_private_vs_mshare(data, args.out / "private_vs_mshare.png")


if __name__ == "__main__":
    main()
