"""The engine's executable program: buffers in one arena, channel-slice views, and tasks per stream.

A `Program` is what the lowering (`ios_core.engine.lower`) makes of a graph and its stages for one
batch size and layout, before any GPU is touched: plain data, printable one task per line, run by
the GPU runtime and, for tests, by the numpy simulator (`ios_core.engine.simulate`).

Invariants (checked by `verify`):
- every `View` lies inside its buffer; a view is channels ``[channel, channel + channels)`` of a
  buffer, for every sample and pixel, so it is a strided window whatever the layout;
- buffers whose stage intervals ``[first, last]`` meet never share arena bytes;
- within a stage, no stream writes channels of a buffer that another stream reads or writes
  (the groups of a stage run concurrently, and nothing orders them);
- an element-wise operand has its output's height and width, or is 1 x 1: one value per channel,
  broadcast over the output's pixels (a squeeze-and-excitation scale);
- a convolution's addend is a whole buffer of its output's shape and does not overlap it (cuDNN reads it as the
  output is written, and read a slice wrongly);
- a squeeze-and-excitation's output is one pixel of its input's channels, and does not overlap its input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from math import inf
from typing import Literal

from ios_core.ir import Conv, LayerNorm, Pads, Pool, Softmax

Layout = Literal["nchw", "nhwc"]
LAYOUTS: tuple[str, ...] = ("nhwc", "nchw")
ARENA_ALIGNMENT = 256  # bytes: every buffer starts here, so only a view's own offset can misalign it
CONV_ALIGNMENT = 16  # bytes: where cuDNN needs a convolution's input and output to start


class ProgramError(ValueError):
    """A program breaks one of the invariants in this module's docstring."""


@dataclass(frozen=True)
class Buffer:
    """A batch x channels x height x width tensor of the arena, live in stages ``first`` to ``last``."""

    index: int
    name: str
    channels: int
    height: int
    width: int
    first: int = 0
    last: int = 0

    def elements(self, batch: int) -> int:
        return batch * self.channels * self.height * self.width


@dataclass(frozen=True)
class View:
    """Channels ``[channel, channel + channels)`` of buffer ``buffer``: a strided window, never a copy."""

    buffer: int
    channel: int
    channels: int

    def sub(self, begin: int, end: int) -> View:
        """Channels ``[begin, end)`` of this view."""
        return View(self.buffer, self.channel + begin, end - begin)

    def __str__(self) -> str:
        return f"b{self.buffer}[{self.channel}:{self.channel + self.channels}]"


@dataclass(frozen=True)
class WeightKey:
    """Whose weights a convolution uses: one conv node, the members of a merge, or one op in a `Sequential`."""

    nodes: tuple[str, ...]
    inner: int | None = None

    def __str__(self) -> str:
        return "+".join(self.nodes) + ("" if self.inner is None else f".{self.inner}")


@dataclass(frozen=True)
class ConvTask:
    """``y = act(conv(pre_act(x), W) + b + addend)``: a cuDNN convolution with bias, sum and activation fused, or our
    depthwise one.

    ``pre_act`` (an activation applied to each input value as it is read) is only ever set on a
    depthwise convolution (`is_depthwise`), which our own kernel runs. ``addend`` (a residual sum's other term,
    of ``y``'s shape) only on one cuDNN runs, where the lowering folded the sum of the convolution's output into it
    (`Program.folded`).
    """

    node: str
    x: View
    y: View
    conv: Conv
    weights: WeightKey
    pre_act: str = "none"
    addend: View | None = None

    def reads(self) -> tuple[View, ...]:
        return (self.x,) if self.addend is None else (self.x, self.addend)

    @property
    def depthwise(self) -> bool:
        return is_depthwise(self.conv, self.x.channels)

    def __str__(self) -> str:
        x = str(self.x) if self.pre_act == "none" else f"{self.pre_act}({self.x})"
        expr = f"{'depthwise' if self.depthwise else 'conv'}[{self.weights}] {x}"
        if self.addend is not None:
            expr = f"{expr} + {self.addend}" if self.conv.act == "none" else f"{self.conv.act}({expr} + {self.addend})"
        return f"{self.y} = {expr}"


def is_depthwise(conv: Conv, in_channels: int) -> bool:
    """One filter per channel: groups equal to the input and output channels."""
    return conv.groups == in_channels == conv.out_channels and conv.groups > 1


@dataclass(frozen=True)
class PoolTask:
    """``y = pool(x)``: our pooling kernel."""

    node: str
    x: View
    y: View
    pool: Pool

    def reads(self) -> tuple[View, ...]:
        return (self.x,)

    def __str__(self) -> str:
        return f"{self.y} = {self.pool.kind}_pool {self.x}"


POINTWISE_OPS = {"none": 0, "add": 1, "mul": 2}  # the op codes of cuda/pointwise.cu
POINTWISE_SIGNATURE = "iiffIIII" + "Pqqqq" * 3  # of its pointwise_f32, for PyCUDA's prepare
ACTIVATIONS = {  # enum Activation of cuda/activation.cuh
    "none": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "relu6": 4, "hardsigmoid": 5, "hardswish": 6, "silu": 7,
    "gelu": 8, "gelu_tanh": 9,
}


@dataclass(frozen=True)
class PointwiseTask:
    """``y = min(max(act(a op b), low), high)`` element by element (``op="none"``: ``y = act(a)``, a copy when act
    is none and the bounds infinite).

    ``y`` may be ``a`` itself (accumulation in place): each element is read before it is written. An operand of
    1 x 1 pixels under a larger ``y`` is broadcast over its pixels.
    """

    node: str
    y: View
    a: View
    b: View | None = None
    op: str = "none"
    act: str = "none"
    low: float = -inf
    high: float = inf

    def reads(self) -> tuple[View, ...]:
        return (self.a,) if self.b is None else (self.a, self.b)

    def __str__(self) -> str:
        expr = str(self.a) if self.b is None else f"{self.a} {'+' if self.op == 'add' else '*'} {self.b}"
        expr = expr if self.act == "none" else f"{self.act}({expr})"
        if (self.low, self.high) != (-inf, inf):
            expr = f"clip({expr}, {self.low}, {self.high})"
        return f"{self.y} = {expr}"


@dataclass(frozen=True)
class ShuffleTask:
    """``y`` = ``x`` with its channels permuted: channel ``i * groups + j`` of y is channel ``j * (C / groups) + i``
    of x. One strided copy (our pointwise kernel over (n, i, j, pixel)); y never overlaps x."""

    node: str
    x: View
    y: View
    groups: int

    def reads(self) -> tuple[View, ...]:
        return (self.x,)

    def __str__(self) -> str:
        return f"{self.y} = shuffle g{self.groups} {self.x}"


@dataclass(frozen=True)
class PadTask:
    """``y`` = ``x`` padded by ``pads`` (top, left, bottom, right) with ``value``, cropped where a pad is negative:
    one kernel writes every element of y, the fill and the copy."""

    node: str
    x: View
    y: View
    pads: Pads
    value: float = 0.0

    def reads(self) -> tuple[View, ...]:
        return (self.x,)

    def __str__(self) -> str:
        return f"{self.y} = pad {' '.join(map(str, self.pads))} ({self.value}) {self.x}"


@dataclass(frozen=True)
class NormTask:
    """``y = op(x)`` for an operator over each pixel's channels: a `LayerNorm` (scaled and shifted by the weights of
    ``weights``) or a `Softmax` (``weights`` None). Our kernel, a warp or a thread per pixel."""

    node: str
    x: View
    y: View
    op: LayerNorm | Softmax
    weights: WeightKey | None = None

    def reads(self) -> tuple[View, ...]:
        return (self.x,)

    def __str__(self) -> str:
        name = "layer_norm" if isinstance(self.op, LayerNorm) else "softmax"
        return f"{self.y} = {name}{'' if self.weights is None else f'[{self.weights}]'} {self.x}"


@dataclass(frozen=True)
class ExciteTask:
    """``y = excite(squeeze(pool(x)))``: a squeeze-and-excitation's global pool and its two 1 x 1 convolutions of the
    pooled pixel (each with its bias and activation) in one kernel of ours, a block per sample
    (`ios_core.engine.excitation`). The lowering folds the three nodes' tasks into it; the pool and the squeeze
    are then `Program.folded`. ``node`` is the excitation's."""

    node: str
    x: View
    y: View
    pool: Pool
    squeeze: Conv
    squeeze_weights: WeightKey
    excite: Conv
    excite_weights: WeightKey

    def reads(self) -> tuple[View, ...]:
        return (self.x,)

    def __str__(self) -> str:
        return (f"{self.y} = excite[{self.squeeze_weights} {self.squeeze.act}, {self.excite_weights} "
                f"{self.excite.act}] {self.pool.kind}_pool {self.x}")


Task = ConvTask | PoolTask | PointwiseTask | ShuffleTask | PadTask | NormTask | ExciteTask
Weighted = ConvTask | NormTask | ExciteTask
"""A task that reads weights: each of its weight keys (`weight_keys`)."""


def weight_keys(task: Task) -> tuple[WeightKey, ...]:
    """The weight keys ``task`` reads, in the order it reads them."""
    if isinstance(task, ExciteTask):
        return task.squeeze_weights, task.excite_weights
    key = getattr(task, "weights", None)
    return () if key is None else (key,)


@dataclass(frozen=True)
class Program:
    """Stages of streams of tasks over buffers placed in one arena.

    ``stages[s][k]`` are the tasks stream ``k`` runs, in order, in stage ``s``; a stage starts
    when every stream has finished the previous one. ``offsets[i]`` is buffer ``i``'s byte offset
    in the arena of ``arena_bytes``. ``values`` says where every node the program reads or writes
    lives; ``inputs`` are the nodes it reads but does not compute, ``outputs`` those it computes
    that are read after it (or the graph's output). ``folded`` are the nodes it computes whose own output no task
    writes, so that they have no value: a convolution whose only reader, a sum, is folded into its `ConvTask`
    (``addend``), and a squeeze-and-excitation's pool and squeeze, folded into an `ExciteTask`.
    """

    graph: str
    batch: int
    layout: str
    itemsize: int
    buffers: tuple[Buffer, ...]
    offsets: tuple[int, ...]
    arena_bytes: int
    stages: tuple[tuple[tuple[Task, ...], ...], ...]
    values: Mapping[str, View] = field(compare=False)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    folded: tuple[str, ...] = ()

    @property
    def streams(self) -> int:
        return max((len(stage) for stage in self.stages), default=1)

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(t for stage in self.stages for stream in stage for t in stream)

    def weighted(self) -> dict[WeightKey, Weighted]:
        """Every weight key the tasks use, with the first task that uses it (what decides how it is packed)."""
        found: dict[WeightKey, Weighted] = {}
        for task in self.tasks:
            for key in weight_keys(task):
                found.setdefault(key, task)
        return found

    def buffer_bytes(self, index: int) -> int:
        return self.buffers[index].elements(self.batch) * self.itemsize

    def locate(self, view: View) -> tuple[int, tuple[int, int, int, int], tuple[int, int, int, int]]:
        """``(element offset in the arena, dims, strides)`` of a view, dims and strides in N, C, H, W order."""
        buf = self.buffers[view.buffer]
        c, h, w = buf.channels, buf.height, buf.width
        base = self.offsets[view.buffer] // self.itemsize
        dims = (self.batch, view.channels, h, w)
        if self.layout == "nhwc":
            return base + view.channel, dims, (h * w * c, 1, w * c, c)
        return base + view.channel * h * w, dims, (c * h * w, h * w, w, 1)

    def aligned(self, view: View) -> bool:
        """Whether the view starts where cuDNN can read or write it (`starts_aligned`)."""
        buf = self.buffers[view.buffer]
        return starts_aligned(view.channel, channel_stride(self.layout, buf.height, buf.width), self.itemsize)

    def __str__(self) -> str:
        lines = [
            f"program {self.graph} batch {self.batch} {self.layout}: {len(self.tasks)} tasks in {len(self.stages)} "
            f"stages on {self.streams} streams, arena {self.arena_bytes} bytes in {len(self.buffers)} buffers"
        ]
        lines += [
            f"  b{b.index} {b.name} {b.channels}x{b.height}x{b.width} @{self.offsets[b.index]} "
            f"stages {b.first}..{b.last}"
            for b in self.buffers
        ]
        for s, stage in enumerate(self.stages):
            for k, stream in enumerate(stage):
                lines += [f"  {s}.{k} {task}  # {task.node}" for task in stream]
        return "\n".join(lines)


def channel_stride(layout: str, height: int, width: int) -> int:
    """Elements between two neighbouring channels of a buffer: 1 in NHWC, a whole plane in NCHW."""
    return 1 if layout == "nhwc" else height * width


def starts_aligned(channel: int, stride: int, itemsize: int) -> bool:
    """Whether a view from ``channel`` of a buffer whose channels are ``stride`` elements apart starts on a
    `CONV_ALIGNMENT`-byte boundary (its buffer starts on `ARENA_ALIGNMENT`, a multiple of it): the one rule the
    lowering applies to every convolution operand."""
    return channel * stride * itemsize % CONV_ALIGNMENT == 0


def verify(program: Program) -> None:
    """Raise `ProgramError` at the first broken invariant (see the module docstring)."""
    for task in program.tasks:
        for view in (*task.reads(), task.y):
            buf = program.buffers[view.buffer]
            if view.channels < 1 or view.channel < 0 or view.channel + view.channels > buf.channels:
                raise ProgramError(f"task {task} ({task.node}): view {view} outside {buf.name} of {buf.channels}")
        if isinstance(task, PointwiseTask):
            _verify_broadcast(program, task)
        if isinstance(task, ConvTask) and task.addend is not None:
            _verify_addend(program, task)
        if isinstance(task, ExciteTask):
            _verify_excitation(program, task)
    _verify_arena(program)
    for s, stage in enumerate(program.stages):
        for (k1, one), (k2, other) in combinations(enumerate(stage), 2):
            if clash := _clash(one, other):
                raise ProgramError(f"stage {s}: streams {k1} and {k2} race on {clash}")


def _verify_broadcast(program: Program, task: PointwiseTask) -> None:
    y = program.buffers[task.y.buffer]
    for view in task.reads():
        buf = program.buffers[view.buffer]
        if view.channels != task.y.channels or (buf.height, buf.width) not in ((y.height, y.width), (1, 1)):
            raise ProgramError(f"task {task} ({task.node}): operand {view} of {buf.name} ({buf.channels}x{buf.height}"
                               f"x{buf.width}) is neither {task.y.channels} channels of {y.height}x{y.width} nor 1x1")


def _verify_addend(program: Program, task: ConvTask) -> None:
    y, z = program.buffers[task.y.buffer], program.buffers[task.addend.buffer]
    if task.addend.channels != task.y.channels or (z.height, z.width) != (y.height, y.width):
        raise ProgramError(f"task {task} ({task.node}): addend {task.addend} of {z.name} is not of the output's shape")
    if task.addend.channels != z.channels:
        raise ProgramError(f"task {task} ({task.node}): addend {task.addend} is a slice of {z.name}, not all of it")
    if overlaps(task.addend, task.y):
        raise ProgramError(f"task {task} ({task.node}): addend {task.addend} overlaps the output it is added into")


def _verify_excitation(program: Program, task: ExciteTask) -> None:
    y = program.buffers[task.y.buffer]
    if task.y.channels != task.x.channels or (y.height, y.width) != (1, 1):
        raise ProgramError(f"task {task} ({task.node}): output {task.y} of {y.name} is not one pixel of "
                           f"{task.x.channels} channels")
    if overlaps(task.x, task.y):
        raise ProgramError(f"task {task} ({task.node}): output {task.y} overlaps its input")


def _verify_arena(program: Program) -> None:
    spans = [(program.offsets[b.index], program.offsets[b.index] + program.buffer_bytes(b.index), b)
             for b in program.buffers]
    for lo, hi, b in spans:
        if lo % ARENA_ALIGNMENT or hi > program.arena_bytes:
            raise ProgramError(f"buffer {b.name} at bytes [{lo}, {hi}) is misaligned or outside the arena")
    spans.sort(key=lambda span: span[0])
    for i, (_, hi1, b1) in enumerate(spans):
        for lo2, _, b2 in spans[i + 1:]:
            if lo2 >= hi1:
                break
            if b1.first <= b2.last and b2.first <= b1.last:
                raise ProgramError(f"buffers {b1.name} and {b2.name} share arena bytes while both are live")


def overlaps(a: View, b: View) -> bool:
    """Whether two views share any element: channels of one buffer that meet."""
    return a.buffer == b.buffer and a.channel < b.channel + b.channels and b.channel < a.channel + a.channels


def _clash(one: tuple[Task, ...], other: tuple[Task, ...]) -> str | None:
    for t1 in one:
        for t2 in other:
            for w, t, views in ((t1.y, t2, (*t2.reads(), t2.y)), (t2.y, t1, (*t1.reads(), t1.y))):
                if any(overlaps(w, v) for v in views):
                    return f"{w} ({t1.node} / {t2.node})" if t is t2 else f"{w} ({t2.node} / {t1.node})"
    return None
