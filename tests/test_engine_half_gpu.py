"""fp16 and bf16 on the GPU: every model under sequential, greedy and IOS-Both schedules at batch 1 and 16 equals the
float64 reference within the precision's tolerance (`ios_core.precision.TOLERANCE`: fp16 1e-2, bf16 3e-2), and is
never worse than twice PyTorch's own error in the same precision on the same weights; the zoo's operator graphs too.

Run through the device tool (``pytest -m gpu tests/test_engine_half_gpu.py -s``: every error is printed, and appended
to ``$IOS_ENGINE_ERROR_LOG`` when set). The deterministic weights (`ios_core.weights.make_weights`, variance-preserving)
keep every activation far inside fp16's range (65504); a user's network whose activations grow past it needs bf16
(float32's range) or rescaled weights.
"""

from __future__ import annotations

import json
from functools import cache

import numpy as np
import pytest
from gpu_guard import require_gpu
from test_engine_cases import SCHEDULES, network, reference
from test_engine_gpu import record
from test_engine_zoo_ops import GRAPHS

from ios_core import schedule as S
from ios_core.cost.device import DeviceProfile
from ios_core.cost.simulated import SimulatedCost
from ios_core.optimizer import optimize
from ios_core.precision import TOLERANCE

pytestmark = pytest.mark.gpu
require_gpu()

from ios_core.engine import PlanOptions, build_plan  # noqa: E402 -- only once a GPU is known to be there
from ios_core.reference import relative_error, run_graph  # noqa: E402
from ios_core.weights import make_input, make_weights  # noqa: E402

HALF = ("fp16", "bf16")
MODELS = ("inception_v3", "nasnet", "randwire", "squeezenet")


@cache
def ios_both(name: str, batch: int, precision: str) -> S.Schedule:
    """IOS-Both on the simulated cost in ``precision`` (the measured one would time thousands of stages)."""
    graph, _ = network(name)
    return optimize(graph, SimulatedCost(DeviceProfile(), precision), batch)


def schedule_of(name: str, schedule: str, batch: int, precision: str) -> S.Schedule:
    if schedule == "ios_both":
        return ios_both(name, batch, precision)
    return SCHEDULES[schedule](network(name)[0])


@pytest.mark.parametrize("batch", [1, 16])
@pytest.mark.parametrize("precision", HALF)
@pytest.mark.parametrize("schedule", ["sequential", "greedy", "ios_both"])
@pytest.mark.parametrize("name", MODELS)
def test_16_bit_engine_equals_reference(name, schedule, precision, batch):
    graph, weights = network(name)
    x, ref = reference(name, batch)
    plan = build_plan(graph, schedule_of(name, schedule, batch, precision), batch, precision, weights,
                      PlanOptions(autotune=False))
    try:
        eager = plan(x, graph_mode=False)
        plan.poison()
        replayed = plan(x, graph_mode=True)
        again = plan(x, graph_mode=True)
        errors = relative_error(eager, ref), relative_error(replayed, ref)
        print(f"{name} {schedule} {precision} batch {batch}: rel L2 eager {errors[0]:.3g}, graph {errors[1]:.3g}, "
              f"arena {plan.program.arena_bytes} bytes")
        record(model=name, schedule=schedule, precision=precision, batch=batch, eager=errors[0], graph=errors[1],
               streams=plan.program.streams, arena_bytes=plan.program.arena_bytes)
        assert np.isfinite(replayed).all(), "a read of memory nothing wrote, or an overflow"
        assert max(errors) <= TOLERANCE[precision]
        np.testing.assert_array_equal(replayed, again)
    finally:
        plan.close()


@pytest.mark.parametrize("precision", HALF)
@pytest.mark.parametrize("name", MODELS)
def test_16_bit_engine_is_within_twice_pytorchs_own_error(name, precision):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from ios_core.baselines.torch_module import torch_module

    graph, weights = network(name)
    x, ref = reference(name, 1)
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    module = torch_module(graph, weights).cuda().to(dtype=dtype, memory_format=torch.channels_last)
    with torch.inference_mode():
        inputs = torch.from_numpy(x).cuda().to(dtype=dtype, memory_format=torch.channels_last)
        theirs = relative_error(module(inputs).float().cpu().numpy(), ref)
    plan = build_plan(graph, SCHEDULES["sequential"](graph), 1, precision, weights, PlanOptions(autotune=False))
    try:
        ours = relative_error(plan(x), ref)
    finally:
        plan.close()
    print(f"{name} {precision}: rel L2 ours {ours:.3g}, PyTorch's {theirs:.3g}")
    record(model=name, precision=precision, batch=1, versus="torch", torch_vs_reference=theirs, engine=ours)
    assert ours <= max(2 * theirs, TOLERANCE[precision] / 10)


@pytest.mark.parametrize("precision", HALF)
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_each_zoo_operator_in_16_bits_equals_reference(name, layout, precision):
    graph = GRAPHS[name]()
    weights, x = make_weights(graph), make_input(graph, 2)
    ref = run_graph(graph, x, weights)
    plan = build_plan(graph, S.greedy(graph), 2, precision, weights, PlanOptions(layout=layout, autotune=False))
    try:
        out = plan(x)
        print(f"{name} {layout} {precision}: rel L2 {relative_error(out, ref):.3g}")
        assert np.isfinite(out).all() and relative_error(out, ref) <= TOLERANCE[precision]
    finally:
        plan.close()


@pytest.mark.parametrize("precision", HALF)
def test_autotuned_16_bit_plans_keep_their_winners_per_precision(tmp_path, precision):
    graph, weights = network("squeezenet")
    x, ref = reference("squeezenet", 1)
    cache_file = tmp_path / "tune.json"
    plan = build_plan(graph, S.greedy(graph), 1, precision, weights, PlanOptions(tune_cache=str(cache_file)))
    try:
        assert relative_error(plan(x), ref) <= TOLERANCE[precision]
    finally:
        plan.close()
    keys = list(json.loads(cache_file.read_text()))
    assert keys and all(f'"precision": "{precision}"' in key for key in keys)
