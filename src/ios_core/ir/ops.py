"""Operators: what each kind of node computes, as plain data, and one table of their rules.

An operator is a frozen dataclass of attributes only. Everything the rest of the project needs
to know about a kind of operator -- how many operands it takes, the shape it produces, its FLOPs,
its weights -- lives in one `OpDef` per kind in `OPS`, looked up by the operator's type.
Shapes are per sample, ``(channels, height, width)``: the batch size multiplies but never
changes them, so one graph serves every batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

ACTIVATIONS = ("none", "relu", "sigmoid", "tanh", "relu6", "hardsigmoid", "hardswish", "silu", "gelu", "gelu_tanh")
"""Element-wise functions a convolution applies to its output or an `Activation` node computes.

``relu6`` is ``min(max(x, 0), 6)``; ``hardsigmoid`` is PyTorch's ``clip(x / 6 + 1/2, 0, 1)`` (ONNX HardSigmoid with
alpha 1/6, beta 1/2); ``hardswish`` is ``x * hardsigmoid(x)``; ``silu`` is ``x * sigmoid(x)``; ``gelu`` is
``x * Phi(x)`` with the normal CDF through erf, ``gelu_tanh`` its tanh approximation.
"""
POOL_KINDS = ("max", "avg", "global_max", "global_avg")
ELEMENTWISE_KINDS = ("add", "mul")


class Shape(NamedTuple):
    """A per-sample NCHW shape: channels, height, width."""

    channels: int
    height: int
    width: int

    @property
    def size(self) -> int:
        return self.channels * self.height * self.width

    def __str__(self) -> str:
        return f"{self.channels}x{self.height}x{self.width}"


class ShapeError(ValueError):
    """An operator cannot accept the shape of its operands."""


Pair = tuple[int, int]
Pads = tuple[int, int, int, int]
"""Padding of H and W as (top, left, bottom, right)."""


@dataclass(frozen=True)
class Placeholder:
    """The graph's input tensor."""

    channels: int
    height: int
    width: int


@dataclass(frozen=True)
class Conv:
    """2-D convolution with bias and a fused activation, cross-correlation as in cuDNN and PyTorch.

    ``padding`` pads the top and left; ``padding_end`` the bottom and right, the same as ``padding``
    when None (symmetric, the common case: TensorFlow-style "same" padding is the asymmetric one).
    """

    out_channels: int
    kernel: Pair
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    act: str = "none"
    padding_end: Pair | None = None

    @property
    def pads(self) -> Pads:
        return pads_of(self.padding, self.padding_end)


@dataclass(frozen=True)
class Pool:
    """Max or average pooling; the global kinds reduce H and W to 1.

    Padding as in `Conv` (``padding`` top/left, ``padding_end`` bottom/right or None for symmetric);
    max pooling pads with -inf. ``ceil_mode`` rounds the output size up, as ONNX and PyTorch do: a
    last, partial window is kept when it starts inside the input or its top/left padding. An average
    divides by the window's cells inside the input, or with ``count_include_pad`` by its cells inside
    the padded input (never counting what ``ceil_mode`` adds beyond it), as PyTorch does.
    """

    kind: str
    kernel: Pair = (1, 1)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    padding_end: Pair | None = None
    ceil_mode: bool = False
    count_include_pad: bool = False

    @property
    def pads(self) -> Pads:
        return pads_of(self.padding, self.padding_end)


@dataclass(frozen=True)
class Pad:
    """Constant padding of H and W by ``pads`` (top, left, bottom, right); a negative amount crops instead."""

    pads: Pads
    value: float = 0.0


@dataclass(frozen=True)
class Clip:
    """``min(max(x, low), high)`` with arbitrary bounds (ReLU6, the common case, is the activation ``relu6``)."""

    low: float
    high: float


@dataclass(frozen=True)
class ChannelShuffle:
    """ShuffleNet's channel shuffle: output channel ``i * groups + j`` is input channel ``j * (C / groups) + i``.

    What ONNX writes as Reshape (N, groups, C/groups, H, W), Transpose (0, 2, 1, 3, 4), Reshape (N, C, H, W).
    """

    groups: int


@dataclass(frozen=True)
class LayerNorm:
    """Each pixel's channels normalized to zero mean and unit variance, then scaled and shifted per channel."""

    eps: float = 1e-5


@dataclass(frozen=True)
class Softmax:
    """Softmax over the channels of each pixel: a classifier's probabilities."""


@dataclass(frozen=True)
class Identity:
    """Its operand, unchanged: materializes a concatenation or a sum (e.g. a block's exit)."""


@dataclass(frozen=True)
class Elementwise:
    """Element-wise add or multiply of two or more operands.

    Operands have the output's shape, or are ``C x 1 x 1`` with its channels: one value per channel,
    broadcast over H and W (the scale of a squeeze-and-excitation block). At least one has the full shape.
    """

    kind: Literal["add", "mul"]


@dataclass(frozen=True)
class Activation:
    """A stand-alone activation function."""

    kind: str


@dataclass(frozen=True)
class Sequential:
    """A chain of single-operand operators run as one node, intermediates never visible to the graph."""

    ops: tuple[Conv | Pool | Identity | Activation, ...]


Op = (
    Placeholder
    | Conv
    | Pool
    | Identity
    | Elementwise
    | Activation
    | Sequential
    | Pad
    | Clip
    | ChannelShuffle
    | LayerNorm
    | Softmax
)


@dataclass(frozen=True)
class OpDef:
    """The rules of one kind of operator.

    ``shape(op, operand_shapes)`` raises `ShapeError` when the operands do not fit;
    ``flops(op, operand_shapes, out)`` counts multiply-adds as two FLOPs, per sample;
    ``weights(op, operand_shapes)`` maps parameter names to their array shapes.
    """

    name: str
    min_operands: int
    max_operands: int | None
    shape: Callable[[Op, tuple[Shape, ...]], Shape]
    flops: Callable[[Op, tuple[Shape, ...], Shape], int]
    weights: Callable[[Op, tuple[Shape, ...]], dict[str, tuple[int, ...]]]
    text: Callable[[Op], str]


def pads_of(padding: Pair, padding_end: Pair | None) -> Pads:
    """(top, left, bottom, right) from begin padding and end padding (None: the same as begin)."""
    end = padding if padding_end is None else padding_end
    return (padding[0], padding[1], end[0], end[1])


def window_out(size: int, kernel: int, stride: int, pads: Pair, dilation: int = 1, ceil_mode: bool = False) -> int:
    """The number of windows along one axis of ``size`` padded by ``pads`` (begin, end), as ONNX counts them.

    With ``ceil_mode`` a last partial window counts if it starts inside the input or its begin padding.
    """
    span = size + pads[0] + pads[1] - dilation * (kernel - 1) - 1
    if not ceil_mode:
        return span // stride + 1
    out = -(-span // stride) + 1
    return out - 1 if (out - 1) * stride >= size + pads[0] else out


def _spatial_out(x: Shape, channels: int, op: Conv | Pool, dilation: Pair, ceil_mode: bool = False) -> Shape:
    top, left, bottom, right = op.pads
    h = window_out(x.height, op.kernel[0], op.stride[0], (top, bottom), dilation[0], ceil_mode)
    w = window_out(x.width, op.kernel[1], op.stride[1], (left, right), dilation[1], ceil_mode)
    if h < 1 or w < 1:
        raise ShapeError(f"window {op.kernel} stride {op.stride} pads {op.pads} does not fit input {x}")
    return Shape(channels, h, w)


def _positive(name: str, pair: Pair, minimum: int = 1) -> None:
    if len(pair) != 2 or min(pair) < minimum:
        raise ShapeError(f"{name} must be two integers >= {minimum}, got {pair}")


def _check_pads(op: Conv | Pool) -> None:
    _positive("padding", op.padding, minimum=0)
    if op.padding_end is not None:
        _positive("padding_end", op.padding_end, minimum=0)


def _conv_shape(op: Conv, xs: tuple[Shape, ...]) -> Shape:
    (x,) = xs
    _positive("kernel", op.kernel)
    _positive("stride", op.stride)
    _positive("dilation", op.dilation)
    _check_pads(op)
    if op.act not in ACTIVATIONS:
        raise ShapeError(f"unknown activation {op.act!r}; expected one of {ACTIVATIONS}")
    if op.groups < 1 or x.channels % op.groups or op.out_channels % op.groups:
        raise ShapeError(
            f"groups={op.groups} must divide input channels {x.channels} and output channels {op.out_channels}"
        )
    return _spatial_out(x, op.out_channels, op, op.dilation)


def _conv_flops(op: Conv, xs: tuple[Shape, ...], out: Shape) -> int:
    per_output = 2 * (xs[0].channels // op.groups) * op.kernel[0] * op.kernel[1]
    return out.size * per_output


def _conv_weights(op: Conv, xs: tuple[Shape, ...]) -> dict[str, tuple[int, ...]]:
    fan_in = xs[0].channels // op.groups
    return {"weight": (op.out_channels, fan_in, *op.kernel), "bias": (op.out_channels,)}


def _pool_shape(op: Pool, xs: tuple[Shape, ...]) -> Shape:
    (x,) = xs
    if op.kind not in POOL_KINDS:
        raise ShapeError(f"unknown pooling {op.kind!r}; expected one of {POOL_KINDS}")
    if op.kind.startswith("global"):
        return Shape(x.channels, 1, 1)
    _positive("kernel", op.kernel)
    _positive("stride", op.stride)
    _check_pads(op)
    top, left, bottom, right = op.pads
    if max(top, bottom) >= op.kernel[0] or max(left, right) >= op.kernel[1]:
        # a window wholly in the padding would have no input cell: -inf for max, 0/0 for an average
        raise ShapeError(f"pads {op.pads} must be smaller than the kernel {op.kernel}")
    return _spatial_out(x, x.channels, op, (1, 1), op.ceil_mode)


def _pool_flops(op: Pool, xs: tuple[Shape, ...], out: Shape) -> int:
    window = xs[0].height * xs[0].width if op.kind.startswith("global") else op.kernel[0] * op.kernel[1]
    return out.size * window


def _same_shape(op: Op, xs: tuple[Shape, ...]) -> Shape:
    if any(x != xs[0] for x in xs):
        raise ShapeError(f"operands must have equal shapes, got {', '.join(map(str, xs))}")
    return xs[0]


def _activation_shape(op: Activation, xs: tuple[Shape, ...]) -> Shape:
    if op.kind not in ACTIVATIONS[1:]:
        raise ShapeError(f"unknown activation {op.kind!r}; expected one of {ACTIVATIONS[1:]}")
    return xs[0]


def _elementwise_shape(op: Elementwise, xs: tuple[Shape, ...]) -> Shape:
    if op.kind not in ELEMENTWISE_KINDS:
        raise ShapeError(f"unknown element-wise kind {op.kind!r}; expected one of {ELEMENTWISE_KINDS}")
    out = max(xs, key=lambda x: x.size)
    if any(x != out and x != Shape(out.channels, 1, 1) for x in xs):
        raise ShapeError(
            f"operands must have equal shapes, or be {out.channels}x1x1 to broadcast over H and W;"
            f" got {', '.join(map(str, xs))}"
        )
    return out


def _pad_shape(op: Pad, xs: tuple[Shape, ...]) -> Shape:
    (x,) = xs
    top, left, bottom, right = op.pads
    h, w = x.height + top + bottom, x.width + left + right
    if len(op.pads) != 4 or h < 1 or w < 1 or -min(top, bottom) >= x.height or -min(left, right) >= x.width:
        raise ShapeError(f"pads {op.pads} (top, left, bottom, right) do not fit input {x}")
    return Shape(x.channels, h, w)


def _clip_shape(op: Clip, xs: tuple[Shape, ...]) -> Shape:
    if not op.low <= op.high:
        raise ShapeError(f"clip bounds must satisfy low <= high, got [{op.low}, {op.high}]")
    return xs[0]


def _shuffle_shape(op: ChannelShuffle, xs: tuple[Shape, ...]) -> Shape:
    (x,) = xs
    if op.groups < 1 or x.channels % op.groups:
        raise ShapeError(f"groups={op.groups} must divide the {x.channels} channels")
    return x


def _layer_norm_weights(op: LayerNorm, xs: tuple[Shape, ...]) -> dict[str, tuple[int, ...]]:
    return {"weight": (xs[0].channels,), "bias": (xs[0].channels,)}


def _flops_per_output(count: int) -> Callable[[Op, tuple[Shape, ...], Shape], int]:
    return lambda op, xs, out: count * out.size


def _placeholder_shape(op: Placeholder, xs: tuple[Shape, ...]) -> Shape:
    return Shape(op.channels, op.height, op.width)


def _sequential_shapes(op: Sequential, xs: tuple[Shape, ...]) -> list[Shape]:
    """The operand shape followed by the shape after each inner operator."""
    shapes = [xs[0]]
    for inner in op.ops:
        rules = rules_of(inner)
        if rules.max_operands != 1:
            raise ShapeError(f"{rules.name} cannot sit inside a sequential: it does not take one operand")
        shapes.append(rules.shape(inner, (shapes[-1],)))
    return shapes


def _sequential_shape(op: Sequential, xs: tuple[Shape, ...]) -> Shape:
    if not op.ops:
        raise ShapeError("a sequential needs at least one operator")
    return _sequential_shapes(op, xs)[-1]


def _sequential_flops(op: Sequential, xs: tuple[Shape, ...], out: Shape) -> int:
    shapes = _sequential_shapes(op, xs)
    return sum(rules_of(inner).flops(inner, (shapes[i],), shapes[i + 1]) for i, inner in enumerate(op.ops))


def _sequential_weights(op: Sequential, xs: tuple[Shape, ...]) -> dict[str, tuple[int, ...]]:
    shapes = _sequential_shapes(op, xs)
    return {
        f"{i}.{name}": shape
        for i, inner in enumerate(op.ops)
        for name, shape in rules_of(inner).weights(inner, (shapes[i],)).items()
    }


def _no_flops(op: Op, xs: tuple[Shape, ...], out: Shape) -> int:
    return 0


def _one_flop_per_output(op: Op, xs: tuple[Shape, ...], out: Shape) -> int:
    return out.size * max(1, len(xs) - 1)


def _no_weights(op: Op, xs: tuple[Shape, ...]) -> dict[str, tuple[int, ...]]:
    return {}


def _conv_text(op: Conv) -> str:
    parts = [f"conv {op.out_channels} {op.kernel[0]}x{op.kernel[1]}"]
    parts += [f"s{_pair(op.stride)}"] if op.stride != (1, 1) else []
    parts += [_pads_text(op)] if op.pads != (0, 0, 0, 0) else []
    parts += [f"d{_pair(op.dilation)}"] if op.dilation != (1, 1) else []
    parts += [f"g{op.groups}"] if op.groups != 1 else []
    parts += [op.act] if op.act != "none" else []
    return " ".join(parts)


def _pool_text(op: Pool) -> str:
    if op.kind.startswith("global"):
        return f"{op.kind}_pool"
    text = f"{op.kind}_pool {op.kernel[0]}x{op.kernel[1]} s{_pair(op.stride)} {_pads_text(op)}"
    return text + (" ceil" if op.ceil_mode else "") + (" count_pad" if op.count_include_pad else "")


def _pads_text(op: Conv | Pool) -> str:
    if op.padding_end is None or op.padding_end == op.padding:
        return f"p{_pair(op.padding)}"
    return "p" + ",".join(map(str, op.pads))


OPS: dict[type, OpDef] = {
    Placeholder: OpDef(
        "placeholder",
        0,
        0,
        _placeholder_shape,
        _no_flops,
        _no_weights,
        lambda op: f"input {op.channels}x{op.height}x{op.width}",
    ),
    Conv: OpDef("conv", 1, 1, _conv_shape, _conv_flops, _conv_weights, _conv_text),
    Pool: OpDef("pool", 1, 1, _pool_shape, _pool_flops, _no_weights, _pool_text),
    Identity: OpDef("identity", 1, 1, _same_shape, _no_flops, _no_weights, lambda op: "identity"),
    Elementwise: OpDef(
        "elementwise", 2, None, _elementwise_shape, _one_flop_per_output, _no_weights, lambda op: op.kind
    ),
    Activation: OpDef("activation", 1, 1, _activation_shape, _one_flop_per_output, _no_weights, lambda op: op.kind),
    Pad: OpDef("pad", 1, 1, _pad_shape, _no_flops, _no_weights, lambda op: "pad " + " ".join(map(str, op.pads))),
    Clip: OpDef("clip", 1, 1, _clip_shape, _one_flop_per_output, _no_weights, lambda op: f"clip {op.low} {op.high}"),
    ChannelShuffle: OpDef(
        "shuffle", 1, 1, _shuffle_shape, _no_flops, _no_weights, lambda op: f"channel_shuffle g{op.groups}"
    ),
    # mean, variance (2 each), normalize and affine (2): about 6 FLOPs per output
    LayerNorm: OpDef(
        "layernorm", 1, 1, _same_shape, _flops_per_output(6), _layer_norm_weights, lambda op: "layer_norm"
    ),
    # max, exp and sum, divide
    Softmax: OpDef("softmax", 1, 1, _same_shape, _flops_per_output(4), _no_weights, lambda op: "softmax"),
    Sequential: OpDef(
        "sequential",
        1,
        1,
        _sequential_shape,
        _sequential_flops,
        _sequential_weights,
        lambda op: "seq(" + ", ".join(describe(inner) for inner in op.ops) + ")",
    ),
}


class UnknownOpError(TypeError):
    """A node carries something that is not one of the operators in `OPS`."""


def rules_of(op: object) -> OpDef:
    """The `OpDef` of an operator; `UnknownOpError` names the type when there is none."""
    try:
        return OPS[type(op)]
    except KeyError:
        known = ", ".join(d.name for d in OPS.values())
        raise UnknownOpError(f"unknown operator {type(op).__name__}; known operators: {known}") from None


def describe(op: Op) -> str:
    """A short readable form of an operator's attributes, e.g. ``conv 64 3x3 s2 p1 relu``."""
    return rules_of(op).text(op)


def _pair(p: Pair) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"
