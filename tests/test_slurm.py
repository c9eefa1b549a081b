"""The SLURM route: the profile, the comparison of two runs, and the one-node cluster script.

``workflow/tests/slurm_local.sh`` stands up a SLURM cluster on this machine and runs the demo workflow through
``workflow/profiles/slurm``; it needs root and Debian's ``slurm-wlm`` and ``munge`` installed (CI installs them),
and is skipped elsewhere.
"""

import csv
import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# compare_runs.py is a script beside the workflow, not a module of the package: loaded from its path.
_spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "workflow" / "tests" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_runs)

PROFILE = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())


def test_profile_sizes_no_job():
    """What a job needs is its rule's (so --default-resources on the command line cannot drop it): the profile's
    default resources only say where jobs go."""
    assert set(PROFILE["default-resources"]) == {"slurm_account", "slurm_partition"}
    assert "set-resources" not in PROFILE


def test_every_rule_sizes_its_jobs():
    for rules in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = rules.read_text()
        jobs = text.count("shell:")
        assert text.count("runtime=") == text.count("mem_mb=") == jobs, f"{rules.name}: a rule without its size"


def write_run(root, latency, seconds, runs=("measure/demo",)):
    """A run's directory as the workflow leaves it: a figure CSV, a record, a schedule, an MLflow store."""
    figures = root / "results" / "figures"
    figures.mkdir(parents=True)
    with (figures / "pruning.csv").open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerows([("model", "latency_ms", "search_time_s"), ("demo", latency, seconds)])
    metric = {"values": [latency], "steps": [0], "timestamps": [int(seconds * 1000)]}
    record = {
        "format": "ios-core/record",
        "id": str(seconds),
        "name": "measure/demo",
        "kind": "measure",
        "status": "FINISHED",
        "start_time": seconds,
        "params": {"model": "demo"},
        "tags": {"timestamp": str(seconds)},
        "metrics": {"latency_ms": metric, "search_time_s": metric},
    }
    (root / "results" / "record.json").write_text(json.dumps(record))
    schedule = {"format": "ios-core/schedule", "stages": [[latency]], "meta": {"search_seconds": seconds}}
    (root / "results" / "schedule.json").write_text(json.dumps(schedule))
    with sqlite3.connect(root / "mlflow.db") as db:
        db.execute("CREATE TABLE runs (name TEXT, status TEXT, lifecycle_stage TEXT)")
        db.executemany("INSERT INTO runs VALUES (?, 'FINISHED', 'active')", [(name,) for name in runs])


def test_runs_agree_but_for_wall_clock_times(tmp_path):
    write_run(tmp_path / "a", latency=0.5, seconds=1.0)
    write_run(tmp_path / "b", latency=0.5, seconds=2.0)
    assert compare_runs.differences(tmp_path / "a", tmp_path / "b") == []


def test_runs_differ_in_a_number_a_file_and_a_run(tmp_path):
    write_run(tmp_path / "a", latency=0.5, seconds=1.0)
    write_run(tmp_path / "b", latency=0.6, seconds=1.0, runs=("measure/demo", "figure/pruning"))
    (tmp_path / "b" / "results" / "extra.json").write_text("{}")
    assert compare_runs.differences(tmp_path / "a", tmp_path / "b") == [
        f"only in {tmp_path / 'b'}: results/extra.json",
        "differs: results/figures/pruning.csv",
        "differs: results/record.json",
        "differs: results/schedule.json",
        f"MLflow runs differ: 1 in {tmp_path / 'a'}, 2 in {tmp_path / 'b'}",
    ]


def cluster_unavailable():
    """Why the one-node cluster cannot be stood up here, or None."""
    if os.geteuid() != 0:
        return "needs root (it starts munged, slurmctld and slurmd)"
    missing = [tool for tool in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(tool) is None]
    if missing:
        return f"needs Debian's slurm-wlm and munge (apt-get install slurm-wlm munge): no {', '.join(missing)}"
    if Path("/etc/slurm/slurm.conf").exists():
        return "this machine has a SLURM configuration of its own (/etc/slurm/slurm.conf)"
    return None


@pytest.mark.slow
@pytest.mark.skipif(cluster_unavailable() is not None, reason=str(cluster_unavailable()))
def test_demo_through_a_one_node_cluster_matches_a_local_run():
    done = subprocess.run(
        ["bash", str(ROOT / "workflow" / "tests" / "slurm_local.sh")], capture_output=True, text=True, timeout=1500
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "slurm_local.sh: passed" in done.stdout
