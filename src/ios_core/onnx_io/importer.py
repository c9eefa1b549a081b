"""ONNX import: a CNN in an ``.onnx`` file becomes a `Network` -- the whole network as an IR graph, with its weights.

The model is first simplified on a copy (`ios_core.onnx_io.fold`: ONNX shape inference and constant
folding, so an exporter's shape arithmetic is gone), decoded (`ios_core.onnx_io.parse`), its multi-node
spellings rewritten (`ios_core.onnx_io.patterns`) and its BatchNormalizations and activations fused
into convolutions. Each remaining ONNX operator maps to IR through one handler in `BODY_OPS`, keyed by
op type -- the NCHW operators in `ios_core.onnx_io.handlers`, those that read or make another layout
(channels last, flattened: ConvNeXt's blocks and the classifier head) in `ios_core.onnx_io.layouts`.
Everything from the input to the output is the graph: Flatten, Gemm and Softmax of a classifier too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import onnx

from ios_core.ir import GraphBuilder, Shape, Value
from ios_core.onnx_io.context import LAYOUTS, Context
from ios_core.onnx_io.fold import simplify
from ios_core.onnx_io.handlers import ANY_LAYOUT_OPS, NCHW_OPS
from ios_core.onnx_io.layouts import LAYOUT_OPS
from ios_core.onnx_io.network import Network
from ios_core.onnx_io.parse import (
    ACTIVATION_OP,
    OnnxImportError,
    OnnxNode,
    Parsed,
    UnsupportedOperatorError,
    cut_tensors,
    fuse,
    live,
    read,
    read_file,
)
from ios_core.onnx_io.patterns import ELEMENTWISE, rewrite

BODY_OPS: dict[str, Callable[[Context, OnnxNode], tuple[Value, ...]]] = {
    **NCHW_OPS,
    **ANY_LAYOUT_OPS,
    **{op: handler for op, (handler, _) in LAYOUT_OPS.items()},
}
"""How each ONNX operator (or rewritten pattern, ``ios::...``) becomes IR: a handler returns one value per output."""

ACCEPTS: dict[str, frozenset[str]] = {
    **{op: frozenset({"nchw"}) for op in NCHW_OPS},
    **{op: frozenset(LAYOUTS) for op in ANY_LAYOUT_OPS},
    **{op: layouts for op, (_, layouts) in LAYOUT_OPS.items()},
}
"""The layouts (`ios_core.onnx_io.context.LAYOUTS`) in which each operator reads its activations."""


IMPORT_REVISION = 3
"""Bumped whenever the graph imported from the same file changes (its operators, blocks or weights), so that what
was measured on an older import is not taken for today's (`bench/zoo.py`'s rows): 2 -- an activation folds into a
lone BatchNormalization and rides on the loads of its depthwise readers; a sum read by one activation ends no
block; 3 -- a per-channel Mul by a constant folds into the product before it (ConvNeXt's layer scale), and a
convolution read only by disjoint channel slices is one convolution per slice (DPN's dual path)."""


def supported_operators() -> dict[str, list[str]]:
    """The ONNX op types the importer converts, and those it accepts inside an activation (x * Sigmoid(x)...)."""
    return {"operators": sorted(op for op in BODY_OPS if "::" not in op), "in activations": sorted(ELEMENTWISE)}


def load_onnx(source: str | Path | onnx.ModelProto, name: str | None = None, fold: bool = True) -> Network:
    """Import an ONNX CNN as a `Network`: the whole network as a linted graph cut into blocks, with its weights.

    Parameters
    ----------
    source
        A path to an ``.onnx`` file, or a loaded model (never changed: folding works on a copy).
    name
        The graph's name; by default the file's stem, else the ONNX graph's name.
    fold
        Simplify a copy first (`ios_core.onnx_io.fold.simplify`); where that fails, the model is converted as
        it is, so that an error names the node at fault rather than the library.

    Raises
    ------
    UnsupportedOperatorError
        Naming every operator without a rule, with its first nodes and their count.
    OnnxImportError
        Naming the file that cannot be read or is no ONNX model; or the node whose input nothing
        defines, the nodes of a cycle; or the node whose weights do not fit the graph, or whose
        attributes or operands' layout the IR cannot represent.
    """
    if not isinstance(source, onnx.ModelProto):
        name, source = name or Path(source).stem, read_file(source)
    parsed = read(source, name)  # the file as given is checked first, so that its errors name its own nodes
    order = {node.name: i for i, node in enumerate(parsed.nodes)}  # errors list nodes in the file's order
    if fold:
        # a model onnxslim refuses (weights that do not fit...) is converted as it is: the checks name the node
        with contextlib.suppress(OnnxImportError):
            parsed = read(simplify(source), name)
    rewrite(parsed)
    parsed.nodes = live(parsed.nodes, parsed.output)  # before fusing: a rewritten chain's nodes read no more
    fuse(parsed)
    unsupported: dict[str, list[str]] = {}
    for node in parsed.nodes:
        if node.op_type not in BODY_OPS:
            unsupported.setdefault(node.op_type, []).append(node.name)
    if unsupported:
        raise UnsupportedOperatorError(
            {op: sorted(names, key=lambda n: order.get(n, len(order))) for op, names in unsupported.items()}
        )
    return _convert(parsed)


def _convert(parsed: Parsed) -> Network:
    builder = GraphBuilder(parsed.name, *parsed.input_shape)
    ctx = Context(parsed, builder, {parsed.input: builder.input}, shapes={"input": Shape(*parsed.input_shape)})
    for node in parsed.nodes:
        for t in node.inputs:
            ctx.readers.setdefault(t, []).append(node.op_type)
    ctx.readers.setdefault(parsed.output, []).append("output")
    if parsed.output not in {parsed.input} | {t for node in parsed.nodes for t in node.outputs}:
        raise OnnxImportError(f"the network's output {parsed.output!r} is not computed from its input")
    cuts = set(cut_tensors(parsed))  # reorders parsed.nodes block by block
    for node in parsed.nodes:
        layout = _operand_layout(ctx, node)
        try:
            values = BODY_OPS[node.op_type](ctx, node)
        except ValueError as error:  # GraphError, ShapeError: the IR refused what the node asks for
            raise OnnxImportError(f"{node}: {error}") from error
        for t, v in zip(node.outputs, values, strict=True):
            if t:
                ctx.env[t] = v
                ctx.layouts.setdefault(t, layout)
        for t in node.outputs:
            if t in cuts and ctx.current and not _sum_for_an_activation(ctx, t):
                ctx.env[t] = ctx.end_block(ctx.env[t])
    if ctx.current or ctx.env[parsed.output] != ctx.last_exit:
        ctx.end_block(ctx.env[parsed.output])
    graph = builder.build()
    return Network(graph, ctx.weights, _output_shape(ctx, graph.shapes[graph.output]))


def _sum_for_an_activation(ctx: Context, tensor: str) -> bool:
    """Whether ``tensor`` is a sum that one activation alone reads (a residual block's add and ReLU): its block ends
    after the activation, which is then a cut too, so that the activation adds the terms in its own kernel
    (`ios_core.engine.lower`) instead of reading them back from an exit that an identity wrote."""
    return len(ctx.env[tensor].terms) > 1 and ctx.readers.get(tensor) == [ACTIVATION_OP]


def _operand_layout(ctx: Context, node: OnnxNode) -> str:
    """The one layout of the node's activation operands, which it must accept (`ACCEPTS`); else an error."""
    layouts = {ctx.layout(t) for t in node.inputs if t in ctx.env}
    if len(layouts) > 1:
        raise OnnxImportError(f"{node}: its operands are in different layouts ({', '.join(sorted(layouts))})")
    layout = layouts.pop() if layouts else "nchw"
    if layout not in ACCEPTS[node.op_type]:
        tensor = next(t for t in node.inputs if t in ctx.env and ctx.layout(t) == layout)
        raise OnnxImportError(
            f"{node}: reads {tensor!r}, a tensor {LAYOUTS[layout]}; {node.op_type} is only "
            f"supported on one {' or '.join(LAYOUTS[k] for k in sorted(ACCEPTS[node.op_type]))}"
        )
    return layout


def _output_shape(ctx: Context, out: Shape) -> tuple[int, ...] | None:
    """The per-sample shape of the ONNX output where it is not the graph output's C x H x W."""
    layout = ctx.layout(ctx.parsed.output)
    if layout == "nhwc":
        raise OnnxImportError(
            f"the network's output {ctx.parsed.output!r} is channels last; only an NCHW or "
            f"flattened output is supported"
        )
    return (out.size,) if layout == "flat" else None
