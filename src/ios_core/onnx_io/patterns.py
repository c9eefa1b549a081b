"""Rewrites of what ONNX spells in several nodes as the one node the importer converts.

Each rewrite replaces the last node of a pattern by one node with the same outputs and leaves the
nodes before it in place: `ios_core.onnx_io.parse.live` drops them afterwards when nothing else reads
them, and where something does they stay, so a rewrite is exact whatever else the graph reads.

- `activations`: any chain of element-wise operators with scalar constants that computes one of the
  IR's activations of a single tensor -- ``x * Sigmoid(x)``, GELU's Erf and tanh forms in any operand
  order, ``Clip(x, 0, 6)``, HardSwish... -- found by evaluating the chain on a probe and comparing it
  with each activation, becomes one `ACTIVATION_OP` node;
- `channel_shuffles`: Reshape (N, g, C/g, H, W), Transpose (0, 2, 1, 3, 4), Reshape (N, C, H, W);
- `padded_windows`: a constant Pad read only by a convolution (zero pad) or pool (-inf pad before a
  max, zero pad before an average, which then counts the padding) goes into that node's pads;
- `dense_biases`: MatMul by a constant matrix then Add of a constant vector becomes one `DENSE_OP`;
- `contiguous_gathers`: Reshape to 1-D then Gather of indices 0, 1, 2... in a shape is a Reshape to it;
- `sliced_products`: a convolution whose output only disjoint channel Slices read is one convolution per Slice.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from ios_core.onnx_io.parse import ACTIVATION_OP, CHANNEL_SHUFFLE_OP, DENSE_OP, OnnxImportError, OnnxNode, Parsed
from ios_core.reference import ACTIVATION_FUNCTIONS

Kernel = Callable[[OnnxNode, list[np.ndarray | None]], np.ndarray]

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _clip(node: OnnxNode, xs: list[np.ndarray | None]) -> np.ndarray:
    low = xs[1] if len(xs) > 1 and xs[1] is not None else node.attrs.get("min", -np.inf)
    high = xs[2] if len(xs) > 2 and xs[2] is not None else node.attrs.get("max", np.inf)
    return np.clip(xs[0], low, high)


def _hard_sigmoid(node: OnnxNode, x: np.ndarray) -> np.ndarray:
    return np.clip(node.attrs.get("alpha", 0.2) * x + node.attrs.get("beta", 0.5), 0.0, 1.0)


def _gelu(node: OnnxNode, xs: list[np.ndarray | None]) -> np.ndarray:
    kind = "gelu_tanh" if node.attrs.get("approximate", "none") == "tanh" else "gelu"
    return ACTIVATION_FUNCTIONS[kind](xs[0])


ELEMENTWISE: dict[str, Kernel] = {
    "Add": lambda node, xs: xs[0] + xs[1],
    "Sub": lambda node, xs: xs[0] - xs[1],
    "Mul": lambda node, xs: xs[0] * xs[1],
    "Div": lambda node, xs: xs[0] / xs[1],
    "Pow": lambda node, xs: np.power(xs[0], xs[1]),
    "Neg": lambda node, xs: -xs[0],
    "Erf": lambda node, xs: _erf(xs[0]),
    "Tanh": lambda node, xs: np.tanh(xs[0]),
    "Sigmoid": lambda node, xs: ACTIVATION_FUNCTIONS["sigmoid"](xs[0]),
    "Relu": lambda node, xs: np.maximum(xs[0], 0.0),
    "Clip": _clip,
    "HardSigmoid": lambda node, xs: _hard_sigmoid(node, xs[0]),
    "HardSwish": lambda node, xs: xs[0] * ACTIVATION_FUNCTIONS["hardsigmoid"](xs[0]),
    "Gelu": _gelu,
}
"""Element-wise ONNX operators an activation may be spelled with, as float64 kernels of their operands."""

PROBE = np.concatenate([np.linspace(-12.0, 12.0, 2401), [-1e3, 1e3]])
"""Where a chain is compared with each activation: dense around zero, where they differ, and far out."""


def _sources(parsed: Parsed) -> dict[str, str | None]:
    """For each tensor made by an element-wise node: the one tensor it is a function of, or None.

    None where the node reads two such tensors, or a constant that is not a scalar; its readers then take
    the tensor itself as their source (``Relu(a + b)`` is a function of ``a + b``).
    """
    sources: dict[str, str | None] = {}
    for node in parsed.nodes:
        if node.op_type not in ELEMENTWISE:
            continue
        found: set[str] = set()
        scalars = True
        for t in filter(None, node.inputs):
            if t in parsed.consts:
                scalars &= np.size(parsed.consts[t]) == 1
            else:
                found.add(sources.get(t) or t)
        sources[node.outputs[0]] = found.pop() if scalars and len(found) == 1 else None
    return sources


def _evaluate(parsed: Parsed, producer: dict[str, OnnxNode], tensor: str, x: str) -> np.ndarray:
    if tensor == x:
        return PROBE
    if tensor in parsed.consts:
        return np.asarray(parsed.consts[tensor], dtype=np.float64).reshape(())
    node = producer[tensor]
    operands = [_evaluate(parsed, producer, t, x) if t else None for t in node.inputs]
    return ELEMENTWISE[node.op_type](node, operands)


@functools.cache
def _on_probe() -> dict[str, np.ndarray]:
    """Each activation's values on `PROBE`, computed once, when first asked for."""
    with np.errstate(all="ignore"):  # exp(1000) overflows to inf, which a sigmoid turns into the exact 0 or 1
        return {kind: function(PROBE) for kind, function in ACTIVATION_FUNCTIONS.items() if kind != "none"}


def _matching_activation(values: np.ndarray) -> str | None:
    return next((k for k, v in _on_probe().items() if np.allclose(values, v, rtol=1e-5, atol=1e-6)), None)


def activations(parsed: Parsed) -> None:
    """Rewrite each element-wise chain that computes an IR activation of one tensor as an `ACTIVATION_OP` node.

    Every node of a chain is tried, as a function of the chain's source and else of its own operand: the last
    node matches the whole chain (``x * Sigmoid(x)`` is SiLU), an inner one that matches too (the Sigmoid) is
    only kept where something else reads it, and ``Sigmoid(2 * x)`` is a sigmoid of ``2 * x``.
    """
    producer = {t: node for node in parsed.nodes for t in node.outputs}
    sources = _sources(parsed)
    rewritten: dict[int, OnnxNode] = {}
    for node in parsed.nodes:
        if node.op_type not in ELEMENTWISE:
            continue
        operands = [t for t in node.inputs if t and t not in parsed.consts]
        scalars = all(np.size(parsed.consts[t]) == 1 for t in node.inputs if t in parsed.consts)
        candidates = [sources[node.outputs[0]], *(operands if len(operands) == 1 and scalars else [])]
        for x in dict.fromkeys(c for c in candidates if c is not None):
            with np.errstate(all="ignore"):
                kind = _matching_activation(_evaluate(parsed, producer, node.outputs[0], x))
            if kind is not None:
                rewritten[id(node)] = OnnxNode(ACTIVATION_OP, node.name, (x,), node.outputs, {"kind": kind})
                break
    parsed.nodes = [rewritten.get(id(n), n) for n in parsed.nodes]


def _single_reader(parsed: Parsed) -> Callable[[str], OnnxNode | None]:
    """The node reading a tensor when exactly one node reads it (and the graph output does not), else None."""
    readers = parsed.readers()
    reader = {t: node for node in parsed.nodes for t in node.inputs if t}
    return lambda t: reader[t] if readers[t] == 1 and t in reader else None


def channel_shuffles(parsed: Parsed) -> None:
    """Rewrite each Reshape (N, g, C/g, H, W) -> Transpose (0, 2, 1, 3, 4) -> Reshape (N, C, H, W) as one node."""
    reader_of = _single_reader(parsed)
    rewritten: dict[int, OnnxNode] = {}
    for split in parsed.nodes:
        target = parsed.consts.get(split.inputs[1]) if split.op_type == "Reshape" else None
        if target is None or np.size(target) != 5:
            continue
        transpose = reader_of(split.outputs[0])
        if transpose is None or transpose.op_type != "Transpose" or transpose.attrs.get("perm") != (0, 2, 1, 3, 4):
            continue
        merge = reader_of(transpose.outputs[0])
        if merge is None or merge.op_type != "Reshape" or np.size(parsed.consts.get(merge.inputs[1], ())) != 4:
            continue
        rewritten[id(merge)] = OnnxNode(
            CHANNEL_SHUFFLE_OP,
            merge.name,
            split.inputs[:1],
            merge.outputs,
            {"groups": int(target[1]), "per_group": int(target[2])},
        )
    parsed.nodes = [rewritten.get(id(n), n) for n in parsed.nodes]


def pad_amounts(parsed: Parsed, node: OnnxNode) -> tuple[tuple[int, ...], float]:
    """A constant-mode Pad's (top, left, bottom, right) and fill value; padding N or C is an error."""
    if node.attrs.get("mode", "constant") != "constant":
        raise OnnxImportError(f"{node}: only constant padding is supported, not mode={node.attrs['mode']!r}")
    if parsed.opset < 11:
        pads, value = node.attrs["pads"], node.attrs.get("value", 0.0)
    else:
        pads = _constant(parsed, node, 1)
        value = _constant(parsed, node, 2) if len(node.inputs) > 2 and node.inputs[2] else 0.0
    pads = [int(p) for p in np.ravel(pads)]
    axes = _constant(parsed, node, 3) if len(node.inputs) > 3 and node.inputs[3] else range(len(pads) // 2)
    full = [0] * 8
    for i, axis in enumerate(int(a) % 4 for a in np.ravel(axes)):
        full[axis], full[axis + 4] = pads[i], pads[i + len(pads) // 2]
    if full[0] or full[1] or full[4] or full[5]:
        raise OnnxImportError(f"{node}: only padding of height and width is supported, pads={pads}")
    return (full[2], full[3], full[6], full[7]), float(np.asarray(value).reshape(()))


def _constant(parsed: Parsed, node: OnnxNode, index: int) -> np.ndarray:
    if node.inputs[index] not in parsed.consts:
        raise OnnxImportError(f"{node}: operand {index} ({node.inputs[index]!r}) must be a constant")
    return np.asarray(parsed.consts[node.inputs[index]])


def _absorbs(pad: OnnxNode, pads: tuple[int, ...], value: float, window: OnnxNode) -> bool:
    """Whether ``window`` (the Pad's only reader) can take ``pads`` of ``value`` into its own padding exactly."""
    if min(pads) < 0 or window.attrs.get("auto_pad", "NOTSET") != "NOTSET" or window.inputs[0] != pad.outputs[0]:
        return False
    own = tuple(window.attrs.get("pads", (0, 0, 0, 0)))
    if window.op_type == "Conv":
        return value == 0.0
    kernel = window.attrs.get("kernel_shape", (1, 1))
    merged = [a + b for a, b in zip(own, (pads[0], pads[1], pads[2], pads[3]), strict=True)]
    fits = len(kernel) == 2 and all(p < kernel[i % 2] for i, p in enumerate(merged))  # a window needs an input cell
    if window.op_type == "MaxPool":
        return fits and value == -np.inf
    counted = window.attrs.get("count_include_pad", 0) or not any(own)
    return window.op_type == "AveragePool" and fits and value == 0.0 and bool(counted)


def padded_windows(parsed: Parsed) -> None:
    """Fold each constant Pad into the convolution or pool that alone reads it, where that is exact (`_absorbs`)."""
    reader_of = _single_reader(parsed)
    rewritten: dict[int, OnnxNode] = {}
    for pad in parsed.nodes:
        window = reader_of(pad.outputs[0]) if pad.op_type == "Pad" else None
        if window is None or window.op_type not in ("Conv", "MaxPool", "AveragePool") or id(window) in rewritten:
            continue
        pads, value = pad_amounts(parsed, pad)
        if not _absorbs(pad, pads, value, window):
            continue
        own = tuple(window.attrs.get("pads", (0, 0, 0, 0)))
        attrs = {**window.attrs, "pads": tuple(a + b for a, b in zip(own, pads, strict=True))}
        if window.op_type == "AveragePool":
            attrs["count_include_pad"] = 1
        rewritten[id(window)] = replace(window, inputs=(pad.inputs[0], *window.inputs[1:]), attrs=attrs)
    parsed.nodes = [rewritten.get(id(n), n) for n in parsed.nodes]


def dense_biases(parsed: Parsed) -> None:
    """Rewrite MatMul by a constant 2-D matrix, then Add of a constant, as one `DENSE_OP` node with a bias."""
    reader_of = _single_reader(parsed)
    rewritten: dict[int, OnnxNode] = {}
    for matmul in parsed.nodes:
        weight = parsed.consts.get(matmul.inputs[1]) if matmul.op_type == "MatMul" else None
        if weight is None or np.ndim(weight) != 2 or matmul.inputs[0] in parsed.consts:
            continue
        add = reader_of(matmul.outputs[0])
        if add is None or add.op_type != "Add":
            continue
        bias = [t for t in add.inputs if t != matmul.outputs[0]]
        if len(bias) != 1 or bias[0] not in parsed.consts or np.size(parsed.consts[bias[0]]) != weight.shape[1]:
            continue
        rewritten[id(add)] = OnnxNode(DENSE_OP, add.name, (matmul.inputs[0], matmul.inputs[1], bias[0]), add.outputs)
    parsed.nodes = [rewritten.get(id(n), n) for n in parsed.nodes]


def contiguous_gathers(parsed: Parsed) -> None:
    """Rewrite Reshape to 1-D then Gather of the indices 0, 1, 2... in shape S (how the dynamo exporter writes a
    contiguous ``as_strided``) as one Reshape to S."""
    reader_of = _single_reader(parsed)
    rewritten: dict[int, OnnxNode] = {}
    for flatten in parsed.nodes:
        target = parsed.consts.get(flatten.inputs[1]) if flatten.op_type == "Reshape" else None
        gather = reader_of(flatten.outputs[0]) if target is not None and np.size(target) == 1 else None
        if gather is None or gather.op_type != "Gather" or gather.inputs[0] != flatten.outputs[0]:
            continue
        indices = parsed.consts.get(gather.inputs[1])
        if (
            indices is None
            or gather.attrs.get("axis", 0) != 0
            or np.ravel(indices).tolist() != list(range(np.size(indices)))
        ):
            continue
        shape = f"{gather.name}::shape"
        parsed.consts[shape] = np.asarray(np.shape(indices), dtype=np.int64)
        rewritten[id(gather)] = OnnxNode("Reshape", gather.name, (flatten.inputs[0], shape), gather.outputs)
    parsed.nodes = [rewritten.get(id(n), n) for n in parsed.nodes]


def constant_identities(parsed: Parsed) -> None:
    """Identity of a constant (how exporters share equal initializers) is that constant."""
    for node in parsed.nodes:
        if node.op_type == "Identity" and node.inputs[0] in parsed.consts:
            parsed.consts[node.outputs[0]] = parsed.consts[node.inputs[0]]
    parsed.nodes = [n for n in parsed.nodes if not (n.op_type == "Identity" and n.inputs[0] in parsed.consts)]


def slice_bound(index: int, size: int | None) -> int | None:
    """An ONNX slice bound in ``[0, size]``; for the batch axis (size None) the bounds of the whole axis."""
    if size is None:
        return 0 if index == 0 else None if index >= 2**31 - 1 else -1
    return min(max(index + size if index < 0 else index, 0), size)


def _channel_range(parsed: Parsed, node: OnnxNode, channels: int) -> tuple[int, int] | None:
    """The channels ``[begin, end)`` a Slice of constant bounds, over the channel axis only, step 1, keeps."""
    if parsed.opset < 10 or not all(t in parsed.consts for t in node.inputs[1:] if t) or len(node.inputs) < 4:
        return None
    starts, ends, axes = (np.asarray(parsed.consts[t]).reshape(-1) for t in node.inputs[1:4])
    steps = np.asarray(parsed.consts[node.inputs[4]]).reshape(-1) if len(node.inputs) > 4 and node.inputs[4] else [1]
    if list(map(int, axes)) != [1] or list(map(int, steps)) != [1]:
        return None
    begin, end = slice_bound(int(starts[0]), channels), slice_bound(int(ends[0]), channels)
    return (begin, end) if begin < end else None


def sliced_products(parsed: Parsed) -> None:
    """Rewrite a Conv (one group) whose output only channel Slices read, over disjoint channels, as one Conv per
    Slice computing only its channels (those rows of the weights and bias).

    DPN's dual path splits each block's last convolution between the residual sum and the dense concatenation: as
    two convolutions, the first one's output is the sum's alone (so the engine can add it in the convolution,
    `ios_core.engine.lower`) and the second one's the concatenation's (which can host it in place), instead of a
    sum kernel and a copy."""
    readers = parsed.readers()
    slices: dict[str, list[OnnxNode]] = {}
    for node in parsed.nodes:
        if node.op_type == "Slice":
            slices.setdefault(node.inputs[0], []).append(node)
    rewritten: dict[int, OnnxNode] = {}
    for conv in parsed.nodes:
        parts = slices.get(conv.outputs[0], []) if conv.op_type == "Conv" else []
        if (not parts or readers[conv.outputs[0]] != len(parts) or int(conv.attrs.get("group", 1)) != 1
                or not all(t in parsed.consts for t in conv.inputs[1:] if t)):
            continue
        weight = np.asarray(parsed.consts[conv.inputs[1]])
        has_bias = len(conv.inputs) > 2 and conv.inputs[2]
        bias = np.asarray(parsed.consts[conv.inputs[2]]) if has_bias else np.zeros(weight.shape[0], weight.dtype)
        ranges = [_channel_range(parsed, part, weight.shape[0]) for part in parts]
        if any(r is None for r in ranges) or any(a[1] > b[0] for a, b in itertools.pairwise(sorted(ranges))):
            continue
        for part, (begin, end) in zip(parts, ranges, strict=True):
            names = (f"{part.name}::weight", f"{part.name}::bias")
            parsed.consts[names[0]], parsed.consts[names[1]] = weight[begin:end], bias[begin:end]
            rewritten[id(part)] = OnnxNode("Conv", part.name, (conv.inputs[0], *names), part.outputs, conv.attrs)
    parsed.nodes = [rewritten.get(id(n), n) for n in parsed.nodes]


REWRITES: tuple[Callable[[Parsed], None], ...] = (
    constant_identities,
    contiguous_gathers,
    activations,
    channel_shuffles,
    padded_windows,
    dense_biases,
    sliced_products,
)
"""The rewrites, in the order `rewrite` applies them."""


def rewrite(parsed: Parsed) -> None:
    """Apply every rewrite of `REWRITES` to ``parsed``, in order."""
    for step in REWRITES:
        step(parsed)
