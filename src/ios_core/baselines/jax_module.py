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
from functools import partial
from typing import Any

import numpy as np

from ios_core.baselines.channels_last import ArrayOps, check_translatable, run_graph
from ios_core.ir import Conv, Graph, Pool
from ios_core.weights import Params

NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(jax: Any, precision: Any, op: Conv, x: Any, p: Params) -> Any:
    (ph, pw) = op.padding
    out = jax.lax.conv_general_dilated(x, p["weight"], op.stride, ((ph, ph), (pw, pw)), rhs_dilation=op.dilation,
                                       dimension_numbers=NHWC, feature_group_count=op.groups, precision=precision)
    return out + p["bias"]


def _pool(jax: Any, op: Pool, x: Any) -> Any:
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


def array_ops(jax: Any, precision: Any) -> ArrayOps:
    """JAX's operators for the channels-last walk, every convolution at ``precision``."""
    return ArrayOps(conv=partial(_conv, jax, precision), pool=partial(_pool, jax),
                    activations={"none": lambda x: x, "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid,
                                 "tanh": jax.numpy.tanh},
                    concat=lambda parts: jax.numpy.concatenate(parts, axis=-1))


def jax_forward(graph: Graph, precision: Any = None) -> Callable[[dict[str, dict[str, Any]], Any], Any]:
    """``forward(params, x)``: ``graph`` on an NHWC batch ``x`` with `jax_params` weights, giving an NHWC output.

    Parameters
    ----------
    graph
        The network; an operator with no translation raises `UntranslatableOpError` here, before tracing.
    precision
        ``jax.lax.Precision`` of every convolution: ``DEFAULT`` lets XLA use TF32 on the GPU, ``HIGHEST`` does not.
    """
    check_translatable(graph)

    def forward(params: dict[str, dict[str, Any]], x: Any) -> Any:
        import jax

        return run_graph(graph, array_ops(jax, precision), x, params)

    return forward


def jax_params(weights: dict[str, Params]) -> dict[str, dict[str, np.ndarray]]:
    """The network's weights as float32 arrays for `jax_forward`: convolution kernels OIHW -> HWIO."""
    return {node: {key: np.ascontiguousarray((w.transpose(2, 3, 1, 0) if w.ndim == 4 else w).astype(np.float32))
                   for key, w in params.items()}
            for node, params in weights.items()}
