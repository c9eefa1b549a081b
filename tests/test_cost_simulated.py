"""The simulated cost: device profiles, the roofline per kernel, concurrency in a stage, merges."""

import math

import pytest
from random_graphs import every_op_graph

from ios_core.config import device_profile as profile
from ios_core.cost import DeviceError, DeviceProfile, SimulatedCost
from ios_core.cost.simulated import op_kernels
from ios_core.ir import OPS, GraphBuilder, Placeholder, Sequential
from ios_core.schedule import Group, Stage, merged_conv

H100 = profile("h100")


def branches(width: int, size: int, count: int):
    """``count`` 3x3 convolutions of ``width`` channels side by side on one ``width x size x size`` input."""
    b = GraphBuilder("branches", width, size, size)
    outs = [b.conv(b.input, width, 3, padding=1) for _ in range(count)]
    b.end_block(b.add(*outs) if count > 1 else outs[0])
    return b.build()


def alone(cost, graph, names, batch):
    return [cost.stage_latency(graph, Stage((Group((n,)),)), batch) for n in names]


@pytest.mark.parametrize("name", ["h100", "h200", "a100", "v100", "sim"])
def test_every_device_profile_loads_and_says_whether_it_is_real(name):
    device = profile(name)
    assert device.name == name
    assert device.real == (name != "sim")


def test_a_profile_with_an_unknown_or_impossible_value_is_rejected_by_name():
    with pytest.raises(DeviceError, match="sm_cout"):
        DeviceProfile.from_mapping({"name": "x", "sm_cout": 3})
    with pytest.raises(DeviceError, match="compute_efficiency"):
        DeviceProfile(compute_efficiency=1.5)


def test_every_number_is_labelled_simulated():
    assert SimulatedCost(H100).kind == "simulated"


def test_one_kernel_costs_its_launch_plus_its_roofline_time_alone():
    g = branches(64, 35, 1)
    cost = SimulatedCost(H100)
    [latency] = alone(cost, g, ["conv1"], 1)
    node = g["conv1"]
    [kernel] = op_kernels(node.op, ((g.shapes["input"], 1),), 1)
    t_alone, t_full = cost.kernel_times(kernel)
    assert latency == pytest.approx((H100.launch_us + t_alone) / 1000)
    assert t_alone > 5 * t_full  # 35x35x64 outputs fill a few of 132 SMs


def test_small_operators_in_parallel_cost_about_the_longest_plus_overhead():
    g = branches(64, 17, 4)
    cost = SimulatedCost(H100, "fp32-strict")  # compute-heavier kernels, so the launch overhead is not all there is
    names = [f"conv{i}" for i in range(1, 5)]
    singles = alone(cost, g, names, 1)
    together = cost.stage_latency(g, Stage(tuple(Group((n,)) for n in names)), 1)
    assert max(singles) < together <= max(singles) + 3 * H100.sync_us / 1000 + 1e-12
    assert together < 0.5 * sum(singles)


def test_large_operators_in_parallel_cost_about_their_sum():
    g = branches(256, 56, 4)
    cost = SimulatedCost(H100)
    names = [f"conv{i}" for i in range(1, 5)]
    singles = alone(cost, g, names, 64)
    together = cost.stage_latency(g, Stage(tuple(Group((n,)) for n in names)), 64)
    assert together == pytest.approx(sum(singles), rel=0.02)


def test_a_merge_costs_what_the_one_wider_convolution_costs():
    b = GraphBuilder("pair", 32, 17, 17)
    b.conv(b.input, 48, 1, name="narrow")
    b.end_block(b.conv(b.input, 64, 3, padding=1, name="wide"))
    g = b.build()
    one = GraphBuilder("one", 32, 17, 17)
    one.end_block(one.node(merged_conv([g["narrow"].op, g["wide"].op]), one.input, name="merged"))
    cost = SimulatedCost(H100)
    merged = cost.stage_latency(g, Stage((Group(("narrow", "wide"), merge=True),)), 8)
    assert merged == cost.stage_latency(one.build(), Stage((Group(("merged",)),)), 8)


def test_tf32_speeds_up_convolutions_only_where_the_device_has_it():
    g = branches(256, 56, 1)
    stage = Stage((Group(("conv1",)),))
    assert SimulatedCost(H100).stage_latency(g, stage, 64) < SimulatedCost(H100, "fp32-strict").stage_latency(
        g, stage, 64
    )
    v100 = profile("v100")
    assert SimulatedCost(v100).stage_latency(g, stage, 64) == SimulatedCost(v100, "fp32-strict").stage_latency(
        g, stage, 64
    )


def test_an_unknown_precision_is_an_error():
    with pytest.raises(ValueError, match="precision"):
        SimulatedCost(H100, "fp8")


def test_every_operator_has_a_memory_bound_or_compute_cost():
    """Each node of the every-operator graph costs its launch plus a roofline time: bytes in and out, weights."""
    graph = every_op_graph()
    cost = SimulatedCost(H100)
    kinds = {type(node.op) for node in graph.operators}
    assert kinds == set(OPS) - {Placeholder}
    for node in graph.operators:
        operands = tuple((graph.operand_shape(v, graph.shapes), len(v.terms)) for v in node.inputs)
        kernels = op_kernels(node.op, operands, batch=4)
        if isinstance(node.op, Sequential):  # one kernel per inner operator, each reading what the last wrote
            assert len(kernels) == len(node.op.ops) and kernels[-1].outputs == 4 * graph.shapes[node.name].size
            continue
        (kernel,) = kernels
        out = graph.shapes[node.name]
        read = sum(shape.size * terms for shape, terms in operands)
        weights = sum(math.prod(s) for s in graph.weight_shapes(node.name).values())
        assert kernel.bytes == 4 * 4 * (read + out.size) + 4 * weights
        assert kernel.flops == 4 * graph.flops(node.name) and kernel.outputs == 4 * out.size
        assert cost.stage_latency(graph, Stage((Group((node.name,)),)), 4) > H100.launch_us / 1000


def test_a_per_channel_scale_reads_one_value_per_channel():
    b = GraphBuilder("se", 16, 32, 32)
    scale = b.pool(b.input, "global_avg")
    b.end_block(b.mul(b.input, scale))
    graph = b.build()
    (kernel,) = op_kernels(graph["mul1"].op, ((graph.shapes["input"], 1), (graph.shapes["pool1"], 1)), batch=1)
    assert kernel.bytes == 4 * (2 * 16 * 32 * 32 + 16)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precision_moves_half_the_bytes(precision):
    graph = every_op_graph()
    for node in graph.operators:
        operands = tuple((graph.operand_shape(v, graph.shapes), len(v.terms)) for v in node.inputs)
        full, half = op_kernels(node.op, operands, 4), op_kernels(node.op, operands, 4, element_bytes=2)
        assert [k.bytes / 2 for k in full] == [k.bytes for k in half]
        assert [k._replace(bytes=0) for k in full] == [k._replace(bytes=0) for k in half]


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_memory_bound_operator_takes_about_half_as_long_in_half_precision(precision):
    b = GraphBuilder("pool", 256, 56, 56)
    b.end_block(b.pool(b.input, "max", 3, stride=1, padding=1))
    graph = b.build()
    stage = Stage((Group(("pool1",)),))
    launch = H100.launch_us / 1000
    fp32 = SimulatedCost(H100).stage_latency(graph, stage, 64) - launch
    half = SimulatedCost(H100, precision).stage_latency(graph, stage, 64) - launch
    assert half == pytest.approx(fp32 / 2)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_convolutions_run_at_the_sixteen_bit_tensor_core_peak(precision):
    g = branches(256, 56, 1)
    [kernel] = op_kernels(g["conv1"].op, ((g.shapes["input"], 1),), 64)
    assert H100.peak_tflops(precision, tensor=True) == 989.5
    assert H100.peak_tflops(precision, tensor=False) == H100.fp32_tflops  # our own kernels compute in float32
    fp32, half = SimulatedCost(H100).kernel_times(kernel), SimulatedCost(H100, precision).kernel_times(kernel)
    assert half[1] < fp32[1]


def test_a_gpu_without_bf16_tensor_cores_runs_bf16_convolutions_at_its_fp32_peak():
    v100 = profile("v100")
    assert v100.peak_tflops("bf16", tensor=True) == v100.fp32_tflops < v100.peak_tflops("fp16", tensor=True)


def test_the_cache_space_changes_with_the_precision():
    spaces = {SimulatedCost(H100, p).space for p in ("fp32", "fp32-strict", "fp16", "bf16")}
    assert len(spaces) == 4 and all(f"/{p}/" in SimulatedCost(H100, p).space for p in ("fp16", "bf16"))


@pytest.mark.parametrize("name", ["h100", "h200", "a100", "v100", "sim"])
def test_every_profile_states_its_sixteen_bit_tensor_peaks(name):
    device = profile(name)
    assert device.fp16_tflops >= device.tf32_tflops and device.bf16_tflops >= device.fp32_tflops
