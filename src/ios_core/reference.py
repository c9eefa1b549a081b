"""The reference executor: numpy float64, the ground truth every engine and schedule is compared with.

`run_graph` interprets a graph node by node in topological order; `run_schedule` runs a schedule
stage by stage, chain by chain, and a merged group as the one wide convolution it becomes. Both
free each value once its last reader has run. Kernels are looked up by operator type in `KERNELS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ios_core.ir import (
    Activation,
    ChannelShuffle,
    Clip,
    Conv,
    Elementwise,
    Graph,
    Identity,
    LayerNorm,
    Node,
    Pad,
    Pads,
    Pool,
    Sequential,
    Softmax,
    Value,
    window_out,
)
from ios_core.schedule import Group, Schedule, merged_conv
from ios_core.weights import Params, merged_weights

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _hardsigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


ACTIVATION_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda x: x,
    "relu": lambda x: np.maximum(x, 0.0),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "hardsigmoid": _hardsigmoid,
    "hardswish": lambda x: x * _hardsigmoid(x),
    "silu": lambda x: x * _sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3))),
}


def pad2d(x: np.ndarray, pads: Pads, fill: float = 0.0) -> np.ndarray:
    """``x`` padded with ``fill`` by ``pads`` (top, left, bottom, right); a negative amount crops that side."""
    top, left, bottom, right = pads
    h, w = x.shape[2:]
    x = x[:, :, max(0, -top) : h - max(0, -bottom), max(0, -left) : w - max(0, -right)]
    grow = ((0, 0), (0, 0), (max(0, top), max(0, bottom)), (max(0, left), max(0, right)))
    return np.pad(x, grow, constant_values=fill)


def _windows(x: np.ndarray, kernel, stride, begin, out, dilation=(1, 1), fill=0.0) -> np.ndarray:
    """A view (N, C, OH, OW, KH, KW) of the ``out`` windows of ``x`` padded by ``begin`` on top and left.

    The bottom and right are padded with ``fill`` (or cropped) to exactly what the last window reaches,
    so the caller's output size -- the IR's, with its end padding and ``ceil_mode`` -- decides.
    """
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
    end = [(o - 1) * s + k - n - b for o, s, k, n, b in zip(out, stride, span, x.shape[2:], begin, strict=True)]
    x = pad2d(x, (begin[0], begin[1], end[0], end[1]), fill)
    return sliding_window_view(x, span, axis=(2, 3))[:, :, :: stride[0], :: stride[1], :: dilation[0], :: dilation[1]]


def _out_size(op: Conv | Pool, x: np.ndarray, dilation=(1, 1), ceil_mode: bool = False) -> tuple[int, int]:
    top, left, bottom, right = op.pads
    return (
        window_out(x.shape[2], op.kernel[0], op.stride[0], (top, bottom), dilation[0], ceil_mode),
        window_out(x.shape[3], op.kernel[1], op.stride[1], (left, right), dilation[1], ceil_mode),
    )


def _depthwise(x: np.ndarray, w: np.ndarray, op: Conv) -> np.ndarray:
    """One filter per channel, summed over kernel taps: KH*KW whole-tensor products, not a window copy."""
    (sh, sw), (dh, dw) = op.stride, op.dilation
    oh, ow = _out_size(op, x, op.dilation)
    x = pad2d(x, op.pads)
    out = np.zeros((x.shape[0], x.shape[1], oh, ow))
    for i, j in np.ndindex(w.shape[1:]):
        tap = x[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
        out += tap * w[None, :, i, j, None, None]
    return out


def conv2d(op: Conv, xs: list[np.ndarray], p: Params) -> np.ndarray:
    (x,) = xs
    w, g = p["weight"], op.groups
    if g == x.shape[1] == w.shape[0] > 1:
        out = _depthwise(x, w[:, 0], op)
    else:  # one tensor contraction per group over every window (a view: no copy until tensordot's)
        out_size = _out_size(op, x, op.dilation)
        windows = _windows(x, op.kernel, op.stride, op.padding, out_size, op.dilation)
        cin, cout = x.shape[1] // g, w.shape[0] // g
        out = np.concatenate(
            [
                np.tensordot(
                    windows[:, i * cin : (i + 1) * cin], w[i * cout : (i + 1) * cout], axes=([1, 4, 5], [1, 2, 3])
                ).transpose(0, 3, 1, 2)
                for i in range(g)
            ],
            axis=1,
        )
    return ACTIVATION_FUNCTIONS[op.act](out + p["bias"][None, :, None, None])


def reach_pads(op: Pool, height: int, width: int) -> Pads:
    """``op``'s pads with the bottom and right set to what its last window reaches (negative: a crop).

    Padded so, a ``height x width`` input gives ``op``'s output under unpadded floor-mode pooling: how a library
    without asymmetric pads or ``ceil_mode`` runs it.
    """
    oh, ow = _out_size(op, np.empty((0, 0, height, width)), ceil_mode=op.ceil_mode)
    bottom = (oh - 1) * op.stride[0] + op.kernel[0] - height - op.padding[0]
    return (op.padding[0], op.padding[1], bottom, (ow - 1) * op.stride[1] + op.kernel[1] - width - op.padding[1])


def pool_divisors(op: Pool, height: int, width: int) -> np.ndarray:
    """The (OH, OW) cell counts an average pool divides its window sums by, for a ``height x width`` input.

    Without ``count_include_pad`` the window's cells inside the input; with it, those inside the padded input
    (what ``ceil_mode`` reaches beyond that never counts), as PyTorch does.
    """
    ones = np.ones((1, 1, height, width))
    out = _out_size(op, ones, ceil_mode=op.ceil_mode)
    if op.count_include_pad:
        counts = _windows(pad2d(ones, op.pads, 1.0), op.kernel, op.stride, (0, 0), out)
    else:
        counts = _windows(ones, op.kernel, op.stride, op.padding, out)
    return counts.sum(axis=(4, 5))[0, 0]


def pool2d(op: Pool, xs: list[np.ndarray], p: Params) -> np.ndarray:
    (x,) = xs
    if op.kind == "global_avg":
        return x.mean(axis=(2, 3), keepdims=True)
    if op.kind == "global_max":
        return x.max(axis=(2, 3), keepdims=True)
    out = _out_size(op, x, ceil_mode=op.ceil_mode)
    if op.kind == "max":
        return _windows(x, op.kernel, op.stride, op.padding, out, fill=-np.inf).max(axis=(4, 5))
    sums = _windows(x, op.kernel, op.stride, op.padding, out).sum(axis=(4, 5))
    return sums / pool_divisors(op, *x.shape[2:])


def elementwise(op: Elementwise, xs: list[np.ndarray], p: Params) -> np.ndarray:
    combine = np.add if op.kind == "add" else np.multiply
    out = xs[0]
    for x in xs[1:]:
        out = combine(out, x)  # a C x 1 x 1 operand broadcasts over H and W
    return out


def channel_shuffle(op: ChannelShuffle, xs: list[np.ndarray], p: Params) -> np.ndarray:
    (x,) = xs
    n, c, h, w = x.shape
    return x.reshape(n, op.groups, c // op.groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


def layer_norm(op: LayerNorm, xs: list[np.ndarray], p: Params) -> np.ndarray:
    (x,) = xs
    centered = x - x.mean(axis=1, keepdims=True)
    variance = (centered**2).mean(axis=1, keepdims=True)  # biased, as ONNX and PyTorch
    return centered / np.sqrt(variance + op.eps) * p["weight"][:, None, None] + p["bias"][:, None, None]


def softmax(op: Softmax, xs: list[np.ndarray], p: Params) -> np.ndarray:
    exp = np.exp(xs[0] - xs[0].max(axis=1, keepdims=True))  # shifted by the maximum: never overflows
    return exp / exp.sum(axis=1, keepdims=True)


def sequential(op: Sequential, xs: list[np.ndarray], p: Params) -> np.ndarray:
    x = xs
    for i, inner in enumerate(op.ops):
        prefix = f"{i}."
        inner_params = {k[len(prefix) :]: v for k, v in p.items() if k.startswith(prefix)}
        x = [KERNELS[type(inner)](inner, x, inner_params)]
    return x[0]


KERNELS: dict[type, Callable[[object, list[np.ndarray], Params], np.ndarray]] = {
    Conv: conv2d,
    Pool: pool2d,
    Identity: lambda op, xs, p: xs[0],
    Elementwise: elementwise,
    Activation: lambda op, xs, p: ACTIVATION_FUNCTIONS[op.kind](xs[0]),
    Pad: lambda op, xs, p: pad2d(xs[0], op.pads, op.value),
    Clip: lambda op, xs, p: np.clip(xs[0], op.low, op.high),
    ChannelShuffle: channel_shuffle,
    LayerNorm: layer_norm,
    Softmax: softmax,
    Sequential: sequential,
}


def gather(value: Value, outputs: dict[str, np.ndarray]) -> np.ndarray:
    """Materialize a value: concatenate each term's slices on channels, then sum the terms."""
    terms = [np.concatenate([outputs[s.node][:, s.begin : s.end] for s in term], axis=1) for term in value.terms]
    return terms[0] if len(terms) == 1 else sum(terms[1:], terms[0])


class ExecutionError(RuntimeError):
    """A kernel failed; the message names the node."""


class _Interpreter:
    """Runs nodes over a dict of live outputs, freeing each after its last reader."""

    def __init__(self, graph: Graph, x: np.ndarray, weights: dict[str, Params]) -> None:
        self.graph, self.weights = graph, weights
        self.outputs = {graph.input.name: np.asarray(x, dtype=np.float64)}
        self.readers_left = {name: len(users) for name, users in graph.consumers.items()}

    def run_node(self, node: Node) -> None:
        try:
            operands = [gather(v, self.outputs) for v in node.inputs]
            self.outputs[node.name] = KERNELS[type(node.op)](node.op, operands, self.weights.get(node.name, {}))
        except Exception as error:
            raise ExecutionError(f"while executing {node}: {error}") from error
        self._release(node)

    def run_merge(self, group: Group) -> None:
        nodes = [self.graph[name] for name in group.ops]
        convs = [n.op for n in nodes]
        params = merged_weights(convs, [self.weights[n.name] for n in nodes])
        wide = conv2d(merged_conv(convs), [gather(nodes[0].inputs[0], self.outputs)], params)
        offset = 0
        for node in nodes:
            self.outputs[node.name] = wide[:, offset : offset + node.op.out_channels]
            offset += node.op.out_channels
        for node in nodes:
            self._release(node)

    def _release(self, node: Node) -> None:
        for producer in node.producers:
            self.readers_left[producer] -= 1
            if self.readers_left[producer] == 0 and producer != self.graph.output:
                del self.outputs[producer]


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    """The relative L2 error of ``got`` against ``expected``, in float64: how every output here is checked."""
    expected = np.asarray(expected, dtype=np.float64)
    difference = np.asarray(got, dtype=np.float64) - expected
    return float(np.linalg.norm(difference) / max(np.linalg.norm(expected), 1e-30))


def run_graph(graph: Graph, x: np.ndarray, weights: dict[str, Params]) -> np.ndarray:
    """The graph's output for input batch ``x``, node by node in topological order."""
    interpreter = _Interpreter(graph, x, weights)
    for node in graph.operators:
        interpreter.run_node(node)
    return interpreter.outputs[graph.output]


def run_schedule(graph: Graph, schedule: Schedule, x: np.ndarray, weights: dict[str, Params]) -> np.ndarray:
    """The graph's output computed in the schedule's order: stage by stage, group by group."""
    interpreter = _Interpreter(graph, x, weights)
    for stage in schedule.stages:
        for group in stage.groups:
            if group.merge:
                interpreter.run_merge(group)
            else:
                for name in group.ops:
                    interpreter.run_node(graph[name])
    return interpreter.outputs[graph.output]
