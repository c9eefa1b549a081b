"""The state of one ONNX-to-IR conversion, and the attribute readers the operator handlers share.

Every IR value is NCHW, but an ONNX tensor may hold it in another layout (`LAYOUTS`): a Transpose to
channels last, a Flatten to (N, C*H*W) change the layout and add no node; each operator states the
layouts it accepts (`ios_core.onnx_io.importer.ACCEPTS`), and any other is an error naming the node.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace

import numpy as np

from ios_core.ir import Graph, GraphBuilder, Identity, Op, Shape, Value, rules_of
from ios_core.onnx_io.parse import OnnxImportError, OnnxNode, Parsed, sanitize
from ios_core.weights import Params

Pair = tuple[int, int]

LAYOUTS = {
    "nchw": "NCHW",
    "nhwc": "channels last (N, H, W, C), after a Transpose (0, 2, 3, 1)",
    "flat": "flattened (N, C*H*W)",
}
"""How an ONNX tensor holds its IR value, with the words an error uses."""


@dataclass
class Context:
    """The conversion state: the builder, ONNX tensor -> IR value, weights, and per-node shapes."""

    parsed: Parsed
    builder: GraphBuilder
    env: dict[str, Value]
    weights: dict[str, Params] = field(default_factory=dict)
    shapes: dict[str, Shape] = field(default_factory=dict)
    readers: dict[str, list[str]] = field(default_factory=dict)  # tensor -> op types reading it
    layouts: dict[str, str] = field(default_factory=dict)  # tensor -> one of LAYOUTS where it is not "nchw"
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

    def layout(self, tensor: str) -> str:
        return self.layouts.get(tensor, "nchw")

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


def window_pads(node: OnnxNode, x: Shape, kernel: Pair, stride: Pair, dilation: Pair) -> tuple[Pair, Pair]:
    """Padding (top, left) and (bottom, right) of a convolution or pool, from ``pads`` or ``auto_pad``."""
    auto = node.attrs.get("auto_pad", "NOTSET")
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        windows = zip((x.height, x.width), kernel, stride, dilation, strict=True)
        totals = [max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0) for n, k, s, d in windows]
        begin = tuple(t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in totals)
        end = tuple(t - b for t, b in zip(totals, begin, strict=True))
        return begin, end
    if auto == "VALID":
        return (0, 0), (0, 0)
    pads = tuple(int(p) for p in node.attrs.get("pads", (0, 0, 0, 0)))
    if len(pads) != 4:
        raise OnnxImportError(f"{node}: only 2-D operators are supported, pads={pads}")
    return pads[:2], pads[2:]
