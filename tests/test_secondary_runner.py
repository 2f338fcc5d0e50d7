"""Secondary MMUs through the experiment file, the runner and the results file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mshare_hw.config.errors import ConfigError
from mshare_hw.config.experiment import Experiment, expand, experiments_dir, load_experiment
from mshare_hw.engine.secondary import DEVICE_COUNTERS, PROC_COUNTERS
from mshare_hw.results.hdf5 import load_run, load_summary
from mshare_hw.runner import WorkloadCache, check_point, prepare_point, run_experiment


def with_device(pt_config: str, policy: str, device: dict | None = None, **extra: Any) -> Experiment:
    """4 clients on 2 CPUs over a 64-page pool; at global access 5000 one zap of all 64 pages. The NIC,
    bound to client 1, reads pages 0..7 in bursts of 4 every 500 accesses, so by access 1000 all 8 are in
    its 64-entry IOTLB and every later burst hits them."""
    dev = {"name": "nic", "kind": "iommu", "process": 1, "region": "buffer_pool", "pattern": "sequential",
           "footprint_pages": 8, "period_accesses": 500, "burst": 4}  # fmt: skip
    dev.update(device or {})
    data = {
        "name": "sec",
        "pt_config": pt_config,
        "strategy": "flush_all",
        "notifier_policy": policy,
        "machine": {"n_cpus": 2},
        "workload": {
            "generator": "database",
            "params": {"n_processes": 4, "accesses_per_process": 20_000, "pool_bytes": "256KiB"},
        },
        "events": {"enabled": True, "at_accesses": [5000], "pages": [64], "kinds": {"zap": 1.0}, "initiator": 0},
        "devices": [dev],
    }
    data.update(extra)
    return Experiment.model_validate(data)


def run_one(tmp_path: Path, exp: Experiment) -> tuple[dict, Path]:
    out = tmp_path / f"{exp.pt_config}-{exp.notifier_policy}.h5"
    (row,) = run_experiment(exp, out)
    return row, out


def test_policies_end_to_end(tmp_path: Path):
    host, host_file = run_one(tmp_path, with_device("mshare", "host_only"))
    fwd, _ = run_one(tmp_path, with_device("mshare", "forward_to_sharers"))
    priv, _ = run_one(tmp_path, with_device("private", "host_only"))
    for row in (host, fwd, priv):
        assert row["events_fired"] == 1 and row["devices"] == 1
        assert row["device_accesses"] == 4 * (80_000 // 500)  # bursts at 500, 1000, ..., < 80000
    # host_only: nothing reaches the NIC; its 8 cached pages were zapped -> every later hit is stale
    assert host["notifier_policy"] == "host_only"
    assert host["iotlb_invalidations"] == 0 and host["device_stale_translations"] > 0
    assert host["stale_translations"] == host["device_stale_translations"]  # flush_all: CPUs are coherent
    # forwarded: one command (one flush_tlb_mm_range of the host, one device on a sharer); coherent
    assert fwd["notifier_policy"] == "forward_to_sharers"
    assert fwd["iotlb_invalidations"] == 1 and fwd["device_stale_translations"] == fwd["stale_translations"] == 0
    # private: the zap flushes each of the 4 mms; only client 1's has a device -> one command
    assert priv["notifier_policy"] == "own_mm"
    assert priv["iotlb_invalidations"] == 1 and priv["stale_translations"] == 0
    assert fwd["iotlb_invalidation_cycles"] == priv["iotlb_invalidation_cycles"] == 3000  # uarch ESTIMATE

    run = load_run(host_file, load_summary(host_file).run_id[0])
    devices = run["devices"]
    assert list(devices.index) == ["nic"] and devices.loc["nic", "kind"] == "iommu"
    assert devices.loc["nic", "process"] == run["proc_counters"].index[1]
    assert list(devices.columns[2:]) == list(DEVICE_COUNTERS)
    assert devices.loc["nic", "stale_translations"] == host["device_stale_translations"]
    assert list(run["proc_counters"].columns[-len(PROC_COUNTERS) :]) == list(PROC_COUNTERS)
    assert run["proc_counters"]["device_stale_translations"].tolist() == [0, host["device_stale_translations"], 0, 0]
    assert len(run["device_stale_examples"]) > 0 and set(run["device_stale_examples"]["device"]) == {0}


def test_rerun_keeps_runs_with_devices(tmp_path: Path):
    exp = with_device("mshare", "host_only")
    first, out = run_one(tmp_path, exp)
    again, _ = run_one(tmp_path, exp)  # read back from the file, not replayed
    assert again == first
    run = load_run(out, first["run_id"])
    assert run["devices"].loc["nic", "accesses"] == first["device_accesses"]


def test_mirror_end_to_end(tmp_path: Path):
    kw = {"kind": "kvm_mirror"}
    host, _ = run_one(tmp_path, with_device("mshare", "host_only", kw))
    fwd, _ = run_one(tmp_path, with_device("mshare", "forward_to_sharers", kw))
    assert host["mirror_invalidations"] == 0 and host["device_stale_translations"] > 0
    # forwarded: invalidate_range_start(host) reaches client 1's mm once
    assert fwd["mirror_invalidations"] == 1 and fwd["device_stale_translations"] == 0
    assert host["iotlb_hits"] == host["iotlb_misses"] == 0 and host["mirror_hits"] > 0


@pytest.mark.parametrize(
    "device,message",
    [
        ({"process": 9}, "devices[0] ('nic').process: process 9 does not exist"),
        ({"region": "nope"}, "devices[0] ('nic').region: the workload has no region 'nope'"),
        ({"region": "heap0"}, "process 1 does not map region 'heap0'"),
        ({"first_page": 60}, "pages 60..67 lie outside region 'buffer_pool' (64 pages)"),
    ],
)
def test_bad_devices_are_config_errors(device: dict, message: str):
    exp = with_device("mshare", "host_only", device)
    (point,) = expand(exp)
    workload, _, params = prepare_point(point, WorkloadCache())
    with pytest.raises(ConfigError) as e:
        check_point(point, workload, params)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "device,key",
    [
        ({"kind": "gpu"}, "devices[0].kind"),
        ({"iotlb_entries": 64}, "devices[0]"),
        ({"iotlb_entries": 60, "iotlb_ways": 8}, "devices[0]"),
        ({"burst": 0}, "devices[0].burst"),
        ({"colour": "red"}, "devices[0].colour"),
    ],
)
def test_bad_device_keys_name_their_key(tmp_path: Path, device: dict, key: str):
    lines = ['name = "x"', "[[devices]]", 'name = "nic"']
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in device.items()]
    p = tmp_path / "x.toml"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as e:
        load_experiment(p)
    assert key in str(e.value) and "x.toml" in str(e.value)


def test_duplicate_device_names(tmp_path: Path):
    p = tmp_path / "x.toml"
    p.write_text('name = "x"\n[[devices]]\nname = "a"\n[[devices]]\nname = "a"\n')
    with pytest.raises(ConfigError, match="name 'a' is used twice"):
        load_experiment(p)


def test_bad_notifier_policy(tmp_path: Path):
    p = tmp_path / "x.toml"
    p.write_text('name = "x"\nnotifier_policy = "everyone"\n')
    with pytest.raises(ConfigError, match="notifier_policy"):
        load_experiment(p)


def test_shipped_experiment_grid():
    exp = load_experiment(experiments_dir() / "secondary_mmu.toml")
    points = expand(exp)
    # per uarch: private x host_only x flush_all (1) + mshare x 2 policies x strategies (5 on Skylake-SP
    # without INVLPGB, 6 on Zen 3)
    assert len(points) == (1 + 2 * 5) + (1 + 2 * 6)
    assert {(p.devices[0].kind, p.devices[0].process) for p in points} == {("iommu", 1)}
    assert {p.notifier_policy for p in points if p.pt_config == "mshare"} == {"host_only", "forward_to_sharers"}


def test_uarch_secondary_section_is_checked(tmp_path: Path):
    from mshare_hw.config.uarch import load_uarch, uarch_dir

    text = (uarch_dir() / "skylake_sp.toml").read_text()
    assert load_uarch("skylake_sp").secondary.iotlb_invalidation_cycles == 3000
    p = tmp_path / "bad.toml"
    p.write_text(text.replace("iotlb_ways = 4", "iotlb_ways = 7"))
    with pytest.raises(ConfigError, match=r"bad\.toml.*secondary.*iotlb_ways \(7\) must divide iotlb_entries \(64\)"):
        load_uarch(p)
