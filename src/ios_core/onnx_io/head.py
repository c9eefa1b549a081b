"""The head: what an imported network computes after its body (Flatten, Gemm, Softmax...).

The head is not scheduled -- it is a few small matrix operations on the body's output -- so it
stays as ONNX nodes with their constants, run here by numpy kernels in float64 and written back
unchanged by the exporter. `HEAD_KERNELS` is keyed by op type; the operators in `HEAD_ONLY` are
the ones that start a head (everything reading a head tensor is in the head too).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ios_core.onnx_io.parse import OnnxNode

HeadKernel = Callable[[OnnxNode, list[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Head:
    """ONNX nodes run after the body: they read tensor ``input`` (the body's output) and make ``output``."""

    nodes: tuple[OnnxNode, ...]
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    input: str = "body"
    output: str = "output"

    def __str__(self) -> str:
        return "head: " + " > ".join(node.op_type for node in self.nodes)


def _flatten(node: OnnxNode, xs: list[np.ndarray]) -> np.ndarray:
    axis = node.attrs.get("axis", 1) % max(xs[0].ndim, 1)
    return xs[0].reshape(int(np.prod(xs[0].shape[:axis])), -1)


def _reshape(node: OnnxNode, xs: list[np.ndarray]) -> np.ndarray:
    x, shape = xs[0], [int(s) for s in xs[1]]
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _gemm(node: OnnxNode, xs: list[np.ndarray]) -> np.ndarray:
    a = xs[0].T if node.attrs.get("transA", 0) else xs[0]
    b = xs[1].T if node.attrs.get("transB", 0) else xs[1]
    out = node.attrs.get("alpha", 1.0) * (a @ b)
    return out + node.attrs.get("beta", 1.0) * xs[2] if len(xs) > 2 else out


def _softmax(node: OnnxNode, xs: list[np.ndarray]) -> np.ndarray:
    axis = node.attrs.get("axis", -1)
    shifted = np.exp(xs[0] - xs[0].max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


HEAD_KERNELS: dict[str, HeadKernel] = {
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Gemm": _gemm,
    "MatMul": lambda node, xs: xs[0] @ xs[1],
    "Softmax": _softmax,
    "Add": lambda node, xs: xs[0] + xs[1],
    "Sub": lambda node, xs: xs[0] - xs[1],
    "Mul": lambda node, xs: xs[0] * xs[1],
    "Div": lambda node, xs: xs[0] / xs[1],
    "Relu": lambda node, xs: np.maximum(xs[0], 0.0),
    "Sigmoid": lambda node, xs: 1.0 / (1.0 + np.exp(-xs[0])),
    "Tanh": lambda node, xs: np.tanh(xs[0]),
    "Identity": lambda node, xs: xs[0],
    "Dropout": lambda node, xs: xs[0],
}

HEAD_ONLY = frozenset({"Flatten", "Reshape", "Gemm", "MatMul", "Softmax"})


def run_head(head: Head, x: np.ndarray) -> np.ndarray:
    """The head's output for body output ``x``, in float64."""
    values = {head.input: x}
    for node in head.nodes:
        operands = [values[t] if t in values else np.asarray(head.consts[t], dtype=np.float64)
                    for t in node.inputs if t]
        values[node.outputs[0]] = HEAD_KERNELS[node.op_type](node, operands)
    return values[head.output]
