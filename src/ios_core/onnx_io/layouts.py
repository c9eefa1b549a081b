"""Handlers of the operators that change a tensor's layout or read one in another (`ios_core.onnx_io.context.LAYOUTS`).

A Transpose to channels last and back, a Flatten or a Reshape to (N, C*H*W) add no node: the IR value
stays, only its ONNX layout changes. What reads the other layouts becomes NCHW IR: a Gemm or MatMul
by a constant matrix is a convolution (1x1 on channels last or on a flattened C x 1 x 1; kernel H x W
on a flattened C x H x W, which reads the flattening's C-order), LayerNormalization over the last axis
of a channels-last tensor a `LayerNorm`, a Softmax over channels a `Softmax`, a ReduceMean or ReduceMax
over H and W a global pool -- ConvNeXt's channels-last blocks and every classifier head.
"""

from __future__ import annotations

import numpy as np

from ios_core.ir import Conv, LayerNorm, Pool, Softmax, Value
from ios_core.onnx_io.context import LAYOUTS, Context
from ios_core.onnx_io.handlers import Handler, per_channel
from ios_core.onnx_io.parse import ACTIVATION_ATTR, DENSE_OP, OnnxImportError, OnnxNode

CHANNELS_LAST, CHANNELS_FIRST = (0, 2, 3, 1), (0, 3, 1, 2)


def _relayout(ctx: Context, node: OnnxNode, layout: str) -> tuple[Value, ...]:
    """The operand unchanged, its output tensor in ``layout``."""
    ctx.layouts[node.outputs[0]] = layout
    return (ctx.value(node),)


def _transpose(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    perm, layout = tuple(node.attrs.get("perm", ())), ctx.layout(node.inputs[0])
    moves = {("nchw", CHANNELS_LAST): "nhwc", ("nhwc", CHANNELS_FIRST): "nchw", (layout, (0, 1, 2, 3)): layout}
    if (layout, perm) not in moves:
        raise OnnxImportError(
            f"{node}: Transpose {perm} of a tensor {LAYOUTS[layout]} is not supported; only "
            f"{CHANNELS_LAST} of an NCHW tensor and {CHANNELS_FIRST} back"
        )
    return _relayout(ctx, node, moves[layout, perm])


def _dims(ctx: Context, node: OnnxNode) -> tuple[int, ...]:
    """The per-sample dimensions of operand 0 as ONNX sees them, in its layout."""
    c, h, w = ctx.shape(ctx.value(node))
    return {"nchw": (c, h, w), "nhwc": (h, w, c), "flat": (c * h * w,)}[ctx.layout(node.inputs[0])]


def _flat_layout(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    """The operand as (N, C*H*W); channels last only where H = W = 1, when the order is the same."""
    c, h, w = ctx.shape(ctx.value(node))
    if ctx.layout(node.inputs[0]) == "nhwc" and h * w > 1:
        raise OnnxImportError(f"{node}: flattening a channels-last {h}x{w}x{c} tensor is not supported")
    return _relayout(ctx, node, "flat")


def _flatten(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    if int(node.attrs.get("axis", 1)) != 1:
        raise OnnxImportError(f"{node}: only Flatten of axis 1 (keeping the batch) is supported")
    return _flat_layout(ctx, node)


def _reshape(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    """A Reshape that keeps the batch and flattens (N, C*H*W), or gives an NCHW tensor back its own shape."""
    target, dims = [int(d) for d in ctx.const(node, 1)], _dims(ctx, node)
    if not node.attrs.get("allowzero", 0):
        target = [dims[i - 1] if d == 0 and 0 < i <= len(dims) else d for i, d in enumerate(target)]
    size, first, rest = int(np.prod(dims)), target[0], target[1:]
    if -1 in rest:
        known = int(np.prod([d for d in rest if d != -1]))
        rest = [size // max(known, 1) if d == -1 else d for d in rest]
    batch_kept = first in (0, 1, ctx.parsed.batch) or (first == -1 and int(np.prod(rest)) == size)
    c, h, w = ctx.shape(ctx.value(node))
    if batch_kept and rest == [size]:
        return _flat_layout(ctx, node)
    if batch_kept and rest == [c, h, w] and ctx.layout(node.inputs[0]) in ("nchw", "flat"):
        return _relayout(ctx, node, "nchw")
    raise OnnxImportError(
        f"{node}: Reshape of a tensor {LAYOUTS[ctx.layout(node.inputs[0])]} of per-sample "
        f"dimensions {dims} to {target} is not supported; only flattening to (N, {size}) "
        f"and back to (N, {c}, {h}, {w})"
    )


def _reduce(kind: str) -> Handler:
    """ReduceMean / ReduceMax over the two spatial axes: a global pool."""

    def handler(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
        axes = ctx.const(node, 1) if len(node.inputs) > 1 else node.attrs.get("axes")
        layout = ctx.layout(node.inputs[0])
        spatial = {"nchw": {2, 3}, "nhwc": {1, 2}}.get(layout)
        if axes is None or {int(a) % 4 for a in np.ravel(axes)} != spatial:
            raise OnnxImportError(
                f"{node}: only a reduction over height and width is supported, got axes "
                f"{None if axes is None else [int(a) for a in np.ravel(axes)]} of a tensor "
                f"{LAYOUTS[layout]}"
            )
        out = ctx.add(node, Pool(kind), ctx.value(node))
        ctx.layouts[node.outputs[0]] = layout if node.attrs.get("keepdims", 1) else "flat"
        return (out,)

    return handler


def _dense(ctx: Context, node: OnnxNode, weight: np.ndarray, bias: np.ndarray) -> tuple[Value, ...]:
    """``x @ weight.T + bias`` over the last axis of ``x`` as a convolution; ``weight`` is M x K."""
    x, layout = ctx.value(node), ctx.layout(node.inputs[0])
    c, h, w = ctx.shape(x)
    kernel = {"nhwc": (1, 1), "flat": (h, w)}.get(layout)
    if kernel is None:
        raise OnnxImportError(f"{node}: a matrix product over the width of an NCHW tensor is not supported")
    takes = c * kernel[0] * kernel[1]
    if weight.ndim != 2 or weight.shape[1] != takes:
        raise OnnxImportError(f"{node}: its input has {takes} features, its weight takes {weight.shape[-1]}")
    m = weight.shape[0]
    params = {"weight": weight.reshape(m, c, *kernel), "bias": per_channel(node, bias, m, "flat")}
    return (ctx.add(node, Conv(m, kernel, act=node.attrs.get(ACTIVATION_ATTR, "none")), x, params=params),)


def _gemm(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    if node.attrs.get("transA", 0):
        raise OnnxImportError(f"{node}: Gemm with transA=1 is not supported")
    b = np.asarray(ctx.const(node, 1), dtype=np.float64)
    weight = float(node.attrs.get("alpha", 1.0)) * (b if node.attrs.get("transB", 0) else b.T)
    c = ctx.const(node, 2)
    bias = np.zeros(weight.shape[0]) if c is None else float(node.attrs.get("beta", 1.0)) * np.asarray(c, float)
    return _dense(ctx, node, weight, bias)


def _matmul(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    """MatMul by a constant K x M matrix, with the bias `ios_core.onnx_io.patterns.dense_biases` fused in, if any."""
    weight = np.asarray(ctx.const(node, 1), dtype=np.float64)
    if weight.ndim != 2:
        raise OnnxImportError(f"{node}: only a product with a constant 2-D matrix is supported, not {weight.shape}")
    bias = ctx.const(node, 2)
    return _dense(ctx, node, weight.T, np.zeros(weight.shape[1]) if bias is None else bias)


def _over_channels(ctx: Context, node: OnnxNode, default: int) -> None:
    """Check that ``axis`` is the channel axis of operand 0 (for a flat tensor only where H = W = 1)."""
    axis, layout = int(node.attrs.get("axis", default)), ctx.layout(node.inputs[0])
    c, h, w = ctx.shape(ctx.value(node))
    ok = {"nchw": axis in (1, -3), "nhwc": axis in (3, -1), "flat": axis in (1, -1) and h * w == 1}[layout]
    if not ok:
        raise OnnxImportError(
            f"{node}: only {node.op_type} over channels is supported, not axis={axis} of a "
            f"{c}x{h}x{w} tensor {LAYOUTS[layout]}"
        )


def _layer_norm(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    if any(node.outputs[1:]):
        raise OnnxImportError(f"{node}: LayerNormalization's mean and inverse deviation outputs are not supported")
    if ctx.layout(node.inputs[0]) == "nchw":
        raise OnnxImportError(
            f"{node}: LayerNormalization of an NCHW tensor (over its last axis, the width) is "
            f"not supported; only over the channels of a channels-last one"
        )
    _over_channels(ctx, node, -1)
    x = ctx.value(node)
    scale, shift = ctx.const(node, 1), ctx.const(node, 2)
    params = {
        "weight": per_channel(node, scale, x.channels, "flat"),
        "bias": np.zeros(x.channels) if shift is None else per_channel(node, shift, x.channels, "flat"),
    }
    return (ctx.add(node, LayerNorm(float(node.attrs.get("epsilon", 1e-5))), x, params=params),)


def _softmax(ctx: Context, node: OnnxNode) -> tuple[Value, ...]:
    _over_channels(ctx, node, -1 if ctx.parsed.opset >= 13 else 1)
    return (ctx.add(node, Softmax(), ctx.value(node)),)


LAYOUT_OPS: dict[str, tuple[Handler, frozenset[str]]] = {
    "Transpose": (_transpose, frozenset({"nchw", "nhwc"})),
    "Flatten": (_flatten, frozenset(LAYOUTS)),
    "Reshape": (_reshape, frozenset(LAYOUTS)),
    "ReduceMean": (_reduce("global_avg"), frozenset({"nchw", "nhwc"})),
    "ReduceMax": (_reduce("global_max"), frozenset({"nchw", "nhwc"})),
    "Gemm": (_gemm, frozenset({"flat"})),
    "MatMul": (_matmul, frozenset({"flat", "nhwc"})),
    DENSE_OP: (_matmul, frozenset({"flat", "nhwc"})),
    "LayerNormalization": (_layer_norm, frozenset(LAYOUTS)),
    "Softmax": (_softmax, frozenset(LAYOUTS)),
}
"""Handlers of the operators that change a layout or read one other than NCHW, with the layouts each reads."""
