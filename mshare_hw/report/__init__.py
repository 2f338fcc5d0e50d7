"""`mshare-hw report`: tables (Markdown, CSV) and PNG plots of a results file.

Only the plots the file has data for are drawn:

* ``pt_bytes_vs_processes.png`` — measured page-table memory vs number of processes, private vs
  mshare (when the file has several process counts);
* ``pt_bytes_projection.png`` — the analytic page-table memory of the shared region for 1..2000
  processes (`mshare_hw.analysis.ptmem`), when the region's size can be read from the configuration;
* ``private_vs_mshare.png`` — page faults, walk cycles and DRAM walk reads, private vs mshare, per uarch;
* ``shootdown_cost.png`` — initiator + responder cycles per invalidation event, per strategy, against
  the number of sharers and CPUs;
* ``collateral_damage.png`` — STLB misses and walk cycles of the processes that do not map the shared
  region ("bystanders"), with events relative to the same run without events, per strategy;
* ``stale_translations.png`` — uses of stale translations per strategy (0 = safe);
* ``asid_recycles.png`` — PCID/ASID slot recycles vs processes per CPU;
* ``tlb_reach.png`` — ns per load of the one-load-per-page pointer chase against its working set, one
  line per timing/virtualization mode, one panel per uarch, its TLB and cache capacities marked.

Tables: ``summary.csv`` (every summary column), ``summary.md`` (the headline columns),
``private_vs_mshare.{csv,md}``, ``shootdown.{csv,md}``,
``secondary_mmu.{csv,md}`` (runs with devices), ``reach_steps.{csv,md}`` (the steps of the TLB-reach
curves, `report.reach`); ``report.md`` puts tables and plots together.

Modules: `frame` reads a results file (through `mshare_hw.results`) into the report's table, `tables`
derives the tables, `plots` draws (each plot also returns the table of what it drew), `style` holds the
colours, labels and number formats.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mshare_hw.config.errors import ConfigError
from mshare_hw.report.frame import load_report_frame
from mshare_hw.report.plots import PLOTS, Plot
from mshare_hw.report.reach import reach_curves, reach_steps
from mshare_hw.report.style import and_join, markdown, save, uarchs
from mshare_hw.report.tables import comparison_table, headline, pairs, secondary_table, shootdown_table

__all__ = ["report"]


def report(results: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the tables and plots of `results` into `out_dir`; returns the files written."""
    results, out_dir = Path(results), Path(out_dir)
    try:
        summary, df, attrs = load_report_frame(results)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"{results}: cannot read results ({e})") from None
    if df.empty:
        raise ConfigError(f"{results}: no runs")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in [p.name for p in PLOTS]:  # plots of an earlier report the data no longer supports
        (out_dir / f"{name}.png").unlink(missing_ok=True)
    written: list[Path] = []

    summary.to_csv(out_dir / "summary.csv", index=False)
    written.append(out_dir / "summary.csv")
    head = headline(df)
    (out_dir / "summary.md").write_text(markdown(head) + "\n")
    written.append(out_dir / "summary.md")

    tables: list[tuple[str, str, pd.DataFrame]] = []
    comp = comparison_table(pairs(df))
    if len(comp):
        tables.append(("private_vs_mshare", "Private vs mshare page tables (same configuration)", comp))
    shoot = shootdown_table(df)
    if len(shoot):
        tables.append(("shootdown", "Invalidation events: cost per event, collateral damage, safety", shoot))
    secondary = secondary_table(df)
    if len(secondary):
        title = "Secondary MMUs: notifier calls per event, their cost, and stale device translations"
        tables.append(("secondary_mmu", title, secondary))
    steps = reach_steps(reach_curves(df))
    if len(steps):
        tables.append(("reach_steps", "TLB reach: the steps of each curve and the nearest capacity", steps))
    for name, _, t in tables:
        t.to_csv(out_dir / f"{name}.csv", index=False)
        (out_dir / f"{name}.md").write_text(markdown(t) + "\n")
        written += [out_dir / f"{name}.csv", out_dir / f"{name}.md"]

    plots: list[tuple[Plot, Path]] = []
    for plot in PLOTS:
        drawn = plot.draw(df)
        if drawn is not None:
            p = save(drawn.figure, out_dir / f"{plot.name}.png")
            plots.append((plot, p))
            written.append(p)

    experiment = str(attrs.get("experiment", "")) or results.stem
    version = str(attrs.get("tool_version", "?"))
    lines = [
        f"# Report: `{results.name}` (experiment `{experiment}`)",
        "",
        f"{len(df)} runs on {and_join(uarchs(df))}; written by mshare-hw {version}. "
        f"Regenerate with `mshare-hw report {results} -o {out_dir}`. Every summary column is in "
        "[summary.csv](summary.csv); the HDF5 schema is in the top-level README.",
        "",
    ]
    for plot, p in plots:
        lines += [f"## {plot.caption}", "", f"![{plot.caption}]({p.name})", ""]
    for name, title, t in tables:
        lines += [f"## {title}", "", f"[{name}.csv]({name}.csv)", "", markdown(t), ""]
    lines += ["## Summary (headline columns)", "", markdown(head), ""]
    (out_dir / "report.md").write_text("\n".join(lines))
    written.append(out_dir / "report.md")
    return written
