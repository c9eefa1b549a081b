"""The engine on the GPU equals the numpy reference, and PyTorch, for every model, schedule and precision.

Run through the device tool (``pytest -m gpu``); without PyCUDA, the cuDNN frontend or a GPU every
test here is skipped, saying which. References are numpy float64 (`ios_core.reference`); a
reference computed once is cached on disk (see `test_engine_cases`), so a device run can bring them.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from gpu_guard import require_gpu
from test_engine_cases import MODELS, SCHEDULES, network, reference

pytestmark = pytest.mark.gpu
require_gpu()

from ios_core.engine import PlanOptions, build_plan, latency  # noqa: E402 -- only once a GPU is known to be there
from ios_core.reference import relative_error  # noqa: E402
from ios_core.timing import Timing  # noqa: E402

TOLERANCE = {"fp32-strict": 1e-4, "fp32": 1e-2}


def record(**fields) -> None:
    """Append one JSON line to ``$IOS_ENGINE_ERROR_LOG`` when set: the errors a device run reports."""
    if path := os.environ.get("IOS_ENGINE_ERROR_LOG"):
        with open(path, "a") as log:
            log.write(json.dumps(fields) + "\n")


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("precision", ["fp32-strict", "fp32"])
@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("name", MODELS)
def test_engine_equals_reference(name, schedule, precision, batch):
    graph, weights = network(name)
    x, ref = reference(name, batch)
    plan = build_plan(graph, SCHEDULES[schedule](graph), batch, precision, weights, PlanOptions(autotune=False))
    eager = plan(x, graph_mode=False)
    plan.poison()
    replayed = plan(x, graph_mode=True)
    again = plan(x, graph_mode=True)
    limit = TOLERANCE[precision]
    record(model=name, schedule=schedule, precision=precision, batch=batch, eager=relative_error(eager, ref),
           graph=relative_error(replayed, ref), streams=plan.program.streams, arena_bytes=plan.program.arena_bytes)
    assert relative_error(eager, ref) <= limit
    assert relative_error(replayed, ref) <= limit
    np.testing.assert_array_equal(replayed, again)  # replays are idempotent: inputs and weights survive a run
    plan.close()


@pytest.mark.parametrize("precision", ["fp32-strict", "fp32"])
@pytest.mark.parametrize("name", MODELS)
def test_engine_equals_pytorch(name, precision):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from ios_core.baselines.torch_module import torch_module

    graph, weights = network(name)
    x, ref = reference(name, 1)
    torch.backends.cudnn.allow_tf32 = precision == "fp32"
    module = torch_module(graph, weights).cuda().to(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = module(torch.from_numpy(x).float().cuda().to(memory_format=torch.channels_last)).cpu().numpy()
    assert relative_error(expected, ref) <= TOLERANCE[precision]  # the module is the same network
    plan = build_plan(graph, SCHEDULES["sequential"](graph), 1, precision, weights, PlanOptions(autotune=False))
    ours = relative_error(plan(x), expected.astype(np.float64))
    record(model=name, schedule="sequential", precision=precision, batch=1, versus="torch", torch_vs_reference=
           relative_error(expected, ref), engine_vs_torch=ours)
    assert ours <= TOLERANCE[precision]
    plan.close()


@pytest.mark.parametrize("name", ["nasnet", "randwire"])
def test_cudnn_depthwise_path_equals_reference(name):
    graph, weights = network(name)
    x, ref = reference(name, 1)
    options = PlanOptions(autotune=False, own_depthwise=False)
    plan = build_plan(graph, SCHEDULES["greedy"](graph), 1, "fp32-strict", weights, options)
    assert "depthwise" not in plan.stats.kernels
    assert relative_error(plan(x), ref) <= TOLERANCE["fp32-strict"]
    plan.close()


def test_autotuned_plan_is_correct_and_timed():
    graph, weights = network("inception_v3")
    x, ref = reference("inception_v3", 1)
    plan = build_plan(graph, SCHEDULES["sequential"](graph), 1, "fp32", weights, PlanOptions(autotune=True))
    assert relative_error(plan(x), ref) <= TOLERANCE["fp32"]
    measurement = latency(plan, Timing(warmup=2, number=5, repeat=3))
    assert 0 < measurement.ms < 100 and len(measurement.samples) == 3 and measurement.timing.number == 5
    assert measurement.device["name"] and measurement.clocks_before["available"]
    plan.close()


def test_a_settled_plan_is_replayed_for_that_long_before_it_is_timed():
    import time

    graph, weights = network("squeezenet")
    plan = build_plan(graph, SCHEDULES["sequential"](graph), 1, "fp32", weights, PlanOptions(autotune=False))
    started = time.perf_counter()
    measurement = latency(plan, Timing(warmup=0, number=1, repeat=1), settle_ms=30.0)
    assert time.perf_counter() - started >= 0.030 and 0 < measurement.ms < 10
    plan.close()


def test_stage_alone_is_a_plan_of_its_own():
    graph, weights = network("inception_v3")
    schedule = SCHEDULES["merged_greedy"](graph)
    wide = max(schedule.stages, key=lambda stage: len(stage.groups))
    plan = build_plan(graph, [wide], 1, "fp32", weights, PlanOptions(autotune=False, schedule=schedule))
    assert plan.program.streams == len(wide.groups) >= 3
    assert plan.program.inputs and all(name in plan.program.values for name in plan.program.inputs)
    assert 0 < latency(plan, Timing()).ms < 10
    plan.close()
