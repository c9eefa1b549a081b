"""ONNX import: a CNN in an ``.onnx`` file becomes a `Network` -- IR graph, float64 weights and head.

Each ONNX operator of the body maps to IR through one handler in `BODY_OPS`, keyed by op type:
Conv (with any folded BatchNormalization and activation) becomes a `Conv`; pools a `Pool`;
Concat, Split and channel Slices become values that read channel slices, with no node; Identity
and Dropout pass their operand through. What the IR cannot say directly is rewritten exactly: a
BatchNormalization or per-channel Add/Mul by a constant is a depthwise 1x1 convolution, and an
average pool that counts padding is a depthwise convolution of weight ``1/(kh*kw)``.

Weights are checked against the graph as they are converted -- a Conv's against its input's
channels, its group and kernel_shape; a BatchNormalization's statistics against its channels; the
head's Gemm and MatMul against their inputs -- so a model ONNX Runtime would refuse is refused
here, naming the node and the two numbers that disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from ios_core.ir import Activation, Conv, Elementwise, Graph, GraphBuilder, Pool, Shape, Value, concat
from ios_core.onnx_io.context import Context, Pair, pair, symmetric_padding
from ios_core.onnx_io.head import HEAD_KERNELS, HEAD_ONLY, Head, run_head
from ios_core.onnx_io.network import Network
from ios_core.onnx_io.parse import (
    ACTIVATION_ATTR,
    FUSED_ACTIVATIONS,
    OnnxImportError,
    OnnxNode,
    Parsed,
    UnsupportedOperatorError,
    batch_norm_affine,
    cut_tensors,
    fuse,
    read,
    read_file,
    split_body,
)
from ios_core.weights import Params


def _conv(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    x, weight = ctx.value(node), ctx.const(node, 1)
    bias = ctx.const(node, 2)
    kernel = pair(node, "kernel_shape", weight.shape[2:])
    group = int(node.attrs.get("group", 1))
    misfit = _conv_misfit(weight, bias, kernel, group, x.channels)
    if misfit:
        raise OnnxImportError(f"{node}: {misfit}")
    stride, dilation = pair(node, "strides", (1, 1)), pair(node, "dilations", (1, 1))
    padding = symmetric_padding(node, ctx.shape(x), kernel, stride, dilation)
    op = Conv(weight.shape[0], kernel, stride, padding, dilation, group, node.attrs.get(ACTIVATION_ATTR, "none"))
    bias = np.zeros(weight.shape[0]) if bias is None else bias
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


def _channelwise(ctx: Context, node: OnnxNode, x: Value, scale: np.ndarray, shift: np.ndarray) -> Value:
    """``x * scale + shift`` per channel, exactly, as a depthwise 1x1 convolution."""
    c = x.channels
    op = Conv(c, (1, 1), groups=c)
    return ctx.add(node, op, x, params={"weight": np.broadcast_to(scale, (c,)).reshape(c, 1, 1, 1).copy(),
                                        "bias": np.broadcast_to(shift, (c,)).copy()})


def _batch_norm(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    if node.attrs.get("training_mode", 0) or len([t for t in node.outputs if t]) > 1:
        raise OnnxImportError(f"{node}: only inference-mode BatchNormalization (one output) is supported")
    x = ctx.value(node)
    for i, statistic in enumerate(("scale", "B", "input_mean", "input_var"), start=1):
        shape = ctx.const(node, i).shape  # each must be a constant, of one value per channel
        if shape != (x.channels,):
            raise OnnxImportError(f"{node}: {statistic} has shape {shape} for an input of {x.channels} channels")
    return (_channelwise(ctx, node, x, *batch_norm_affine(ctx.parsed, node)),)


def _per_channel(node: OnnxNode, const: np.ndarray, channels: int) -> np.ndarray:
    """A constant that broadcasts over N, H, W as a length-``channels`` vector; anything else is an error."""
    c = np.asarray(const, dtype=np.float64)
    if c.ndim > 4 or (c.ndim == 4 and c.shape[0] != 1):
        raise OnnxImportError(f"{node}: constant of shape {c.shape} does not broadcast per channel")
    c = c.reshape((1,) * (4 - c.ndim) + c.shape)
    if c.shape[2:] != (1, 1) or c.shape[1] not in (1, channels):
        raise OnnxImportError(f"{node}: constant of shape {c.shape} is not per-channel for {channels} channels")
    return np.broadcast_to(c[0, :, 0, 0], (channels,))


def _binary(kind: str) -> Callable[[Context, OnnxNode], tuple[Value, ...]]:
    """Add/Sub/Mul/Div: of two activations (Add, Mul) an element-wise node; with a constant a channel affine."""

    def handler(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
        left_const, right_const = (t in ctx.parsed.consts for t in node.inputs[:2])
        if not (left_const or right_const):
            if kind == "Add":
                return _sum(ctx, node)
            if kind != "Mul":
                raise OnnxImportError(f"{node}: {kind} of two activations is not supported")
            a, b = ctx.value(node, 0), ctx.value(node, 1)
            if ctx.shape(a) != ctx.shape(b):
                raise OnnxImportError(f"{node}: broadcasting {ctx.shape(a)} with {ctx.shape(b)} is not supported")
            return (ctx.add(node, Elementwise("mul"), a, b),)
        if left_const and kind in ("Sub", "Div"):
            raise OnnxImportError(f"{node}: {kind} with a constant first operand is not supported")
        x = ctx.value(node, 1 if left_const else 0)
        c = _per_channel(node, ctx.const(node, 0 if left_const else 1), x.channels)
        scale, shift = {"Add": (1.0, c), "Sub": (1.0, -c), "Mul": (c, 0.0), "Div": (1.0 / c, 0.0)}[kind]
        return (_channelwise(ctx, node, x, scale, shift),)

    return handler


def _sum(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    """A sum of activations: a summed operand of its one reader, as IOS writes it, else an add node."""
    values = [ctx.value(node, i) for i in range(len(node.inputs))]
    if any(ctx.shape(v) != ctx.shape(values[0]) for v in values):
        raise OnnxImportError(f"{node}: broadcasting {', '.join(str(ctx.shape(v)) for v in values)} is not supported")
    readers = ctx.readers.get(node.outputs[0], [])
    if len(values) == 1 or (len(readers) == 1 and readers[0] not in SINGLE_TERM_READERS):
        return (sum(values[1:], values[0]),)
    return (ctx.add(node, Elementwise("add"), *values),)


def _window(node: OnnxNode, x: Shape) -> tuple[Pair, Pair, Pair]:
    """Kernel, stride and padding of a pool; ``ceil_mode`` only where it gives the floor's output size."""
    kernel, stride = pair(node, "kernel_shape", (1, 1)), pair(node, "strides", (1, 1))
    if pair(node, "dilations", (1, 1)) != (1, 1):
        raise OnnxImportError(f"{node}: dilated pooling is not supported")
    padding = symmetric_padding(node, x, kernel, stride, (1, 1))
    if node.attrs.get("ceil_mode", 0):
        for n, k, s, p in zip((x.height, x.width), kernel, stride, padding, strict=True):
            ceil = -(-(n + 2 * p - k) // s) + 1
            ceil -= (ceil - 1) * s >= n + p  # the last window must start inside the input or its left padding
            if ceil != (n + 2 * p - k) // s + 1:
                raise OnnxImportError(f"{node}: ceil_mode=1 changes the output size here; not supported")
    return kernel, stride, padding


def _max_pool(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    if len(node.outputs) > 1 and node.outputs[1]:
        raise OnnxImportError(f"{node}: MaxPool's indices output is not supported")
    x = ctx.value(node)
    return (ctx.add(node, Pool("max", *_window(node, ctx.shape(x))), x),)


def _average_pool(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    x = ctx.value(node)
    kernel, stride, padding = _window(node, ctx.shape(x))
    if node.attrs.get("count_include_pad", 0) and padding != (0, 0):  # padding counted: a fixed-weight conv
        c = x.channels
        weight = np.full((c, 1, *kernel), 1.0 / (kernel[0] * kernel[1]))
        return (ctx.add(node, Conv(c, kernel, stride, padding, groups=c), x,
                        params={"weight": weight, "bias": np.zeros(c)}),)
    return (ctx.add(node, Pool("avg", kernel, stride, padding), x),)


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
    return tuple(x[int(a):int(b)] for a, b in zip(bounds[:-1], bounds[1:], strict=True))


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
            begin, end = _clamp(int(start), x.channels), _clamp(int(stop), x.channels)
        elif (_clamp(int(start), dims[axis]), _clamp(int(stop), dims[axis])) != (0, dims[axis]):
            raise OnnxImportError(f"{node}: only channel slices are supported, this one slices axis {axis}")
    if begin >= end:
        raise OnnxImportError(f"{node}: empty channel slice [{begin}:{end}]")
    return (x[begin:end],)


def _clamp(index: int, size: int | None) -> int | None:
    """An ONNX slice bound in ``[0, size]``; for the batch axis (size None) the bounds of the whole axis."""
    if size is None:
        return 0 if index == 0 else None if index >= 2**31 - 1 else -1
    return min(max(index + size if index < 0 else index, 0), size)


def _activation(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    return (ctx.add(node, Activation(FUSED_ACTIVATIONS[node.op_type]), ctx.value(node)),)


def _global_pool(kind: str) -> Callable[[Context, OnnxNode], tuple[Value, ...]]:
    return lambda ctx, node: (ctx.add(node, Pool(kind), ctx.value(node)),)


BODY_OPS: dict[str, Callable[[Context, OnnxNode], tuple[Value, ...]]] = {
    "Conv": _conv,
    "BatchNormalization": _batch_norm,
    "Relu": _activation,
    "Sigmoid": _activation,
    "Tanh": _activation,
    "MaxPool": _max_pool,
    "AveragePool": _average_pool,
    "GlobalAveragePool": _global_pool("global_avg"),
    "GlobalMaxPool": _global_pool("global_max"),
    "Add": _binary("Add"),
    "Sub": _binary("Sub"),
    "Mul": _binary("Mul"),
    "Div": _binary("Div"),
    "Sum": _sum,
    "Concat": _concat,
    "Split": _split,
    "Slice": _slice,
    "Identity": lambda ctx, node: (ctx.value(node),),
    "Dropout": lambda ctx, node: (ctx.value(node),),  # inference: the identity
}
"""How each ONNX operator of the body becomes IR: a handler returns one value per output."""

SINGLE_TERM_READERS = frozenset({"Concat", "Split", "Slice", "Identity", "Dropout"})
"""Readers that need (or pass on) a single-term value: a sum they read is materialized by a node."""


def supported_operators() -> dict[str, list[str]]:
    """The ONNX op types the importer accepts, in the body and in the head."""
    return {"body": sorted(BODY_OPS), "head": sorted(HEAD_KERNELS)}


def load_onnx(source: str | Path | onnx.ModelProto, name: str | None = None) -> Network:
    """Import an ONNX CNN as a `Network`: a linted graph cut into blocks, its weights, and its head.

    Parameters
    ----------
    source
        A path to an ``.onnx`` file, or a loaded model.
    name
        The graph's name; by default the file's stem, else the ONNX graph's name.

    Raises
    ------
    UnsupportedOperatorError
        Listing every operator without a rule, with the nodes that use it.
    OnnxImportError
        Naming the file that cannot be read or is no ONNX model; or the node whose input nothing
        defines, the nodes of a cycle; or the node whose weights do not fit the graph, or whose
        attributes the IR cannot represent (asymmetric padding, a non-channel concatenation...).
    """
    if not isinstance(source, onnx.ModelProto):
        name, source = name or Path(source).stem, read_file(source)
    parsed = read(source, name)
    fuse(parsed)
    body, head_nodes, body_output = split_body(parsed, HEAD_ONLY)
    unsupported: dict[str, list[str]] = {}
    for nodes, table, where in ((body, BODY_OPS, ""), (head_nodes, HEAD_KERNELS, " (after the body)")):
        for node in nodes:
            if node.op_type not in table:
                unsupported.setdefault(node.op_type + where, []).append(node.name)
    if unsupported:
        raise UnsupportedOperatorError(unsupported)
    graph, weights = _convert(parsed, body, body_output)
    head = None
    if head_nodes:
        consts = {t: parsed.consts[t] for node in head_nodes for t in node.inputs if t in parsed.consts}
        head = Head(tuple(head_nodes), consts, body_output, parsed.output)
        batch = parsed.batch or 1  # the file's own batch size where it fixes one: a Reshape may use it
        run_head(head, np.zeros((batch, *graph.shapes[graph.output])))  # raises for a weight that does not fit
    return Network(graph, weights, head)


def _convert(parsed: Parsed, body: list[OnnxNode], body_output: str) -> tuple[Graph, dict[str, Params]]:
    builder = GraphBuilder(parsed.name, *parsed.input_shape)
    ctx = Context(parsed, builder, {parsed.input: builder.input}, shapes={"input": Shape(*parsed.input_shape)})
    for node in body:
        for t in node.inputs:
            ctx.readers.setdefault(t, []).append(node.op_type)
    ctx.readers.setdefault(body_output, []).append("output")
    cuts = set(cut_tensors(body, parsed.input, body_output, parsed.consts))
    for node in body:
        try:
            values = BODY_OPS[node.op_type](ctx, node)
        except ValueError as error:  # GraphError, ShapeError: the IR refused what the node asks for
            raise OnnxImportError(f"{node}: {error}") from error
        ctx.env.update((t, v) for t, v in zip(node.outputs, values, strict=True) if t)
        for t in node.outputs:
            if t in cuts and ctx.current:
                ctx.env[t] = ctx.end_block(ctx.env[t])
    if ctx.current or ctx.env[body_output] != ctx.last_exit:
        ctx.end_block(ctx.env[body_output])
    return builder.build(), ctx.weights

