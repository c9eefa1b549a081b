"""The state of one ONNX-to-IR conversion, and the attribute readers the operator handlers share."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from ios_core.ir import Graph, GraphBuilder, Identity, Op, Shape, Value, rules_of
from ios_core.onnx_io.parse import OnnxImportError, OnnxNode, Parsed, sanitize
from ios_core.weights import Params

Pair = tuple[int, int]


@dataclass
class Context:
    """The conversion state: the builder, ONNX tensor -> IR value, weights, and per-node shapes."""

    parsed: Parsed
    builder: GraphBuilder
    env: dict[str, Value]
    weights: dict[str, Params] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)
    readers: dict[str, list[str]] = field(default_factory=dict)  # tensor -> op types reading it
    current: list[str] = field(default_factory=list)  # nodes added since the last block ended
    last_exit: Value | None = None

    def value(self, node: OnnxNode, index: int = 0) -> Value:
        tensor = node.inputs[index]
        if tensor not in self.env:
            raise OnnxImportError(f"{node}: operand {index} ({tensor!r}) must be an activation, not a constant")
        return self.env[tensor]

    def const(self, node: OnnxNode, index: int) -> np.ndarray | None:
        """Constant operand ``index``, or None when omitted; an activation there is an error."""
        if index >= len(node.inputs) or not node.inputs[index]:
            return None
        if node.inputs[index] not in self.parsed.consts:
            raise OnnxImportError(f"{node}: operand {index} ({node.inputs[index]!r}) must be a constant")
        return np.asarray(self.parsed.consts[node.inputs[index]])

    def single(self, node: OnnxNode, index: int) -> Value:
        """Operand ``index`` as a single-term value (slicing or concatenating needs one): a sum gets an identity."""
        value = self.value(node, index)
        if len(value.terms) == 1:
            return value
        return self.add(replace(node, name=f"{node.inputs[index]}_sum"), Identity(), value)

    def shape(self, value: Value) -> Shape:
        return Graph.operand_shape(value, self.shapes)

    def add(self, node: OnnxNode, op: Op, *inputs: Value, params: Params | None = None) -> Value:
        """Add an IR node named after the ONNX node (made unique), with its float64 weights."""
        name = self.fresh(sanitize(node.name))
        out = self.builder.node(op, *inputs, name=name)
        self.shapes[name] = rules_of(op).shape(op, tuple(self.shape(v) for v in inputs))
        if params:
            self.weights[name] = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        self.current.append(name)
        return out

    def fresh(self, base: str) -> str:
        """``base``, or ``base_2``, ``base_3``... whichever no node has yet."""
        candidates = itertools.chain([base], (f"{base}_{i}" for i in itertools.count(2)))
        return next(n for n in candidates if n not in self.shapes)

    def end_block(self, value: Value) -> Value:
        """Close the block at ``value``; one that is not a whole node of this block gets an identity."""
        whole = len(value.nodes) == 1 and value == Value.of(value.nodes[0], self.shapes[value.nodes[0]].channels)
        if not (whole and value.nodes[0] in self.current):
            name = self.fresh("exit")
            self.shapes[name] = self.shape(value)
            value = self.builder.identity(value, name=name)
        self.current = []
        self.last_exit = self.builder.end_block(value)
        return self.last_exit


def pair(node: OnnxNode, key: str, default: Pair) -> Pair:
    value = tuple(int(v) for v in node.attrs.get(key, default))
    if len(value) != 2:
        raise OnnxImportError(f"{node}: only 2-D operators are supported, {key}={value}")
    return value


def symmetric_padding(node: OnnxNode, x: Shape, kernel: Pair, stride: Pair, dilation: Pair) -> Pair:
    """Symmetric padding from ``pads`` or ``auto_pad``; asymmetric padding is an error."""
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        windows = zip((x.height, x.width), kernel, stride, dilation, strict=True)
        totals = [max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0) for n, k, s, d in windows]
        begin = tuple(t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in totals)
        end = tuple(t - b for t, b in zip(totals, begin, strict=True))
    elif auto == "VALID":
        begin = end = (0, 0)
    else:
        pads = tuple(int(p) for p in node.attrs.get("pads", (0, 0, 0, 0)))
        begin, end = pads[:2], pads[2:]
    if begin != end:
        raise OnnxImportError(f"{node}: asymmetric padding (begin {begin}, end {end}) is not supported")
    return begin
