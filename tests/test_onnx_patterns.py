"""ONNX import of what the model zoo spells in several nodes or other layouts: activations, padding, pools,
channel shuffle, squeeze-excitation, ConvNeXt's channels-last blocks and classifier heads -- each against ONNX
Runtime, with and without onnxslim's folding first, and as the IR node it should become."""

import math

import numpy as np
import pytest
from onnx_random import run_ort
from test_onnx_import import TOLERANCE, Net

from ios_core.ir import ChannelShuffle, Clip, Conv, Elementwise, LayerNorm, Pad, Pool, Softmax
from ios_core.onnx_io import load_onnx, run_network
from ios_core.reference import relative_error


def imported(model, channels=3, size=8):
    """The network imported without folding (its structure is the importer's own), after checking that it and the
    folded import both equal ONNX Runtime."""
    x = np.random.default_rng(1).standard_normal((2, channels, size, size)) * 3
    expected = run_ort(model, x)[0]
    networks = [load_onnx(model, fold=fold) for fold in (False, True)]
    for network in networks:
        got = run_network(network, x)
        assert got.shape == expected.shape
        assert relative_error(got, expected) < TOLERANCE
    return networks[0]


def ops(network):
    return {node.name: node.op for node in network.graph.operators}


def scalar(n, name, value):
    return n.const(name, np.array(value, dtype=np.float32))


# ---- activations, however they are spelled --------------------------------------------------------------------------


def gelu_erf(n, x, order):
    erf = n.op("Erf", "erf", [n.op("Div", "div", [x, scalar(n, "sqrt2", math.sqrt(2))])])
    one_plus = n.op("Add", "one_plus", [scalar(n, "one", 1.0), erf])
    if order == 0:  # torch's TorchScript export: x * (1 + erf) * 0.5
        return n.op("Mul", "gelu", [n.op("Mul", "m", [x, one_plus]), scalar(n, "half", 0.5)])
    return n.op("Mul", "gelu", [one_plus, n.op("Mul", "m", [scalar(n, "half", 0.5), x])])


def gelu_tanh(n, x):
    cube = n.op("Pow", "cube", [x, scalar(n, "three", 3.0)])
    inner = n.op("Add", "inner", [x, n.op("Mul", "c3", [cube, scalar(n, "k", 0.044715)])])
    t = n.op("Tanh", "tanh", [n.op("Mul", "scaled", [inner, scalar(n, "s", math.sqrt(2 / math.pi))])])
    half_x = n.op("Mul", "half_x", [x, scalar(n, "half", 0.5)])
    return n.op("Mul", "gelu", [half_x, n.op("Add", "one_plus", [t, scalar(n, "one", 1.0)])])


@pytest.mark.parametrize(
    ("spell", "kind"),
    [
        (lambda n, x: n.op("Clip", "act", [x, scalar(n, "lo", 0.0), scalar(n, "hi", 6.0)]), "relu6"),
        (lambda n, x: n.op("Clip", "act", [x, scalar(n, "lo", 0.0)]), "relu"),
        (lambda n, x: n.op("HardSwish", "act", [x]), "hardswish"),
        (lambda n, x: n.op("HardSigmoid", "act", [x], alpha=1 / 6, beta=0.5), "hardsigmoid"),
        (lambda n, x: n.op("Mul", "act", [x, n.op("Sigmoid", "sig", [x])]), "silu"),
        (lambda n, x: n.op("Mul", "act", [n.op("Sigmoid", "sig", [x]), x]), "silu"),
        (lambda n, x: n.op("Mul", "act", [x, n.op("HardSigmoid", "hs", [x], alpha=1 / 6, beta=0.5)]), "hardswish"),
        (lambda n, x: gelu_erf(n, x, 0), "gelu"),
        (lambda n, x: gelu_erf(n, x, 1), "gelu"),
        (lambda n, x: gelu_tanh(n, x), "gelu_tanh"),
        (lambda n, x: n.op("Tanh", "act", [x]), "tanh"),
    ],
)
def test_an_activation_spelled_any_way_folds_into_the_convolution(spell, kind):
    n = Net()
    spell(n, n.conv("conv", "x", 3, 4))
    network = imported(n.model(n.nodes[-1].output[0]))
    assert [(op.act if isinstance(op, Conv) else op) for op in ops(network).values()] == [kind]


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_the_gelu_operator_of_opset_20(approximate):
    n = Net(opset=20)
    n.op("Gelu", "gelu", [n.conv("conv", "x", 3, 4)], approximate=approximate)
    network = imported(n.model("gelu"))
    assert network.graph["conv"].op.act == ("gelu" if approximate == "none" else "gelu_tanh")


def test_an_activation_of_a_sum_or_of_a_scaled_tensor_is_an_activation_node():
    n = Net()
    total = n.op("Add", "sum", [n.conv("a", "x", 3, 4), n.conv("b", "x", 3, 4)])
    n.op("Sigmoid", "sig", [n.op("Mul", "twice", [n.op("Relu", "relu", [total]), scalar(n, "two", 2.0)])])
    network = imported(n.model("sig"))
    assert str(network.graph["relu"].op) == "Activation(kind='relu')"
    assert str(network.graph["sig"].op) == "Activation(kind='sigmoid')"


def test_clip_and_hard_sigmoid_of_other_bounds_are_exact_rewrites():
    n = Net()
    clip = n.op("Clip", "clip", ["x", scalar(n, "lo", -1.0), scalar(n, "hi", 2.0)])
    n.op("HardSigmoid", "hs", [clip])  # ONNX's default slopes: 0.2 x + 0.5
    network = imported(n.model("hs"))
    assert ops(network)["clip"] == Clip(-1.0, 2.0)
    assert ops(network)["hs_2"] == Clip(0.0, 1.0)


# ---- squeeze-excitation and global reductions -----------------------------------------------------------------------


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_mean_and_max_over_height_and_width_are_global_pools(opset, keepdims):
    n = Net(opset=opset)
    axes = {"axes": [2, 3]} if opset < 18 else {}
    inputs = ["x"] if opset < 18 else ["x", n.const("axes", [-2, -1], np.int64)]
    n.op("ReduceMean", "mean", inputs, keepdims=keepdims, **axes)
    n.op("ReduceMax", "max", [n.op("Relu", "r", ["x"]), *inputs[1:]], keepdims=keepdims, **axes)
    n.op("Add", "add", ["mean", "max"])
    network = imported(n.model("add"))
    assert ops(network)["mean"] == Pool("global_avg") and ops(network)["max"] == Pool("global_max")
    assert network.output_shape == (None if keepdims else (3,))


def test_squeeze_excitation_multiplies_by_a_per_channel_gate():
    n = Net()
    x = n.conv("conv", "x", 3, 4)
    gate = n.op("Sigmoid", "gate", [n.conv("fc", n.op("GlobalAveragePool", "gap", [x]), 4, 4, k=1, pads=[0] * 4)])
    n.op("Mul", "scale", [x, gate])
    network = imported(n.model("scale"))
    assert ops(network)["scale"] == Elementwise("mul")


# ---- padding and pools ----------------------------------------------------------------------------------------------


def pad(n, x, pads, value=None):
    inputs = [x, n.const(f"pads{len(n.nodes)}", [0, 0, *pads[:2], 0, 0, *pads[2:]], np.int64)]
    return n.op(
        "Pad", f"pad{len(n.nodes)}", inputs + ([scalar(n, f"v{len(n.nodes)}", value)] if value is not None else [])
    )


def test_a_zero_pad_folds_into_the_convolution_asymmetrically():
    n = Net()
    n.conv("conv", pad(n, "x", [0, 0, 1, 1]), 3, 4, pads=[0] * 4, strides=[2, 2])
    network = imported(n.model("conv"))
    assert ops(network)["conv"].pads == (0, 0, 1, 1)


def test_a_minus_infinity_pad_folds_into_max_pooling_and_a_zero_pad_into_averaging_that_counts_it():
    n = Net()
    mx = n.op("MaxPool", "max", [pad(n, "x", [1, 1, 0, 0], -np.inf)], kernel_shape=[3, 3], strides=[2, 2])
    avg = n.op("AveragePool", "avg", [pad(n, "x", [1, 1, 1, 1])], kernel_shape=[3, 3], strides=[2, 2])
    n.op("Add", "add", [mx, avg])
    network = imported(n.model("add"))
    assert ops(network)["max"] == Pool("max", (3, 3), (2, 2), (1, 1), (0, 0))
    assert ops(network)["avg"] == Pool("avg", (3, 3), (2, 2), (1, 1), count_include_pad=True)


def test_a_pad_nothing_absorbs_and_a_cropping_pad_are_pad_nodes():
    n = Net()
    n.op("Relu", "relu", [pad(n, pad(n, "x", [-1, 0, 0, -2]), [1, 2, 0, 1], 0.5)])
    network = imported(n.model("relu"))
    assert [op for op in ops(network).values() if isinstance(op, Pad)] == [Pad((-1, 0, 0, -2)), Pad((1, 2, 0, 1), 0.5)]


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1, "count_include_pad": 1},
        {"kernel_shape": [2, 3], "strides": [2, 2], "pads": [0, 1, 1, 0]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
        {"kernel_shape": [2, 2], "strides": [1, 1], "auto_pad": "SAME_LOWER"},
        {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"},
    ],
)
@pytest.mark.parametrize("kind", ["MaxPool", "AveragePool"])
def test_pools_with_ceil_mode_count_include_pad_asymmetric_and_auto_pads(kind, attrs):
    n = Net(size=9)
    attrs = {k: v for k, v in attrs.items() if kind == "AveragePool" or k != "count_include_pad"}
    n.op(kind, "pool", ["x"], **attrs)
    imported(n.model("pool"), size=9)


# ---- channel shuffle, ConvNeXt, classifier heads --------------------------------------------------------------------


def test_reshape_transpose_reshape_over_channels_is_a_channel_shuffle():
    n = Net(channels=6)
    split = n.op("Reshape", "split", ["x", n.const("s5", [2, 3, 2, 8, 8], np.int64)])
    t = n.op("Transpose", "t", [split], perm=[0, 2, 1, 3, 4])
    n.op("Reshape", "shuffle", [t, n.const("s4", [2, 6, 8, 8], np.int64)])
    network = imported(n.model("shuffle"), channels=6)
    assert ops(network)["shuffle"] == ChannelShuffle(3)


def test_a_convnext_block_channels_last_is_layer_norm_and_1x1_convolutions():
    n = Net(channels=4)
    dw = n.conv("dw", "x", 4, 4, k=7, pads=[3] * 4)
    nhwc = n.op("Transpose", "to_nhwc", [dw], perm=[0, 2, 3, 1])
    ln = n.op(
        "LayerNormalization",
        "ln",
        [nhwc, n.const("g", n.rng.uniform(0.5, 1.5, 4)), n.const("b", np.zeros(4))],
        axis=-1,
        epsilon=1e-6,
    )
    up = n.op(
        "Add",
        "up",
        [
            n.op("MatMul", "up_mm", [ln, n.const("w1", n.rng.normal(0, 0.5, (4, 16)))]),
            n.const("b1", n.rng.normal(0, 0.1, 16)),
        ],
    )
    act = gelu_erf(n, up, 0)
    down = n.op("MatMul", "down", [act, n.const("w2", n.rng.normal(0, 0.3, (16, 4)))])
    scaled = n.op("Mul", "layer_scale", [down, n.const("gamma", n.rng.uniform(0.5, 1.5, 4))])
    back = n.op("Transpose", "to_nchw", [scaled], perm=[0, 3, 1, 2])
    n.op("Add", "residual", [back, "x"])
    network = imported(n.model("residual"), channels=4)
    graph_ops = ops(network)
    assert isinstance(graph_ops["ln"], LayerNorm) and graph_ops["ln"].eps == pytest.approx(1e-6)
    assert graph_ops["up"] == Conv(16, (1, 1), act="gelu")
    assert graph_ops["down"] == Conv(4, (1, 1))
    assert "layer_scale" not in graph_ops  # folded into the weights of "down"


@pytest.mark.parametrize("after", ["conv", "matmul_then_transpose"])
def test_a_per_channel_scale_folds_into_the_product_it_alone_reads(after):
    """A layer scale written after the transpose back to NCHW (torchvision's ConvNeXt) or after a convolution: the
    product's weights and bias are scaled, and no node of its own is left."""
    n = Net(channels=4)
    if after == "conv":
        product = n.conv("product", "x", 4, 4)
    else:
        nhwc = n.op("Transpose", "to_nhwc", ["x"], perm=[0, 2, 3, 1])
        down = n.op("MatMul", "down", [nhwc, n.const("w", n.rng.normal(0, 0.3, (4, 4)))])
        product = n.op("Transpose", "to_nchw", [down], perm=[0, 3, 1, 2])
    scaled = n.op("Mul", "layer_scale", [n.const("gamma", n.rng.uniform(0.5, 1.5, (4, 1, 1))), product])
    n.op("Add", "residual", [scaled, "x"])
    graph_ops = ops(imported(n.model("residual"), channels=4))
    assert "layer_scale" not in graph_ops
    assert sum(isinstance(op, Conv) for op in graph_ops.values()) == 1


def channel_slice(n, name, x, begin, end):
    bounds = [n.const(f"{name}.{k}", [v], dtype=np.int64) for k, v in
              (("starts", begin), ("ends", end), ("axes", 1), ("steps", 1))]
    return n.op("Slice", name, [x, *bounds])


def test_a_convolution_read_only_by_disjoint_channel_slices_is_one_convolution_per_slice():
    """DPN's dual path: the block's last convolution, split between the residual sum and the dense concatenation."""
    n = Net(channels=4)
    product = n.conv("product", "x", 4, 6, k=1)
    residual = n.op("Add", "residual", [channel_slice(n, "sum_part", product, 0, 4), "x"])
    n.op("Concat", "dense", [residual, channel_slice(n, "dense_part", product, 4, 2**62)], axis=1)
    graph_ops = ops(imported(n.model("dense"), channels=4))
    assert "product" not in graph_ops
    assert graph_ops["sum_part"] == Conv(4, (1, 1)) and graph_ops["dense_part"] == Conv(2, (1, 1))


@pytest.mark.parametrize("ranges", [((0, 4), (2, 6)), ((0, 4), None)])
def test_overlapping_slices_or_another_reader_keep_the_convolution_whole(ranges):
    n = Net(channels=4)
    product = n.conv("product", "x", 4, 6, k=1)
    first = channel_slice(n, "first", product, *ranges[0])
    second = channel_slice(n, "second", product, *ranges[1]) if ranges[1] else n.op("Relu", "second", [product])
    n.op("Concat", "both", [first, second], axis=1)
    assert isinstance(ops(imported(n.model("both"), channels=4))["product"], Conv)


def test_a_scale_of_a_product_read_elsewhere_too_stays_a_channel_affine():
    n = Net(channels=4)
    product = n.conv("product", "x", 4, 4)
    scaled = n.op("Mul", "layer_scale", [product, n.const("gamma", n.rng.uniform(0.5, 1.5, (4, 1, 1)))])
    n.op("Add", "residual", [scaled, product])
    graph_ops = ops(imported(n.model("residual"), channels=4))
    assert graph_ops["layer_scale"] == Conv(4, (1, 1), groups=4)


@pytest.mark.parametrize("flatten", ["Flatten", "Reshape"])
def test_a_classifier_head_is_in_the_graph(flatten):
    n = Net()
    gap = n.op("GlobalAveragePool", "gap", [n.conv("conv", "x", 3, 4)])
    shape = [n.const("shape", [-1, 4], np.int64)] if flatten == "Reshape" else []
    flat = n.op(flatten, "flat", [gap, *shape])
    fc = n.op("Gemm", "fc", [flat, n.const("w", n.rng.normal(0, 0.5, (5, 4))), n.const("b", np.ones(5))], transB=1)
    n.op("Softmax", "prob", [fc], axis=1)
    network = imported(n.model("prob"))
    assert ops(network)["fc"] == Conv(5, (1, 1)) and ops(network)["prob"] == Softmax()
    assert network.output_shape == (5,)


def test_a_linear_layer_on_a_flattened_map_is_a_convolution_over_the_whole_map():
    n = Net()
    flat = n.op("Flatten", "flat", [n.conv("conv", "x", 3, 2, strides=[2, 2])])
    n.op("Gemm", "fc", [flat, n.const("w", n.rng.normal(0, 0.3, (32, 7))), n.const("b", np.zeros(7))], alpha=0.5)
    network = imported(n.model("fc"))
    assert ops(network)["fc"] == Conv(7, (4, 4))
    assert network.output_shape == (7,)


def test_the_folding_never_changes_the_callers_model():
    n = Net()
    n.op("Relu", "relu", [n.conv("conv", "x", 3, 4)])
    model = n.model("relu")
    before = model.SerializeToString()
    load_onnx(model)
    assert model.SerializeToString() == before
