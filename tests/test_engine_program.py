"""The engine's CPU half: placement, lowering, the arena and the numpy simulation of programs."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from random_graphs import random_graphs
from test_engine_cases import MODELS, SCHEDULES, merged_greedy, network, one_stream

from ios_core import schedule as S
from ios_core.engine import (
    ConvTask,
    PointwiseTask,
    PoolTask,
    Program,
    ProgramError,
    View,
    lower,
    place,
    simulate,
    unplanned_bytes,
    verify,
)
from ios_core.engine.elements import ELEMENTS
from ios_core.engine.lower import conv_params
from ios_core.engine.memory import assign_offsets
from ios_core.engine.packing import depthwise_strides, kernel_strides, lay_out, one_pixel_strides, pack
from ios_core.engine.pooling import first_pass_rows, one_pass_cells
from ios_core.engine.program import ARENA_ALIGNMENT, Buffer, WeightKey, starts_aligned
from ios_core.ir import Activation, Conv, GraphBuilder, concat
from ios_core.reference import KERNELS, gather, run_graph
from ios_core.weights import make_input, make_weights


def every_value(graph, x, weights) -> dict[str, np.ndarray]:
    """Every node's output, by the reference kernels in topological order."""
    values = {graph.input.name: x}
    for node in graph.operators:
        values[node.name] = KERNELS[type(node.op)](node.op, [gather(v, values) for v in node.inputs],
                                                   weights.get(node.name, {}))
    return values


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.linalg.norm(a - b) <= 1e-12 * max(np.linalg.norm(b), 1.0))


def test_import_touches_no_gpu_library():
    code = ("import sys, ios_core.engine, ios_core.gpu; "
            "print(any(m.split('.')[0] in ('pycuda', 'cudnn', 'torch', 'pynvml') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("element", ELEMENTS)
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_a_pack_holds_the_kernel_in_the_order_its_strides_say_then_the_bias(layout, element):
    graph, weights = network("nasnet")
    element = ELEMENTS[element]
    size = element.itemsize
    for node in [n for n in graph.operators if isinstance(n.op, Conv)][:40]:
        key = WeightKey((node.name,))
        params = conv_params(graph, weights, key)
        ours = node.op.groups > 1 and node.op.groups == params["weight"].shape[0]
        packed = pack(params, layout, ours, element)
        assert packed.host.dtype == np.dtype(element.host)
        w = element.to_float32(element.to_storage(params["weight"]))  # each value rounded once, to nearest even
        if ours:
            c, _, r, s = packed.dims
            strides = depthwise_strides(packed.dims, layout)
            read = np.lib.stride_tricks.as_strided(packed.host, (c, r, s), tuple(size * x for x in strides))
            np.testing.assert_array_equal(element.to_float32(read), w[:, 0])
        else:
            strides = kernel_strides(packed.dims, layout)
            read = np.lib.stride_tricks.as_strided(packed.host, packed.dims, tuple(size * x for x in strides))
            np.testing.assert_array_equal(element.to_float32(read), w)
        assert packed.bias_at % 256 == 0 and packed.bias_at >= w.size * size
        np.testing.assert_array_equal(element.to_float32(packed.host[packed.bias_at // size:]),
                                      element.to_float32(element.to_storage(params["bias"])))


@pytest.mark.parametrize("element", ELEMENTS)
def test_packs_are_laid_out_end_to_end_on_256_bytes(element):
    graph, weights = network("demo")
    element = ELEMENTS[element]
    size = element.itemsize
    packs = [pack(conv_params(graph, weights, WeightKey((n.name,))), "nhwc", False, element) for n in graph.operators
             if isinstance(n.op, Conv)]
    host, offsets, used = lay_out(packs)
    assert all(o % 256 == 0 for o in offsets) and used % 256 == 0 and host.nbytes == max(used, 256)
    assert host.dtype == np.dtype(element.host)
    for p, o, end in zip(packs, offsets, [*offsets[1:], used], strict=True):
        assert o + p.host.nbytes <= end
        np.testing.assert_array_equal(host[o // size:o // size + p.host.size], p.host)
    assert lay_out([])[0].nbytes == 256 and lay_out([])[2] == 0


def test_one_alignment_rule_for_convolution_operands():
    assert starts_aligned(4, 1, 4) and not starts_aligned(3, 1, 4)  # NHWC: 16 and 12 bytes into a pixel
    assert starts_aligned(4, 9, 4) and not starts_aligned(1, 9, 4)  # NCHW 3x3 planes: 144 and 36 bytes


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_demo_simulation_equals_reference(schedule, layout, reverse):
    graph, weights = network("demo")
    x = make_input(graph, 2)
    program = lower(graph, SCHEDULES[schedule](graph), 2, layout)
    out = simulate(program, graph, weights, {"input": x}, reverse)[graph.output]
    assert close(out, run_graph(graph, x, weights))


@settings(max_examples=25, deadline=None)
@given(random_graphs(), st.sampled_from(list(SCHEDULES)), st.sampled_from(["nhwc", "nchw"]), st.booleans())
def test_random_graph_simulation_equals_reference(graph, schedule, layout, in_place):
    weights, x = make_weights(graph), make_input(graph, 2)
    program = lower(graph, SCHEDULES[schedule](graph), 2, layout, concat_in_place=in_place)
    out = simulate(program, graph, weights, {"input": x}, reverse=True)[graph.output]
    assert close(out, run_graph(graph, x, weights))


@pytest.mark.parametrize("name", MODELS)
def test_models_lower_and_verify(name):
    graph, _ = network(name)
    for make in SCHEDULES.values():
        for layout in ("nhwc", "nchw"):
            program = lower(graph, make(graph), 1, layout)
            # no worse than no reuse at all, each buffer rounded up to where the next may start
            assert program.arena_bytes <= unplanned_bytes(program) + ARENA_ALIGNMENT * len(program.buffers)
            assert {t.node for t in program.tasks} <= {n.name for n in graph.operators}


def test_inception_concatenates_without_copies():
    graph, _ = network("inception_v3")
    program = lower(graph, S.sequential(graph), 1)
    assert not [t for t in program.tasks if isinstance(t, PointwiseTask)]  # every block exit is written in place
    copied = lower(graph, S.sequential(graph), 1, concat_in_place=False)
    assert len([t for t in copied.tasks if isinstance(t, PointwiseTask)]) == 46


def test_placement_hosts_whole_outputs_and_aliases_slices():
    b = GraphBuilder("place", channels=4, height=5, width=5)
    left, right = b.conv(b.input, 4, 1), b.conv(b.input, 6, 3, padding=1)
    joined = b.identity(concat([left, right]))
    part = b.identity(joined[2:8])
    b.end_block(b.conv(part, 4, 1))
    graph = b.build()
    placement = place(graph)
    assert placement.resolve("conv1") == ("identity1", 0) and placement.resolve("conv2") == ("identity1", 4)
    assert "identity2" in placement.aliases and placement.resolve("identity2") == ("identity1", 2)
    assert place(graph, host=False).resolve("conv2") == ("conv2", 0)


def test_misaligned_convolution_goes_through_aligned_scratch():
    b = GraphBuilder("misaligned", channels=3, height=4, width=4)
    a, c = b.conv(b.input, 3, 1), b.conv(b.input, 3, 1)
    joined = b.identity(concat([a, c]))  # c lives at channel 3: 12 bytes into each NHWC pixel
    b.end_block(b.conv(joined[3:6], 4, 1))
    graph = b.build()
    program = lower(graph, S.sequential(graph), 1, "nhwc")
    convs = [t for t in program.tasks if isinstance(t, ConvTask)]
    assert all(program.aligned(t.x) and program.aligned(t.y) for t in convs)
    weights, x = make_weights(graph), make_input(graph, 1)
    assert close(simulate(program, graph, weights, {"input": x})[graph.output], run_graph(graph, x, weights))


def test_a_stage_alone_reads_its_inputs_and_keeps_its_outputs():
    graph, weights = network("inception_v3")
    schedule = merged_greedy(graph)
    stage = max(schedule.stages, key=lambda s: len(s.groups))
    program = lower(graph, [stage], 1, schedule=schedule)
    assert len(program.stages[0]) == len(stage.groups) >= 3
    assert set(program.outputs) <= set(stage.ops) and program.inputs
    demo, demo_weights = network("demo")
    values = every_value(demo, make_input(demo, 1), demo_weights)
    demo_schedule = merged_greedy(demo)
    for s in demo_schedule.stages:
        alone = lower(demo, [s], 1, schedule=demo_schedule)
        outputs = simulate(alone, demo, demo_weights, {n: values[n] for n in alone.inputs})
        assert all(close(outputs[n], values[n]) for n in alone.outputs)


@pytest.mark.parametrize(("name", "merges_copy"), [("inception_v3", True), ("squeezenet", False)])
def test_a_stage_runs_the_same_tasks_alone_as_inside_its_schedule(name, merges_copy):
    """The DP adds stage costs measured alone: a merge must not move work into another stage (an identity's copy)."""
    graph, _ = network(name)
    schedule = merged_greedy(graph)
    whole = lower(graph, schedule, 1)

    def tasks(stage_program) -> list[tuple[str, str]]:
        return sorted((type(t).__name__, t.node) for stream in stage_program for t in stream)

    copies = 0
    for k, stage in enumerate(schedule.stages):
        alone = lower(graph, [stage], 1)
        assert tasks(alone.stages[0]) == tasks(whole.stages[k]), stage
        copies += sum(isinstance(t, PointwiseTask) for t in alone.tasks if any(g.merge for g in stage.groups))
    # Inception: a merged 1x1 convolution is also a branch output, concatenated at the block's exit. SqueezeNet:
    # a fire module's two expand convolutions, merged, write straight into the concatenation, side by side.
    assert (copies > 0) == merges_copy
    assert any(g.merge for stage in schedule.stages for g in stage.groups)


def _program(buffers, offsets, stages) -> Program:
    return Program("t", 1, "nhwc", 4, tuple(buffers), tuple(offsets), 4096, stages, {})


def test_verify_catches_races_and_shared_bytes():
    two = [Buffer(0, "a", 8, 2, 2, 0, 0), Buffer(1, "b", 8, 2, 2, 0, 0)]
    race = ((PointwiseTask("p", View(0, 0, 4), View(1, 0, 4)),), (PointwiseTask("q", View(1, 2, 4), View(0, 4, 4)),))
    with pytest.raises(ProgramError, match="race"):
        verify(_program(two, [0, 256], (race,)))
    fine = ((PointwiseTask("p", View(0, 0, 4), View(1, 0, 4)),), (PointwiseTask("q", View(0, 4, 4), View(1, 4, 4)),))
    verify(_program(two, [0, 256], (fine,)))
    with pytest.raises(ProgramError, match="share arena bytes"):
        verify(_program(two, [0, 0], (fine,)))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 5000), st.integers(0, 9), st.integers(0, 4)), min_size=1, max_size=30))
def test_arena_never_overlaps_live_buffers(items):
    sizes = [s for s, _, _ in items]
    lifetimes = [(first, first + length) for _, first, length in items]
    offsets, arena = assign_offsets(sizes, lifetimes, 256)
    assert all(o % 256 == 0 and o + s <= arena for o, s in zip(offsets, sizes, strict=True))
    for i in range(len(items)):
        for j in range(i):
            live = lifetimes[i][0] <= lifetimes[j][1] and lifetimes[j][0] <= lifetimes[i][1]
            apart = offsets[i] + sizes[i] <= offsets[j] or offsets[j] + sizes[j] <= offsets[i]
            assert apart or not live


def test_program_prints_one_line_per_task():
    graph, _ = network("demo")
    program = lower(graph, S.sequential(graph), 1)
    text = str(program).splitlines()
    assert text[0].startswith("program demo batch 1 nhwc")
    assert len(text) == 1 + len(program.buffers) + len(program.tasks)
    assert any(line.endswith("# conv1") and "= conv[conv1]" in line for line in text)



def test_separable_convolution_folds_its_relu_into_the_depthwise_kernel():
    b = GraphBuilder("separable", channels=6, height=7, width=7)
    x = b.conv(b.input, 6, 1)
    tower = b.sequential(x + x, Activation("relu"), Conv(6, (3, 3), padding=(1, 1), groups=6), Conv(6, (1, 1)))
    b.end_block(b.sequential(tower, Activation("relu"), Conv(6, (5, 5), (2, 2), (2, 2), groups=6), Conv(4, (1, 1))))
    graph = b.build()
    weights, x = make_weights(graph), make_input(graph, 2)
    ours = lower(graph, S.sequential(graph), 2)
    depthwise = [t for t in ours.tasks if isinstance(t, ConvTask) and t.depthwise]
    assert [t.pre_act for t in depthwise] == ["none", "relu"]  # the first relu rides on the sum's gather
    assert "relu(b" in str(ours)
    cudnn = lower(graph, S.sequential(graph), 2, own_depthwise=False)
    assert all(t.pre_act == "none" for t in cudnn.tasks if isinstance(t, ConvTask))
    for program in (ours, cudnn):
        assert close(simulate(program, graph, weights, {"input": x})[graph.output], run_graph(graph, x, weights))


def residual_blocks(act: str = "relu") -> GraphBuilder:
    """Three residual sums: one of a convolution and the input, then an activation; one of a convolution and a
    slice of a wider tensor; one of two convolutions' outputs, the first of which a third convolution also reads."""
    b = GraphBuilder("residual", channels=8, height=6, width=6)
    wide = b.conv(b.input, 16, 1)
    first = b.activation(b.conv(wide, 8, 3, padding=1, act="none") + b.input, act)
    sliced = b.add(b.conv(first, 8, 1, act="none"), wide[8:16])
    left, right = b.conv(sliced, 8, 1, act="none"), b.conv(sliced, 8, 3, padding=1, act="none")
    b.end_block(b.identity(concat([b.add(left, right), b.conv(left, 4, 1)])))
    return b


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_a_sum_that_alone_reads_a_convolution_in_its_group_folds_into_it(layout):
    graph = residual_blocks().build()
    weights, x = make_weights(graph), make_input(graph, 2)
    program = lower(graph, one_stream(graph), 2, layout)
    # conv2's output is read by the sum alone; conv3's too, but its addend is a slice of conv1's output; of the third
    # sum's terms, conv4 is read twice and conv5 comes after it
    assert program.folded == ("conv2", "conv5")
    folded = [t for t in program.tasks if isinstance(t, ConvTask) and t.addend is not None]
    assert [(t.node, t.conv.act) for t in folded] == [("conv2", "relu"), ("conv5", "none")]
    assert folded[0].addend == program.values["input"] and "relu(conv[conv2]" in str(program)
    assert [t.b for t in program.tasks if isinstance(t, PointwiseTask) and t.op == "add"] == [
        program.values["conv1"].sub(8, 16)]
    assert "conv2" not in program.values  # no value: nothing ever writes it, and it takes no arena bytes
    assert not {"conv2", "conv5"} & {b.name for b in program.buffers}
    assert close(simulate(program, graph, weights, {"input": x})[graph.output], run_graph(graph, x, weights))


def test_a_sum_does_not_fold_across_groups_or_when_switched_off():
    graph = residual_blocks().build()
    assert lower(graph, S.sequential(graph), 1).folded == ()
    assert lower(graph, one_stream(graph), 1, fold_sums=False).folded == ()


def test_a_sum_that_reads_its_convolution_twice_keeps_it():
    """``(input + conv) + conv`` is two kernels, each reading the convolution's output: folding it into the first
    would leave the second reading memory nothing wrote (found by the random-graph test)."""
    b = GraphBuilder("twice", channels=4, height=6, width=6)
    conv = b.conv(b.input, 4, 1, act="none")
    b.end_block(b.conv(b.add(b.input + conv, conv), 4, 1))
    graph = b.build()
    weights, x = make_weights(graph), make_input(graph, 2)
    program = lower(graph, one_stream(graph), 2)
    assert program.folded == ()
    assert close(simulate(program, graph, weights, {"input": x})[graph.output], run_graph(graph, x, weights))


def test_a_convolution_with_its_own_activation_or_a_broadcast_term_keeps_its_sum():
    b = GraphBuilder("unfoldable", channels=8, height=6, width=6)
    activated = b.conv(b.input, 8, 3, padding=1, act="relu") + b.input
    b.end_block(b.mul(b.conv(activated, 8, 1, act="none"), b.pool(b.input, "global_avg")))
    graph = b.build()
    assert lower(graph, one_stream(graph), 1).folded == ()


def test_an_addend_must_be_a_whole_value_of_the_output_shape_apart_from_it():
    graph = residual_blocks().build()
    program = lower(graph, one_stream(graph), 1)
    stage = program.stages[0]
    conv1 = program.values["conv1"].buffer
    for broken in (View(conv1, 0, 4), View(conv1, 8, 8), None):  # a shape not the output's, a slice, the output
        tasks = [replace(t, addend=broken or t.y) if isinstance(t, ConvTask) and t.addend is not None else t
                 for t in stage[0]]
        with pytest.raises(ProgramError, match="addend"):
            verify(replace(program, stages=((tuple(tasks),),)))


def test_a_one_pixel_tensor_is_described_to_cudnn_as_in_nhwc_whatever_the_layout():
    # (N, C, 1, 1) in NCHW has C, H and W strides 1; in NHWC H and W take the N stride; a channel slice of a wider
    # buffer keeps the wider buffer's N stride
    assert one_pixel_strides((2, 8, 1, 1), (8, 1, 1, 1)) == (8, 1, 8, 8) == one_pixel_strides((2, 8, 1, 1),
                                                                                               (8, 1, 8, 8))
    assert one_pixel_strides((1, 8, 1, 1), (32, 1, 1, 1)) == (32, 1, 32, 32)
    kernel = (16, 8, 1, 1)
    assert one_pixel_strides(kernel, kernel_strides(kernel, "nchw")) == kernel_strides(kernel, "nhwc")
    more = [((1, 8, 4, 5), (160, 20, 5, 1)), ((1, 8, 1, 5), (40, 5, 5, 1)), ((4, 3, 4, 5), (60, 1, 15, 3))]
    for dims, strides in more:
        assert one_pixel_strides(dims, strides) == strides  # more than one pixel: as they are


def test_a_global_pool_too_wide_for_one_pass_runs_bands_of_rows_then_the_bands():
    assert 60 * 40 > one_pass_cells(8) >= 32 * 64  # 8 channels: two vectors of 4, 128 cell lanes a block
    b = GraphBuilder("excite", channels=8, height=60, width=40)
    x = b.conv(b.input, 8, 1)
    scale = b.sequential(b.pool(x, "global_avg"), Conv(8, (1, 1)), Activation("sigmoid"))
    peak = b.pool(x, "global_max")
    b.end_block(b.mul(x, scale, b.add(peak, peak)))
    graph = b.build()
    weights, inputs = make_weights(graph), make_input(graph, 2)
    for layout in ("nhwc", "nchw"):
        program = lower(graph, S.sequential(graph), 2, layout)
        pools = [(t.pool.kind, t.pool.kernel, program.buffers[t.y.buffer].height) for t in program.tasks
                 if isinstance(t, PoolTask)]
        # the most rows that divide 60 within one pass: 30 (40 x 30 = 1,200 cells), so 2 equal bands
        assert pools == [("avg", (30, 40), 2), ("global_avg", (1, 1), 1), ("max", (30, 40), 2),
                         ("global_max", (1, 1), 1)]
        out = simulate(program, graph, weights, {"input": inputs})[graph.output]
        assert close(out, run_graph(graph, inputs, weights))
    small = GraphBuilder("small", channels=8, height=32, width=64)  # within one pass
    small.end_block(small.pool(small.conv(small.input, 8, 1), "global_avg"))
    graph = small.build()
    assert [t.pool.kind for t in lower(graph, S.sequential(graph), 1).tasks if isinstance(t, PoolTask)] == [
        "global_avg"]


@pytest.mark.parametrize(
    ("channels", "height", "width", "rows"),
    [
        (32, 112, 112, 4),  # EfficientNet-B0's first SE pool: 8 vectors x 32 cell lanes, 512 cells; 28 bands
        (672, 14, 14, 7),  # 32 channel lanes x 8 cell lanes, 128 cells: 2 bands of 98
        (3, 7, 1000, 1),  # a row wider than a pass: bands of one row
        (16, 1, 5000, None),  # one row: nothing to band
        (2048, 8, 8, None),
    ],
)
def test_first_pass_rows_divide_the_height_within_one_pass(channels, height, width, rows):
    most = one_pass_cells(channels)
    got = first_pass_rows(channels, height, width)
    if got is None:
        assert height * width <= most or height == 1
    else:
        assert height % got == 0 and (got * width <= most or got == 1)
        assert not any(height % r == 0 and r * width <= most for r in range(got + 1, height + 1))
    if rows is not None or got is None:
        assert got == rows
