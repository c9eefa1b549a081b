"""The measured cost on the GPU: every kind of stage profiles, and the stages of a schedule add up to it.

Run through the device tool (``pytest -m gpu``); skipped, saying why, without PyCUDA, the cuDNN
frontend or a GPU.
"""

from __future__ import annotations

import math

import pytest
from gpu_guard import require_gpu

pytestmark = pytest.mark.gpu
require_gpu()

from ios_core import models  # noqa: E402 -- only once a GPU is known to be there
from ios_core.cost import CostSpec, DeviceProfile, build_cost  # noqa: E402
from ios_core.cost.measured import MeasureSettings, measured_space  # noqa: E402
from ios_core.engine import PlanOptions, build_plan, environment, gpu_profiler, latency  # noqa: E402
from ios_core.schedule import Group, Stage, sequential  # noqa: E402
from ios_core.timing import Timing  # noqa: E402


def test_every_kind_of_stage_profiles():
    graph = models.get("demo")
    profiler = gpu_profiler(graph, 1, options=PlanOptions(autotune=False))
    stages = [
        *sequential(graph).stages,
        Stage((Group(("conv2", "conv3"), merge=True),)),
        Stage((Group(("conv2",)), Group(("conv3",)), Group(("conv4", "sigmoid1")))),
    ]
    for stage in stages:
        ms = profiler.latency(stage)
        assert ms == 0.0 or (0 < ms < 1 and math.isfinite(ms)), (stage, ms)
    assert profiler.stats.failed == 0 and profiler.stats.stages + profiler.stats.empty == len(stages)


def test_the_stages_of_a_schedule_add_up_to_about_its_latency():
    graph = models.get("squeezenet")
    schedule = sequential(graph)
    profiler = gpu_profiler(graph, 1, options=PlanOptions(autotune=False))
    predicted = sum(profiler.latency(stage) for stage in schedule.stages)
    plan = build_plan(graph, schedule, 1, "fp32", None, PlanOptions(autotune=False))
    whole = latency(plan, Timing(warmup=5, number=10, repeat=5)).ms
    plan.close()
    assert 0.5 < predicted / whole < 3, (predicted, whole)


def test_the_measured_cost_is_built_by_the_factory_and_names_the_gpu(tmp_path):
    cost = build_cost(CostSpec("measured", cache=str(tmp_path / "c.jsonl")), DeviceProfile(name="h100", real=True))
    graph = models.get("demo")
    first = cost.stage_latency(graph, Stage((Group(("conv1",)),)), 1)
    assert first > 0 and cost.stats.misses == 1
    assert cost.space == measured_space(MeasureSettings(), environment()) and cost.space.startswith("measured/NVIDIA")
    assert cost.stage_latency(graph, Stage((Group(("conv1",)),)), 1) == first and cost.stats.hits == 1
