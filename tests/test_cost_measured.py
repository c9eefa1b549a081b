"""The measured cost up to the GPU boundary: stage lowering, the profiler, caching, the factory, the bound.

A fake backend stands in for the GPU (``FakeBackend``: a latency from the program's tasks and
streams), so everything but the capture and the timed replays runs here; the GPU half is tested
in ``test_cost_measured_gpu.py`` through the device tool.
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from ios_core import engine, models
from ios_core.config import compose
from ios_core.cost import CachedCost, CostSpec, CostUnavailableError, DeviceProfile, SimulatedCost, build_cost
from ios_core.cost import factory as cost_factory
from ios_core.cost.bound import critical_path
from ios_core.cost.measured import PROFILE_REVISION, MeasuredCost, MeasureSettings, measured_space
from ios_core.engine import ConvTask, PlanOptions
from ios_core.engine import profile as engine_profile
from ios_core.engine.profile import ProfileError, SerialBackend, StageProfiler
from ios_core.optimize import run
from ios_core.optimizer import OptimizerOptions, search
from ios_core.schedule import Group, Stage, greedy, sequential
from ios_core.timing import Timing, TimingError
from ios_core.weights import make_weights

ENVIRONMENT = {"name": "NVIDIA H100 80GB HBM3", "driver": "580.159.04", "cuda": "13.0", "cudnn": "9.19.0"}


class FakeBackend(SerialBackend):
    """Times a program as 1 us per task plus 2 us per extra stream; counts its calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls, self.fail = 0, fail
        self.timings: list[Timing] = []

    def time(self, program, timing) -> float:
        self.calls += 1
        self.timings.append(timing)
        if self.fail:
            raise RuntimeError("cuDNN says no")
        return 1e-3 * len(program.tasks) + 2e-3 * (program.streams - 1)


def one(name: str) -> Stage:
    return Stage((Group((name,)),))


def fake_cost(backend: FakeBackend, settings: MeasureSettings | None = None) -> MeasuredCost:
    def factory(graph, batch):
        return StageProfiler(graph, batch, backend, Timing(warmup=2, number=6, repeat=6))

    return MeasuredCost(settings or MeasureSettings(), factory, ENVIRONMENT)


def test_a_stage_is_lowered_alone_and_timed_by_the_backend():
    graph, backend = models.get("demo"), FakeBackend()
    profiler = StageProfiler(graph, 2, backend)
    stage = Stage((Group(("conv3",)), Group(("conv4",))))
    program = profiler.program(stage)
    assert program.inputs == ("pool1",) and len(program.stages) == 1 and program.streams == 2
    assert profiler.latency(stage) == pytest.approx(1e-3 * len(program.tasks) + 2e-3)
    assert backend.calls == 1 and backend.timings == [Timing()]  # IOS's 2, 6, 6 by default
    assert profiler.stats.stages == 1 and profiler.stats.lower_s > 0


def test_a_merge_is_one_wider_convolution():
    graph = models.get("demo")
    program = StageProfiler(graph, 1, FakeBackend()).program(Stage((Group(("conv2", "conv3"), merge=True),)))
    convs = [t for t in program.tasks if isinstance(t, ConvTask)]
    assert len(convs) == 1 and convs[0].conv.out_channels == 16 and convs[0].weights.nodes == ("conv2", "conv3")


def test_a_stage_with_no_task_costs_nothing_and_never_reaches_the_backend():
    graph, backend = models.get("inception_v3"), FakeBackend()
    profiler = StageProfiler(graph, 1, backend)
    free = [n.name for n in graph.operators if not profiler.program(one(n.name)).tasks]
    assert free, "Inception's concatenations are written in place: their identities have no task"
    assert profiler.latency(one(free[0])) == 0.0
    assert backend.calls == 0 and profiler.stats.empty == 1


def test_a_failing_stage_costs_infinity_and_many_failures_stop_the_search():
    graph = models.get("demo")
    profiler = StageProfiler(graph, 1, FakeBackend(fail=True))
    assert math.isinf(profiler.latency(one("conv1")))
    assert profiler.stats.failed == 1 and "cuDNN says no" in profiler.stats.errors[0]
    assert "chain conv1" in profiler.stats.errors[0]
    with pytest.raises(ProfileError, match="stages failed to profile"):
        for _ in range(engine_profile.MAX_FAILURES):
            profiler.latency(one("conv1"))


def test_a_batch_of_stages_keeps_its_order_around_free_and_failing_stages():
    graph = models.get("inception_v3")

    class FailsOnPools(FakeBackend):
        def time(self, program, timing):
            if any("pool" in str(task) for task in program.tasks):
                raise RuntimeError("no pools today")
            return super().time(program, timing)

    backend = FailsOnPools()
    profiler = StageProfiler(graph, 1, backend)
    free = next(n.name for n in graph.operators if not profiler.program(one(n.name)).tasks)
    pool = next(n.name for n in graph.operators if type(n.op).__name__ == "Pool")
    conv = graph.operators[0].name
    ms = profiler.latencies([one(conv), one(free), one(pool), one(conv)])
    assert ms[0] == ms[3] > 0 and ms[1] == 0.0 and math.isinf(ms[2])
    assert (profiler.stats.stages, profiler.stats.empty, profiler.stats.failed) == (2, 1, 1)


def test_timing_is_validated():
    with pytest.raises(TimingError, match="number >= 1"):
        Timing(warmup=2, number=0, repeat=6)
    with pytest.raises(ValueError, match="unknown precision"):
        MeasureSettings(precision="fp8")


def test_the_space_names_gpu_precision_and_revision_and_digests_every_input():
    space = measured_space(MeasureSettings(), ENVIRONMENT)
    assert space.startswith(f"measured/NVIDIA H100 80GB HBM3/fp32/r{PROFILE_REVISION}/")
    changed = [measured_space(MeasureSettings(**{name: value}), ENVIRONMENT) for name, value in (
        ("precision", "fp32-strict"), ("autotune", False), ("layout", "nchw"), ("timing", Timing(warmup=3)),
        ("timing", Timing(number=5)), ("timing", Timing(repeat=7)))]
    changed += [measured_space(MeasureSettings(), {**ENVIRONMENT, key: "other"}) for key in ENVIRONMENT]
    assert len({space, *changed}) == 1 + len(changed)
    assert measured_space(MeasureSettings(tune_cache="elsewhere.json"), ENVIRONMENT) == space  # a path, not an input
    with pytest.raises(ValueError, match=r"lacks \['cuda'\]"):
        measured_space(MeasureSettings(), {k: v for k, v in ENVIRONMENT.items() if k != "cuda"})


def test_a_second_search_on_the_disk_cache_profiles_nothing(tmp_path):
    graph, path = models.get("demo"), tmp_path / "stages.jsonl"
    backend = FakeBackend()
    inner = fake_cost(backend)
    with CachedCost(inner, inner.space, path) as cost:
        first = search(graph, cost, 1, OptimizerOptions("both"))
    profiled = backend.calls
    assert profiled > 0 and cost.stats.misses >= profiled

    again = FakeBackend()
    inner = fake_cost(again)
    with CachedCost(inner, inner.space, path) as cost:
        second = search(graph, cost, 1, OptimizerOptions("both"))
        for schedule in (sequential(graph), greedy(graph)):
            for stage in schedule.stages:
                cost.stage_latency(graph, stage, 1)
    assert again.calls == 0 and cost.stats.misses == 0 and not inner.profilers  # no profiler was even made
    assert second.schedule == first.schedule and second.latency_ms == first.latency_ms


@pytest.mark.parametrize("change", [{"name": "NVIDIA H200"}, {"driver": "590.1"}, {"cuda": "13.1"},
                                    {"cudnn": "9.20.0"}])
def test_another_gpu_its_software_or_batch_does_not_reuse_the_cache(tmp_path, change):
    graph, path = models.get("demo"), tmp_path / "stages.jsonl"
    inner = fake_cost(FakeBackend())
    with CachedCost(inner, inner.space, path) as cost:
        cost.stage_latency(graph, one("conv1"), 1)
    other = MeasuredCost(MeasureSettings(), lambda g, b: StageProfiler(g, b, FakeBackend()), {**ENVIRONMENT, **change})
    with CachedCost(other, other.space, path) as cost:
        cost.stage_latency(graph, one("conv1"), 1)
        cost.stage_latency(graph, one("conv1"), 2)
    assert cost.stats.misses == 2


def test_other_timing_does_not_reuse_the_cache(monkeypatch, tmp_path):
    fake_gpu(monkeypatch, FakeBackend())
    spec = CostSpec("measured", cache=str(tmp_path / "stages.jsonl"), tune_cache="tune.json")
    with build_cost(spec, DeviceProfile(name="h100", real=True)) as cost:
        cost.stage_latency(models.get("demo"), one("conv1"), 1)
    for change in ({"warmup": 3}, {"number": 5}, {"repeat": 7}):
        timing = Timing(**change)
        with build_cost(dataclasses.replace(spec, timing=timing), DeviceProfile(name="h100", real=True)) as cost:
            cost.stage_latency(models.get("demo"), one("conv1"), 1)
        assert cost.stats.misses == 1
    with build_cost(spec, DeviceProfile(name="h100", real=True, launch_us=50.0)) as cost:
        cost.stage_latency(models.get("demo"), one("conv1"), 1)
    assert cost.stats.misses == 0  # a measurement reads the GPU, not the simulated profile's numbers


def fake_gpu(monkeypatch, backend: FakeBackend, weights_given: list | None = None) -> None:
    """Make ``cost=measured`` buildable here: a GPU 'present', its environment, and the fake backend; the weights
    each profiler is made with go to ``weights_given``."""
    monkeypatch.setattr(cost_factory, "gpu_present", lambda: True)
    monkeypatch.setattr(engine, "environment", lambda: dict(ENVIRONMENT))

    def profiler(graph, batch, precision="fp32", weights=None, options=None, timing=None):
        assert precision == "fp32" and options.autotune and options.tune_cache == "tune.json"
        if weights_given is not None:
            weights_given.append(weights)
        return StageProfiler(graph, batch, backend, timing, options)

    monkeypatch.setattr(engine, "gpu_profiler", profiler)

    def whole(graph, schedule, batch, precision="fp32", weights=None, options=None, timing=None):
        return backend.time(engine.lower(graph, schedule, batch, options.layout), timing)

    monkeypatch.setattr(engine, "end_to_end_latency", whole)


def test_a_gpu_whose_environment_cannot_be_read_gets_no_disk_cache(monkeypatch, tmp_path):
    fake_gpu(monkeypatch, FakeBackend())
    monkeypatch.setattr(engine, "environment", lambda: {**ENVIRONMENT, "name": "unknown", "driver": "unknown"})
    spec = CostSpec(kind="measured", cache=str(tmp_path / "c.jsonl"))
    with pytest.raises(CostUnavailableError, match="name, driver cannot be read"):
        build_cost(spec, DeviceProfile(name="h100", real=True))
    assert build_cost(CostSpec(kind="measured"), DeviceProfile(name="h100", real=True)).kind == "measured"


def test_the_factory_builds_the_measured_cost_with_its_settings(monkeypatch):
    backend = FakeBackend()
    fake_gpu(monkeypatch, backend)
    timing = Timing(warmup=1, number=3, repeat=5)
    spec = CostSpec(kind="measured", precision="fp32", timing=timing, tune_cache="tune.json")
    cost = build_cost(spec, DeviceProfile(name="h100", real=True))
    settings = MeasureSettings(precision="fp32", timing=timing, tune_cache="tune.json")
    assert cost.kind == "measured" and cost.space == measured_space(settings, ENVIRONMENT)
    assert cost.stage_latency(models.get("demo"), one("conv1"), 1) > 0
    assert backend.timings == [timing]


def test_without_the_engine_libraries_the_measured_cost_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(cost_factory, "gpu_present", lambda: True)
    monkeypatch.setitem(sys.modules, "cudnn", None)  # as if the cuDNN frontend were not installed
    with pytest.raises(CostUnavailableError, match="needs the GPU engine's libraries"):
        build_cost(CostSpec("measured"), DeviceProfile(name="h100", real=True))


def test_the_cli_with_a_warm_cache_profiles_nothing(monkeypatch, tmp_path, capsys):
    backend = FakeBackend()
    fake_gpu(monkeypatch, backend)
    overrides = ["progress=false", "model=demo", "cost=measured", "device=h100", f"cost.cache={tmp_path / 'c.jsonl'}",
                 "cost.tune_cache=tune.json", f"output={tmp_path / 's.json'}"]
    cfg = compose("optimize", overrides)
    first = run(cfg)
    calls = backend.calls
    second = run(cfg)
    assert first.schedule.meta["cost_evaluations"] > 0 and calls > 0
    assert second.schedule.meta["cost_evaluations"] == 0 and backend.calls == calls
    assert second.schedule == first.schedule and second.schedule.meta["latency_label"] == "measured, end to end"
    assert first.schedule.meta["rerank"] and first.schedule.meta["latency_ms"] == min(
        c["end_to_end_ms"] for c in first.schedule.meta["rerank"])


def test_an_onnx_network_is_profiled_with_its_own_weights_and_shares_its_twin_s_measurements(monkeypatch, tmp_path):
    """The file's weights reach the profiler; they are no part of the cache space (latencies do not depend on
    values), so the same network with other weights finds every stage measured already."""
    from ios_core.onnx_io import Network, load_onnx, save_onnx

    given, demo = [], models.get("demo")
    for seed in (7, 8):
        save_onnx(Network(demo, make_weights(demo, seed)), tmp_path / f"demo{seed}.onnx")
    fake_gpu(monkeypatch, FakeBackend(), given)
    common = ["progress=false", "cost=measured", "device=h100", f"cost.cache={tmp_path / 'c.jsonl'}",
              "cost.tune_cache=tune.json", "tracking.mlflow=false", "model=onnx"]
    first = run(compose("optimize", [*common, f"model.path={tmp_path / 'demo7.onnx'}", f"output={tmp_path}/a.json"]))
    (weights,) = given
    expected = load_onnx(tmp_path / "demo7.onnx").weights
    assert first.schedule.meta["cost_evaluations"] > 0 and weights.keys() == expected.keys()
    assert all(np.array_equal(weights[n][k], expected[n][k]) for n in expected for k in expected[n])
    twin = run(compose("optimize", [*common, f"model.path={tmp_path / 'demo8.onnx'}", f"output={tmp_path}/b.json"]))
    assert twin.schedule.meta["cost_evaluations"] == 0 and len(given) == 1  # no profiler was even made
    assert twin.result.latency_ms == first.result.latency_ms


def test_the_gpu_profiler_of_an_onnx_network_uploads_the_file_s_weights(tmp_path):
    """On the fake GPU: every convolution a stage runs is uploaded from the file's weights, not synthetic ones."""
    from fake_gpu import FakeGpu

    from ios_core.onnx_io import Network, load_onnx, save_onnx

    demo = models.get("demo")
    save_onnx(Network(demo, make_weights(demo, seed=7)), tmp_path / "demo.onnx")
    network = load_onnx(tmp_path / "demo.onnx")
    graph, gpu = network.graph, FakeGpu()
    try:
        cost = MeasuredCost(MeasureSettings(autotune=False), environment=ENVIRONMENT, weights=network.weights)
        cost.stage_latencies(graph, sequential(graph).stages, 1)
        uploaded = [a.host for a in gpu.recorder.allocs.values() if a.host is not None]
    finally:
        gpu.close()
    convs = [n.name for n in graph.operators if n.name in network.weights]
    for name, weights in (("file", network.weights), ("seed 0", make_weights(graph))):
        biases = [weights[conv]["bias"].astype(np.float32) for conv in convs]
        found = [any(np.array_equal(host[-b.size:], b) for host in uploaded) for b in biases]
        assert all(found) if name == "file" else not any(found), name


def test_the_measured_config_composes_with_ios_timing():
    cfg = compose("optimize", ["cost=measured", "device=h200"])
    other = compose("optimize", ["cost=measured", "cost.timing.number=3", "cost.timing.warmup=1"])
    assert (cfg.cost.timing, cfg.cost.autotune) == ({"warmup": 2, "number": 6, "repeat": 6}, True)
    assert cfg.cost.tune_cache == ".tunecache/tune_h200.json"
    assert other.cost.timing == {"warmup": 1, "number": 3, "repeat": 6}


def test_the_cli_times_stages_as_configured(monkeypatch, tmp_path):
    backend = FakeBackend()
    fake_gpu(monkeypatch, backend)
    overrides = ["progress=false", "model=demo", "cost=measured", "device=h100", f"cost.cache={tmp_path / 'c.jsonl'}",
                 "cost.tune_cache=tune.json", f"output={tmp_path / 's.json'}", "cost.timing.warmup=1",
                 "cost.timing.number=3", "cost.timing.repeat=5", "tracking.mlflow=false"]
    run(compose("optimize", overrides))
    assert backend.timings and set(backend.timings) == {Timing(warmup=1, number=3, repeat=5)}


@pytest.mark.parametrize("name", ["demo", "squeezenet", "inception_v3"])
def test_the_critical_path_bounds_every_schedule_without_merges(name):
    graph = models.get(name)
    cost = CachedCost(SimulatedCost(DeviceProfile()), "simulated/sim/fp32")
    bound = critical_path(graph, cost, 1)
    for earlier, later in zip(bound.chain, bound.chain[1:], strict=False):  # the chain is a dependency path
        assert earlier in graph[later].producers
    assert bound.ms == pytest.approx(sum(bound.operator_ms[n] for n in bound.chain))
    for opt in ("sequential", "greedy", "parallel"):
        result = search(graph, cost, 1, OptimizerOptions(opt))
        assert bound.ms <= result.latency_ms + 1e-12
    assert bound.ms < sum(bound.operator_ms.values()) or len(graph.operators) == len(bound.chain)


def test_the_profiling_modules_touch_no_gpu_library_at_import():
    code = ("import sys, ios_core.cost.measured, ios_core.cost.bound, ios_core.engine.profile, ios_core.engine.gpu; "
            "print(any(m.split('.')[0] in ('pycuda', 'cudnn', 'torch', 'pynvml') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_plan_options_reach_the_lowering():
    graph = models.get("inception_v3")
    copy = StageProfiler(graph, 1, FakeBackend(), options=PlanOptions(concat_in_place=False))
    free = [n.name for n in graph.operators if not StageProfiler(graph, 1, FakeBackend()).program(one(n.name)).tasks]
    assert any(copy.program(one(name)).tasks for name in free)  # copied concatenations are tasks again
