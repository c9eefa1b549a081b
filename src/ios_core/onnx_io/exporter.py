"""ONNX export: a `Network` (graph, weights, head) becomes an ONNX model -- the common input of
TensorRT, ONNX Runtime, TVM and TASO.

Each IR operator is written by one emitter in `EMITTERS`, keyed by operator type; a `Sequential`
expands into its inner operators. Operands are materialized once each: a channel slice that is
not a whole tensor becomes a ``Slice``, a concatenation a ``Concat`` on axis 1, a sum an ``Add``
or ``Sum``. Tensors are named after the IR nodes, so an ONNX file reads like ``str(graph)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ios_core.ir import Activation, Conv, Elementwise, Graph, Identity, Op, Pool, Sequential, Value
from ios_core.onnx_io.network import Network
from ios_core.weights import Params

OPSET = 17
ONNX_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh"}
ONNX_POOLS = {"max": "MaxPool", "avg": "AveragePool", "global_max": "GlobalMaxPool", "global_avg": "GlobalAveragePool"}
_DTYPES = {"float32": (np.float32, TensorProto.FLOAT), "float16": (np.float16, TensorProto.FLOAT16)}


@dataclass
class _Writer:
    """The model being written: nodes, initializers, and the tensor each value was materialized as."""

    graph: Graph
    dtype: type
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
                self.emit("Slice", [self.operand(Value.of(s.node, self.graph.shapes[s.node].channels)), *bounds,
                                    self._axis()], name)
            self.materialized[value] = name
        return self.materialized[value]

    def _axis(self) -> str:
        if not any(t.name == "ios.channel_axis" for t in self.initializers):
            self.constant("ios.channel_axis", [1], np.int64)
        return "ios.channel_axis"


def _conv(w: _Writer, name: str, op: Conv, x: str, params: Params) -> str:
    out = f"{name}.conv" if op.act != "none" else name
    ph, pw = op.padding
    w.emit("Conv", [x, w.constant(f"{name}.weight", params["weight"]), w.constant(f"{name}.bias", params["bias"])],
           out, kernel_shape=list(op.kernel), strides=list(op.stride), pads=[ph, pw, ph, pw],
           dilations=list(op.dilation), group=op.groups)
    return w.emit(ONNX_ACTIVATIONS[op.act], [out], name) if op.act != "none" else out


def _pool(w: _Writer, name: str, op: Pool, x: str, params: Params) -> str:
    if op.kind.startswith("global"):
        return w.emit(ONNX_POOLS[op.kind], [x], name)
    ph, pw = op.padding
    window = {"kernel_shape": list(op.kernel), "strides": list(op.stride), "pads": [ph, pw, ph, pw]}
    if op.kind == "avg":
        window["count_include_pad"] = 0
    return w.emit(ONNX_POOLS[op.kind], [x], name, **window)


def _sequential(w: _Writer, name: str, op: Sequential, x: str, params: Params) -> str:
    for i, inner in enumerate(op.ops):
        prefix = f"{i}."
        inner_params = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
        x = EMITTERS[type(inner)](w, name if i == len(op.ops) - 1 else f"{name}.{i}", inner, x, inner_params)
    return x


Emitter = Callable[[_Writer, str, Op, str, Params], str]

EMITTERS: dict[type, Emitter] = {
    Conv: _conv,
    Pool: _pool,
    Identity: lambda w, name, op, x, params: w.emit("Identity", [x], name),
    Activation: lambda w, name, op, x, params: w.emit(ONNX_ACTIVATIONS[op.kind], [x], name),
    Sequential: _sequential,
}
"""Single-operand operators: each writes ONNX nodes reading tensor ``x`` and returns its output tensor."""


def _elementwise(w: _Writer, name: str, op: Elementwise, xs: list[str]) -> str:
    if op.kind == "add":
        return w.emit("Add" if len(xs) == 2 else "Sum", xs, name)
    out = xs[0]
    for i, x in enumerate(xs[1:], start=2):  # Mul is binary: a chain, the last product named after the node
        out = w.emit("Mul", [out, x], name if i == len(xs) else f"{name}.mul{i}")
    return out


def to_onnx(network: Network, batch: int | None = None, include_head: bool = True, opset: int = OPSET,
            dtype: str = "float32") -> onnx.ModelProto:
    """The network as a checked ONNX model.

    Parameters
    ----------
    network
        Graph and weights (and the head of an imported model).
    batch
        A fixed batch size, or None for a symbolic ``N`` (TensorRT and TASO want it fixed).
    include_head
        Also write the head; the baselines time the body alone, as our engine does.
    opset
        The ai.onnx opset, at least 11 (Slice takes its bounds as inputs); TASO wants 11.
    dtype
        ``float32`` or ``float16`` for weights and activations.
    """
    graph = network.graph
    np_dtype, onnx_dtype = _DTYPES[dtype]
    w = _Writer(graph, np_dtype)
    w.materialized[Value.of(graph.input.name, graph.shapes[graph.input.name].channels)] = graph.input.name
    for node in graph.operators:
        operands = [w.operand(v) for v in node.inputs]
        params = network.weights.get(node.name, {})
        if isinstance(node.op, Elementwise):
            out = _elementwise(w, node.name, node.op, operands)
        else:
            out = EMITTERS[type(node.op)](w, node.name, node.op, operands[0], params)
        w.materialized[Value.of(node.name, graph.shapes[node.name].channels)] = out
    output = w.materialized[Value.of(graph.output, graph.shapes[graph.output].channels)]
    out_dims: list[int | str] = ["N" if batch is None else batch, *graph.shapes[graph.output]]
    if include_head and network.head is not None:
        output, out_dims = _write_head(w, network, output), []
    shape = graph.shapes[graph.input.name]
    onnx_graph = helper.make_graph(
        w.nodes, graph.name,
        [helper.make_tensor_value_info(graph.input.name, onnx_dtype, ["N" if batch is None else batch, *shape])],
        [helper.make_tensor_value_info(output, onnx_dtype, out_dims or None)],
        w.initializers,
    )
    model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="ios-core")
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)  # fills the head's shape
    onnx.checker.check_model(model, full_check=True)
    return model


def _write_head(w: _Writer, network: Network, body: str) -> str:
    """Append the head's nodes, reading ``body`` where they read the body's output."""
    head = network.head
    for name, array in head.consts.items():
        w.constant(name, array, array.dtype if np.issubdtype(array.dtype, np.integer) else None)
    for node in head.nodes:
        inputs = [body if t == head.input else t for t in node.inputs]
        w.nodes.append(helper.make_node(node.op_type, inputs, list(node.outputs), name=node.name, **node.attrs))
    return head.output


def save_onnx(network: Network, path: str | Path, **options: object) -> Path:
    """Write `to_onnx(network, **options)` to ``path``; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(to_onnx(network, **options), str(path))
    return path
