"""The reference kernels of the model zoo's operators against ONNX Runtime running the same ONNX nodes.

Each case is one IR operator and the ONNX nodes a PyTorch export writes for it, built here with
`onnx.helper` (not by our exporter, so an exporter bug cannot hide a reference bug).
"""

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_random import run_ort

from ios_core.ir import ACTIVATIONS, Activation, ChannelShuffle, Clip, Conv, Elementwise, LayerNorm, Pad, Pool, Softmax
from ios_core.reference import KERNELS, relative_error

SHAPE = (2, 6, 9, 8)  # odd and even sizes: ceil_mode and asymmetric pads show on one axis or the other


def _model(nodes: list, inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "case",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _node(op_type: str, inputs: list[str], output: str = "y", **attrs) -> onnx.NodeProto:
    return helper.make_node(op_type, inputs, [output], **attrs)


def _window(pads, kernel=(3, 3), stride=(2, 2)) -> dict:
    top, left, bottom, right = pads
    return {"kernel_shape": list(kernel), "strides": list(stride), "pads": [top, left, bottom, right]}


def _pool_case(kind: str, pads, ceil: bool, count_pad: bool = False, kernel=(3, 3), stride=(2, 2)):
    op = Pool(kind, kernel, stride, pads[:2], pads[2:], ceil, count_pad)
    attrs = _window(pads, kernel, stride) | {"ceil_mode": int(ceil)}
    if kind == "avg":
        attrs["count_include_pad"] = int(count_pad)
    return op, [_node("MaxPool" if kind == "max" else "AveragePool", ["x"], **attrs)], {}


def _conv_case(pads, groups: int = 1, dilation=(1, 1)):
    rng = np.random.default_rng(1)
    op = Conv(4 if groups == 1 else 6, (3, 2), (2, 1), pads[:2], dilation, groups, "none", pads[2:])
    weight = rng.standard_normal((op.out_channels, 6 // groups, 3, 2)).astype(np.float32)
    bias = rng.standard_normal(op.out_channels).astype(np.float32)
    attrs = _window(pads, (3, 2), (2, 1)) | {"dilations": list(dilation), "group": groups}
    return op, [_node("Conv", ["x", "w", "b"], **attrs)], {"w": weight, "b": bias}, {"weight": weight, "bias": bias}


def _activation_nodes(kind: str) -> tuple[list, dict]:
    """The nodes PyTorch's exporter writes for each activation at opset 17."""
    half, root2 = np.float32(0.5), np.float32(math.sqrt(2.0))
    cube, scale, one = np.float32(0.044715), np.float32(math.sqrt(2.0 / math.pi)), np.float32(1.0)
    tables = {
        "relu": ([_node("Relu", ["x"])], {}),
        "sigmoid": ([_node("Sigmoid", ["x"])], {}),
        "tanh": ([_node("Tanh", ["x"])], {}),
        "relu6": ([_node("Clip", ["x", "lo", "hi"])], {"lo": np.float32(0), "hi": np.float32(6)}),
        "hardsigmoid": ([_node("HardSigmoid", ["x"], alpha=1 / 6, beta=0.5)], {}),
        "hardswish": ([_node("HardSwish", ["x"])], {}),
        "silu": ([_node("Sigmoid", ["x"], "s"), _node("Mul", ["x", "s"])], {}),
        "gelu": (
            [
                _node("Div", ["x", "root2"], "d"),
                _node("Erf", ["d"], "e"),
                _node("Add", ["e", "one"], "a"),
                _node("Mul", ["x", "a"], "m"),
                _node("Mul", ["m", "half"]),
            ],
            {"root2": root2, "one": one, "half": half},
        ),
        "gelu_tanh": (
            [
                _node("Mul", ["x", "x"], "x2"),
                _node("Mul", ["x2", "x"], "x3"),
                _node("Mul", ["x3", "cube"], "c"),
                _node("Add", ["x", "c"], "inner"),
                _node("Mul", ["inner", "scale"], "t0"),
                _node("Tanh", ["t0"], "t"),
                _node("Add", ["t", "one"], "a"),
                _node("Mul", ["x", "a"], "m"),
                _node("Mul", ["m", "half"]),
            ],
            {"cube": cube, "scale": scale, "one": one, "half": half},
        ),
    }
    return tables[kind]


def _pad_case(pads, value: float = 0.0):
    top, left, bottom, right = pads
    onnx_pads = np.array([0, 0, top, left, 0, 0, bottom, right], np.int64)
    return Pad(pads, value), [_node("Pad", ["x", "p", "v"])], {"p": onnx_pads, "v": np.float32(value)}


def _shuffle_case(groups: int):
    n, c, h, w = SHAPE
    shapes = {"s5": np.array([n, groups, c // groups, h, w], np.int64), "s4": np.array(SHAPE, np.int64)}
    nodes = [
        _node("Reshape", ["x", "s5"], "r"),
        _node("Transpose", ["r"], "t", perm=[0, 2, 1, 3, 4]),
        _node("Reshape", ["t", "s4"]),
    ]
    return ChannelShuffle(groups), nodes, shapes


def _layer_norm_case():
    rng = np.random.default_rng(2)
    weight, bias = rng.normal(1, 0.2, SHAPE[1]).astype(np.float32), rng.normal(0, 0.2, SHAPE[1]).astype(np.float32)
    nodes = [
        _node("Transpose", ["x"], "nhwc", perm=[0, 2, 3, 1]),
        _node("LayerNormalization", ["nhwc", "w", "b"], "n", axis=-1, epsilon=1e-6),
        _node("Transpose", ["n"], perm=[0, 3, 1, 2]),
    ]
    return LayerNorm(1e-6), nodes, {"w": weight, "b": bias}, {"weight": weight, "bias": bias}


CASES = {
    "max ceil": _pool_case("max", (1, 1, 1, 1), True),
    "max ceil asymmetric": _pool_case("max", (0, 1, 1, 0), True),
    "max floor asymmetric": _pool_case("max", (0, 0, 1, 1), False, stride=(1, 1)),
    "avg ceil": _pool_case("avg", (1, 1, 1, 1), True),
    "avg ceil count_pad": _pool_case("avg", (1, 1, 1, 1), True, True),
    "avg asymmetric count_pad": _pool_case("avg", (0, 1, 2, 1), False, True),
    "avg ceil no pad count_pad": _pool_case("avg", (0, 0, 0, 0), True, True),
    "avg 2x2 ceil count_pad": _pool_case("avg", (0, 0, 0, 0), True, True, kernel=(2, 2)),
    "conv asymmetric": _conv_case((0, 0, 1, 1)),
    "conv asymmetric dilated": _conv_case((2, 0, 1, 1), dilation=(2, 1)),
    "depthwise asymmetric": _conv_case((1, 0, 2, 1), groups=6),
    "pad": _pad_case((1, 2, 0, 3), 0.5),
    "crop": _pad_case((-1, 0, -2, -1)),
    "pad and crop": _pad_case((2, -1, -1, 1)),
    "clip": (Clip(-0.5, 0.7), [_node("Clip", ["x", "lo", "hi"])], {"lo": np.float32(-0.5), "hi": np.float32(0.7)}),
    "shuffle": _shuffle_case(2),
    "shuffle 3": _shuffle_case(3),
    "layer norm": _layer_norm_case(),
    "softmax": (Softmax(), [_node("Softmax", ["x"], axis=1)], {}),
}
CASES |= {kind: (Activation(kind), *_activation_nodes(kind)) for kind in ACTIVATIONS[1:]}


@pytest.mark.parametrize("name", CASES)
def test_reference_equals_onnx_runtime(name):
    op, nodes, inits, *params = CASES[name]
    x = np.random.default_rng(0).normal(0, 3, SHAPE).astype(np.float32).astype(np.float64)  # past relu6's 6
    expected = run_ort(_model(nodes, inits), x)[0]
    got = KERNELS[type(op)](op, [x], params[0] if params else {})
    assert got.shape == expected.shape
    assert relative_error(got, expected) < 1e-6


def test_every_activation_has_a_case():
    assert set(ACTIVATIONS[1:]) <= set(CASES)


@pytest.mark.parametrize("kind", ["add", "mul"])
def test_a_per_channel_operand_broadcasts_over_height_and_width(kind):
    x = np.random.default_rng(0).standard_normal(SHAPE)
    scale = np.random.default_rng(1).standard_normal((1, SHAPE[1], 1, 1)).astype(np.float32).astype(np.float64)
    node = _node(kind.capitalize(), ["x", "s"])
    expected = run_ort(_model([node], {"s": scale.astype(np.float32)}), x)[0]
    for operands in ([x, scale], [scale, x]):  # the broadcast operand may come first
        assert relative_error(KERNELS[Elementwise](Elementwise(kind), operands, {}), expected) < 1e-6
