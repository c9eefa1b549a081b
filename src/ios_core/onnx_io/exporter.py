"""ONNX export: a `Network` (graph and weights, the whole network) becomes an ONNX model -- the common input
of TensorRT, ONNX Runtime, TVM and TASO.

Each IR operator is written by one emitter in `EMITTERS`, keyed by operator type; a `Sequential`
expands into its inner operators. Operands are materialized once each: a channel slice that is
not a whole tensor becomes a ``Slice``, a concatenation a ``Concat`` on axis 1, a sum an ``Add``
or ``Sum``. Tensors are named after the IR nodes, so an ONNX file reads like ``str(graph)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ios_core.ir import (
    Activation,
    ChannelShuffle,
    Clip,
    Conv,
    Elementwise,
    Graph,
    Identity,
    LayerNorm,
    Op,
    Pad,
    Pool,
    Sequential,
    Shape,
    Softmax,
    Value,
    rules_of,
)
from ios_core.onnx_io.network import Network
from ios_core.weights import Params

OPSET = 17
ONNX_POOLS = {"max": "MaxPool", "avg": "AveragePool", "global_max": "GlobalMaxPool", "global_avg": "GlobalAveragePool"}
_DTYPES = {"float32": (np.float32, TensorProto.FLOAT), "float16": (np.float16, TensorProto.FLOAT16)}


@dataclass
class _Writer:
    """The model being written: nodes, initializers, and the tensor each value was materialized as."""

    graph: Graph
    dtype: type
    opset: int
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    materialized: dict[Value, str] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=itertools.count)

    def emit(self, op_type: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def constant(self, name: str, array: np.ndarray, dtype: type | None = None) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(array, dtype=dtype or self.dtype), name))
        return name

    def shared(self, name: str, array: object, dtype: type | None = None) -> str:
        """A constant written once however many nodes read it (the channel axis, GELU's 0.5)."""
        name = f"ios.{name}"
        if not any(t.name == name for t in self.initializers):
            self.constant(name, array, dtype)
        return name

    def operand(self, value: Value) -> str:
        """The tensor holding ``value``: its slices cut, concatenated, and its terms summed, each once.

        Whole node outputs are registered by `to_onnx` as their nodes are written.
        """
        if value not in self.materialized:
            name = f"ios.v{next(self.counter)}"
            if len(value.terms) > 1:
                terms = [self.operand(Value((term,))) for term in value.terms]
                self.emit("Add" if len(terms) == 2 else "Sum", terms, name)
            elif len(value.terms[0]) > 1:
                self.emit("Concat", [self.operand(Value(((s,),))) for s in value.terms[0]], name, axis=1)
            else:
                (s,) = value.terms[0]
                bounds = [self.constant(f"{name}.{k}", [v], np.int64) for k, v in (("start", s.begin), ("end", s.end))]
                self.emit(
                    "Slice",
                    [
                        self.operand(Value.of(s.node, self.graph.shapes[s.node].channels)),
                        *bounds,
                        self.shared("channel_axis", [1], np.int64),
                    ],
                    name,
                )
            self.materialized[value] = name
        return self.materialized[value]


def _gelu(w: _Writer, x: str, name: str) -> str:
    """``x * (1 + erf(x / sqrt 2)) / 2``, the pattern PyTorch exports (ONNX's Gelu op needs opset 20)."""
    e = w.emit("Erf", [w.emit("Div", [x, w.shared("sqrt2", math.sqrt(2.0))], f"{name}.div")], f"{name}.erf")
    a = w.emit("Add", [e, w.shared("one", 1.0)], f"{name}.add")
    return w.emit("Mul", [w.emit("Mul", [x, a], f"{name}.mul"), w.shared("half", 0.5)], name)


def _gelu_tanh(w: _Writer, x: str, name: str) -> str:
    """``x * (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) / 2``."""
    cube = w.emit("Mul", [w.emit("Mul", [x, x], f"{name}.sq"), x], f"{name}.cube")
    inner = w.emit("Add", [x, w.emit("Mul", [cube, w.shared("gelu_c", 0.044715)], f"{name}.c")], f"{name}.in")
    t = w.emit(
        "Tanh", [w.emit("Mul", [inner, w.shared("gelu_k", math.sqrt(2.0 / math.pi))], f"{name}.k")], f"{name}.tanh"
    )
    a = w.emit("Add", [t, w.shared("one", 1.0)], f"{name}.add")
    return w.emit("Mul", [w.emit("Mul", [x, a], f"{name}.mul"), w.shared("half", 0.5)], name)


def _hardswish(w: _Writer, x: str, name: str) -> str:
    """ONNX's HardSwish from opset 14, ``x * HardSigmoid(x)`` before it."""
    if w.opset >= 14:
        return w.emit("HardSwish", [x], name)
    return w.emit("Mul", [x, w.emit("HardSigmoid", [x], f"{name}.gate", alpha=1 / 6, beta=0.5)], name)


ACTIVATION_EMITTERS: dict[str, Callable[[_Writer, str, str], str]] = {
    "relu": lambda w, x, name: w.emit("Relu", [x], name),
    "sigmoid": lambda w, x, name: w.emit("Sigmoid", [x], name),
    "tanh": lambda w, x, name: w.emit("Tanh", [x], name),
    "relu6": lambda w, x, name: w.emit("Clip", [x, w.shared("zero", 0.0), w.shared("six", 6.0)], name),
    "hardsigmoid": lambda w, x, name: w.emit("HardSigmoid", [x], name, alpha=1 / 6, beta=0.5),
    "hardswish": _hardswish,
    "silu": lambda w, x, name: w.emit("Mul", [x, w.emit("Sigmoid", [x], f"{name}.sigmoid")], name),
    "gelu": _gelu,
    "gelu_tanh": _gelu_tanh,
}
"""Each activation as ONNX nodes reading ``x``, the last one writing tensor ``name``."""


def _conv(w: _Writer, name: str, op: Conv, x: str, shape: Shape, params: Params) -> str:
    out = f"{name}.conv" if op.act != "none" else name
    w.emit(
        "Conv",
        [x, w.constant(f"{name}.weight", params["weight"]), w.constant(f"{name}.bias", params["bias"])],
        out,
        kernel_shape=list(op.kernel),
        strides=list(op.stride),
        pads=list(op.pads),
        dilations=list(op.dilation),
        group=op.groups,
    )
    return ACTIVATION_EMITTERS[op.act](w, out, name) if op.act != "none" else out


def _pool(w: _Writer, name: str, op: Pool, x: str, shape: Shape, params: Params) -> str:
    if op.kind.startswith("global"):
        return w.emit(ONNX_POOLS[op.kind], [x], name)
    window = {
        "kernel_shape": list(op.kernel),
        "strides": list(op.stride),
        "pads": list(op.pads),
        "ceil_mode": int(op.ceil_mode),
    }
    if op.kind == "avg":
        window["count_include_pad"] = int(op.count_include_pad)
    return w.emit(ONNX_POOLS[op.kind], [x], name, **window)


def _pad(w: _Writer, name: str, op: Pad, x: str, shape: Shape, params: Params) -> str:
    top, left, bottom, right = op.pads  # ONNX: every axis's begin, then every axis's end; negative crops
    pads = w.constant(f"{name}.pads", [0, 0, top, left, 0, 0, bottom, right], np.int64)
    return w.emit("Pad", [x, pads, w.constant(f"{name}.value", op.value)], name)


def _clip(w: _Writer, name: str, op: Clip, x: str, shape: Shape, params: Params) -> str:
    return w.emit("Clip", [x, w.constant(f"{name}.low", op.low), w.constant(f"{name}.high", op.high)], name)


def _channel_shuffle(w: _Writer, name: str, op: ChannelShuffle, x: str, shape: Shape, params: Params) -> str:
    """Reshape to (N, groups, C / groups, H, W), swap the two channel axes, reshape back: as PyTorch writes it."""
    c, h, width = shape
    split = w.constant(f"{name}.split", [0, op.groups, c // op.groups, h, width], np.int64)  # 0: keep N
    grouped = w.emit("Reshape", [x, split], f"{name}.grouped")
    swapped = w.emit("Transpose", [grouped], f"{name}.swapped", perm=[0, 2, 1, 3, 4])
    return w.emit("Reshape", [swapped, w.constant(f"{name}.shape", [0, c, h, width], np.int64)], name)


def _layer_norm(w: _Writer, name: str, op: LayerNorm, x: str, shape: Shape, params: Params) -> str:
    """ONNX's LayerNormalization normalizes trailing axes: channels go last for it and come back."""
    if w.opset < 17:
        raise ValueError(f"LayerNorm node {name!r} needs opset 17 or later (LayerNormalization), not {w.opset}")
    last = w.emit("Transpose", [x], f"{name}.nhwc", perm=[0, 2, 3, 1])
    scale, bias = w.constant(f"{name}.weight", params["weight"]), w.constant(f"{name}.bias", params["bias"])
    normed = w.emit("LayerNormalization", [last, scale, bias], f"{name}.norm", axis=-1, epsilon=op.eps)
    return w.emit("Transpose", [normed], name, perm=[0, 3, 1, 2])


def _softmax(w: _Writer, name: str, op: Softmax, x: str, shape: Shape, params: Params) -> str:
    if w.opset < 13:  # before opset 13 Softmax flattened every axis from ``axis`` on: not per pixel
        raise ValueError(f"Softmax node {name!r} needs opset 13 or later, not {w.opset}")
    return w.emit("Softmax", [x], name, axis=1)


def _sequential(w: _Writer, name: str, op: Sequential, x: str, shape: Shape, params: Params) -> str:
    for i, inner in enumerate(op.ops):
        prefix = f"{i}."
        inner_params = {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}
        x = EMITTERS[type(inner)](w, name if i == len(op.ops) - 1 else f"{name}.{i}", inner, x, shape, inner_params)
        shape = rules_of(inner).shape(inner, (shape,))
    return x


Emitter = Callable[[_Writer, str, Op, str, Shape, Params], str]

EMITTERS: dict[type, Emitter] = {
    Conv: _conv,
    Pool: _pool,
    Identity: lambda w, name, op, x, shape, params: w.emit("Identity", [x], name),
    Activation: lambda w, name, op, x, shape, params: ACTIVATION_EMITTERS[op.kind](w, x, name),
    Pad: _pad,
    Clip: _clip,
    ChannelShuffle: _channel_shuffle,
    LayerNorm: _layer_norm,
    Softmax: _softmax,
    Sequential: _sequential,
}
"""Single-operand operators: each writes ONNX nodes reading tensor ``x`` of per-sample ``shape`` and returns its
output tensor."""


def _elementwise(w: _Writer, name: str, op: Elementwise, xs: list[str]) -> str:
    """Add, Sum and Mul broadcast a ``C x 1 x 1`` operand over H and W as the IR does (numpy's rules)."""
    if op.kind == "add":
        return w.emit("Add" if len(xs) == 2 else "Sum", xs, name)
    out = xs[0]
    for i, x in enumerate(xs[1:], start=2):  # Mul is binary: a chain, the last product named after the node
        out = w.emit("Mul", [out, x], name if i == len(xs) else f"{name}.mul{i}")
    return out


def to_onnx(network: Network, batch: int | None = None, opset: int = OPSET, dtype: str = "float32") -> onnx.ModelProto:
    """The network as a checked ONNX model.

    Parameters
    ----------
    network
        Graph and weights; the graph's output is reshaped to ``network.output_shape`` per sample when that is set
        (an imported classifier's ``(1000,)``).
    batch
        A fixed batch size, or None for a symbolic ``N`` (TensorRT and TASO want it fixed).
    opset
        The ai.onnx opset, at least 11 (Slice takes its bounds as inputs); TASO wants 11. `Softmax` needs 13
        and `LayerNorm` 17.
    dtype
        ``float32`` or ``float16`` for weights and activations.
    """
    graph = network.graph
    np_dtype, onnx_dtype = _DTYPES[dtype]
    w = _Writer(graph, np_dtype, opset)
    w.materialized[Value.of(graph.input.name, graph.shapes[graph.input.name].channels)] = graph.input.name
    for node in graph.operators:
        operands = [w.operand(v) for v in node.inputs]
        params = network.weights.get(node.name, {})
        if isinstance(node.op, Elementwise):
            out = _elementwise(w, node.name, node.op, operands)
        else:
            shape = graph.operand_shapes(node)[0]
            out = EMITTERS[type(node.op)](w, node.name, node.op, operands[0], shape, params)
        w.materialized[Value.of(node.name, graph.shapes[node.name].channels)] = out
    output = w.materialized[Value.of(graph.output, graph.shapes[graph.output].channels)]
    n: int | str = "N" if batch is None else batch
    per_sample: tuple[int, ...] = tuple(graph.shapes[graph.output])
    if network.output_shape is not None and tuple(network.output_shape) != per_sample:
        per_sample = tuple(network.output_shape)
        target = w.constant("ios.output_shape", [0, *per_sample], np.int64)  # 0: keep the batch
        output = w.emit("Reshape", [output, target], f"{graph.output}.reshaped")
    shape = graph.shapes[graph.input.name]
    onnx_graph = helper.make_graph(
        w.nodes,
        graph.name,
        [helper.make_tensor_value_info(graph.input.name, onnx_dtype, [n, *shape])],
        [helper.make_tensor_value_info(output, onnx_dtype, [n, *per_sample])],
        w.initializers,
    )
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="ios-core")
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def save_onnx(network: Network, path: str | Path, **options: object) -> Path:
    """Write `to_onnx(network, **options)` to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(to_onnx(network, **options), str(path))
    return path
