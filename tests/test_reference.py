"""The numpy reference: kernels against naive loops, and schedules against the graph."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from random_graphs import random_graphs

from ios_core import models
from ios_core import schedule as S
from ios_core.ir import Conv, GraphBuilder, LayerNorm, Pool, Softmax, concat
from ios_core.reference import KERNELS, ExecutionError, conv2d, pool2d, run_graph, run_schedule
from ios_core.schedule import Group, Schedule, Stage
from ios_core.weights import make_input, make_weights


def naive_conv(x, w, b, stride, padding, dilation, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    oh = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    per_group = o // groups
    for k, i, j in itertools.product(range(o), range(oh), range(ow)):
        g = k // per_group
        patch = x[:, g * cg : (g + 1) * cg, i * stride[0] :, j * stride[1] :][:, :, :: dilation[0], :: dilation[1]]
        out[:, k, i, j] = (patch[:, :, :kh, :kw] * w[k]).sum(axis=(1, 2, 3)) + b[k]
    return out


@pytest.mark.parametrize(
    "conv",
    [
        Conv(5, (3, 3), (1, 1), (1, 1)),
        Conv(5, (3, 2), (2, 1), (0, 1)),
        Conv(4, (3, 3), (1, 1), (2, 2), (2, 2)),
        Conv(6, (3, 3), (1, 1), (1, 1), groups=6),
        Conv(4, (1, 3), (1, 2), (0, 1), groups=2),
    ],
)
def test_conv_matches_naive_loops(conv):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 7, 7))
    w = rng.standard_normal((conv.out_channels, 6 // conv.groups, *conv.kernel))
    b = rng.standard_normal(conv.out_channels)
    expected = naive_conv(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)
    np.testing.assert_allclose(conv2d(conv, [x], {"weight": w, "bias": b}), expected, rtol=1e-12, atol=1e-12)


def test_pooling_by_hand():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    avg = pool2d(Pool("avg", (3, 3), (1, 1), (1, 1)), [x], {})
    assert avg[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4  # the corner averages its 4 real values: padding excluded
    assert pool2d(Pool("max", (2, 2), (2, 2)), [x], {})[0, 0].tolist() == [[5, 7], [13, 15]]
    assert pool2d(Pool("global_avg"), [x], {}).item() == 7.5
    assert pool2d(Pool("global_max"), [-x], {}).item() == 0


@pytest.mark.parametrize("name", models.names())
def test_sequential_and_greedy_equal_the_graph_bit_for_bit(name):
    graph = models.get(name)
    weights, x = make_weights(graph), make_input(graph, batch=1)
    expected = run_graph(graph, x, weights)
    assert np.isfinite(expected).all() and expected.std() > 0
    for schedule in (S.sequential(graph), S.greedy(graph)):
        assert np.array_equal(run_schedule(graph, schedule, x, weights), expected)


def test_merged_convolutions_equal_unmerged_ones():
    """Five kernel shapes (1x1, 3x3, 1x7, 7x1, 5x5) merge into one 7x7 convolution."""
    b = GraphBuilder("m", 6, 9, 9)
    x = b.input
    outs = [
        b.conv(x, 4, 1),
        b.conv(x, 5, 3, padding=1),
        b.conv(x, 3, (1, 7), padding=(0, 3)),
        b.conv(x, 2, (7, 1), padding=(3, 0)),
        b.conv(x, 4, 5, padding=2),
    ]
    b.end_block(concat(outs))
    graph = b.build()
    weights, inputs = make_weights(graph), make_input(graph, batch=2)
    merge = Group(tuple(f"conv{i}" for i in range(1, 6)), merge=True)
    merged = Schedule(graph.name, (Stage((merge,)), Stage((Group(("identity1",)),))))
    S.validate(graph, merged)
    np.testing.assert_allclose(
        run_schedule(graph, merged, inputs, weights), run_graph(graph, inputs, weights), rtol=0, atol=1e-12
    )


def test_merged_asymmetric_convolutions_equal_unmerged_ones():
    """An even kernel pads one side more ("same" padding as TensorFlow writes it): 4x4, 3x3, 2x2, 1x1 merge."""
    b = GraphBuilder("m", 5, 8, 7)
    x = b.input
    outs = [
        b.node(Conv(3, (4, 4), padding=(1, 1), padding_end=(2, 2)), x),
        b.conv(x, 2, 3, padding=1, act="none"),
        b.node(Conv(4, (2, 2), padding=(0, 0), padding_end=(1, 1)), x),
        b.conv(x, 2, 1, act="none"),
    ]
    b.end_block(concat(outs))
    graph = b.build()
    names = tuple(f"conv{i}" for i in range(1, 5))
    assert S.merge_error(graph, names) is None
    assert S.merged_conv([graph[n].op for n in names]).pads == (1, 1, 2, 2)
    merged = Schedule(graph.name, (Stage((Group(names, merge=True),)), Stage((Group(("identity1",)),))))
    weights, inputs = make_weights(graph), make_input(graph, batch=2)
    np.testing.assert_allclose(
        run_schedule(graph, merged, inputs, weights), run_graph(graph, inputs, weights), rtol=0, atol=1e-12
    )


def test_convolutions_whose_padded_kernels_disagree_do_not_merge():
    """Three 5x5 outputs of a 6x6 input; a 2x2 kernel centered in 3x3 reads one more row below, not above."""
    b = GraphBuilder("m", 4, 6, 6)
    x = b.input
    below = b.node(Conv(2, (3, 3), padding_end=(1, 1)), x)
    above = b.node(Conv(2, (3, 3), padding=(1, 1), padding_end=(0, 0)), x)
    b.end_block(concat([b.conv(x, 2, 2, act="none"), below, above]))
    graph = b.build()
    assert S.merge_error(graph, ("conv3", "conv1")) is None
    assert "different output shapes or windows" in S.merge_error(graph, ("conv3", "conv2"))


def test_a_failing_kernel_names_its_node():
    graph = models.get("demo")
    weights = make_weights(graph)
    del weights["conv3"]
    with pytest.raises(ExecutionError, match=r"while executing conv3 = conv 8 3x3 p1 relu"):
        run_graph(graph, make_input(graph, 1), weights)


@settings(max_examples=40, deadline=None)
@given(random_graphs(zoo=True))
def test_greedy_equals_the_graph_on_random_graphs(graph):
    weights, x = make_weights(graph, seed=3), make_input(graph, batch=2)
    assert np.array_equal(run_schedule(graph, S.greedy(graph), x, weights), run_graph(graph, x, weights))


def test_softmax_and_layer_norm_by_hand():
    x = np.array([1000.0, 1000.0, 0.0, -1000.0]).reshape(1, 4, 1, 1)
    probabilities = KERNELS[Softmax](Softmax(), [x], {})[:, :, 0, 0]
    np.testing.assert_allclose(probabilities, [[0.5, 0.5, 0, 0]], atol=1e-300)  # no overflow to inf / inf
    params = {"weight": np.array([1.0, 2.0, 1.0, 1.0]), "bias": np.array([0.0, 0.0, 0.0, 3.0])}
    normed = KERNELS[LayerNorm](LayerNorm(eps=0.0), [np.array([1.0, 3.0, 1.0, 3.0]).reshape(1, 4, 1, 1)], params)
    assert normed[0, :, 0, 0].tolist() == [-1.0, 2.0, -1.0, 4.0]  # mean 2, biased variance 1
