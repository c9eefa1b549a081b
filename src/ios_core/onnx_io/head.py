"""The head: what an imported network computes after its body (Flatten, Gemm, Softmax...).

The head is not scheduled -- it is a few small matrix operations on the body's output -- so it
stays as ONNX nodes with their constants, run here by numpy kernels in float64 and written back
unchanged by the exporter. `HEAD_KERNELS` is keyed by op type; the operators in `HEAD_ONLY` are
the ones that start a head (everything reading a head tensor is in the head too). The operators
that take weights have a rule in `HEAD_CHECKS`, applied before each is run; the importer runs the
head once on zeros, so that a weight that does not fit is found there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ios_core.onnx_io.parse import OnnxImportError, OnnxNode

HeadKernel = Callable[[OnnxNode, list[np.ndarray]], np.ndarray]
HeadCheck = Callable[[OnnxNode, list[np.ndarray]], str | None]


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


def _gemm_misfit(node: OnnxNode, xs: list[np.ndarray]) -> str | None:
    if xs[0].ndim != 2 or xs[1].ndim != 2:
        return f"operands of shapes {xs[0].shape} and {xs[1].shape} are not both 2-D"
    a = xs[0].T if node.attrs.get("transA", 0) else xs[0]
    b = xs[1].T if node.attrs.get("transB", 0) else xs[1]
    if a.shape[1] != b.shape[0]:
        return f"its input has {a.shape[1]} features, its weight takes {b.shape[0]}"
    out = (a.shape[0], b.shape[1])
    if len(xs) > 2 and not _broadcasts(xs[2].shape, out):
        return f"bias of shape {xs[2].shape} does not broadcast to the output's {out}"
    return None


def _broadcasts(shape: tuple[int, ...], to: tuple[int, ...]) -> bool:
    """Whether ``shape`` broadcasts to ``to`` one way, as ONNX's unidirectional broadcasting asks."""
    if len(shape) > len(to):
        return False
    padded = (1,) * (len(to) - len(shape)) + shape
    return all(s in (1, t) for s, t in zip(padded, to, strict=True))


def _matmul_misfit(node: OnnxNode, xs: list[np.ndarray]) -> str | None:
    a, b = xs
    takes = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if a.shape[-1] != takes:
        return f"its input has {a.shape[-1]} features, its weight takes {takes}"
    return None


HEAD_CHECKS: dict[str, HeadCheck] = {"Gemm": _gemm_misfit, "MatMul": _matmul_misfit}
"""Why a head operator's operands do not fit (its weight for its input...), or None; keyed by op type."""


def run_head(head: Head, x: np.ndarray) -> np.ndarray:
    """The head's output for body output ``x``, in float64.

    Raises
    ------
    OnnxImportError
        Naming the first node whose operands do not fit (`HEAD_CHECKS`).
    """
    values = {head.input: x}
    for node in head.nodes:
        operands = [values[t] if t in values else np.asarray(head.consts[t], dtype=np.float64)
                    for t in node.inputs if t]
        misfit = HEAD_CHECKS[node.op_type](node, operands) if node.op_type in HEAD_CHECKS else None
        if misfit:
            raise OnnxImportError(f"{node}: {misfit}")
        values[node.outputs[0]] = HEAD_KERNELS[node.op_type](node, operands)
    return values[head.output]
