"""Measure: simulated end to end (the sum of the analytical stage latencies), the engine only on a real GPU."""

import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from ios_core import gpu, models
from ios_core.config import compose
from ios_core.cost import CostSpec, DeviceProfile, build_cost, schedule_latency
from ios_core.measure import MeasureError, OutputError, run
from ios_core.reference import run_graph
from ios_core.schedule import greedy, save
from ios_core.timing import Timing
from ios_core.tracking import read
from ios_core.weights import make_weights


def config(*overrides):
    return compose("measure", ["tracking.mlflow=false", *overrides])


@pytest.fixture
def schedule_file(tmp_path):
    schedule = greedy(models.get("demo"))
    schedule = type(schedule)(schedule.graph, schedule.stages, {**schedule.meta, "batch": 1, "device": "h100",
                                                                "search_seconds": 0.5, "dp_states": 7})
    return save(schedule, tmp_path / "greedy.json")


def test_simulated_latency_is_the_sum_of_stage_latencies(schedule_file, tmp_path):
    out = tmp_path / "r.json"
    record = run(config("model=demo", "device=h100", "mode=simulated", "batch=2", f"schedule={schedule_file}",
                        f"out={out}"))
    graph, device = models.get("demo"), DeviceProfile.from_mapping(OmegaConf.to_container(config().device))
    expected = schedule_latency(build_cost(CostSpec(), device), graph, greedy(graph), 2)
    assert record.latest("median_ms") == pytest.approx(expected)
    assert sum(record.values("stage_latency_ms")) == pytest.approx(expected)
    assert all(0 <= u <= 100 for u in record.values("stage_utilization_pct"))
    assert record.tags["source"] == "simulated" and record.params["device_name"] == "H100"
    assert record.latest("search_time_s") == 0.5 and record.latest("dp_states") == 7
    assert read(out).id == record.id and record.artifacts == [str(schedule_file)]


def test_simulated_device_needs_no_mode(schedule_file):
    record = run(config("device=sim", f"schedule={schedule_file}"))
    assert record.tags["source"] == "simulated" and record.available


def test_autotuning_without_gpu_is_not_available(schedule_file):
    record = run(config("device=sim", "autotune=true", f"schedule={schedule_file}"))
    assert not record.available and "needs a GPU" in record.tags["reason"]
    assert record.params["opt"] == "greedy" and not record.values("latency_ms")


def test_unavailable_records_what_it_stands_for(tmp_path):
    record = run(config("device=h200", "unavailable=needs an H200", "+schedule_params.opt=both",
                        "+schedule_params.schedule_device=h200", f"schedule={tmp_path / 'missing.json'}"))
    assert not record.available and record.params["schedule_device"] == "h200" and record.params["opt"] == "both"


def test_schedule_is_required():
    with pytest.raises(MeasureError, match="schedule="):
        run(config("device=sim"))


def test_misspelt_key_is_rejected():
    with pytest.raises(Exception, match="shedule"):
        config("shedule=x.json")


def test_real_device_without_gpu_is_an_error(schedule_file, monkeypatch):
    monkeypatch.setattr(gpu, "device_info", lambda index=0: {"available": False, "reason": "no NVML"})
    with pytest.raises(MeasureError, match="none is usable here"):
        run(config("device=h100", f"schedule={schedule_file}"))


def test_another_gpu_than_the_device_is_not_available(schedule_file, monkeypatch):
    monkeypatch.setattr(gpu, "device_info", lambda index=0: {"available": True, "name": "NVIDIA H100 80GB HBM3"})
    record = run(config("device=h200", f"schedule={schedule_file}"))
    assert not record.available and "needs a GPU matching device=h200" in record.tags["reason"]


@dataclass
class FakeMeasurement:
    samples: tuple = (1.0, 1.2, 1.1)
    timing: Timing = Timing(warmup=2, number=6, repeat=3)
    layout: str = "nhwc"
    device: dict = field(default_factory=lambda: {"name": "NVIDIA H100 80GB HBM3", "driver": "580", "cudnn": "9.19"})
    clocks_before: dict = field(default_factory=lambda: {"sm_mhz": 1980, "mem_mhz": 2619})
    clocks_after: dict = field(default_factory=lambda: {"sm_mhz": 1980, "throttle": []})


class FakePlan:
    """A plan that computes what the float64 reference does (or ``wrong`` times it) and records its closing."""

    def __init__(self, graph, weights, calls, wrong=1.0):
        self.graph, self.weights, self.calls, self.wrong = graph, weights, calls, wrong

    def __call__(self, x):
        return self.wrong * run_graph(self.graph, x, self.weights)

    def close(self):
        self.calls["closed"] = True


class StageAlone:
    kind = "measured"

    def stage_latency(self, graph, stage, batch):
        return 0.01


def fake_engine(monkeypatch, calls, wrong=1.0):
    """The engine and the measured stage cost as fakes that record what they were given."""
    from ios_core import engine
    from ios_core import measure as measure_module

    def build_plan(graph, schedule, batch, precision, weights, options):
        calls["plan"] = (batch, precision, weights, options)
        return FakePlan(graph, weights, calls, wrong)

    monkeypatch.setattr(engine, "PlanOptions", lambda autotune, barrier: {"autotune": autotune, "barrier": barrier})
    monkeypatch.setattr(gpu, "device_info", lambda index=0: {"available": True, "name": "NVIDIA H100 80GB HBM3"})
    monkeypatch.setattr(engine, "build_plan", build_plan)
    monkeypatch.setattr(engine, "latency",
                        lambda plan, timing: calls.setdefault("timing", timing) and FakeMeasurement())
    monkeypatch.setattr(measure_module, "build_cost",
                        lambda spec, device: calls.setdefault("cost", spec) and StageAlone())


def test_real_device_is_timed_by_the_engine(schedule_file, monkeypatch):
    """The engine is called only for a real device, with the precision and autotuning asked for, on the model's
    weights; its output is checked; then each stage is timed alone by the measured stage cost, with the same
    autotuning and weights."""
    calls = {}
    fake_engine(monkeypatch, calls)
    record = run(config("device=h100", "autotune=true", "precision=fp32", f"schedule={schedule_file}"))
    batch, precision, weights, options = calls["plan"]
    assert (batch, precision, options) == (1, "fp32", {"autotune": True, "barrier": "exact"})  # fp32 allows TF32
    assert weights.keys() == make_weights(models.get("demo")).keys()  # a built-in model: its synthetic weights
    assert calls["closed"] and calls["cost"].kind == "measured" and calls["cost"].autotune
    assert calls["cost"].weights is weights
    assert calls["timing"] == calls["cost"].timing == Timing()  # conf/measure.yaml: IOS's 2, 6, 6
    stages = len(record.values("stage_latency_ms"))
    assert stages > 1 and record.values("stage_latency_ms") == [0.01] * stages
    assert len(record.values("stage_utilization_pct")) == stages
    assert record.tags["source"] == "measured" and record.values("latency_ms") == [1.0, 1.2, 1.1]
    assert record.latest("median_ms") == pytest.approx(1.1) and record.latest("rel_error") == 0.0
    assert record.params["gpu_name"] == "NVIDIA H100 80GB HBM3" and record.params["variant"] == "autotune"


def test_an_onnx_network_runs_on_the_engine_with_the_file_s_own_weights(tmp_path, monkeypatch):
    """Not seed-0 synthetic weights: the plan and the stage cost get the file's, and the check is against them."""
    from ios_core.onnx_io import Network, load_onnx, save_onnx

    path, demo = tmp_path / "demo.onnx", models.get("demo")
    save_onnx(Network(demo, make_weights(demo, seed=7)), path)
    graph = load_onnx(path).graph
    schedule = save(greedy(graph), tmp_path / "greedy.json")
    calls = {}
    fake_engine(monkeypatch, calls)
    record = run(config("model=onnx", f"model.path={path}", "device=h100", f"schedule={schedule}"))
    weights = calls["plan"][2]
    expected = load_onnx(path).weights
    assert weights.keys() == expected.keys() and calls["cost"].weights is weights
    assert all(np.array_equal(weights[n][k], expected[n][k]) for n in expected for k in expected[n])
    first = next(iter(expected))
    assert not np.allclose(weights[first]["weight"], make_weights(graph)[first]["weight"])  # not seed 0's
    assert record.latest("rel_error") == 0.0 and record.params["model"] == "demo"  # named by the file, not "onnx"


def test_an_engine_that_computes_something_else_fails_the_run(schedule_file, monkeypatch, tmp_path):
    calls, out = {}, tmp_path / "wrong.json"
    fake_engine(monkeypatch, calls, wrong=1.5)
    with pytest.raises(OutputError, match=r"relative L2 error 5\.00e-01 > 1e-02 \(fp32\)"):
        run(config("device=h100", f"schedule={schedule_file}", f"out={out}"))
    (failed,) = tmp_path.glob("wrong.*.failed.json")
    assert not out.exists() and read(failed).status == "FAILED"
    assert calls["closed"] and "cost" not in calls  # no stage was timed after it


def test_the_check_can_be_left_out(schedule_file, monkeypatch):
    calls = {}
    fake_engine(monkeypatch, calls, wrong=1.5)
    record = run(config("device=h100", "check=false", f"schedule={schedule_file}"))
    assert record.available and record.latest("rel_error") is None


def test_command_line(schedule_file, tmp_path):
    import subprocess

    out = tmp_path / "cli.json"
    src = Path(__file__).resolve().parents[1] / "src"
    done = subprocess.run([sys.executable, "-m", "ios_core.measure", "model=demo", "device=sim",
                           f"schedule={schedule_file}", f"out={out}", "tracking.mlflow=false"],
                          capture_output=True, text=True, env={"PYTHONPATH": str(src), "PATH": ""}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "ms (simulated, median of 1)" in done.stdout and read(out).status == "FINISHED"
