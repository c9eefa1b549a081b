"""Lowering: a graph and some of its stages become a `Program` for one batch size and layout.

Every node becomes at most a few tasks on its group's stream: a convolution one `ConvTask`, a
pooling one `PoolTask` (a global pool over many pixels two: `pooling.first_pass_rows`), a channel shuffle one
`ShuffleTask`, a pad (or crop) one `PadTask`, a layer
norm or softmax over channels one `NormTask`, the rest -- activations, clips, sums, products, copies --
`PointwiseTask`s. A ``C x 1 x 1`` operand of an element-wise node is read as it is, broadcast by the
task. An operand that is a view (one term, lying contiguously in one buffer, see `placement`) is
read in place; any other operand -- a sum of terms, or a concatenation whose slices live apart --
is first gathered, segment by segment, into a scratch buffer live for that stage. A convolution
whose input or output view would start off a 16-byte boundary (cuDNN's alignment) reads or writes
through an aligned scratch copy instead.

Scratch buffers live one stage, so streams of a stage never share one. `lower` works for a whole
schedule and for a few stages alone (what the measured cost times): nodes the stages read but do
not compute are the program's inputs, and everything computed that is read later is an output.

Within a group, two folds then remove kernels: a squeeze-and-excitation's pool and two 1 x 1 convolutions become one
`ExciteTask` (`_Lowering.fold_excitations`), and a sum that alone reads a convolution's output is added by the
convolution (`_Lowering.fold_sums`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from itertools import pairwise
from math import inf

from ios_core.engine.excitation import fits
from ios_core.engine.memory import assign_offsets
from ios_core.engine.options import PlanOptions
from ios_core.engine.placement import MERGE_PREFIX, Placement, merge_key, place
from ios_core.engine.pooling import first_pass_rows
from ios_core.engine.program import (
    ARENA_ALIGNMENT,
    LAYOUTS,
    Buffer,
    ConvTask,
    ExciteTask,
    NormTask,
    PadTask,
    PointwiseTask,
    PoolTask,
    Program,
    ShuffleTask,
    Task,
    View,
    WeightKey,
    channel_stride,
    is_depthwise,
    overlaps,
    starts_aligned,
    verify,
)
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
    Op,
    Pad,
    Pool,
    Sequential,
    Shape,
    Softmax,
    Value,
    rules_of,
)
from ios_core.schedule import Schedule, Stage, merged_conv
from ios_core.weights import Params, merged_weights


class LoweringError(RuntimeError):
    """A node could not be lowered; the message names it."""


@dataclass
class _Buf:
    name: str
    shape: Shape


class _Lowering:
    """Emits the tasks of one stream at a time, creating buffers as views first touch them."""

    def __init__(self, graph: Graph, placement: Placement, layout: str, itemsize: int, own_depthwise: bool,
                 pad_asymmetric: bool = False) -> None:
        self.graph, self.placement, self.layout, self.itemsize = graph, placement, layout, itemsize
        self.own_depthwise = own_depthwise  # our kernel runs depthwise convolutions: any alignment, an input activation
        self.pad_asymmetric = pad_asymmetric  # cuDNN gets symmetric padding only; a pad task does the rest
        self.buffers: list[_Buf] = []
        self.roots: dict[str, int] = {}
        self.tasks: list[Task] = []
        self.folded: list[str] = []

    # ---- buffers and views ------------------------------------------------------------------

    def _root(self, root: str) -> int:
        if root not in self.roots:
            if root.startswith(MERGE_PREFIX):
                first = self.graph.shapes[root[len(MERGE_PREFIX):].split("+")[0]]
                shape = Shape(self.placement.merge_channels[root], first.height, first.width)
            else:
                shape = self.graph.shapes[root]
            self.roots[root] = len(self.buffers)
            self.buffers.append(_Buf(root, shape))
        return self.roots[root]

    def view(self, name: str) -> View:
        """The whole output of node ``name``, wherever it is placed."""
        root, channel = self.placement.resolve(name)
        return View(self._root(root), channel, self.graph.shapes[name].channels)

    def scratch(self, channels: int, height: int, width: int) -> View:
        self.buffers.append(_Buf(f"scratch{len(self.buffers)}", Shape(channels, height, width)))
        return View(len(self.buffers) - 1, 0, channels)

    def scratch_like(self, view: View) -> View:
        shape = self.buffers[view.buffer].shape
        return self.scratch(view.channels, shape.height, shape.width)

    def aligned(self, view: View) -> bool:
        shape = self.buffers[view.buffer].shape
        return starts_aligned(view.channel, channel_stride(self.layout, shape.height, shape.width), self.itemsize)

    def term_view(self, term: tuple, begin: int, end: int) -> View:
        """Channels ``[begin, end)`` of a concatenation, which must fall inside one of its slices."""
        offset = 0
        for s in term:
            if offset <= begin and end <= offset + s.channels:
                root, channel = self.placement.resolve(s.node, s.begin + begin - offset)
                return View(self._root(root), channel, end - begin)
            offset += s.channels
        raise LoweringError(f"channels [{begin}, {end}) straddle slices of {term}")

    def contiguous(self, value: Value) -> View | None:
        where = self.placement.contiguous(value)
        return None if where is None else View(self._root(where[0]), where[1], value.channels)

    # ---- emission ---------------------------------------------------------------------------

    def emit(self, task: Task) -> None:
        self.tasks.append(task)

    # ---- squeeze-and-excitations folded into one kernel -------------------------------------------

    def fold_excitations(self, tasks: list[Task]) -> None:
        """Rewrite ``tasks`` (one group's, in place) so that each global pool followed by the two 1 x 1
        convolutions of a squeeze-and-excitation, each the only reader of the one before, is one `ExciteTask`.

        The three run one after another where the pool's last pass did, and nothing between them writes; the pool's
        and the squeeze's outputs are never written (`Program.folded`). A first pass of the pool over bands of rows
        stays a task of its own, and the excitation pools the bands.
        """
        i = 0
        while i + 2 < len(tasks):
            if self._excitation(tasks, i):
                pool, squeeze, excite = tasks[i:i + 3]
                tasks[i:i + 3] = [ExciteTask(excite.node, pool.x, excite.y, pool.pool, squeeze.conv, squeeze.weights,
                                             excite.conv, excite.weights)]
                self.folded += [pool.node, squeeze.node]
            i += 1

    def _excitation(self, tasks: list[Task], i: int) -> bool:
        """Whether ``tasks[i:i + 3]`` are a squeeze-and-excitation our kernel computes (see `fold_excitations`)."""
        pool, squeeze, excite = tasks[i:i + 3]
        return (isinstance(pool, PoolTask) and pool.pool.kind.startswith("global")
                and isinstance(squeeze, ConvTask) and isinstance(excite, ConvTask)
                and squeeze.x == pool.y and excite.x == squeeze.y
                and self._read_once(tasks, pool) and self._read_once(tasks, squeeze)
                and squeeze.pre_act == excite.pre_act == "none" and squeeze.addend is None and excite.addend is None
                and not overlaps(pool.x, excite.y) and fits(pool.x.channels, squeeze.conv, excite.conv))

    def _read_once(self, tasks: list[Task], task: PoolTask | ConvTask) -> bool:
        """Whether ``task`` writes its node's whole value, which one other node alone reads, by one task of ``tasks``
        (a node can read an operand in several tasks: a sum ``(a + b) + b`` is two, each reading ``b``): what a task
        must be for a fold to leave its output unwritten."""
        return (task.y == self.view(task.node) and task.node != self.graph.output
                and len(self.graph.consumers[task.node]) == 1
                and sum(any(overlaps(task.y, v) for v in t.reads()) for t in tasks) == 1)

    # ---- sums folded into convolutions ---------------------------------------------------------

    def fold_sums(self, tasks: list[Task]) -> None:
        """Rewrite ``tasks`` (one group's, in place) so that each sum of a convolution's output and another tensor
        is computed by the convolution itself (its ``addend``), where that sum is the output's only reader and the
        other tensor a whole value.

        The folded convolution runs where the sum did, so nothing it reads may be written in between; its own
        output is never written (`Program.folded`). cuDNN adds the addend after the bias and before the
        activation, which is why the convolution must have none of its own.
        """
        i = 0
        while i < len(tasks):
            conv = tasks[i]
            j = self._foldable_sum(tasks, i) if isinstance(conv, ConvTask) else None
            if j is None:
                i += 1
                continue
            total = tasks[j]
            addend = total.b if total.a == conv.y else total.a
            tasks[j] = replace(conv, y=total.y, conv=replace(conv.conv, act=total.act), addend=addend)
            self.folded.append(conv.node)
            del tasks[i]

    def _foldable_sum(self, tasks: list[Task], i: int) -> int | None:
        """The index of the task that can fold into convolution ``tasks[i]`` (see `fold_sums`), or None."""
        conv = tasks[i]
        if (conv.pre_act != "none" or conv.addend is not None or conv.conv.act != "none"
                or (self.own_depthwise and conv.depthwise) or not self._read_once(tasks, conv)):
            return None
        for j in range(i + 1, len(tasks)):
            task = tasks[j]
            if any(overlaps(conv.y, view) for view in task.reads()):
                return j if self._folds(conv, task) else None
            if overlaps(task.y, conv.x):
                return None
        return None

    def _folds(self, conv: ConvTask, task: Task) -> bool:
        """Whether ``task``, the first reader of ``conv``'s output, is a plain sum cuDNN can compute for it."""
        if not (isinstance(task, PointwiseTask) and task.op == "add" and task.b is not None
                and (task.low, task.high) == (-inf, inf) and (task.a == conv.y) != (task.b == conv.y)):
            return False
        addend = task.b if task.a == conv.y else task.a
        shape, addend_shape = self.buffers[conv.y.buffer].shape, self.buffers[addend.buffer].shape
        # A whole value only: with a channel slice of a wider tensor as its addend, cuDNN's fused graph computed a
        # wrong sum on the H100 (cuDNN 9.19: a test in fp32-strict NHWC, DPN-68 in TF32), and nothing rejected it
        return (addend_shape.channels == addend.channels
                and (addend_shape.height, addend_shape.width) == (shape.height, shape.width)
                and not overlaps(addend, task.y) and not overlaps(conv.x, task.y)
                and self.aligned(addend) and self.aligned(task.y))

    def operand(self, node: str, value: Value) -> View:
        """The value as a view: in place when it is one, else gathered into scratch."""
        if (view := self.contiguous(value)) is not None:
            return view
        shape = self.graph.shapes[value.terms[0][0].node]
        into = self.scratch(value.channels, shape.height, shape.width)
        self.gather(node, value, into)
        return into

    def gather(self, node: str, value: Value, into: View, act: str = "none") -> None:
        """``into = act(sum of the value's terms)``, one segment of channels at a time; nothing for slices in place."""
        bounds = {0, value.channels}
        for term in value.terms:
            offset = 0
            for s in term:
                offset += s.channels
                bounds.add(offset)
        for begin, end in pairwise(sorted(bounds)):
            parts = [self.term_view(term, begin, end) for term in value.terms]
            segment = into.sub(begin, end)
            if len(parts) == 1:
                if parts[0] != segment or act != "none":
                    self.emit(PointwiseTask(node, segment, parts[0], act=act))
                continue
            self.emit(PointwiseTask(node, segment, parts[0], parts[1], "add", act if len(parts) == 2 else "none"))
            for k, part in enumerate(parts[2:], start=3):
                self.emit(PointwiseTask(node, segment, segment, part, "add", act if k == len(parts) else "none"))

    def conv(self, node: str, x: View, y: View, conv: Conv, key: WeightKey, pre_act: str = "none") -> None:
        if self.own_depthwise and is_depthwise(conv, x.channels):
            self.emit(ConvTask(node, x, y, conv, key, pre_act))
            return
        if self.pad_asymmetric and conv.padding_end not in (None, conv.padding):
            x, conv = self.pad_beyond_symmetric(node, x, conv)
        if not self.aligned(x):
            aligned_x = self.scratch_like(x)
            self.emit(PointwiseTask(node, aligned_x, x))
            x = aligned_x
        if self.aligned(y):
            self.emit(ConvTask(node, x, y, conv, key))
            return
        out = self.scratch_like(y)
        self.emit(ConvTask(node, x, out, conv, key))
        self.emit(PointwiseTask(node, y, out))

    def pad_beyond_symmetric(self, node: str, x: View, conv: Conv) -> tuple[View, Conv]:
        """A scratch copy of ``x`` padded by what ``conv``'s padding has beyond its symmetric part, and ``conv``
        padded symmetrically: together they compute what ``conv`` on ``x`` does."""
        top, left, bottom, right = conv.pads
        symmetric = (min(top, bottom), min(left, right))
        extra = (top - symmetric[0], left - symmetric[1], bottom - symmetric[0], right - symmetric[1])
        shape = self.buffers[x.buffer].shape
        padded = self.scratch(x.channels, shape.height + extra[0] + extra[2], shape.width + extra[1] + extra[3])
        self.emit(PadTask(node, x, padded, extra))
        return padded, replace(conv, padding=symmetric, padding_end=None)

    def pool(self, node: str, x: View, y: View, pool: Pool) -> None:
        """``y = pool(x)``; a global pool too wide for one pass (`pooling.first_pass_rows`) in two: each band of
        rows pooled into scratch, then the bands (the max of their maxima, the mean of their equally large means)."""
        shape = self.buffers[x.buffer].shape
        rows = first_pass_rows(x.channels, shape.height, shape.width) if pool.kind.startswith("global") else None
        if rows is None:
            self.emit(PoolTask(node, x, y, pool))
            return
        bands = self.scratch(x.channels, shape.height // rows, 1)
        band = Pool(pool.kind.removeprefix("global_"), kernel=(rows, shape.width), stride=(rows, shape.width))
        self.emit(PoolTask(node, x, bands, band))
        self.emit(PoolTask(node, bands, y, pool))

    def inner(self, node: str, op: Op, x: View, y: View, key: WeightKey) -> None:
        """One single-operand operator on views (a node's own op, or one inside a `Sequential`)."""
        if isinstance(op, Conv):
            self.conv(node, x, y, op, key)
        elif isinstance(op, Pool):
            self.pool(node, x, y, op)
        elif type(op) in _VIEW_TASKS:
            self.emit(_VIEW_TASKS[type(op)](node, x, y, op, key))
        else:
            raise LoweringError(f"{rules_of(op).name} cannot run on a single view")

    def merge(self, ops: tuple[str, ...]) -> None:
        """The merged convolution, then a copy home of each member placed outside its output (placement rule 2)."""
        nodes = [self.graph[name] for name in ops]
        x = self.operand(ops[0], nodes[0].inputs[0])
        key = merge_key(ops)
        root, channel = self.placement.resolve(key)
        y = View(self._root(root), channel, self.placement.merge_channels[key])
        self.conv(ops[0], x, y, merged_conv([n.op for n in nodes]), WeightKey(ops))
        offset = 0
        for name in ops:
            channels, home = self.graph.shapes[name].channels, self.view(name)
            written = y.sub(offset, offset + channels)
            if home != written:
                self.emit(PointwiseTask(name, home, written))
            offset += channels

    def node(self, node: Node) -> None:
        try:
            _NODE_LOWERING[type(node.op)](self, node)
        except Exception as error:
            raise LoweringError(f"while lowering {node}: {error}") from error


_VIEW_TASKS: dict[type, Callable[[str, View, View, Op, WeightKey], Task]] = {
    Activation: lambda node, x, y, op, key: PointwiseTask(node, y, x, act=op.kind),
    Identity: lambda node, x, y, op, key: PointwiseTask(node, y, x),
    Clip: lambda node, x, y, op, key: PointwiseTask(node, y, x, low=op.low, high=op.high),
    Pad: lambda node, x, y, op, key: PadTask(node, x, y, op.pads, op.value),
    # a shuffle of one group, or of groups of one channel, is the identity permutation: a copy
    ChannelShuffle: lambda node, x, y, op, key: (ShuffleTask(node, x, y, op.groups) if 1 < op.groups < x.channels
                                                 else PointwiseTask(node, y, x)),
    LayerNorm: lambda node, x, y, op, key: NormTask(node, x, y, op, key),
    Softmax: lambda node, x, y, op, key: NormTask(node, x, y, op),
}
"""The task of each single-operand operator other than a convolution, from its node, views, op and weight key."""


def _single(lowering: _Lowering, node: Node) -> None:
    x = lowering.operand(node.name, node.inputs[0])
    lowering.inner(node.name, node.op, x, lowering.view(node.name), WeightKey((node.name,)))


def _activation(lowering: _Lowering, node: Node) -> None:
    if lowering.contiguous(node.inputs[0]) is not None:
        _single(lowering, node)
    else:  # the activation rides on the gather's last kernel
        lowering.gather(node.name, node.inputs[0], lowering.view(node.name), node.op.kind)


def _identity(lowering: _Lowering, node: Node) -> None:
    if node.name not in lowering.placement.aliases:
        lowering.gather(node.name, node.inputs[0], lowering.view(node.name))


def _elementwise(lowering: _Lowering, node: Node) -> None:
    y = lowering.view(node.name)
    if node.op.kind == "add":  # one sum of every operand's terms
        lowering.gather(node.name, Value(tuple(t for v in node.inputs for t in v.terms)), y)
        return
    views = [lowering.operand(node.name, v) for v in node.inputs]
    lowering.emit(PointwiseTask(node.name, y, views[0], views[1], "mul"))
    for view in views[2:]:
        lowering.emit(PointwiseTask(node.name, y, y, view, "mul"))


def _sequential(lowering: _Lowering, node: Node) -> None:
    ops, value, y = node.op.ops, node.inputs[0], lowering.view(node.name)
    shapes = [lowering.graph.operand_shapes(node)[0]]
    for op in ops:
        shapes.append(rules_of(op).shape(op, (shapes[-1],)))
    start = 0
    if isinstance(ops[0], Activation) and lowering.contiguous(value) is None:
        x = y if len(ops) == 1 else lowering.scratch(*shapes[1])
        lowering.gather(node.name, value, x, ops[0].kind)
        start = 1
    else:
        x = lowering.operand(node.name, value)
    i = start
    while i < len(ops):
        fuse = (lowering.own_depthwise and isinstance(ops[i], Activation) and i + 1 < len(ops)
                and isinstance(ops[i + 1], Conv) and is_depthwise(ops[i + 1], shapes[i + 1].channels))
        i += fuse  # the activation rides on the depthwise convolution's loads
        out = y if i == len(ops) - 1 else lowering.scratch(*shapes[i + 1])
        if fuse:
            lowering.conv(node.name, x, out, ops[i], WeightKey((node.name,), i), ops[i - 1].kind)
        else:
            lowering.inner(node.name, ops[i], x, out, WeightKey((node.name,), i))
        x, i = out, i + 1


_NODE_LOWERING: dict[type, Callable[[_Lowering, Node], None]] = {
    Conv: _single,
    Pool: _single,
    Clip: _single,
    Pad: _single,
    ChannelShuffle: _single,
    LayerNorm: _single,
    Softmax: _single,
    Activation: _activation,
    Identity: _identity,
    Elementwise: _elementwise,
    Sequential: _sequential,
}


def lower(
    graph: Graph,
    stages: Schedule | Sequence[Stage],
    batch: int,
    layout: str = "nhwc",
    *,
    schedule: Schedule | None = None,
    itemsize: int = 4,
    concat_in_place: bool = True,
    own_depthwise: bool = True,
    pad_asymmetric: bool = False,
    fold_sums: bool = True,
    fold_excitations: bool = True,
) -> Program:
    """The program running ``stages`` of ``graph`` at ``batch`` in ``layout``.

    Parameters
    ----------
    graph
        The network.
    stages
        A whole schedule, or some of its stages (a stage-only program for measuring them).
    batch, layout
        Batch size; ``"nhwc"`` or ``"nchw"``.
    schedule
        The whole schedule ``stages`` come from: its merges decide placement, so that a
        stage-only program lays memory out exactly as the whole one does.
    itemsize
        Bytes per element.
    concat_in_place
        Let identities host the outputs they concatenate (producers write into their slices);
        with False every such concatenation is a copy.
    own_depthwise
        Depthwise convolutions run on our kernel, which takes any alignment and folds an
        activation that precedes it inside a `Sequential` into its loads (cuDNN cannot).
    pad_asymmetric
        A convolution on cuDNN with unequal begin and end padding reads a padded scratch copy
        of its input (a `PadTask`) and pads symmetrically itself (`PlanOptions.pad_asymmetric`).
    fold_sums
        A sum that is the only reader of a convolution's output in the same group is computed by that convolution
        (cuDNN adds it in its epilogue: `ConvTask.addend`) instead of by a kernel of its own
        (`PlanOptions.fold_sums`).
    fold_excitations
        A squeeze-and-excitation's global pool and two 1 x 1 convolutions in one group, each read only by the next,
        run as one kernel of ours (`ExciteTask`) instead of three (`PlanOptions.fold_excitations`).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {LAYOUTS}")
    stages = tuple(stages.stages if isinstance(stages, Schedule) else stages)
    context = stages + (schedule.stages if schedule is not None else ())
    merges = list(dict.fromkeys(g.ops for stage in context for g in stage.groups if g.merge))
    lowering = _Lowering(graph, place(graph, merges, concat_in_place), layout, itemsize, own_depthwise,
                         pad_asymmetric)
    program_stages = []
    for stage in stages:
        streams = []
        for group in stage.groups:
            lowering.tasks = []
            if group.merge:
                lowering.merge(group.ops)
            else:
                for name in group.ops:
                    lowering.node(graph[name])
            if fold_excitations:
                lowering.fold_excitations(lowering.tasks)
            if fold_sums:
                lowering.fold_sums(lowering.tasks)
            if lowering.tasks:
                streams.append(tuple(lowering.tasks))
        program_stages.append(tuple(streams))
    return _finish(graph, stages, lowering, batch, program_stages)


def lower_planned(graph: Graph, stages: Schedule | Sequence[Stage], batch: int, options: PlanOptions, itemsize: int,
                  schedule: Schedule | None = None) -> Program:
    """`lower` under the layout and lowering switches of ``options``: what a plan runs, and what the stage profiler
    times of each stage (with no ``schedule``: the search has none yet)."""
    return lower(graph, stages, batch, options.layout, schedule=schedule, itemsize=itemsize,
                 concat_in_place=options.concat_in_place, own_depthwise=options.own_depthwise,
                 pad_asymmetric=options.pad_asymmetric, fold_sums=options.fold_sums,
                 fold_excitations=options.fold_excitations)


def _finish(graph: Graph, stages: tuple[Stage, ...], lowering: _Lowering, batch: int, program_stages: list) -> Program:
    produced = {name for stage in stages for name in stage.ops}
    inputs = tuple(dict.fromkeys(p for name in produced for p in graph[name].producers if p not in produced))
    outputs = tuple(
        name for name in (n.name for n in graph.operators if n.name in produced)
        if name == graph.output or any(c not in produced for c in graph.consumers[name])
    )
    end = max(len(stages) - 1, 0)
    folded = tuple(lowering.folded)
    values = {name: lowering.view(name) for name in (*inputs, *sorted(produced)) if name not in folded}
    pinned_first = {values[name].buffer for name in inputs}
    pinned_last = pinned_first | {values[name].buffer for name in outputs}
    used: dict[int, list[int]] = {}  # the stages each buffer is read or written in
    for s, streams in enumerate(program_stages):
        for task in (t for stream in streams for t in stream):
            for view in (*task.reads(), task.y):
                used.setdefault(view.buffer, []).append(s)
    # a buffer no task touches and no value lies in (a folded convolution's own) takes no arena bytes
    valued = {view.buffer for view in values.values()}
    kept = [i for i in range(len(lowering.buffers)) if i in used or i in valued]
    index = {old: new for new, old in enumerate(kept)}
    buffers = []
    for new, old in enumerate(kept):
        b, stages_used = lowering.buffers[old], used.get(old, [0])
        first = 0 if old in pinned_first else min(stages_used)
        last = end if old in pinned_last else max(stages_used)
        buffers.append(Buffer(new, b.name, b.shape.channels, b.shape.height, b.shape.width, first, last))
    program_stages = [tuple(tuple(_renumbered(t, index) for t in stream) for stream in streams)
                      for streams in program_stages]
    values = {name: replace(view, buffer=index[view.buffer]) for name, view in values.items()}
    sizes = [b.elements(batch) * lowering.itemsize for b in buffers]
    offsets, arena = assign_offsets(sizes, [(b.first, b.last) for b in buffers], ARENA_ALIGNMENT)
    program = Program(graph.name, batch, lowering.layout, lowering.itemsize, tuple(buffers), tuple(offsets), arena,
                      tuple(program_stages), values, inputs, outputs, folded)
    verify(program)
    return program


def _renumbered(task: Task, index: dict[int, int]) -> Task:
    """``task`` with the buffer of each of its views renumbered by ``index`` (old number to new)."""
    return replace(task, **{f.name: replace(view, buffer=index[view.buffer]) for f in fields(task)
                            if isinstance(view := getattr(task, f.name), View)})


def conv_params(graph: Graph, weights: dict[str, Params], key: WeightKey) -> Params:
    """The weight and bias of a `ConvTask`: one node's, a merge's (padded and stacked), or an inner op's."""
    if len(key.nodes) > 1:
        return merged_weights([graph[n].op for n in key.nodes], [weights[n] for n in key.nodes])
    params = weights[key.nodes[0]]
    if key.inner is None:
        return params
    prefix = f"{key.inner}."
    return {name[len(prefix):]: array for name, array in params.items() if name.startswith(prefix)}


def unplanned_bytes(program: Program) -> int:
    """What the buffers would take with no reuse at all, for comparison with the arena (``program.arena_bytes``)."""
    return sum(program.buffer_bytes(b.index) for b in program.buffers)
