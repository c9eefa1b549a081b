"""The IR run on channels-last (NHWC) arrays of any array library: the walk the JAX and TensorFlow baselines share.

A library gives its few primitives as `ArrayOps` (convolution with bias, unpadded pooling windows,
global reductions, padding, activations, concatenation on the channel axis...); `run_graph` does the
rest the same way for every library: operands as sums of concatenated channel slices, element-wise
sums and products (a ``C x 1 x 1`` operand is a ``1 x 1 x C`` one here and broadcasts as in numpy),
pools padded to exactly what their windows reach (`ios_core.reference.reach_pads`, so ``ceil_mode`` and
asymmetric pads need nothing of the library) and averages divided by the reference's divisors, crops
as slices, LayerNorm as standardization then the per-channel affine, a `Sequential`'s operators in
turn, each with its own weights (``"<i>.<key>"``). A graph holding an operator the walk cannot
translate is refused before anything is traced (`check_translatable`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np

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
    Pads,
    Pool,
    Sequential,
    Shape,
    Softmax,
    Value,
    rules_of,
)
from ios_core.reference import pool_divisors, reach_pads
from ios_core.weights import Params


class UntranslatableOpError(TypeError):
    """An operator with no channels-last translation; the message names the node and its type."""


@dataclass(frozen=True)
class ArrayOps:
    """An array library's primitives on NHWC arrays, as the walk needs them."""

    conv: Callable[[Conv, Any, Params], Any]  # the convolution (any pads) plus its bias; the walk applies the act
    window: Callable[[str, Any, tuple[int, int], tuple[int, int]], Any]  # "max" or "sum" of unpadded windows
    spatial: Callable[[str, Any], Any]  # "max" or "mean" over H and W, kept as 1 x 1
    pad: Callable[[Any, Pads, float], Any]  # H and W by non-negative (top, left, bottom, right), with a value
    activations: Mapping[str, Callable[[Any], Any]]
    clip: Callable[[Any, float, float], Any]
    shuffle: Callable[[Any, int], Any]  # ShuffleNet's channel shuffle in ``groups``
    standardize: Callable[[Any, float], Any]  # each pixel's channels to zero mean, unit (biased) variance
    softmax: Callable[[Any], Any]  # over the channels
    concat: Callable[[list[Any]], Any]  # along the channel axis
    constant: Callable[[np.ndarray, Any], Any]  # a numpy array as a constant of the second argument's element type


def pad_or_crop(ops: ArrayOps, x: Any, pads: Pads, value: float = 0.0) -> Any:
    """``x`` padded by ``pads`` (top, left, bottom, right); a negative amount crops that side by slicing."""
    top, left, bottom, right = pads
    h, w = int(x.shape[1]), int(x.shape[2])
    if min(pads) < 0:
        x = x[:, max(0, -top) : h - max(0, -bottom), max(0, -left) : w - max(0, -right), :]
    grow = (max(0, top), max(0, left), max(0, bottom), max(0, right))
    return ops.pad(x, grow, value) if any(grow) else x


def _pool(op: Pool, x: Any, shape: Shape, ops: ArrayOps) -> Any:
    if op.kind.startswith("global"):
        return ops.spatial("mean" if op.kind == "global_avg" else "max", x)
    padded = pad_or_crop(ops, x, reach_pads(op, shape.height, shape.width), -np.inf if op.kind == "max" else 0.0)
    if op.kind == "max":  # -inf never wins
        return ops.window("max", padded, op.kernel, op.stride)
    divisors = ops.constant(pool_divisors(op, shape.height, shape.width)[None, :, :, None], x)  # keeps x's type
    return ops.window("sum", padded, op.kernel, op.stride) / divisors  # a constant: folded at compile time


def _conv(op: Conv, x: Any, shape: Shape, params: Params, ops: ArrayOps) -> Any:
    return ops.activations[op.act](ops.conv(op, x, params))


def _layer_norm(op: LayerNorm, x: Any, shape: Shape, params: Params, ops: ArrayOps) -> Any:
    return ops.standardize(x, op.eps) * params["weight"] + params["bias"]


def _sequential(op: Sequential, x: Any, shape: Shape, params: Params, ops: ArrayOps) -> Any:
    for i, inner in enumerate(op.ops):
        prefix = f"{i}."
        x = _one(inner, x, shape, {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}, ops)
        shape = rules_of(inner).shape(inner, (shape,))
    return x


SINGLE: dict[type, Callable[[Any, Any, Shape, Params, ArrayOps], Any]] = {
    Conv: _conv,
    Pool: lambda op, x, shape, params, ops: _pool(op, x, shape, ops),
    Identity: lambda op, x, shape, params, ops: x,
    Activation: lambda op, x, shape, params, ops: ops.activations[op.kind](x),
    Pad: lambda op, x, shape, params, ops: pad_or_crop(ops, x, op.pads, op.value),
    Clip: lambda op, x, shape, params, ops: ops.clip(x, op.low, op.high),
    ChannelShuffle: lambda op, x, shape, params, ops: ops.shuffle(x, op.groups),
    LayerNorm: _layer_norm,
    Softmax: lambda op, x, shape, params, ops: ops.softmax(x),
    Sequential: _sequential,
}
"""The translation of each single-operand operator on NHWC value ``x`` of per-sample (NCHW) ``shape``."""

TRANSLATED = (*SINGLE, Elementwise)


def check_translatable(graph: Graph) -> None:
    """Raise `UntranslatableOpError` for the first operator (or operator of a `Sequential`) the walk cannot run."""
    for node in graph.operators:
        for op in node.op.ops if isinstance(node.op, Sequential) else (node.op,):
            if not isinstance(op, TRANSLATED):
                raise UntranslatableOpError(
                    f"cannot translate node {node.name!r}: no channels-last translation of {type(op).__name__}"
                )


def run_graph(graph: Graph, ops: ArrayOps, x: Any, weights: Mapping[str, Params]) -> Any:
    """``graph`` on the NHWC batch ``x`` with ``weights`` (per node, in the library's layout): its NHWC output."""
    env = {graph.input.name: x}
    for node in graph.operators:
        operands = [_operand(value, env, graph, ops) for value in node.inputs]
        if isinstance(node.op, Elementwise):
            combine = (lambda a, b: a + b) if node.op.kind == "add" else (lambda a, b: a * b)
            env[node.name] = reduce(combine, operands)
        else:
            shape = graph.operand_shapes(node)[0]
            env[node.name] = _one(node.op, operands[0], shape, weights.get(node.name, {}), ops)
    return env[graph.output]


def _one(op: Op, x: Any, shape: Shape, params: Params, ops: ArrayOps) -> Any:
    return SINGLE[type(op)](op, x, shape, params, ops)


def _operand(value: Value, env: dict[str, Any], graph: Graph, ops: ArrayOps) -> Any:
    terms = []
    for term in value.terms:
        parts = [
            env[s.node] if (s.begin, s.end) == (0, graph.shapes[s.node].channels) else env[s.node][..., s.begin : s.end]
            for s in term
        ]
        terms.append(parts[0] if len(parts) == 1 else ops.concat(parts))
    return reduce(lambda a, b: a + b, terms)
