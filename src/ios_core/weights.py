"""Deterministic weights: the same seed gives every engine (numpy, cuDNN, PyTorch) the same network.

Each node's weights come from a generator seeded by ``(seed, crc32(node name))``, so they do not
depend on the order nodes are built in, and He-scaled (std = sqrt(2 / fan_in)) so activations keep
their magnitude through deep networks instead of vanishing or overflowing; a per-channel scale
(LayerNorm's ``weight``) is drawn near 1 instead.

He scaling keeps a magnitude; it does not undo growth. Sums do grow it: an operand of ``t`` terms (RandWire nodes
sum up to a dozen), and, through the nodes without weights that pass them on (NASNet's cells add branches, pool
and add again, eighteen cells deep, to values near 5e6: past float16's 65504), every later one. So each value's
expected magnitude (root mean square) is tracked through the graph (`expected_rms`), and a node with a kernel
divides it by its operand's, standing in for the batch norm trained networks have there: every such node's output
is back near the magnitude of the input, in float16's range.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np

from ios_core.ir import Conv, Graph, Value
from ios_core.schedule import merged_conv

Params = dict[str, np.ndarray]


def make_weights(graph: Graph, seed: int = 0) -> dict[str, Params]:
    """Float64 parameters for every node that has any, keyed by node name then parameter name."""
    weights = {}
    rms: dict[str, float] = {}  # each node's expected output magnitude, relative to the input's
    for node in graph.operators:
        shapes = graph.weight_shapes(node.name)
        operand = expected_rms(node.inputs[0], rms)
        rms[node.name] = 1.0 if shapes else operand  # a node with weights stands in for a batch norm
        if shapes:
            rng = np.random.default_rng([seed, zlib.crc32(node.name.encode())])
            params = {name: _draw(rng, name, shape) for name, shape in shapes.items()}
            first = next(name for name in params if name.endswith("weight"))
            if params[first].ndim > 1:  # a kernel; a per-channel scale (LayerNorm's) normalizes by itself
                params[first] /= operand
            weights[node.name] = params
    return weights


def expected_rms(value: Value, rms: Mapping[str, float]) -> float:
    """The root mean square an operand is expected to have: per term, its slices' by channels; the terms' summed in
    square (independent terms add their variances). A slice of a node not in ``rms`` (the input) counts as 1."""
    square = sum(sum(s.channels * rms.get(s.node, 1.0) ** 2 for s in term) / value.channels for term in value.terms)
    return float(np.sqrt(square))


def _draw(rng: np.random.Generator, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if name.endswith("bias"):
        return rng.normal(0.0, 0.05, shape)
    if len(shape) == 1:  # a per-channel scale (LayerNorm's): near 1, as trained ones start
        return rng.normal(1.0, 0.1, shape)
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)


def make_input(graph: Graph, batch: int, seed: int = 0) -> np.ndarray:
    """A standard-normal input batch for the graph's placeholder (never zeros: zeros hide bugs)."""
    shape = graph.shapes[graph.input.name]
    return np.random.default_rng([seed, 1]).standard_normal((batch, *shape))


def merged_weights(convs: list[Conv], params: list[Params]) -> Params:
    """The weights of the merged convolution: each kernel zero-padded, centered, then stacked on outputs."""
    kh, kw = merged_conv(convs).kernel
    kernels = []
    for conv, p in zip(convs, params, strict=True):
        dh, dw = (kh - conv.kernel[0]) // 2, (kw - conv.kernel[1]) // 2
        kernels.append(
            np.pad(p["weight"], ((0, 0), (0, 0), (dh, kh - conv.kernel[0] - dh), (dw, kw - conv.kernel[1] - dw)))
        )
    return {"weight": np.concatenate(kernels), "bias": np.concatenate([p["bias"] for p in params])}
