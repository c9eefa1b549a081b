"""The launch layer: every task of a program prepared once as a call that enqueues it, what `Plan` and `StagePlan` run.

A `LaunchContext` holds what launches are prepared from -- the program, the streams and their cuDNN
handles, our kernels, the convolution library, the arena's address and every convolution's weight
addresses. A launcher per task type (`prepare`) turns one task on stream ``k`` into a `TaskLaunch`: the
call that enqueues it, given its stream's cuDNN workspace (known only once every convolution of the
stream is prepared, `workspace_sizes`), and what preparing it found -- our kernels it launches, the cuDNN
graph it executes. Launchers write nowhere else: a plan sums their findings (`launch_stats`). Pointwise tasks in a
row on a stream share launches where they can (`prepare_program`, `channelwise.pointwise_launches`).

`Launches.enqueue` runs the program with the fewest events: a stage of one group runs on stream 0; a
stage of ``n > 1`` groups forks from stream 0 (one event, waited on by streams ``1..n-1``) and joins back
(one event per side stream, waited on by stream 0) -- so stream 0 always holds the order, a captured
graph starts and ends on it, and no device-wide synchronization is ever used. `ExactLaunches.enqueue` keeps the
same streams but replaces the stage barriers by the waits of `ios_core.engine.dependencies.waits`: each group waits
only for the earlier groups it conflicts with, and stream 0 joins every side stream at the end.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import pycuda.driver as drv

from ios_core.engine import channelwise, depthwise, excitation, pooling
from ios_core.engine.dependencies import Group, Waits
from ios_core.engine.gpu import device
from ios_core.engine.gpu.convs import ConvGraph, ConvLibrary, Geometry, TuningBuffers, fused_activation
from ios_core.engine.packing import Pack, depthwise_strides, kernel_strides, one_pixel_strides
from ios_core.engine.program import (
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
)

Pointer = tuple[int, tuple[int, ...], tuple[int, ...]]
"""A view on the GPU: its first element's address, and its dims and element strides in N, C, H, W order."""


@dataclass(frozen=True)
class WeightAddress:
    """Where one convolution's pack (`ios_core.engine.packing`) is on the GPU: its kernel's and its bias's addresses,
    and the kernel's dims (K, C, R, S)."""

    weight: int
    bias: int
    dims: tuple[int, ...]

    @classmethod
    def of(cls, pack: Pack, address: int) -> WeightAddress:
        """The addresses of ``pack`` uploaded to ``address``."""
        return cls(address, address + pack.bias_at, pack.dims)


@dataclass(frozen=True)
class LaunchContext:
    """What every launch of one program is prepared from (see the module)."""

    program: Program
    precision: str
    own_depthwise: bool  # depthwise convolutions on our kernel, not cuDNN (`ios_core.engine.PlanOptions`)
    multiprocessors: int  # of the GPU: how our kernels' launches are shaped
    kernels: device.Kernels
    library: ConvLibrary
    streams: tuple[drv.Stream, ...]
    handles: tuple[object, ...]  # a cuDNN handle per stream, set to it
    arena: int
    weights: Mapping[WeightKey, WeightAddress]

    def pointer(self, view: View) -> Pointer:
        offset, dims, strides = self.program.locate(view)
        return self.arena + offset * self.program.itemsize, dims, strides


@dataclass(frozen=True)
class TaskLaunch:
    """One task's prepared launch, and what preparing it found."""

    call: Callable[[int], None]  # enqueues the task; takes its stream's cuDNN workspace address (0: none)
    kernels: tuple[str, ...] = ()  # our kernels it launches, each counted by family and by name
    conv: ConvGraph | None = None  # the cuDNN graph it executes


@dataclass
class PlanStats:
    """What building a plan found: memory, convolution engines, our kernels, time spent."""

    arena_bytes: int = 0
    weight_bytes: int = 0
    workspace_bytes: int = 0
    convs: int = 0
    unfused_convs: int = 0
    geometries: int = 0
    tuned_conv_ms: float = 0.0
    heuristic_conv_ms: float = 0.0
    kernels: dict[str, int] = field(default_factory=dict)
    build_s: float = 0.0


Prepared = list[list[list[TaskLaunch]]]
"""A program's task launches by stage, stream and launch (a task's, or several pointwise tasks')."""

Bound = tuple[tuple[tuple[Callable[[], None], ...], ...], ...]
"""A program's launches bound to their streams' workspaces, by stage, stream and launch (`bind`)."""


def prepare(context: LaunchContext, task: Task, k: int) -> TaskLaunch:
    """The launch of ``task`` on stream ``k``; an error names the task and its node."""
    try:
        return _LAUNCHERS[type(task)](context, task, k)
    except Exception as error:
        raise RuntimeError(f"while preparing {task} of node {task.node!r}: {error}") from error


def prepare_program(context: LaunchContext, combine_pointwise: bool = True) -> Prepared:
    """Every task of the context's program prepared, in program order (convolutions are tuned in that order); with
    ``combine_pointwise``, pointwise tasks in a row on a stream share launches (`channelwise.pointwise_launches`: a
    batch of independent ones, a chain of additions), so a stream's launches may be fewer than its tasks."""
    combined = {"sum": _pointwise_sum, "batch": _pointwise_batch, "task": lambda c, tasks, k: prepare(c, tasks[0], k)}

    def stream_launches(tasks: tuple[Task, ...], k: int) -> list[TaskLaunch]:
        groups = channelwise.pointwise_launches(tasks) if combine_pointwise else [("task", [t]) for t in tasks]
        return [combined[kind](context, group, k) for kind, group in groups]

    return [[stream_launches(stream, k) for k, stream in enumerate(stage)] for stage in context.program.stages]


def workspace_sizes(prepared: Prepared, streams: int) -> list[int]:
    """The cuDNN workspace each stream needs: the largest of its convolutions'."""
    sizes = [0] * streams
    for stage in prepared:
        for k, launches in enumerate(stage):
            for launch in launches:
                if launch.conv is not None:
                    sizes[k] = max(sizes[k], launch.conv.workspace)
    return sizes


def launch_stats(prepared: Prepared, geometries: int) -> PlanStats:
    """What preparing found: convolutions (fused or not, tuned and heuristic milliseconds) and our kernels by family
    and name; ``geometries`` (the library's, after preparing) if there is any convolution."""
    stats = PlanStats()
    for launch in (launch for stage in prepared for launches in stage for launch in launches):
        for name in launch.kernels:
            stats.kernels[name] = stats.kernels.get(name, 0) + 1
        if launch.conv is not None:
            stats.convs += 1
            stats.unfused_convs += not launch.conv.fused
            stats.geometries = geometries
            stats.tuned_conv_ms += launch.conv.tuned_ms or 0.0
            stats.heuristic_conv_ms += launch.conv.heuristic_ms or 0.0
    return stats


@dataclass(frozen=True)
class Launches:
    """A program's launches by stage and stream, bound to their workspaces, and the events that fork and join each
    stage of several streams (``forks[s]``; ``joins[s][k]`` for side stream ``k >= 1``)."""

    stages: Bound
    streams: tuple[drv.Stream, ...]
    forks: tuple[drv.Event | None, ...]
    joins: tuple[tuple[drv.Event, ...], ...]

    def enqueue(self) -> None:
        """Launch the whole program on the streams (eagerly, or into a capture); see the module."""
        s0 = self.streams[0]
        for s, stage in enumerate(self.stages):
            if len(stage) > 1:
                self.forks[s].record(s0)
                for stream in self.streams[1:len(stage)]:
                    stream.wait_for_event(self.forks[s])
            for launches in stage:
                for launch in launches:
                    launch()
            if len(stage) > 1:
                for k in range(1, len(stage)):
                    self.joins[s][k].record(self.streams[k])
                    s0.wait_for_event(self.joins[s][k])


@dataclass(frozen=True)
class ExactLaunches:
    """A program's launches by stage and stream (as `Launches.stages`) ordered by exact dependencies: ``waits``
    (`ios_core.engine.dependencies.waits`), an event per group some wait needs (``events``), and ``start``."""

    stages: Bound
    streams: tuple[drv.Stream, ...]
    waits: Waits
    events: Mapping[Group, drv.Event]
    start: drv.Event  # recorded on stream 0 first: each side stream waits for it before its first group

    def enqueue(self) -> None:
        """Launch the whole program on the streams (eagerly, or into a capture), each group after what it waits for.

        A side stream's first wait is on ``start``, which brings it into a capture and orders it after whatever
        stream 0 ran before (the previous run's reads of memory it writes); the final waits leave stream 0 after
        every group, so the output is complete when stream 0 is.
        """
        s0, joined = self.streams[0], {0}
        self.start.record(s0)
        for s, stage in enumerate(self.stages):
            for k, launches in enumerate(stage):
                stream = self.streams[k]
                if k not in joined:
                    stream.wait_for_event(self.start)
                    joined.add(k)
                for group in self.waits.before[(s, k)]:
                    stream.wait_for_event(self.events[group])
                for launch in launches:
                    launch()
                if (s, k) in self.events:
                    self.events[(s, k)].record(stream)
        for group in self.waits.end:
            s0.wait_for_event(self.events[group])


def bind(prepared: Prepared, workspaces: Sequence[int]) -> Bound:
    """Each task's call with its stream's workspace address, by stage, stream and task (as `Launches.stages`)."""
    return tuple(tuple(tuple(partial(launch.call, workspaces[k]) for launch in launches)
                       for k, launches in enumerate(stage)) for stage in prepared)


def pointwise_call(context: LaunchContext, k: int, y: Pointer, a: Pointer, b: Pointer | None, op: str,
                   act: str, bounds: tuple[float, float] = (-np.inf, np.inf)) -> Callable[[], None]:
    """A prepared launch of ``y = clip(act(a op b), *bounds)`` on stream ``k`` (our pointwise kernel); an operand of
    size 1 in a dimension where y is larger is broadcast along it (`ios_core.engine.channelwise.pointwise_args`)."""
    args = _pointwise_args(y, a, b, op, act, bounds)
    grid, block = device.grid(int(np.prod(y[1]))), (device.BLOCK, 1, 1)
    stream, fn = context.streams[k], context.kernels.pointwise
    return lambda: fn.prepared_async_call(grid, block, stream, *args)


def _pointwise_args(y: Pointer, a: Pointer, b: Pointer | None, op: str, act: str,
                    bounds: tuple[float, float]) -> tuple:
    operand = depthwise.Operand
    return channelwise.pointwise_args(operand(*y), operand(*a), None if b is None else operand(*b), op, act, bounds)


def _pointwise_operands(context: LaunchContext, task: PointwiseTask) -> tuple:
    b = context.pointer(task.b) if task.b is not None else None
    return context.pointer(task.y), context.pointer(task.a), b, task.op, task.act, (task.low, task.high)


def _pointwise(context: LaunchContext, task: PointwiseTask, k: int) -> TaskLaunch:
    call = pointwise_call(context, k, *_pointwise_operands(context, task))
    return TaskLaunch(lambda _workspace: call(), ("pointwise",))


def _pointwise_batch(context: LaunchContext, tasks: list[PointwiseTask], k: int) -> TaskLaunch:
    """Independent pointwise tasks in a row on stream ``k`` as one launch of ``pointwise_batch_f32``: a row of
    blocks per task, as many blocks in a row as the largest task's own launch would have."""
    operands = [_pointwise_operands(context, task) for task in tasks]
    param = channelwise.pointwise_batch([_pointwise_args(*each) for each in operands])
    grid = (max(device.grid(int(np.prod(y[1])))[0] for y, *_ in operands), len(tasks))
    block, stream, fn = (device.BLOCK, 1, 1), context.streams[k], context.kernels.pointwise_batch
    return TaskLaunch(lambda _workspace: fn.prepared_async_call(grid, block, stream, param),
                      (channelwise.POINTWISE_BATCH,))


def _pointwise_sum(context: LaunchContext, chain: list[PointwiseTask], k: int) -> TaskLaunch:
    """A chain of additions into one output on stream ``k`` as one pass of ``pointwise_sum_f32`` over its terms,
    with the last addition's activation and bounds."""
    last = chain[-1]
    y, terms = _operand(context, last.y), [_operand(context, view) for view in channelwise.sum_terms(chain)]
    param = channelwise.pointwise_sum(y, terms, last.act, (last.low, last.high))
    grid, block = device.grid(int(np.prod(y.dims))), (device.BLOCK, 1, 1)
    stream, fn = context.streams[k], context.kernels.pointwise_sum
    return TaskLaunch(lambda _workspace: fn.prepared_async_call(grid, block, stream, param),
                      (channelwise.POINTWISE_SUM,))


def _operand(context: LaunchContext, view: View) -> depthwise.Operand:
    return depthwise.Operand(*context.pointer(view), context.program.itemsize)


def _shuffle(context: LaunchContext, task: ShuffleTask, k: int) -> TaskLaunch:
    # a copy over (n, i, j, pixel) whose strides permute the channels (engine.channelwise): one launch, no gather
    y, x = channelwise.shuffle_views(_operand(context, task.x), _operand(context, task.y), task.groups)
    call = pointwise_call(context, k, (y.address, y.dims, y.strides), (x.address, x.dims, x.strides), None, "none",
                          "none")
    return TaskLaunch(lambda _workspace: call(), ("pointwise", "shuffle"))


def _pad(context: LaunchContext, task: PadTask, k: int) -> TaskLaunch:
    launch = channelwise.pad_launch(_operand(context, task.x), _operand(context, task.y), task.pads, task.value,
                                    context.multiprocessors)
    return _chosen(context, k, "pad", {channelwise.PAD: context.kernels.pad}, launch)


def _norm(context: LaunchContext, task: NormTask, k: int) -> TaskLaunch:
    weights = (0, 0)
    if task.weights is not None:
        address = context.weights[task.weights]
        weights = (address.weight, address.bias)
    launch = channelwise.norm_launch(_operand(context, task.x), _operand(context, task.y), task.op, weights,
                                     context.multiprocessors)
    return _chosen(context, k, "norm", {channelwise.NORM: context.kernels.norm}, launch)


def _excite(context: LaunchContext, task: ExciteTask, k: int) -> TaskLaunch:
    squeeze, excite = context.weights[task.squeeze_weights], context.weights[task.excite_weights]
    launch = excitation.excite_launch(_operand(context, task.x), _operand(context, task.y), task.pool.kind,
                                      (task.squeeze, task.excite), (squeeze.weight, squeeze.bias, excite.weight,
                                                                    excite.bias))
    return _chosen(context, k, "excite", context.kernels.excite, launch)


def _chosen(context: LaunchContext, k: int, family: str, functions: Mapping[str, drv.Function],
            launch: depthwise.Launch) -> TaskLaunch:
    """The launch of a kernel of ``family`` chosen on the host, counted under the family and under its own name."""
    stream, fn = context.streams[k], functions[launch.kernel]
    return TaskLaunch(lambda _workspace: fn.prepared_async_call(launch.grid, launch.block, stream, *launch.args),
                      (family, launch.kernel))


def _depthwise(context: LaunchContext, task: ConvTask, k: int) -> TaskLaunch:
    weights = context.weights[task.weights]
    call = depthwise.DepthwiseCall(_operand(context, task.x), _operand(context, task.y), weights.weight,
                                   depthwise_strides(weights.dims, context.program.layout), weights.bias, task.conv,
                                   task.pre_act)
    # The one dispatch point: a fast NHWC kernel where the geometry allows (channels innermost, 3/5/7 kernel,
    # stride 1 or 2, 32-bit offsets; 4-element vectors where aligned), else the generic one. Chosen here, once per
    # task on the host, because the geometry and addresses are fixed when the plan is built (see engine.depthwise).
    launch = depthwise.launch(call, context.multiprocessors)
    return _chosen(context, k, "depthwise", context.kernels.depthwise, launch)


def _conv(context: LaunchContext, task: ConvTask, k: int) -> TaskLaunch:
    if task.depthwise and context.own_depthwise:
        return _depthwise(context, task, k)
    if task.pre_act != "none":
        raise ValueError("only our depthwise kernel applies an activation to its input")
    (xp, x_dims, x_strides), (yp, y_dims, y_strides) = context.pointer(task.x), context.pointer(task.y)
    addend = None if task.addend is None else context.pointer(task.addend)
    weights, conv = context.weights[task.weights], task.conv
    w_dims = tuple(weights.dims)
    top, left, bottom, right = conv.pads
    w_strides = kernel_strides(w_dims, context.program.layout)
    geometry = Geometry(x_dims, one_pixel_strides(x_dims, x_strides), w_dims, one_pixel_strides(w_dims, w_strides),
                        y_dims, one_pixel_strides(y_dims, y_strides), (top, left), conv.stride, conv.dilation,
                        fused_activation(conv.act), context.precision,
                        None if (bottom, right) == (top, left) else (bottom, right),
                        None if addend is None else one_pixel_strides(y_dims, addend[2]))
    wp, bp, zp = weights.weight, weights.bias, 0 if addend is None else addend[0]
    buffers = TuningBuffers(xp, wp, bp, yp, zp)
    graph = context.library.get(geometry, buffers)
    if not graph.fused and (addend is not None or geometry.act != "none"):
        # no engine adds the addend or applies the activation: the convolution and bias alone (if an engine fuses
        # those), and our kernel does the rest
        graph = context.library.get(replace(geometry, act="none", addend_strides=None), buffers)
    handle = context.handles[k]
    y = (yp, y_dims, y_strides)
    after: list[Callable[[], None]] = []
    if not graph.fused:  # the bias (and the activation, unless an addend comes first) by our pointwise kernel
        after.append(pointwise_call(context, k, y, y, (bp, y_dims, (0, 1, 0, 0)), "add",
                                    conv.act if addend is None else "none"))
    if addend is not None and graph.geometry.addend_strides is None:
        after.append(pointwise_call(context, k, y, y, addend, "add", conv.act))
    elif graph.fused and graph.geometry.act != conv.act:  # an activation cuDNN has no node for, in place after it
        after.append(pointwise_call(context, k, y, y, None, "none", conv.act))

    def call(workspace: int) -> None:
        graph.execute(handle, xp, wp, bp, yp, workspace, zp)
        for launch in after:
            launch()

    return TaskLaunch(call, ("pointwise",) * len(after), graph)


def _pool(context: LaunchContext, task: PoolTask, k: int) -> TaskLaunch:
    call = pooling.PoolCall(_operand(context, task.x), _operand(context, task.y), task.pool)
    # As for depthwise convolutions: a fast NHWC kernel where channels are innermost and offsets fit 32 bits
    # (4-element vectors where aligned), else the generic one, chosen once per task on the host (see engine.pooling).
    launch = pooling.launch(call, context.multiprocessors)
    return _chosen(context, k, "pool", context.kernels.pool, launch)


_LAUNCHERS: dict[type, Callable[[LaunchContext, Task, int], TaskLaunch]] = {
    ConvTask: _conv,
    PoolTask: _pool,
    PointwiseTask: _pointwise,
    ShuffleTask: _shuffle,
    PadTask: _pad,
    NormTask: _norm,
    ExciteTask: _excite,
}
