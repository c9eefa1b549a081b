"""The model zoo's operators on the engine's CPU half: each lowered in both layouts and run by the program simulator
equals the reference (float64, <= 1e-9), under the sequential and the greedy schedule, streams in either order."""

from __future__ import annotations

import pytest

from ios_core import schedule as S
from ios_core.engine import lower, simulate
from ios_core.engine.program import NormTask, PadTask, PointwiseTask, ShuffleTask
from ios_core.ir import (
    Activation,
    ChannelShuffle,
    Clip,
    Conv,
    Graph,
    GraphBuilder,
    LayerNorm,
    Pad,
    Pool,
    Softmax,
    concat,
)
from ios_core.reference import relative_error, run_graph
from ios_core.weights import make_input, make_weights

NEW_ACTIVATIONS = ("relu6", "hardsigmoid", "hardswish", "silu", "gelu", "gelu_tanh")
BATCH = 2


def activations() -> Graph:
    """Every new activation fused into a convolution, a depthwise one (and ahead of it in a sequential), and alone."""
    b = GraphBuilder("activations", 8, 7, 7)
    x = b.input
    outs = []
    for act in NEW_ACTIVATIONS:
        y = b.conv(b.conv(x, 8, 3, padding=1, act=act), 8, 3, padding=1, act=act, groups=8)
        outs.append(b.activation(y, act))
        outs.append(b.sequential(x, Activation(act), Conv(8, (3, 3), padding=(1, 1), groups=8, act=act)))
    b.end_block(b.add(*outs))
    return b.build()


def padded_convs() -> Graph:
    """Asymmetric padding (TensorFlow's "same" at stride 2) on a dense, a grouped and a depthwise convolution."""
    b = GraphBuilder("padded_convs", 8, 9, 9)
    x = b.input
    dense = b.node(Conv(8, (3, 3), (2, 2), (0, 0), padding_end=(1, 1), act="relu"), x)
    grouped = b.node(Conv(8, (3, 3), (2, 2), (1, 0), padding_end=(0, 1), groups=2), x)
    depthwise = b.node(Conv(8, (5, 5), (2, 2), (1, 1), padding_end=(2, 2), groups=8, act="hardswish"), x)
    wide = b.node(Conv(8, (3, 5), (1, 1), (0, 2), padding_end=(2, 2), groups=8), x)
    b.end_block(b.add(dense, grouped, depthwise, b.pool(wide, "max", 2, 2, 0)))
    return b.build()


POOLS = (
    Pool("max", (3, 3), (2, 2), ceil_mode=True),  # googlenet's
    Pool("avg", (3, 3), (2, 2), (1, 1), ceil_mode=True, count_include_pad=True),
    Pool("avg", (3, 3), (2, 2), (1, 1), ceil_mode=True),
    Pool("avg", (3, 3), (1, 1), (1, 1), count_include_pad=True),  # inception's
    Pool("max", (3, 3), (2, 2), (0, 0), padding_end=(1, 1)),  # nasnet's "same"
    Pool("avg", (3, 3), (2, 2), (1, 0), padding_end=(1, 2), count_include_pad=True),
    Pool("avg", (2, 2), (2, 2), ceil_mode=True, count_include_pad=True),
)


def pools(pool: Pool) -> Graph:
    b = GraphBuilder("pools", 8, 8, 8)
    y = b.node(pool, b.conv(b.input, 8, 1))
    b.end_block(b.conv(y, 8, 1))
    return b.build()


def squeeze_excitation() -> Graph:
    """The scale of a squeeze-and-excitation block (C x 1 x 1 times C x H x W, either order), a broadcast sum of
    three operands, and a broadcast operand that is a slice of a concatenation."""
    b = GraphBuilder("squeeze_excitation", 8, 6, 6)
    x = b.conv(b.input, 8, 3, padding=1)
    squeezed = b.pool(x, "global_avg")
    scale = b.conv(b.conv(squeezed, 4, 1, act="relu"), 8, 1, act="hardsigmoid")
    scaled = b.mul(x, scale)
    shift = b.conv(squeezed, 16, 1, act="none")
    summed = b.add(b.conv(scaled, 8, 1, act="none"), shift[0:8], shift[8:16])
    product = b.mul(scale, summed, scale)
    b.end_block(concat([product, scaled]))
    return b.build()


def shuffles() -> Graph:
    """A channel shuffle of a slice of a concatenation (ShuffleNet's split then shuffle), of a sum, and trivial ones."""
    b = GraphBuilder("shuffles", 8, 5, 5)
    left = b.conv(b.input, 8, 1)
    right = b.conv(b.input, 8, 3, padding=1, groups=8, act="none")
    both = concat([left, right])
    mixed = b.node(ChannelShuffle(2), both)
    of_sum = b.node(ChannelShuffle(4), left + right)
    slice_shuffle = b.node(ChannelShuffle(3), both[1:13])
    trivial = b.node(ChannelShuffle(16), both)
    b.end_block(concat([b.add(mixed, trivial, b.node(ChannelShuffle(1), both)), of_sum, slice_shuffle]))
    return b.build()


def pads_and_clips() -> Graph:
    """Pads with a value, crops (negative pads), both at once, and clips."""
    b = GraphBuilder("pads_and_clips", 4, 7, 7)
    x = b.conv(b.input, 8, 1)
    padded = b.node(Pad((1, 0, 2, 3), -0.5), x)  # 10 x 10
    cropped = b.node(Pad((-1, -2, 0, -1)), x)  # 6 x 4
    mixed = b.node(Pad((2, -1, -3, 1)), x)  # 6 x 7
    clipped = b.node(Clip(-0.25, 0.5), x[2:6])
    averaged = b.node(Pool("avg", (1, 2), (1, 1), (0, 1), (0, 0), count_include_pad=True), mixed)
    body = b.add(
        b.conv(padded, 8, (5, 4), act="none"),
        averaged,
        b.node(Pad((0, 0, 0, 1)), b.node(Pad((0, 0, 0, 2), 0.25), cropped)),
    )
    b.end_block(b.add(body, b.node(Pad((0, 0, -1, 0)), b.conv(clipped, 8, 1, act="relu6"))))
    return b.build()


def norms() -> Graph:
    """LayerNorm and softmax over channels, on whole outputs and on channel slices (ConvNeXt's block, a classifier)."""
    b = GraphBuilder("norms", 8, 5, 5)
    x = b.conv(b.input, 16, 3, padding=1, act="none")
    normed = b.node(LayerNorm(1e-6), x)
    sliced = b.node(LayerNorm(), x[4:12])
    mlp = b.conv(b.conv(normed, 32, 1, act="gelu"), 16, 1, act="none")
    soft = b.node(Softmax(), x[0:6])
    b.end_block(concat([b.add(mlp, x), sliced, soft, b.node(Softmax(), b.node(LayerNorm(), x[0:1]))]))
    return b.build()


def head() -> Graph:
    """A classifier head: a convolution whose kernel is the whole C x H x W input (a Gemm on the flattened input),
    1 x 1 convolutions on K x 1 x 1, a LayerNorm and a softmax over the classes."""
    b = GraphBuilder("head", 8, 4, 5)
    body = b.conv(b.input, 16, 3, padding=1)
    flat = b.conv(body, 32, (4, 5), act="relu")
    pooled = b.conv(b.pool(body, "global_avg"), 32, 1, act="gelu_tanh")
    b.end_block(b.node(Softmax(), b.conv(b.node(LayerNorm(), b.add(flat, pooled)), 10, 1, act="none")))
    return b.build()


GRAPHS = {
    "activations": activations,
    "padded_convs": padded_convs,
    "squeeze_excitation": squeeze_excitation,
    "shuffles": shuffles,
    "pads_and_clips": pads_and_clips,
    "norms": norms,
    "head": head,
    **{f"pool{i}": (lambda pool=pool: pools(pool)) for i, pool in enumerate(POOLS)},
}


def simulated(graph: Graph, schedule: S.Schedule, layout: str, reverse: bool = False) -> float:
    weights, x = make_weights(graph), make_input(graph, BATCH)
    program = lower(graph, schedule, BATCH, layout)
    out = simulate(program, graph, weights, {"input": x}, reverse)[graph.output]
    return relative_error(out, run_graph(graph, x, weights))


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_each_zoo_operator_simulates_as_the_reference(name, layout):
    graph = GRAPHS[name]()
    assert simulated(graph, S.sequential(graph), layout) <= 1e-9
    greedy = S.greedy(graph)
    assert simulated(graph, greedy, layout) <= 1e-9
    assert simulated(graph, greedy, layout, reverse=True) <= 1e-9


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_cudnn_depthwise_lowering_simulates_as_the_reference(name):
    graph = GRAPHS[name]()
    weights, x = make_weights(graph), make_input(graph, BATCH)
    program = lower(graph, S.greedy(graph), BATCH, "nhwc", own_depthwise=False)
    out = simulate(program, graph, weights, {"input": x})[graph.output]
    assert relative_error(out, run_graph(graph, x, weights)) <= 1e-9


def test_each_zoo_operator_lowers_to_its_one_task():
    cases = {"shuffles": ShuffleTask, "pads_and_clips": PadTask, "norms": NormTask}
    for name, kind in cases.items():
        graph = GRAPHS[name]()
        program = lower(graph, S.sequential(graph), 1, "nhwc")
        for node in graph.operators:
            if isinstance(node.op, (ChannelShuffle, Pad, LayerNorm, Softmax)):
                tasks = [t for t in program.tasks if t.node == node.name]
                trivial = isinstance(node.op, ChannelShuffle) and node.op.groups in (1, node.inputs[0].channels)
                expected = (
                    PointwiseTask if trivial else kind if not isinstance(node.op, (LayerNorm, Softmax)) else NormTask
                )
                assert [type(t) for t in tasks][-1:] == [expected], (name, node.name, tasks)


def test_a_broadcast_operand_is_read_in_place_not_copied():
    graph = squeeze_excitation()
    program = lower(graph, S.sequential(graph), 1, "nhwc")
    scale = program.values["conv3"]
    mul = [t for t in program.tasks if t.node == "mul1"]
    assert len(mul) == 1 and scale in mul[0].reads()
    assert "mul1" in str(program) and "conv3" in str(program)


def test_clip_and_shuffle_print_on_one_line():
    graph = pads_and_clips()
    text = str(lower(graph, S.sequential(graph), 1, "nchw"))
    assert "clip(" in text and "pad 1 0 2 3 (-0.5)" in text
    assert "shuffle g2" in str(lower(shuffles(), S.sequential(shuffles()), 1, "nhwc"))
