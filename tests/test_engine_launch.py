"""The engine's GPU half on a fake PyCUDA and cuDNN (`fake_gpu`): what it launches, where, and how it times.

The real kernels and cuDNN run only on the lent GPU (``test_engine_gpu.py``); here every call the GPU
half makes is recorded, so the launch layer, both plans built on it and the timing are checked on a
CPU: every pointer lies in memory the plan owns or borrowed, statistics are what the launches say,
a stage plan launches what a plan of that stage alone launches, and replays are timed as
`ios_core.timing.Timing` says.
"""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np
import pytest
from fake_gpu import REGION, FakeGpu, launch_parts
from test_engine_cases import SCHEDULES

from ios_core import engine, models
from ios_core.engine import ConvTask, PlanOptions
from ios_core.engine import channelwise as cw
from ios_core.engine.profile import StageProfiler
from ios_core.gpu import ENVIRONMENT_KEYS
from ios_core.timing import Timing


@pytest.fixture
def gpu():
    fake = FakeGpu()
    yield fake
    fake.close()


def plan_of(gpu: FakeGpu, name: str, schedule: str = "merged_greedy", batch: int = 1, **options):
    graph = models.get(name)
    plan = gpu.engine["plan"].build_plan(graph, SCHEDULES[schedule](graph), batch, "fp32", None, PlanOptions(**options))
    return graph, plan


def launched(calls: list[tuple]) -> list[tuple]:
    """The kernel launches and cuDNN executions among ``calls``."""
    return [call for call in calls if call[0] in ("kernel", "cudnn")]


def uncaptured(calls: list[tuple]) -> list[tuple]:
    """``calls`` with the work recorded while a CUDA graph was captured left out: only its ``capture`` call stays."""
    out, capturing = [], False
    for call in calls:
        if not capturing:
            out.append(call)
        capturing = (capturing or call[0] == "capture") and call[0] != "captured"
    return out


def pointers(call: tuple) -> list[int]:
    args = [a for _, part in launch_parts(call) for a in part] if call[0] == "kernel" else [a for _, a in call[2]]
    return [a for a in args if isinstance(a, int) and a >= REGION]


@pytest.mark.parametrize(("name", "options"), [("inception_v3", {}), ("nasnet", {"own_depthwise": False}),
                                               ("randwire", {"layout": "nchw"}), ("squeezenet", {"autotune": False}),
                                               ("nasnet", {"schedule": "one_stream"})])
def test_a_plan_launches_every_task_inside_the_memory_it_owns(gpu, name, options):
    graph, plan = plan_of(gpu, name, **options)
    start = len(gpu.recorder.calls)
    plan.enqueue()
    calls = launched(gpu.recorder.calls[start:])
    owned = {gpu.recorder.where(int(m))[0]: m.size for m in (plan.arena, plan.weights, *plan.workspaces) if m}
    for call in calls:
        for address in pointers(call):
            index, offset = gpu.recorder.where(address)
            assert index in owned and offset < owned[index], call
    kernels = Counter(call[1] for call in calls if call[0] == "kernel")
    by_name = {"pointwise_f32" if name == "pointwise" else name: count for name, count in plan.stats.kernels.items()
               if name not in ("pool", "depthwise", "pad", "norm", "shuffle")}  # counted beside their kernels
    assert kernels == Counter(by_name)  # the statistics are what the launches do
    convs = [t for t in plan.program.tasks if isinstance(t, ConvTask)]
    cudnn = [t for t in convs if not (t.depthwise and plan.options.own_depthwise)]
    assert plan.stats.convs == len(cudnn) == sum(call[0] == "cudnn" for call in calls)
    assert plan.stats.unfused_convs < plan.stats.convs  # the fake fuses some geometries
    assert plan.stats.weight_bytes <= plan.weights.size and plan.stats.workspace_bytes > 0


def test_a_folded_sum_is_cudnns_addend_or_else_our_kernel_adds_bias_and_addend(gpu):
    graph, plan = plan_of(gpu, "nasnet", schedule="one_stream")
    folded = [t for t in plan.program.tasks if isinstance(t, ConvTask) and t.addend is not None]
    assert folded
    start = len(gpu.recorder.calls)
    plan.enqueue()
    calls = launched(gpu.recorder.calls[start:])
    executions = iter(i for i, call in enumerate(calls) if call[0] == "cudnn")
    ours = plan.options.own_depthwise
    cudnn = [t for t in plan.program.tasks if isinstance(t, ConvTask) and not (t.depthwise and ours)]
    seen = Counter()
    for task, i in zip(cudnn, executions, strict=True):
        if task.addend is None:
            continue
        tensors = {tensor for tensor, _ in calls[i][2]}
        path = "addend" if "Z" in tensors else "bias" if "B" in tensors else "alone"
        seen[path] += 1
        # the bias where cuDNN did not add it, then the addend and the activation, by our pointwise kernel
        after = {"addend": 0, "bias": 1, "alone": 2}[path]
        assert [call[1] for call in calls[i + 1:i + 1 + after]] == ["pointwise_f32"] * after
    assert seen["addend"] and seen["bias"] + seen["alone"]  # the fake fuses some geometries and not others


def kernel_launches(gpu: FakeGpu, name: str, combine_pointwise: bool) -> list[tuple]:
    _, plan = plan_of(gpu, name, schedule="greedy", combine_pointwise=combine_pointwise)
    start = len(gpu.recorder.calls)
    plan.enqueue()
    plan.close()
    return [call for call in launched(gpu.recorder.calls[start:]) if call[0] == "kernel"]


def test_independent_pointwise_tasks_in_a_row_are_one_launch_of_the_same_work(gpu):
    """NASNet's cells add their branches side by side: as batches, the same pointwise work in the same order (at
    the same arena offsets), in fewer launches."""
    def work(calls: list[tuple]) -> list[tuple]:
        at = gpu.recorder.where
        return [tuple(at(a)[1] if isinstance(a, int) and a >= REGION else a for a in part)
                for call in calls if call[1] in ("pointwise_f32", cw.POINTWISE_BATCH) for _, part in launch_parts(call)]

    batched, alone = kernel_launches(gpu, "nasnet", True), kernel_launches(gpu, "nasnet", False)
    batches = [call for call in batched if call[1] == cw.POINTWISE_BATCH]
    assert batches and not any(call[1] == cw.POINTWISE_BATCH for call in alone)
    assert all(len(launch_parts(call)) >= 2 for call in batches)
    assert work(batched) == work(alone)
    assert len(batched) == len(alone) - sum(len(launch_parts(call)) - 1 for call in batches)


def test_a_chain_of_additions_is_one_pass_over_its_terms(gpu):
    """RandWire sums each node's inputs into one output, an addition a launch: as one pass of ``pointwise_sum``,
    its record the sum's output and terms, one launch for the chain."""
    summed, alone = kernel_launches(gpu, "randwire", True), kernel_launches(gpu, "randwire", False)
    sums = [launch_parts(call)[0][1] for call in summed if call[1] == cw.POINTWISE_SUM]
    fields = list(cw.POINTWISE_SUM_RECORD.names)
    terms = [record[fields.index("terms")] for record in sums]
    assert sums and all(3 <= count <= cw.SUM_TERMS for count in terms)  # RandWire's nodes sum 3 inputs or more
    batched = sum(len(launch_parts(call)) - 1 for call in summed if call[1] == cw.POINTWISE_BATCH)
    assert len(summed) == len(alone) - sum(count - 2 for count in terms) - batched


def test_a_plan_runs_eagerly_and_replays_its_capture_then_frees_its_memory(gpu):
    graph, plan = plan_of(gpu, "demo", schedule="sequential", batch=2)
    x = np.zeros((2, *graph.shapes[graph.input.name]), np.float32)
    start = len(gpu.recorder.calls)
    plan(x, graph_mode=False)
    eager = launched(gpu.recorder.calls[start:])
    start = len(gpu.recorder.calls)
    plan(x)
    plan(x)
    calls = gpu.recorder.calls[start:]
    assert launched(calls) == eager  # captured once, while the first replay's graph is made
    assert [c[0] for c in calls].count("capture") == 1 and [c[0] for c in calls].count("graph launch") == 2
    plan.close()
    assert all(gpu.recorder.allocs[gpu.recorder.where(int(m))[0]].freed for m in (plan.arena, plan.weights))


def test_the_weights_uploaded_are_the_packs_of_the_graph(gpu):
    from ios_core.engine.lower import conv_params
    from ios_core.engine.packing import pack
    from ios_core.weights import make_weights

    graph, plan = plan_of(gpu, "demo")
    host = gpu.recorder.allocs[gpu.recorder.where(int(plan.weights))[0]].host
    weights = make_weights(graph)
    for key, at in plan.context.weights.items():
        packed = pack(conv_params(graph, weights, key), plan.program.layout, False, plan.element)
        offset = gpu.recorder.where(at.weight)[1]
        assert at.bias - at.weight == packed.bias_at and offset % 256 == 0
        np.testing.assert_array_equal(host[offset // 4:offset // 4 + packed.host.size], packed.host)


def normalized(calls: list[tuple], arena: int) -> list[tuple]:
    """Launches with arena pointers as offsets into it and weight pointers as ``"w"`` (the plans lay weights out
    differently); streams by their order of first use."""
    streams: dict[int, int] = {}

    def arg(a):
        if isinstance(a, int) and a >= REGION:
            return ("arena", a - arena) if a // REGION == arena // REGION else "w"
        return a

    out = []
    for call in calls:
        if call[0] == "kernel":
            out.append((call[1], call[2], call[3], streams.setdefault(call[4], len(streams)), tuple(map(arg, call[5]))))
        else:
            out.append(("cudnn", tuple((name, arg(a)) for name, a in call[2]), call[3] > 0))
    return out


@pytest.mark.parametrize("name", ["inception_v3", "nasnet"])
def test_a_stage_plan_launches_what_a_plan_of_that_stage_alone_launches(gpu, name):
    graph = models.get(name)
    stage = max(SCHEDULES["merged_greedy"](graph).stages, key=lambda s: len(s.groups))
    options = PlanOptions(autotune=False)
    whole = gpu.engine["plan"].build_plan(graph, [stage], 1, "fp32", None, options)
    start = len(gpu.recorder.calls)
    whole.enqueue()
    expected = normalized(launched(gpu.recorder.calls[start:]), int(whole.arena))
    stageplan = gpu.engine["stageplan"]
    backend = stageplan.GpuBackend(graph, "fp32", None, options)
    program = StageProfiler(graph, 1, backend, options=options).program(stage)
    assert program.streams == len(stage.groups) > 1
    alone = stageplan.StagePlan(program, "fp32", backend.store, options, backend.pool)
    start = len(gpu.recorder.calls)
    alone.launches.enqueue()
    assert normalized(launched(gpu.recorder.calls[start:]), alone.context.arena) == expected
    alone.close()


def test_stages_are_timed_as_the_timing_says(gpu):
    graph = models.get("inception_v3")
    timing = Timing(warmup=2, number=3, repeat=4)
    profiler = gpu.engine["stageplan"].gpu_profiler(graph, 1, options=PlanOptions(autotune=False), timing=timing)
    stages = [s for s in SCHEDULES["merged_greedy"](graph).stages if len(s.groups) > 1][:3]
    gpu.recorder.elapsed_ms = 1.5
    start = len(gpu.recorder.calls)
    assert profiler.latencies(stages) == [1.5 / 3] * 3  # the median sample over its number runs
    calls = gpu.recorder.calls[start:]
    assert [c[2] for c in calls if c[0] == "capture"] == [3, 3, 3]  # number runs in one graph
    kinds = [c[0] for c in uncaptured(calls) if c[0] in ("capture", "graph launch", "record", "sync event")]
    replays = ["graph launch"] * timing.warmup + ["record"] + ["graph launch", "record"] * timing.repeat
    # the next stage is captured while the GPU replays this one; then its replays are waited for
    assert kinds == ["capture", *replays, "capture", "sync event", *replays, "capture", "sync event", *replays,
                     "sync event"]


def test_a_plan_is_timed_sample_by_sample(gpu):
    graph, plan = plan_of(gpu, "demo", schedule="sequential")
    gpu.recorder.elapsed_ms = 2.0
    start = len(gpu.recorder.calls)
    m = gpu.engine["timing"].latency(plan, Timing(warmup=1, number=4, repeat=3))
    assert (m.ms, m.samples, m.timing) == (0.5, (0.5, 0.5, 0.5), Timing(warmup=1, number=4, repeat=3))
    kinds = [c[0] for c in uncaptured(gpu.recorder.calls[start:]) if c[0] in ("graph launch", "record", "sync event")]
    sample = ["record", *["graph launch"] * 4, "record", "sync event"]
    assert kinds == ["graph launch", *sample * 3]  # one warm-up launch, then each sample waited for
    assert set(ENVIRONMENT_KEYS) <= set(m.device) and m.device["cudnn"] == "9.19.0"


def test_replays_need_a_mark_between_every_two_samples(gpu):
    timing = gpu.engine["timing"]
    with pytest.raises(ValueError, match="marks"):
        timing.Replays(lambda: None, None, Timing(repeat=3), [object()] * 3)


def test_the_environment_names_what_measurements_are_keyed_by(gpu, monkeypatch):
    from ios_core import gpu as nvml

    monkeypatch.setattr(nvml, "device_info", lambda index=0: {"available": False, "reason": "no NVML here"})
    found = engine.environment()
    assert {key: found[key] for key in ENVIRONMENT_KEYS} == {"name": "unknown", "driver": "unknown", "cuda": "unknown",
                                                              "cudnn": "9.19.0"}
    assert found["cuda_driver_api"] == 13000 and found["reason"] == "no NVML here"


def test_the_fake_leaves_nothing_behind():
    names = ("pycuda.driver", "cudnn", "ios_core.engine.gpu", "ios_core.engine.gpu.plan")
    before = {name: sys.modules.get(name) for name in names}
    FakeGpu().close()
    assert {name: sys.modules.get(name) for name in names} == before
