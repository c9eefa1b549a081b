"""An executable plan on the current GPU: a `Program` with its arena, weights, streams and launches.

`build_plan` lowers the stages, allocates one arena and one weight buffer (every convolution's pack,
`ios_core.engine.packing`), creates one non-blocking stream, cuDNN handle and workspace per concurrent
group, and prepares every launch (`ios_core.engine.gpu.launch`, building -- or fetching -- one cuDNN graph
per convolution geometry). Nothing is allocated, set or synchronized after that: `Plan.enqueue` only
launches, so it can run eagerly (debugging) or be captured once into a CUDA graph (`Plan.capture`) and
replayed (`Plan.replay`).

A plan stores tensors in its precision's element type (`ios_core.engine.elements`); its input and output at the
API are float32 numpy whatever it is. In a 16-bit plan they pass through float32 copies on the device (`Boundary`),
converted by our kernel at the start and the end of every run -- inside the captured graph, so that a timed replay
pays for them as a user's call does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import cudnn
import numpy as np
import pycuda.driver as drv

from ios_core.engine.dependencies import waits
from ios_core.engine.elements import Element, element_of
from ios_core.engine.gpu import device
from ios_core.engine.gpu.convs import conv_library, padding_supported
from ios_core.engine.gpu.launch import (
    Bound,
    ExactLaunches,
    LaunchContext,
    Launches,
    WeightAddress,
    bind,
    launch_stats,
    prepare_program,
    workspace_sizes,
)
from ios_core.engine.lower import conv_params, lower_planned
from ios_core.engine.options import PlanOptions
from ios_core.engine.packing import lay_out, ours, pack
from ios_core.engine.program import Program, WeightKey
from ios_core.ir import Graph
from ios_core.schedule import Schedule, Stage
from ios_core.weights import Params, make_weights


class Plan:
    """A program ready to run on the GPU: its own arena, weights, streams, workspaces and events, and the launches
    of a `LaunchContext` over them (see the module docstring)."""

    def __init__(self, graph: Graph, program: Program, precision: str, weights: dict[str, Params],
                 options: PlanOptions) -> None:
        started = time.perf_counter()
        self.graph, self.program, self.precision, self.options = graph, program, precision, options
        self.element = element_of(precision)
        current, kernels = device.device_context(), device.kernels(options.kernel_dir, self.element)
        library = conv_library(options.autotune, options.tune_cache)
        self.arena = drv.mem_alloc(max(program.arena_bytes, 256))
        streams = tuple(device.new_stream() for _ in range(program.streams))
        handles = tuple(cudnn.create_handle() for _ in streams)
        for handle, stream in zip(handles, streams, strict=True):
            cudnn.set_stream(handle, stream.handle)
        self.weights, at, weight_bytes = upload_weights(graph, program, weights, options.own_depthwise, self.element)
        self.context = LaunchContext(program, precision, options.own_depthwise, current.multiprocessors, kernels,
                                     library, streams, handles, int(self.arena), at)
        self.randomize()  # convolutions are autotuned on the plan's own buffers: random, never zeros
        prepared = prepare_program(self.context, options.combine_pointwise)
        sizes = workspace_sizes(prepared, len(streams))
        self.workspaces = [drv.mem_alloc(size) if size else None for size in sizes]
        self.launches = _launches(program, bind(prepared, [device.address(w) for w in self.workspaces]), streams,
                                  options.barrier)
        self.stats = replace(launch_stats(prepared, len(library.graphs)), arena_bytes=program.arena_bytes,
                             weight_bytes=weight_bytes, workspace_bytes=sum(sizes))
        self.boundary = _boundary(graph, program, kernels, int(self.arena), streams[0])
        self.captured: device.CapturedGraph | None = None
        library.cache.save()
        self.poison()
        self.stats.build_s = time.perf_counter() - started

    @property
    def streams(self) -> tuple[drv.Stream, ...]:
        return self.context.streams

    # ---- running ----------------------------------------------------------------------------

    def enqueue(self) -> None:
        """Launch the whole program on the plan's streams (eagerly, or into a capture), between the conversions of
        its input and output where it has a `Boundary`."""
        if self.boundary is not None:
            self.boundary.enter()
        self.launches.enqueue()
        if self.boundary is not None:
            self.boundary.leave()

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
        staging = () if self.boundary is None else (self.boundary.x, self.boundary.y)
        for memory in (self.arena, self.weights, *self.workspaces, *staging):
            if memory is not None:
                memory.free()

    def randomize(self, seed: int = 1) -> None:
        """Fill the arena with values in [-1, 1) (of its element type)."""
        device.fill_random(self.context.kernels, int(self.arena), self.program.arena_bytes, seed)

    def poison(self) -> None:
        """Fill the arena with NaN, so that a read of memory nothing wrote shows in the output."""
        if self.element.itemsize == 4:
            drv.memset_d32(self.arena, self.element.nan, self.program.arena_bytes // 4)
        else:
            drv.memset_d16(self.arena, self.element.nan, self.program.arena_bytes // 2)

    def write(self, name: str, array: np.ndarray) -> None:
        """Set input ``name`` (NCHW; it must fill its buffer) before a run."""
        view = self.program.values[name]
        if view.channel != 0 or view.channels != self.program.buffers[view.buffer].channels:
            raise ValueError(f"input {name!r} is a slice of a larger buffer; fill that buffer instead")
        self.fill(view.buffer, array)

    def fill(self, buffer: int, array: np.ndarray) -> None:
        """Upload a whole buffer from an NCHW array (rounded to the element type on the host)."""
        host = self.element.to_storage(_layout_order(np.asarray(array, np.float32), self.program.layout))
        if host.nbytes != self.program.buffer_bytes(buffer):
            raise ValueError(f"buffer {buffer} holds {self.program.buffer_bytes(buffer)} bytes, not {host.nbytes}")
        drv.memcpy_htod(int(self.arena) + self.program.offsets[buffer], host)

    def read(self, name: str) -> np.ndarray:
        """The value of node ``name`` (NCHW float32) after a run."""
        view = self.program.values[name]
        host = np.empty(self._shape(view.buffer), self.element.host)
        drv.memcpy_dtoh(host, int(self.arena) + self.program.offsets[view.buffer])
        return self._slice(self.element.to_float32(host), name)

    def _shape(self, buffer: int) -> tuple[int, int, int, int]:
        """A buffer's shape in memory order (NHWC or NCHW)."""
        buf, n = self.program.buffers[buffer], self.program.batch
        if self.program.layout == "nhwc":
            return n, buf.height, buf.width, buf.channels
        return n, buf.channels, buf.height, buf.width

    def _slice(self, host: np.ndarray, name: str) -> np.ndarray:
        """Node ``name``'s channels of its whole buffer ``host`` (memory order), as NCHW."""
        view = self.program.values[name]
        nchw = host.transpose(0, 3, 1, 2) if self.program.layout == "nhwc" else host
        return np.ascontiguousarray(nchw[:, view.channel:view.channel + view.channels])

    def __call__(self, x: np.ndarray, graph_mode: bool = True) -> np.ndarray:
        """The network's output for input batch ``x`` (float32 in and out): a CUDA-graph replay, or an eager run."""
        if self.boundary is None:
            self.write(self.graph.input.name, x)
        else:
            host = _layout_order(np.asarray(x, np.float32), self.program.layout)
            if host.size != self.boundary.x_elements:
                raise ValueError(f"input of {host.size} elements for a buffer of {self.boundary.x_elements}")
            drv.memcpy_htod(self.boundary.x, host)
        if graph_mode:
            self.replay()
        else:
            self.enqueue()
        self.synchronize()
        if self.boundary is None:
            return self.read(self.graph.output)
        out = np.empty(self._shape(self.program.values[self.graph.output].buffer), np.float32)
        drv.memcpy_dtoh(out, self.boundary.y)
        return self._slice(out, self.graph.output)


def _layout_order(nchw: np.ndarray, layout: str) -> np.ndarray:
    """An NCHW array in the plan's memory order."""
    return np.ascontiguousarray(nchw.transpose(0, 2, 3, 1) if layout == "nhwc" else nchw)


@dataclass(frozen=True)
class Boundary:
    """A 16-bit plan's float32 input and output on the device: ``x`` holds the input buffer's elements, ``y`` the
    output's buffer's (memory order), and ``enter`` and ``leave`` enqueue their conversions on stream 0."""

    x: drv.DeviceAllocation
    y: drv.DeviceAllocation
    x_elements: int
    enter: Callable[[], None]
    leave: Callable[[], None]


def _boundary(graph: Graph, program: Program, kernels: device.Kernels, arena: int,
              stream: drv.Stream) -> Boundary | None:
    """The plan's `Boundary` when its arena holds 16-bit elements and it computes the network from its input to its
    output (a stage plan has neither, and a float32 plan reads and writes its arena directly); else None."""
    names = (graph.input.name, graph.output)
    if kernels.element.name == "float32" or not all(name in program.values for name in names):
        return None
    x, y = (program.values[name].buffer for name in names)
    if program.values[names[0]].channels != program.buffers[x].channels:
        raise ValueError(f"input {names[0]!r} is a slice of a larger buffer; the input conversion fills whole buffers")
    sizes = [program.buffers[b].elements(program.batch) for b in (x, y)]
    staging = [drv.mem_alloc(4 * size) for size in sizes]
    block = (device.BLOCK, 1, 1)

    def converter(function: drv.Function, source: int, target: int, n: int) -> Callable[[], None]:
        return lambda: function.prepared_async_call(device.grid(n), block, stream, source, target, n)

    return Boundary(staging[0], staging[1], sizes[0],
                    converter(kernels.convert_in, int(staging[0]), arena + program.offsets[x], sizes[0]),
                    converter(kernels.convert_out, arena + program.offsets[y], int(staging[1]), sizes[1]))


def _launches(program: Program, stages: Bound, streams: tuple[drv.Stream, ...],
              barrier: str) -> Launches | ExactLaunches:
    """The bound launches ordered by stage barriers or by exact dependencies (`PlanOptions.barrier`)."""
    if barrier == "exact":
        order = waits(program)
        events = {group: device.new_event() for group in sorted(order.recorded)}
        return ExactLaunches(stages, streams, order, events, device.new_event())
    # events only where a stage has several streams: a fork, and a join per side stream
    forks = tuple(device.new_event() if len(stage) > 1 else None for stage in program.stages)
    joins = tuple(tuple(device.new_event() for _ in stage) if len(stage) > 1 else () for stage in program.stages)
    return Launches(stages, streams, forks, joins)


def upload_weights(graph: Graph, program: Program, weights: dict[str, Params], own_depthwise: bool,
                   element: Element) -> tuple[drv.DeviceAllocation, dict[WeightKey, WeightAddress], int]:
    """Every convolution's (and LayerNorm's) pack in ``element`` in one GPU buffer: the buffer, each weight key's
    addresses, and the bytes used."""
    tasks = program.weighted()
    packs = [pack(conv_params(graph, weights, key), program.layout, ours(t, own_depthwise), element)
             for key, t in tasks.items()]
    host, offsets, used = lay_out(packs)
    memory = drv.to_device(host)
    at = {key: WeightAddress.of(p, int(memory) + offset) for key, p, offset in zip(tasks, packs, offsets, strict=True)}
    return memory, at, used


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
        One of `ios_core.engine.elements.ENGINE_PRECISIONS`: ``"fp32"`` (TF32 tensor cores allowed in
        convolutions), ``"fp32-strict"``, ``"fp16"`` or ``"bf16"`` (16-bit tensors, float32 accumulation).
    weights
        Parameters by node (`ios_core.weights.make_weights`); seed-0 weights when omitted.
    options
        Layout, autotuning and paths (`PlanOptions`).
    """
    element = element_of(precision)  # refuses a precision the engine does not implement
    options = padding_supported(options or PlanOptions())
    weights = weights if weights is not None else make_weights(graph)
    program = lower_planned(graph, stages, batch, options, element.itemsize, options.schedule)
    plan = Plan(graph, program, precision, weights, options)
    rng = np.random.default_rng(0)
    for index in dict.fromkeys(program.values[name].buffer for name in program.inputs):
        buf = program.buffers[index]  # random inputs: never time zeros (or NaN)
        plan.fill(index, rng.standard_normal((batch, buf.channels, buf.height, buf.width)))
    return plan
