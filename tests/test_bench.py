"""bench/: what a benchmark measures is the record the workflow's commands write, with their params, tags, metrics."""

import importlib.util
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ios_core import baseline, measure, models
from ios_core.baselines import Measurement
from ios_core.config import compose
from ios_core.engine import PlanOptions
from ios_core.figures import frame
from ios_core.schedule import load, save, sequential
from ios_core.timing import Timing
from ios_core.tracking import read, write
from ios_core.tracking.adapters import search_metrics

ROOT = Path(__file__).resolve().parents[1]


def bench_module(name: str):
    """``bench/<name>.py`` (a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


records = bench_module("records")


@dataclass(frozen=True)
class EngineMeasurement:
    """The fields of `ios_core.engine.latency`'s measurement (its module needs a GPU to import)."""

    ms: float
    samples: tuple[float, ...]
    timing: Timing = Timing(warmup=10, number=20, repeat=2)
    batch: int = 1
    precision: str = "fp32"
    layout: str = "nhwc"
    graph: str = "inception_v3"
    device: dict[str, Any] = field(default_factory=lambda: {"name": "NVIDIA H200", "driver": "580", "cudnn": "9"})
    clocks_before: dict[str, Any] = field(default_factory=lambda: {"sm_mhz": 1980, "mem_mhz": 3201})
    clocks_after: dict[str, Any] = field(default_factory=lambda: {"sm_mhz": 1970, "throttle": []})


def measure_params(tmp_path) -> set[str]:
    """The params ``python -m ios_core.measure`` records of a schedule, as run here (simulated) and on a GPU."""
    path = save(sequential(models.get("demo")), tmp_path / "sequential.json")
    cfg = compose("measure", ["tracking.mlflow=false", "model=demo", "device=h100", "mode=simulated",
                              f"schedule={path}", f"out={tmp_path / 'r.json'}"])
    simulated = measure.run(cfg).params.keys() - {"device_name", "utilization_metric"}
    return simulated | measure.engine_params(EngineMeasurement(1.0, (1.0,))).keys()


def test_a_schedule_timed_by_a_benchmark_is_the_record_measure_writes(tmp_path):
    path = "schedules/inception_v3_b1_both_h100_fp32_measured.json"
    schedule = load(ROOT / path)
    rounds = [EngineMeasurement(0.56, (0.55, 0.56)), EngineMeasurement(0.58, (0.58, 0.59))]
    run = records.Run("inception_v3", 1, "h200", tags={"benchmark": "cross_device"})
    record = records.measure_record(run, schedule, path, rounds, PlanOptions(), {"arena_bytes": 1.5e7})
    assert record.params.keys() >= measure_params(tmp_path)
    assert record.kind == "measure" and record.status == "FINISHED" and record.available
    assert record.tags["source"] == "measured" and record.tags["benchmark"] == "cross_device"
    assert record.params["schedule_device"] == "h100" and record.params["device"] == "h200"
    assert record.params["variant"] == "autotune" and record.params["rounds"] == "2"
    assert record.params["sm_mhz_before"] == "1980" and record.params["sm_mhz_after"] == "1970"
    assert record.values("latency_ms") == [0.55, 0.56, 0.58, 0.59]
    assert record.latest("median_ms") == statistics.median([0.56, 0.58]) and record.latest("arena_bytes") == 1.5e7
    assert {name: record.latest(name) for name in search_metrics(schedule.meta)} == search_metrics(schedule.meta)
    assert read(write(record, tmp_path / records.file_name(record, "_h100_on_h200"))) == record
    cell = frame([record]).iloc[0]
    assert (cell["schedule_device"], cell["device"], cell["opt"], cell["r"]) == ("h100", "h200", "both", 3)
    assert records.file_name(record, "_h100_on_h200") == "inception_v3_b1_both_h100_on_h200.json"


def test_a_framework_timed_by_a_benchmark_is_the_record_baseline_writes(tmp_path):
    cfg = compose("baseline", ["tracking.mlflow=false", "framework=torch_compile", "model=demo", "device=sim",
                               f"out={tmp_path / 'b.json'}"])
    baseline.run(cfg)
    ours = read(tmp_path / "b.json")
    timing = Timing(warmup=10, number=20, repeat=3)
    m = Measurement("torch_compile", "inception_v3", 1, "measured", True, device="NVIDIA H200",
                    latencies_ms=[0.9, 0.95, 0.93], median_ms=0.93, precision="fp32", clock="cuda-events",
                    versions={"torch": "2.11"})
    record = records.baseline_record(records.Run("inception_v3", 1, "h200"), m, timing, {"error_vs_torch_eager": 1e-4})
    assert record.params.keys() == ours.params.keys() and record.tags.keys() >= ours.tags.keys() - {"version.python"}
    assert record.tags["available"] == "true" and record.tags["device"] == "NVIDIA H200"
    assert record.latest("median_ms") == 0.93 and record.latest("error_vs_torch_eager") == 1e-4
    assert records.file_name(record) == "torch_compile_inception_v3_b1.json"
    assert frame([record]).iloc[0]["framework"] == "torch_compile"
