"""The IR as a pure JAX function of a params pytree: the XLA baseline's network.

`jax_forward` writes the graph out as ``forward(params, x)`` on NHWC arrays (XLA's native layout
on GPUs; one transpose of the input outside the timed call, as PyTorch's channels-last batch is):
convolutions by ``lax.conv_general_dilated`` (grouped and depthwise ones by
``feature_group_count``), pooling by ``lax.reduce_window`` with the IR's semantics -- symmetric
padding, floor output size, max over ``-inf`` padding, average over the real inputs only (padding
excluded, as `ios_core.reference.pool2d` counts) -- slices and concatenations on the channel axis,
sums of terms. `jax_params` gives the weights as that pytree (HWIO float32), so ``jax.jit`` takes
them as arguments, not as constants folded into the program. JAX is imported when these are called.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ios_core.ir import Activation, Conv, Elementwise, Graph, Identity, Op, Pool, Sequential, Value
from ios_core.weights import Params

NHWC = ("NHWC", "HWIO", "NHWC")


class UntranslatableOpError(TypeError):
    """An operator `jax_forward` has no translation for; the message names the node and its type."""


def _conv(jax: Any, op: Conv, x: Any, p: dict[str, Any], precision: Any) -> Any:
    (ph, pw) = op.padding
    out = jax.lax.conv_general_dilated(x, p["weight"], op.stride, ((ph, ph), (pw, pw)), rhs_dilation=op.dilation,
                                       dimension_numbers=NHWC, feature_group_count=op.groups, precision=precision)
    return ACTIVATIONS[op.act](jax, out + p["bias"])


def _pool(jax: Any, op: Pool, x: Any, p: dict[str, Any], precision: Any) -> Any:
    if op.kind == "global_avg":
        return x.mean(axis=(1, 2), keepdims=True)
    if op.kind == "global_max":
        return x.max(axis=(1, 2), keepdims=True)
    (ph, pw), lax = op.padding, jax.lax
    window, strides, pads = (1, *op.kernel, 1), (1, *op.stride, 1), ((0, 0), (ph, ph), (pw, pw), (0, 0))
    if op.kind == "max":  # reduce_window pads with its initial value: -inf never wins
        return lax.reduce_window(x, -np.inf, lax.max, window, strides, pads)
    sums = lax.reduce_window(x, 0.0, lax.add, window, strides, pads)
    ones = np.ones((1, *x.shape[1:3], 1), np.float32)  # a constant: XLA folds the counts at compile time
    return sums / lax.reduce_window(ones, 0.0, lax.add, window, strides, pads)


def _sequential(jax: Any, op: Sequential, x: Any, p: dict[str, Any], precision: Any) -> Any:
    for i, inner in enumerate(op.ops):
        prefix = f"{i}."
        x = SINGLE[type(inner)](jax, inner, x, {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)},
                                precision)
    return x


ACTIVATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "none": lambda jax, x: x,
    "relu": lambda jax, x: jax.nn.relu(x),
    "sigmoid": lambda jax, x: jax.nn.sigmoid(x),
    "tanh": lambda jax, x: jax.numpy.tanh(x),
}

SINGLE: dict[type, Callable[[Any, Any, Any, dict[str, Any], Any], Any]] = {
    Conv: _conv,
    Pool: _pool,
    Identity: lambda jax, op, x, p, precision: x,
    Activation: lambda jax, op, x, p, precision: ACTIVATIONS[op.kind](jax, x),
    Sequential: _sequential,
}


def _value(jax: Any, value: Value, env: dict[str, Any], graph: Graph) -> Any:
    terms = []
    for term in value.terms:
        parts = [env[s.node] if (s.begin, s.end) == (0, graph.shapes[s.node].channels)
                 else env[s.node][..., s.begin:s.end] for s in term]
        terms.append(parts[0] if len(parts) == 1 else jax.numpy.concatenate(parts, axis=-1))
    return sum(terms[1:], terms[0])


def _elementwise(op: Elementwise, operands: list[Any]) -> Any:
    out = operands[0]
    for x in operands[1:]:
        out = out + x if op.kind == "add" else out * x
    return out


def _check_translatable(graph: Graph) -> None:
    """Raise `UntranslatableOpError` for the first node (or node of a `Sequential`) with no translation."""
    for node in graph.operators:
        ops: tuple[Op, ...] = node.op.ops if isinstance(node.op, Sequential) else (node.op,)
        for op in ops:
            if not isinstance(op, Elementwise) and type(op) not in SINGLE:
                raise UntranslatableOpError(f"jax_module cannot translate node {node.name!r}: "
                                            f"no JAX translation of {type(op).__name__}")


def jax_forward(graph: Graph, precision: Any = None) -> Callable[[dict[str, dict[str, Any]], Any], Any]:
    """``forward(params, x)``: ``graph`` on an NHWC batch ``x`` with `jax_params` weights, giving an NHWC output.

    Parameters
    ----------
    graph
        The network; an operator with no translation raises `UntranslatableOpError` here, before tracing.
    precision
        ``jax.lax.Precision`` of every convolution: ``DEFAULT`` lets XLA use TF32 on the GPU, ``HIGHEST`` does not.
    """
    _check_translatable(graph)

    def forward(params: dict[str, dict[str, Any]], x: Any) -> Any:
        import jax

        env = {graph.input.name: x}
        for node in graph.operators:
            operands = [_value(jax, v, env, graph) for v in node.inputs]
            if isinstance(node.op, Elementwise):
                env[node.name] = _elementwise(node.op, operands)
            else:
                env[node.name] = SINGLE[type(node.op)](jax, node.op, operands[0], params.get(node.name, {}), precision)
        return env[graph.output]

    return forward


def jax_params(weights: dict[str, Params]) -> dict[str, dict[str, np.ndarray]]:
    """The network's weights as float32 arrays for `jax_forward`: convolution kernels OIHW -> HWIO."""
    return {node: {key: np.ascontiguousarray((w.transpose(2, 3, 1, 0) if w.ndim == 4 else w).astype(np.float32))
                   for key, w in params.items()}
            for node, params in weights.items()}
