"""The IR run on channels-last (NHWC) arrays of any array library: the walk the JAX and TensorFlow baselines share.

A library gives its few operators as `ArrayOps` (convolution with bias, pooling, activations,
concatenation on the channel axis); `run_graph` does the rest the same way for every library:
operands as sums of concatenated channel slices, element-wise sums and products, a `Sequential`'s
operators in turn, each with its own weights (``"<i>.<key>"``). A graph holding an operator the walk
cannot translate is refused before anything is traced (`check_translatable`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce
from typing import Any

from ios_core.ir import Activation, Conv, Elementwise, Graph, Identity, Op, Pool, Sequential, Value
from ios_core.weights import Params


class UntranslatableOpError(TypeError):
    """An operator with no channels-last translation; the message names the node and its type."""


@dataclass(frozen=True)
class ArrayOps:
    """An array library's operators on NHWC arrays, as the walk needs them."""

    conv: Callable[[Conv, Any, Params], Any]  # the convolution plus its bias; the walk applies the activation
    pool: Callable[[Pool, Any], Any]
    activations: Mapping[str, Callable[[Any], Any]]
    concat: Callable[[list[Any]], Any]  # along the channel axis


TRANSLATED = (Conv, Pool, Identity, Activation, Elementwise, Sequential)


def check_translatable(graph: Graph) -> None:
    """Raise `UntranslatableOpError` for the first operator (or operator of a `Sequential`) the walk cannot run."""
    for node in graph.operators:
        for op in node.op.ops if isinstance(node.op, Sequential) else (node.op,):
            if not isinstance(op, TRANSLATED):
                raise UntranslatableOpError(f"cannot translate node {node.name!r}: no channels-last translation of "
                                            f"{type(op).__name__}")


def run_graph(graph: Graph, ops: ArrayOps, x: Any, weights: Mapping[str, Params]) -> Any:
    """``graph`` on the NHWC batch ``x`` with ``weights`` (per node, in the library's layout): its NHWC output."""
    env = {graph.input.name: x}
    for node in graph.operators:
        operands = [_operand(value, env, graph, ops) for value in node.inputs]
        env[node.name] = _apply(node.op, operands, weights.get(node.name, {}), ops)
    return env[graph.output]


def _operand(value: Value, env: dict[str, Any], graph: Graph, ops: ArrayOps) -> Any:
    terms = []
    for term in value.terms:
        parts = [env[s.node] if (s.begin, s.end) == (0, graph.shapes[s.node].channels)
                 else env[s.node][..., s.begin:s.end] for s in term]
        terms.append(parts[0] if len(parts) == 1 else ops.concat(parts))
    return reduce(lambda a, b: a + b, terms)


def _apply(op: Op, operands: list[Any], params: Params, ops: ArrayOps) -> Any:
    if isinstance(op, Elementwise):
        return reduce((lambda a, b: a + b) if op.kind == "add" else (lambda a, b: a * b), operands)
    x = operands[0]
    if isinstance(op, Sequential):
        for i, inner in enumerate(op.ops):
            prefix = f"{i}."
            x = _apply(inner, [x], {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}, ops)
        return x
    if isinstance(op, Conv):
        return ops.activations[op.act](ops.conv(op, x, params))
    if isinstance(op, Pool):
        return ops.pool(op, x)
    if isinstance(op, Activation):
        return ops.activations[op.kind](x)
    return x  # Identity
