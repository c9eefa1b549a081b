"""Handlers of the NCHW operators: each turns one ONNX node into IR and returns one value per output.

Conv (with any folded BatchNormalization and activation) becomes a `Conv`, with asymmetric padding
where the file asks for it; pools a `Pool` (ceil_mode, count_include_pad, auto_pad); Concat, Split and
channel Slices become values that read channel slices, with no node. What the IR cannot say directly
is rewritten exactly: a BatchNormalization or per-channel Add/Mul by a constant is a depthwise 1x1
convolution, a HardSigmoid of other slopes a channel affine then a `Clip`.

Weights are checked against the graph as they are converted -- a Conv's against its input's channels,
its group and kernel_shape; a BatchNormalization's statistics against its channels -- so a model ONNX
Runtime would refuse is refused here, naming the node and the two numbers that disagree.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ios_core.ir import Activation, ChannelShuffle, Clip, Conv, Elementwise, Pad, Pool, Sequential, Value, concat
from ios_core.onnx_io.context import Context, Pair, pair, window_pads
from ios_core.onnx_io.parse import (
    ACTIVATION_ATTR,
    ACTIVATION_OP,
    CHANNEL_SHUFFLE_OP,
    PRE_ACTIVATION_ATTR,
    OnnxImportError,
    OnnxNode,
    batch_norm_affine,
)
from ios_core.onnx_io.patterns import pad_amounts, slice_bound

Handler = Callable[[Context, OnnxNode], tuple[Value, ...]]


def _conv(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    x, weight = ctx.value(node), ctx.const(node, 1)
    bias = ctx.const(node, 2)
    kernel = pair(node, "kernel_shape", weight.shape[2:])
    group = int(node.attrs.get("group", 1))
    misfit = _conv_misfit(weight, bias, kernel, group, x.channels)
    if misfit:
        raise OnnxImportError(f"{node}: {misfit}")
    stride, dilation = pair(node, "strides", (1, 1)), pair(node, "dilations", (1, 1))
    begin, end = window_pads(node, ctx.shape(x), kernel, stride, dilation)
    op = Conv(
        weight.shape[0],
        kernel,
        stride,
        begin,
        dilation,
        group,
        node.attrs.get(ACTIVATION_ATTR, "none"),
        None if end == begin else end,
    )
    bias = np.zeros(weight.shape[0]) if bias is None else bias
    if PRE_ACTIVATION_ATTR in node.attrs:  # the activation of its input, applied as a depthwise kernel loads it
        op = Sequential((Activation(node.attrs[PRE_ACTIVATION_ATTR]), op))
        return (ctx.add(node, op, x, params={"1.weight": weight, "1.bias": bias}),)
    return (ctx.add(node, op, x, params={"weight": weight, "bias": bias}),)


def _conv_misfit(weight: np.ndarray, bias: np.ndarray | None, kernel: Pair, group: int, channels: int) -> str | None:
    """Why a Conv's weight and bias do not fit its kernel_shape, its group and an input of ``channels``, or None."""
    if weight.ndim != 4:
        return f"weight of shape {weight.shape} is not 4-D (output channels, input channels / group, kh, kw)"
    out, per_group = weight.shape[:2]
    if group < 1 or out % group:
        return f"weight has {out} output channels, not a multiple of group={group}"
    if per_group * group != channels:
        return f"weight takes {per_group} input channels x group={group}, its input has {channels} channels"
    if weight.shape[2:] != kernel:
        return f"kernel_shape is {kernel[0]}x{kernel[1]} but the weight's kernel is {weight.shape[2]}x{weight.shape[3]}"
    if bias is not None and bias.shape != (out,):
        return f"bias has shape {bias.shape} for the weight's {out} output channels"
    return None


def channelwise(ctx: Context, node: OnnxNode, x: Value, scale: np.ndarray, shift: np.ndarray,
                act: str = "none") -> Value:
    """``act(x * scale + shift)`` per channel, exactly, as a depthwise 1x1 convolution."""
    c = x.channels
    op = Conv(c, (1, 1), groups=c, act=act)
    return ctx.add(
        node,
        op,
        x,
        params={
            "weight": np.broadcast_to(scale, (c,)).reshape(c, 1, 1, 1).copy(),
            "bias": np.broadcast_to(shift, (c,)).copy(),
        },
    )


def _batch_norm(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    if node.attrs.get("training_mode", 0) or len([t for t in node.outputs if t]) > 1:
        raise OnnxImportError(f"{node}: only inference-mode BatchNormalization (one output) is supported")
    x = ctx.value(node)
    for i, statistic in enumerate(("scale", "B", "input_mean", "input_var"), start=1):
        shape = ctx.const(node, i).shape  # each must be a constant, of one value per channel
        if shape != (x.channels,):
            raise OnnxImportError(f"{node}: {statistic} has shape {shape} for an input of {x.channels} channels")
    return (channelwise(ctx, node, x, *batch_norm_affine(ctx.parsed, node), node.attrs.get(ACTIVATION_ATTR, "none")),)


CHANNEL_AXIS = {"nchw": 1, "nhwc": 3, "flat": 1}
"""The channel axis of a 4-D tensor in each layout (a flat one as N x C x 1 x 1: per channel only for H = W = 1)."""


def per_channel(node: OnnxNode, const: np.ndarray, channels: int, layout: str = "nchw") -> np.ndarray:
    """A constant that broadcasts over all but the channel axis as a length-``channels`` vector, else an error."""
    c = np.asarray(const, dtype=np.float64)
    rank = 2 if layout == "flat" else 4
    if c.ndim > rank or (c.ndim == rank and c.shape[0] != 1):
        raise OnnxImportError(f"{node}: constant of shape {c.shape} does not broadcast per channel")
    c = c.reshape((1,) * (rank - c.ndim) + c.shape)
    axis = 1 if layout == "flat" else CHANNEL_AXIS[layout]
    others = [n for i, n in enumerate(c.shape) if i not in (0, axis)]
    if any(n != 1 for n in others) or c.shape[axis] not in (1, channels):
        raise OnnxImportError(f"{node}: constant of shape {c.shape} is not per-channel for {channels} channels")
    return np.broadcast_to(c.reshape(-1), (channels,))


def _binary(kind: str) -> Callable[[Context, OnnxNode], tuple[Value, ...]]:
    """Add/Sub/Mul/Div: of two activations (Add, Mul) an element-wise node; with a constant a channel affine."""

    def handler(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
        left_const, right_const = (t in ctx.parsed.consts for t in node.inputs[:2])
        if not (left_const or right_const):
            if kind == "Add":
                return _sum(ctx, node)
            if kind != "Mul":
                raise OnnxImportError(f"{node}: {kind} of two activations is not supported")
            return (ctx.add(node, Elementwise("mul"), ctx.value(node, 0), ctx.value(node, 1)),)
        if left_const and kind in ("Sub", "Div"):
            raise OnnxImportError(f"{node}: {kind} with a constant first operand is not supported")
        x = ctx.value(node, 1 if left_const else 0)
        c = per_channel(node, ctx.const(node, 0 if left_const else 1), x.channels, ctx.layout(node.inputs[0]))
        scale, shift = {"Add": (1.0, c), "Sub": (1.0, -c), "Mul": (c, 0.0), "Div": (1.0 / c, 0.0)}[kind]
        return (channelwise(ctx, node, x, scale, shift),)

    return handler


def _sum(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    """A sum of activations: a summed operand of its one reader, as IOS writes it, else an add node."""
    values = [ctx.value(node, i) for i in range(len(node.inputs))]
    readers = ctx.readers.get(node.outputs[0], [])
    same = all(ctx.shape(v) == ctx.shape(values[0]) for v in values)  # else a broadcast: an element-wise node
    if len(values) == 1 or (same and len(readers) == 1 and readers[0] not in SINGLE_TERM_READERS):
        return (sum(values[1:], values[0]),)
    return (ctx.add(node, Elementwise("add"), *values),)


def _pool(kind: str) -> Handler:
    """MaxPool or AveragePool: a `Pool` with the node's padding (asymmetric, auto_pad), ceil_mode, count_include_pad."""

    def handler(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
        if len(node.outputs) > 1 and node.outputs[1]:
            raise OnnxImportError(f"{node}: MaxPool's indices output is not supported")
        if pair(node, "dilations", (1, 1)) != (1, 1):
            raise OnnxImportError(f"{node}: dilated pooling is not supported")
        x = ctx.value(node)
        kernel, stride = pair(node, "kernel_shape", (1, 1)), pair(node, "strides", (1, 1))
        begin, end = window_pads(node, ctx.shape(x), kernel, stride, (1, 1))
        counts_pad = kind == "avg" and bool(node.attrs.get("count_include_pad", 0)) and (begin, end) != ((0, 0),) * 2
        op = Pool(
            kind, kernel, stride, begin, None if end == begin else end, bool(node.attrs.get("ceil_mode", 0)), counts_pad
        )
        return (ctx.add(node, op, x),)

    return handler


def _channel_axis(node: OnnxNode, default: int) -> None:
    axis = int(node.attrs.get("axis", default))
    if axis not in (1, -3):
        raise OnnxImportError(f"{node}: only the channel axis (1) is supported, got axis={axis}")


def _concat(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    _channel_axis(node, 1)
    return (concat(ctx.single(node, i) for i in range(len(node.inputs))),)


def _split(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    _channel_axis(node, 0)
    x, sizes = ctx.single(node, 0), ctx.const(node, 1)
    sizes = node.attrs.get("split") if sizes is None else sizes
    if sizes is None:  # equal parts; with num_outputs (opset 18) the last part may be smaller
        part = -(-x.channels // len(node.outputs))
        sizes = [min(part, x.channels - i * part) for i in range(len(node.outputs))]
    bounds = np.cumsum([0, *[int(s) for s in sizes]])
    if bounds[-1] != x.channels:
        raise OnnxImportError(f"{node}: split sizes {list(sizes)} do not add up to {x.channels} channels")
    return tuple(x[int(a) : int(b)] for a, b in zip(bounds[:-1], bounds[1:], strict=True))


def _slice(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    x = ctx.single(node, 0)
    if ctx.parsed.opset < 10:
        starts, ends, axes, steps = (node.attrs.get(k) for k in ("starts", "ends", "axes", "steps"))
    else:
        starts, ends, axes, steps = (ctx.const(node, i) for i in range(1, 5))
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    dims = (None, *ctx.shape(x))
    begin, end = 0, x.channels
    for start, stop, axis, step in zip(starts, ends, axes, steps, strict=True):
        axis = int(axis) % 4
        if int(step) != 1:
            raise OnnxImportError(f"{node}: slices with step {int(step)} are not supported")
        if axis == 1:
            begin, end = slice_bound(int(start), x.channels), slice_bound(int(stop), x.channels)
        elif (slice_bound(int(start), dims[axis]), slice_bound(int(stop), dims[axis])) != (0, dims[axis]):
            raise OnnxImportError(f"{node}: only channel slices are supported, this one slices axis {axis}")
    if begin >= end:
        raise OnnxImportError(f"{node}: empty channel slice [{begin}:{end}]")
    return (x[begin:end],)


def _activation(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    return (ctx.add(node, Activation(node.attrs["kind"]), ctx.value(node)),)


def _global_pool(kind: str) -> Handler:
    return lambda ctx, node: (ctx.add(node, Pool(kind), ctx.value(node)),)


def _clip(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    """A Clip that is no activation (`ios_core.onnx_io.patterns.activations` took ReLU6 and ReLU)."""
    low, high = (ctx.const(node, i) for i in (1, 2)) if ctx.parsed.opset >= 11 else (None, None)
    low = node.attrs.get("min", -np.inf) if low is None else float(low)
    high = node.attrs.get("max", np.inf) if high is None else float(high)
    return (ctx.add(node, Clip(float(low), float(high)), ctx.value(node)),)


def _hard_sigmoid(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    """``clip(alpha * x + beta, 0, 1)`` of slopes other than PyTorch's: a channel affine, then a `Clip`."""
    x = ctx.value(node)
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    scaled = channelwise(ctx, node, x, np.full(x.channels, alpha), np.full(x.channels, beta))
    return (ctx.add(node, Clip(0.0, 1.0), scaled),)


def _pad(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    """A Pad no convolution or pool took in (`ios_core.onnx_io.patterns.padded_windows`); negative pads crop."""
    pads, value = pad_amounts(ctx.parsed, node)
    return (ctx.add(node, Pad(pads, value), ctx.value(node)),)


def _channel_shuffle(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    x = ctx.single(node, 0)
    groups, per_group = node.attrs["groups"], node.attrs["per_group"]
    if per_group not in (-1, x.channels // groups) or x.channels % groups:
        raise OnnxImportError(
            f"{node}: a channel shuffle of {groups} groups of {per_group} does not fit {x.channels} channels"
        )
    return (ctx.add(node, ChannelShuffle(groups), x),)


NCHW_OPS: dict[str, Handler] = {
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": _global_pool("global_avg"),
    "GlobalMaxPool": _global_pool("global_max"),
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "Clip": _clip,
    "HardSigmoid": _hard_sigmoid,
    "Pad": _pad,
    CHANNEL_SHUFFLE_OP: _channel_shuffle,
}
"""Handlers of the operators that read NCHW tensors only."""

ANY_LAYOUT_OPS: dict[str, Handler] = {
    ACTIVATION_OP: _activation,
    "Identity": lambda ctx, node: (ctx.value(node),),
    "Dropout": lambda ctx, node: (ctx.value(node),),  # inference: the identity
    "Add": _binary("Add"),
    "Sub": _binary("Sub"),
    "Mul": _binary("Mul"),
    "Div": _binary("Div"),
    "Sum": _sum,
}
"""Handlers of the element-wise operators, which read a tensor in any layout (all operands in the same one)."""

SINGLE_TERM_READERS = frozenset({"Concat", "Split", "Slice", "Identity", "Dropout"})
"""Readers that need (or pass on) a single-term value: a sum they read is materialized by a node."""
