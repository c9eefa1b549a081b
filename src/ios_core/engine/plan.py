"""An executable plan on the current GPU: a `Program` with its arena, weights, streams and launchers.

`build_plan` lowers the stages, allocates one arena and one weight buffer, builds (or fetches)
one cuDNN graph per convolution geometry, prepares every kernel launch, and creates one
non-blocking stream, cuDNN handle and workspace per concurrent group. Nothing is allocated,
set or synchronized after that: `Plan.enqueue` only launches, so it can run eagerly (debugging)
or be captured once into a CUDA graph (`Plan.capture`) and replayed (`Plan.replay`).

Stage semantics with the fewest events: a stage of one group runs on stream 0; a stage of
``n > 1`` groups forks from stream 0 (one event, waited on by streams ``1..n-1``) and joins back
(one event per side stream, waited on by stream 0) -- so stream 0 always holds the order, the
captured graph starts and ends on it, and no device-wide synchronization is ever used.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import cudnn
import numpy as np
import pycuda.driver as drv

from ios_core.engine import depthwise, device, pooling
from ios_core.engine.convs import ConvGraph, ConvLibrary, Geometry, TuningBuffers
from ios_core.engine.lower import conv_params, lower
from ios_core.engine.options import PlanOptions
from ios_core.engine.profile import environment
from ios_core.engine.program import (
    ACTIVATIONS,
    POINTWISE_OPS,
    ConvTask,
    PointwiseTask,
    PoolTask,
    Program,
    Task,
    View,
)
from ios_core.engine.tunecache import TuneCache
from ios_core.ir import Graph
from ios_core.precision import check_precision
from ios_core.schedule import Schedule, Stage
from ios_core.weights import Params, make_weights

_BLOCK = 256
_MAX_BLOCKS = 132 * 16


@cache
def _library(autotune: bool, tune_cache: str | None) -> ConvLibrary:
    device.device_context()  # the handle belongs to the current context: make it first
    return ConvLibrary(cudnn.create_handle(), autotune, TuneCache.load(tune_cache, environment()))


def _weight_array(params: Params, layout: str, ours: bool) -> np.ndarray:
    """The kernel as float32 in the order its strides promise: KRSC for NHWC, KCRS for NCHW.

    Our depthwise kernel (``ours``) reads C x R x S weights; in NHWC, where neighbouring threads
    take neighbouring channels, they are stored R x S x C so that a warp's loads are contiguous.
    """
    w = params["weight"].astype(np.float32)
    if ours:
        return np.ascontiguousarray(w[:, 0].transpose(1, 2, 0) if layout == "nhwc" else w[:, 0])
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1) if layout == "nhwc" else w)


def _weight_strides(dims: tuple[int, ...], layout: str) -> tuple[int, ...]:
    k, c, r, s = dims
    return (c * r * s, 1, s * c, c) if layout == "nhwc" else (c * r * s, r * s, s, 1)


def _align(n: int, alignment: int = 256) -> int:
    return -(-n // alignment) * alignment


@dataclass
class PlanStats:
    """What building the plan found: memory, convolution engines, time spent."""

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


class Plan:
    """A program ready to run on the GPU; see the module docstring."""

    def __init__(self, graph: Graph, program: Program, precision: str, weights: dict[str, Params],
                 options: PlanOptions) -> None:
        started = time.perf_counter()
        self.graph, self.program, self.precision, self.options = graph, program, precision, options
        self.context = device.device_context()
        self.kernels = device.kernels(options.kernel_dir)
        self.library = _library(options.autotune, options.tune_cache)
        self.arena = drv.mem_alloc(max(program.arena_bytes, 256))
        self.streams = [device.new_stream() for _ in range(program.streams)]
        self.handles = [cudnn.create_handle() for _ in self.streams]
        for handle, stream in zip(self.handles, self.streams, strict=True):
            cudnn.set_stream(handle, stream.handle)
        self.stats = PlanStats(arena_bytes=program.arena_bytes)
        self._upload_weights(weights)
        self.randomize()  # convolutions are autotuned on the plan's own buffers: random, never zeros
        self._conv_of: dict[ConvTask, ConvGraph] = {}
        self.launches: list[list[list[Callable[[], None]]]] = [
            [[self._launcher(task, k) for task in stream] for k, stream in enumerate(stage)] for stage in program.stages
        ]
        self._allocate_workspaces(program)
        # events only where a stage has several streams: a fork, and a join per side stream
        self.forks = [device.new_event() if len(stage) > 1 else None for stage in program.stages]
        self.joins = [[device.new_event() for _ in stage] if len(stage) > 1 else [] for stage in program.stages]
        self.captured: device.CapturedGraph | None = None
        self.library.cache.save()
        self.poison()
        self.stats.build_s = time.perf_counter() - started

    # ---- building ---------------------------------------------------------------------------

    def pointer(self, view: View) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        offset, dims, strides = self.program.locate(view)
        return int(self.arena) + offset * self.program.itemsize, dims, strides

    def _upload_weights(self, weights: dict[str, Params]) -> None:
        tasks = {t.weights: t for t in self.program.tasks if isinstance(t, ConvTask)}
        arrays, self.weight_at = [], {}
        offset = 0
        for key, task in tasks.items():
            params = conv_params(self.graph, weights, key)
            kernel = _weight_array(params, self.program.layout, task.depthwise and self.options.own_depthwise)
            bias = params["bias"].astype(np.float32)
            self.weight_at[key] = (offset, _align(offset + kernel.nbytes), params["weight"].shape)
            arrays.append((offset, kernel))
            arrays.append((_align(offset + kernel.nbytes), bias))
            offset = _align(_align(offset + kernel.nbytes) + bias.nbytes)
        host = np.zeros(max(offset, 256) // 4, np.float32)
        for start, array in arrays:
            host[start // 4:start // 4 + array.size] = array.ravel()
        self.weights = drv.to_device(host)
        self.stats.weight_bytes = offset

    def _launcher(self, task: Task, k: int) -> Callable[[], None]:
        try:
            return _LAUNCHERS[type(task)](self, task, k)
        except Exception as error:
            raise RuntimeError(f"while preparing {task} of node {task.node!r}: {error}") from error

    def workspace_sizes(self, program: Program) -> list[int]:
        """The cuDNN workspace each stream needs: the largest of its convolutions'."""
        sizes = [0] * len(self.streams)
        for stage in program.stages:
            for k, stream in enumerate(stage):
                for task in stream:
                    if task in self._conv_of:
                        sizes[k] = max(sizes[k], self._conv_of[task].workspace)
        return sizes

    def _allocate_workspaces(self, program: Program) -> None:
        sizes = self.workspace_sizes(program)
        self.workspaces = [drv.mem_alloc(size) if size else None for size in sizes]
        self.stats.workspace_bytes = sum(sizes)

    def pointwise(self, k: int, y: tuple, a: tuple, b: tuple | None, op: str, act: str) -> Callable[[], None]:
        """A prepared launch of ``y = act(a op b)``; each argument is (pointer, dims, strides)."""
        (yp, dims, ys), (ap, _, as_) = y, a
        bp, bs = (b[0], b[2]) if b is not None else (ap, as_)
        order = sorted(range(4), key=lambda d: -ys[d])  # y's fastest dimension last
        total = int(np.prod(dims))
        args = (POINTWISE_OPS[op], ACTIVATIONS[act], total, dims[order[1]], dims[order[2]], dims[order[3]],
                yp, *(ys[d] for d in order), ap, *(as_[d] for d in order), bp, *(bs[d] for d in order))
        grid = (min(-(-total // _BLOCK), _MAX_BLOCKS), 1)
        stream, fn = self.streams[k], self.kernels.pointwise
        self.stats.kernels["pointwise"] = self.stats.kernels.get("pointwise", 0) + 1
        return lambda: fn.prepared_async_call(grid, (_BLOCK, 1, 1), stream, *args)

    # ---- running ----------------------------------------------------------------------------

    def enqueue(self) -> None:
        """Launch the whole program on the plan's streams (eagerly, or into a capture)."""
        s0 = self.streams[0]
        for s, stage in enumerate(self.launches):
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

    def capture(self) -> device.CapturedGraph:
        """Capture the program into a CUDA graph once; later calls return the same graph."""
        if self.captured is None:
            self.synchronize()
            self.captured = device.CapturedGraph(self.streams[0], self.enqueue)
        return self.captured

    def replay(self) -> None:
        self.capture().launch()

    def synchronize(self) -> None:
        self.streams[0].synchronize()

    def close(self) -> None:
        """Free the captured graph and device memory now rather than at garbage collection."""
        self.synchronize()
        if self.captured is not None:
            self.captured.close()
            self.captured = None
        for memory in (self.arena, self.weights, *self.workspaces):
            if memory is not None:
                memory.free()

    def randomize(self, seed: int = 1) -> None:
        """Fill the arena with values in [-1, 1)."""
        n = self.program.arena_bytes // 4
        grid = (min(-(-n // _BLOCK), _MAX_BLOCKS), 1)
        self.kernels.fill.prepared_call(grid, (_BLOCK, 1, 1), int(self.arena), n, seed)
        self.context.context.synchronize()

    def poison(self) -> None:
        """Fill the arena with NaN, so that a read of memory nothing wrote shows in the output."""
        drv.memset_d32(self.arena, 0x7FC00000, self.program.arena_bytes // 4)

    def write(self, name: str, array: np.ndarray) -> None:
        """Set input ``name`` (NCHW; it must fill its buffer) before a run."""
        view = self.program.values[name]
        if view.channel != 0 or view.channels != self.program.buffers[view.buffer].channels:
            raise ValueError(f"input {name!r} is a slice of a larger buffer; fill that buffer instead")
        self.fill(view.buffer, array)

    def fill(self, buffer: int, array: np.ndarray) -> None:
        """Upload a whole buffer from an NCHW array."""
        host = np.asarray(array, np.float32)
        host = np.ascontiguousarray(host.transpose(0, 2, 3, 1) if self.program.layout == "nhwc" else host)
        if host.nbytes != self.program.buffer_bytes(buffer):
            raise ValueError(f"buffer {buffer} holds {self.program.buffer_bytes(buffer)} bytes, not {host.nbytes}")
        drv.memcpy_htod(int(self.arena) + self.program.offsets[buffer], host)

    def read(self, name: str) -> np.ndarray:
        """The value of node ``name`` (NCHW float32) after a run."""
        view = self.program.values[name]
        buf = self.program.buffers[view.buffer]
        n = self.program.batch
        shape = (n, buf.height, buf.width, buf.channels) if self.program.layout == "nhwc" else (
            n, buf.channels, buf.height, buf.width)
        host = np.empty(shape, np.float32)
        drv.memcpy_dtoh(host, int(self.arena) + self.program.offsets[view.buffer])
        nchw = host.transpose(0, 3, 1, 2) if self.program.layout == "nhwc" else host
        return np.ascontiguousarray(nchw[:, view.channel:view.channel + view.channels])

    def __call__(self, x: np.ndarray, graph_mode: bool = True) -> np.ndarray:
        """The network's output for input batch ``x``: a CUDA-graph replay, or an eager run."""
        self.write(self.graph.input.name, x)
        if graph_mode:
            self.replay()
        else:
            self.enqueue()
        self.synchronize()
        return self.read(self.graph.output)


def _depthwise_launcher(plan: Plan, task: ConvTask, k: int) -> Callable[[], None]:
    (xp, x_dims, xs), (yp, y_dims, ys) = plan.pointer(task.x), plan.pointer(task.y)
    w_offset, b_offset, (c, _, r, s) = plan.weight_at[task.weights]
    w_strides = (1, s * c, c) if plan.program.layout == "nhwc" else (r * s, s, 1)  # see _weight_array
    call = depthwise.DepthwiseCall(depthwise.Operand(xp, x_dims, xs), depthwise.Operand(yp, y_dims, ys),
                                   int(plan.weights) + w_offset, w_strides, int(plan.weights) + b_offset, task.conv,
                                   task.pre_act)
    # The one dispatch point: a fast NHWC kernel where the geometry allows (channels innermost, 3/5/7 kernel,
    # stride 1 or 2, 32-bit offsets; float4 where aligned), else the generic one. Chosen here, once per task on
    # the host, because the geometry and addresses are fixed when the plan is built (see engine.depthwise).
    launch = depthwise.launch(call, plan.context.multiprocessors)
    return _chosen_launcher(plan, k, "depthwise", plan.kernels.depthwise, launch)


def _chosen_launcher(plan: Plan, k: int, family: str, functions: dict[str, drv.Function],
                     launch: depthwise.Launch) -> Callable[[], None]:
    """The launch of a kernel of ``family`` chosen on the host, counted under the family and under its own name."""
    for key in (family, launch.kernel):
        plan.stats.kernels[key] = plan.stats.kernels.get(key, 0) + 1
    stream, fn = plan.streams[k], functions[launch.kernel]
    return lambda: fn.prepared_async_call(launch.grid, launch.block, stream, *launch.args)


def _conv_launcher(plan: Plan, task: ConvTask, k: int) -> Callable[[], None]:
    if task.depthwise and plan.options.own_depthwise:
        return _depthwise_launcher(plan, task, k)
    if task.pre_act != "none":
        raise ValueError("only our depthwise kernel applies an activation to its input")
    (xp, x_dims, x_strides), (yp, y_dims, y_strides) = plan.pointer(task.x), plan.pointer(task.y)
    w_offset, b_offset, w_dims = plan.weight_at[task.weights]
    conv = task.conv
    geometry = Geometry(x_dims, x_strides, tuple(w_dims), _weight_strides(tuple(w_dims), plan.program.layout),
                        y_dims, y_strides, conv.padding, conv.stride, conv.dilation, conv.act, plan.precision)
    wp, bp = int(plan.weights) + w_offset, int(plan.weights) + b_offset
    graph = plan.library.get(geometry, TuningBuffers(xp, wp, bp, yp))
    plan._conv_of[task] = graph
    plan.stats.convs += 1
    plan.stats.geometries = len(plan.library.graphs)
    plan.stats.tuned_conv_ms += graph.tuned_ms or 0.0
    plan.stats.heuristic_conv_ms += graph.heuristic_ms or 0.0
    handle = plan.handles[k]
    bias_act = None
    if not graph.fused:
        plan.stats.unfused_convs += 1
        bias = (bp, y_dims, (0, 1, 0, 0))
        bias_act = plan.pointwise(k, (yp, y_dims, y_strides), (yp, y_dims, y_strides), bias, "add", conv.act)

    def launch() -> None:
        workspace = plan.workspaces[k]
        graph.execute(handle, xp, wp, bp, yp, int(workspace) if workspace is not None else 0)
        if bias_act is not None:
            bias_act()

    return launch


def _pool_launcher(plan: Plan, task: PoolTask, k: int) -> Callable[[], None]:
    (xp, x_dims, xs), (yp, y_dims, ys) = plan.pointer(task.x), plan.pointer(task.y)
    call = pooling.PoolCall(depthwise.Operand(xp, x_dims, xs), depthwise.Operand(yp, y_dims, ys), task.pool)
    # As for depthwise convolutions: a fast NHWC kernel where channels are innermost and offsets fit 32 bits
    # (float4 where aligned), else the generic one, chosen once per task on the host (see engine.pooling).
    launch = pooling.launch(call, plan.context.multiprocessors)
    return _chosen_launcher(plan, k, "pool", plan.kernels.pool, launch)


def _pointwise_launcher(plan: Plan, task: PointwiseTask, k: int) -> Callable[[], None]:
    b = plan.pointer(task.b) if task.b is not None else None
    return plan.pointwise(k, plan.pointer(task.y), plan.pointer(task.a), b, task.op, task.act)


_LAUNCHERS: dict[type, Callable[[Plan, Task, int], Callable[[], None]]] = {
    ConvTask: _conv_launcher,
    PoolTask: _pool_launcher,
    PointwiseTask: _pointwise_launcher,
}


def build_plan(
    graph: Graph,
    stages: Schedule | Sequence[Stage],
    batch: int,
    precision: str = "fp32",
    weights: dict[str, Params] | None = None,
    options: PlanOptions | None = None,
) -> Plan:
    """An executable plan for ``stages`` of ``graph`` at ``batch`` in ``precision`` on the current GPU.

    Parameters
    ----------
    graph
        The network.
    stages
        A whole schedule, or some of its stages: a stage-only plan, whose inputs are allocated
        (and filled with random values) and whose groups run on their own streams, as the
        measured cost needs. Pass the whole schedule as ``options.schedule`` then, so the
        memory layout matches the whole plan's.
    batch
        Batch size.
    precision
        ``"fp32"`` (TF32 tensor cores allowed in convolutions) or ``"fp32-strict"``.
    weights
        Parameters by node (`ios_core.weights.make_weights`); seed-0 weights when omitted.
    options
        Layout, autotuning and paths (`PlanOptions`).
    """
    check_precision(precision)
    options = options or PlanOptions()
    weights = weights if weights is not None else make_weights(graph)
    program = lower(graph, stages, batch, options.layout, schedule=options.schedule,
                    concat_in_place=options.concat_in_place, own_depthwise=options.own_depthwise)
    plan = Plan(graph, program, precision, weights, options)
    rng = np.random.default_rng(0)
    for index in dict.fromkeys(program.values[name].buffer for name in program.inputs):
        buf = program.buffers[index]  # random inputs: never time zeros (or NaN)
        plan.fill(index, rng.standard_normal((batch, buf.channels, buf.height, buf.width)))
    return plan
