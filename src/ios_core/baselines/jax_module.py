"""The IR as a pure JAX function of a params pytree: the XLA baseline's network.

`jax_forward` writes the graph out as ``forward(params, x)`` on NHWC arrays (XLA's native layout
on GPUs; one transpose of the input outside the timed call, as PyTorch's channels-last batch is):
convolutions by ``lax.conv_general_dilated`` (grouped and depthwise ones by
``feature_group_count``, asymmetric pads as they are), pooling by ``lax.reduce_window`` over windows
the walk has padded (max over ``-inf``, averages divided by the reference's divisors), LayerNorm by
``jax.nn.standardize``, slices and concatenations on the channel axis, sums of terms. `jax_params` gives
the weights as that pytree (HWIO, float32 or the 16-bit type of the run), so ``jax.jit`` takes them as
arguments, not as constants folded into the program. JAX is imported when these are called.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

from ios_core.baselines.channels_last import ArrayOps, check_translatable, run_graph
from ios_core.ir import Conv, Graph, Pads
from ios_core.weights import Params

NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(jax: Any, precision: Any, op: Conv, x: Any, p: Params) -> Any:
    top, left, bottom, right = op.pads
    out = jax.lax.conv_general_dilated(x, p["weight"], op.stride, ((top, bottom), (left, right)),
                                       rhs_dilation=op.dilation, dimension_numbers=NHWC,
                                       feature_group_count=op.groups, precision=precision)
    return out + p["bias"]


def _window(jax: Any, kind: str, x: Any, kernel: tuple[int, int], stride: tuple[int, int]) -> Any:
    lax = jax.lax
    init, combine = (-np.inf, lax.max) if kind == "max" else (0.0, lax.add)
    return lax.reduce_window(x, init, combine, (1, *kernel, 1), (1, *stride, 1), "VALID")


def _pad(jax: Any, x: Any, pads: Pads, value: float) -> Any:
    top, left, bottom, right = pads
    return jax.numpy.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _shuffle(x: Any, groups: int) -> Any:
    n, h, w, c = x.shape
    return x.reshape(n, h, w, groups, c // groups).swapaxes(3, 4).reshape(n, h, w, c)


def array_ops(jax: Any, precision: Any) -> ArrayOps:
    """JAX's primitives for the channels-last walk, every convolution at ``precision``."""
    jnp, nn = jax.numpy, jax.nn
    return ArrayOps(
        conv=partial(_conv, jax, precision),
        window=partial(_window, jax),
        spatial=lambda kind, x: getattr(x, kind)(axis=(1, 2), keepdims=True),
        pad=partial(_pad, jax),
        activations={"none": lambda x: x, "relu": nn.relu, "sigmoid": nn.sigmoid, "tanh": jnp.tanh,
                     "relu6": nn.relu6, "hardsigmoid": nn.hard_sigmoid, "hardswish": nn.hard_swish,
                     "silu": nn.silu, "gelu": partial(nn.gelu, approximate=False),
                     "gelu_tanh": partial(nn.gelu, approximate=True)},
        clip=jnp.clip,
        shuffle=_shuffle,
        standardize=lambda x, eps: nn.standardize(x, axis=-1, epsilon=eps),
        softmax=partial(nn.softmax, axis=-1),
        concat=partial(jnp.concatenate, axis=-1),
        constant=lambda array, like: array.astype(like.dtype),
    )


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


def jax_params(weights: dict[str, Params], dtype: Any = np.float32) -> dict[str, dict[str, np.ndarray]]:
    """The network's weights as arrays of ``dtype`` (float32; ``jnp.float16``, ``jnp.bfloat16``) for `jax_forward`:
    convolution kernels OIHW -> HWIO, each float64 weight rounded once."""
    return {node: {key: np.ascontiguousarray((w.transpose(2, 3, 1, 0) if w.ndim == 4 else w).astype(dtype))
                   for key, w in params.items()}
            for node, params in weights.items()}
