"""One summary row per run: the stable columns first (analysis scripts rely on them), then extra columns."""

from __future__ import annotations

import numpy as np

from mshare_hw.config.uarch import load_uarch, resolve_pti
from mshare_hw.counters import COUNTERS, INDEX, LEVEL_NAMES

# Stable: analysis scripts depend on these names and their order. Add, never rename.
STABLE_COLUMNS: tuple[str, ...] = (
    "run_id", "experiment", "uarch", "pt_config", "strategy", "n_cpus", "n_processes", "accesses",
    "cycles", "l1_itlb_misses", "l1_dtlb_misses", "stlb_misses", "walks", "walk_cycles", "walk_reads_l1d",
    "walk_reads_l2", "walk_reads_llc", "walk_reads_dram", "page_faults", "fault_cycles", "pt_bytes",
    "context_switches", "asid_recycles", "cr3_flushes", "ipis_sent", "invlpg", "invpcid", "invlpgb",
    "tlbsync", "full_flushes", "shootdown_cycles_initiator", "shootdown_cycles_responder",
    "collateral_entries_flushed", "stale_translations",
)  # fmt: skip
EXTRA_COLUMNS: tuple[str, ...] = (
    "share_level", "seed", "events_fired", "ipis_received", "makespan_cycles", "link_faults", "pages_mapped",
    "stlb_hits", "translation_cycles",
    "pwc_hits_pd", "pwc_hits_pdpt", "pwc_hits_pml4", "pwc_hits_pml5", "walk_reads", "asid_slot_hits",
    "asid_slot_misses", "lazy_catchup_flushes", "pt_bytes_pt", "pt_bytes_pd", "pt_bytes_pdpt", "pt_bytes_pml4",
    "pt_bytes_pml5", "bystander_stlb_misses", "bystander_walks", "bystander_walk_cycles", "bystander_cycles",
    "notifier_policy", "devices", "device_accesses", "iotlb_hits", "iotlb_misses", "device_walks",
    "device_walk_cycles", "device_faults", "mirror_hits", "mirror_misses", "iotlb_invalidations",
    "iotlb_invalidation_cycles", "mirror_invalidations", "mirror_invalidation_cycles", "device_stale_translations",
    "sleep_every_accesses", "sleeps", "sleep_cycles", "threads_per_process", "global_asid_assignments",
    "pti", "pti_cr3_switches", "pti_user_flushes", "detach_flush", "pool_page_size", "pmd_shares",
    "pmd_unshares",
)  # fmt: skip
# summary column <- secondary-MMU counter (mshare_hw.engine.secondary.DEVICE_COUNTERS), summed over devices
DEVICE_COLUMNS = {
    "device_accesses": "accesses", "iotlb_hits": "iotlb_hits", "iotlb_misses": "iotlb_misses",
    "device_walks": "walks", "device_walk_cycles": "walk_cycles", "device_faults": "faults",
    "mirror_hits": "mirror_hits", "mirror_misses": "mirror_misses",
    "device_stale_translations": "stale_translations",
}  # fmt: skip
# summary column <- per-process notifier counter (mshare_hw.engine.secondary.PROC_COUNTERS), summed
NOTIFIER_COLUMNS = (
    "iotlb_invalidations", "iotlb_invalidation_cycles", "mirror_invalidations", "mirror_invalidation_cycles",
)  # fmt: skip
# Processes that do not map the events' region: what an invalidation strategy costs the uninvolved.
BYSTANDER_COUNTERS = ("stlb_misses", "walks", "walk_cycles", "cycles")
STRING_COLUMNS = {
    "run_id", "experiment", "uarch", "pt_config", "strategy", "share_level", "notifier_policy", "pti", "detach_flush",
    "pool_page_size",
}  # fmt: skip


def summary_row(run_id: str, exp, result: dict, n_processes: int, bystanders: list[int] | None = None) -> dict:
    """`exp` is the resolved (single-point) Experiment; `result` what a driver returned; `bystanders` the
    processes that do not map the events' region."""
    totals = result["cpu_counters"].sum(axis=0)
    row: dict = {
        "run_id": run_id,
        "experiment": exp.name,
        "uarch": exp.uarch,
        "pt_config": exp.pt_config,
        "strategy": (exp.strategy if exp.pt_config == "mshare" else "linux") if exp.events.enabled else "none",
        "share_level": exp.share_level if exp.pt_config == "mshare" else "none",
        "n_cpus": exp.machine.n_cpus,
        "n_processes": n_processes,
        "seed": exp.seed,
    }
    for name in COUNTERS:
        row[name] = int(totals[INDEX[name]])
    # every fault a process takes, the mshare link faults included (also reported on their own)
    row["page_faults"] = row["page_faults"] + row["link_faults"]
    pages = result["pt_pages"]
    for level, lname in LEVEL_NAMES.items():
        row[f"pt_bytes_{lname}"] = int(pages[level]) * 4096
    row["pt_bytes"] = int(pages.sum()) * 4096
    row["events_fired"] = int(result.get("events_fired", 0))
    by = result["proc_counters"][bystanders or []]
    for name in BYSTANDER_COUNTERS:
        row[f"bystander_{name}"] = int(by[:, INDEX[name]].sum()) if len(by) else 0
    row["makespan_cycles"] = int(np.max(result["clocks"])) if len(result["clocks"]) else 0
    # the sleeping-clients axis of a generated workload (a manifest's sleeps show in the counters only)
    row["sleep_every_accesses"] = int(exp.workload.params.get("sleep_every_accesses", 0))
    # threads per client process of a generated workload (n_processes counts every thread)
    row["threads_per_process"] = int(exp.workload.params.get("threads_per_process", 1))
    # the database generator's buffer-pool page size ("" for other workloads): the default experiment's variants
    db = exp.workload.generator == "database"
    row["pool_page_size"] = str(exp.workload.params.get("pool_page_size", "4K")) if db else ""
    # page-table isolation as the run had it (machine.pti resolved against the uarch: "auto" follows `meltdown`)
    row["pti"] = "on" if resolve_pti(exp.machine.pti, load_uarch(exp.uarch)) else "off"
    # how an mshare detach flushed (private page tables unmap through Linux's own path: "none", like strategy)
    row["detach_flush"] = exp.detach_flush if exp.pt_config == "mshare" and exp.events.enabled else "none"
    _secondary_columns(row, exp, result)
    return {k: row[k] for k in STABLE_COLUMNS + EXTRA_COLUMNS}


def _secondary_columns(row: dict, exp, result: dict) -> None:
    from mshare_hw.engine.secondary import DEVICE_COUNTERS, PROC_COUNTERS

    names = result.get("device_names", [])
    row["devices"] = len(names)
    if not names:
        row["notifier_policy"] = "none"
    else:
        row["notifier_policy"] = exp.notifier_policy if exp.pt_config == "mshare" else "own_mm"
    dev = np.asarray(result.get("device_counters", np.zeros((0, len(DEVICE_COUNTERS)))))
    for col, counter in DEVICE_COLUMNS.items():
        row[col] = int(dev[:, DEVICE_COUNTERS.index(counter)].sum()) if len(dev) else 0
    per_proc = np.asarray(result.get("secondary_proc_counters", np.zeros((0, len(PROC_COUNTERS)))))
    for col in NOTIFIER_COLUMNS:
        row[col] = int(per_proc[:, PROC_COUNTERS.index(col)].sum()) if len(per_proc) else 0


def summary_dtype() -> np.dtype:
    import h5py

    fields = []
    for name in STABLE_COLUMNS + EXTRA_COLUMNS:
        fields.append((name, h5py.string_dtype("utf-8") if name in STRING_COLUMNS else np.int64))
    return np.dtype(fields)
