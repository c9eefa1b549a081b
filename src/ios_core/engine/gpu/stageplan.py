"""The GPU backend of stage profiling: a one-stage plan built on shared resources, captured and timed.

Building a whole `Plan` per candidate stage would allocate an arena, streams, cuDNN handles,
workspaces and weights thousands of times. Here everything a plan holds is made once per process
and lent to each `StagePlan`:

- `Resources` (one per process): streams, one cuDNN handle per stream, per-stream workspaces, one
  arena of random values, events -- each grown when a stage needs more, never shrunk;
- `WeightStore` (one per graph): each convolution's weights uploaded the first time a stage uses
  them (a merge's padded, stacked weights too), by weight key;
- the engine's `ConvLibrary` (one per process, shared with `build_plan`): one cuDNN graph per
  convolution geometry, autotuned once and remembered in the tune cache.

So a stage costs its lowering, a few prepared launches, one capture and the timed replays. The
arena is never poisoned: its values are random in [-1, 1) and refreshed every `REFRESH_EVERY`
stages, so no stage is ever timed on zeros, NaNs or values that grew without bound.

`GpuBackend.time_all` overlaps the host and the GPU: while the GPU replays stage k, the host
builds and captures stage k+1 (capturing records work without running it). Nothing that runs on
the GPU may start beside the replays being timed, so each such step waits for them first:
growing or refreshing the arena, growing a workspace (`Resources.settle`), and autotuning a new
convolution geometry (`ios_core.engine.gpu.convs`). Uploading a new weight only uses the copy engine.

A `StagePlan` composes the same launch layer as a whole `Plan` (`ios_core.engine.gpu.launch`) over the
borrowed memory; `gpu_profiler` pairs `GpuBackend` with the CPU half of profiling
(`ios_core.engine.profile.StageProfiler`).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from functools import cache

import cudnn
import pycuda.driver as drv

from ios_core.engine.elements import Element, element_of
from ios_core.engine.gpu import device
from ios_core.engine.gpu.convs import conv_library, padding_supported
from ios_core.engine.gpu.launch import (
    LaunchContext,
    Launches,
    WeightAddress,
    bind,
    prepare_program,
    workspace_sizes,
)
from ios_core.engine.gpu.timing import Replays
from ios_core.engine.lower import conv_params
from ios_core.engine.memory import align
from ios_core.engine.options import PlanOptions
from ios_core.engine.packing import ours, pack
from ios_core.engine.profile import StageProfiler
from ios_core.engine.program import ARENA_ALIGNMENT, Program, Weighted, WeightKey
from ios_core.ir import Graph
from ios_core.timing import Timing
from ios_core.weights import Params, make_weights

REFRESH_EVERY = 64  # stages between two refills of the arena with random values
MIN_ARENA = 16 << 20  # bytes


class Resources:
    """Streams, cuDNN handles, workspaces, events and an arena of one element type, grown on demand and lent to stage
    plans."""

    def __init__(self, kernel_dir: str | None, element: Element) -> None:
        self.context = device.device_context()
        self.kernels = device.kernels(kernel_dir, element)
        self.streams: list[drv.Stream] = []
        self.handles: list[object] = []
        self.workspace: list[drv.DeviceAllocation | None] = []
        self.workspace_bytes: list[int] = []
        self.events: list[drv.Event] = []
        self.marks: list[drv.Event] = []  # timing events between replays
        self.memory: drv.DeviceAllocation | None = None
        self.arena_bytes = 0
        self.uses = 0

    def lend_streams(self, count: int) -> tuple[list[drv.Stream], list[object]]:
        while len(self.streams) < count:
            stream, handle = device.new_stream(), cudnn.create_handle()
            cudnn.set_stream(handle, stream.handle)
            self.streams.append(stream)
            self.handles.append(handle)
            self.workspace.append(None)
            self.workspace_bytes.append(0)
        return self.streams[:count], self.handles[:count]

    def lend_events(self, count: int) -> list[drv.Event]:
        while len(self.events) < count:
            self.events.append(device.new_event())
        return self.events[:count]

    def lend_marks(self, count: int) -> list[drv.Event]:
        while len(self.marks) < count:
            self.marks.append(drv.Event())
        return self.marks[:count]

    def settle(self) -> None:
        """Wait for all work in flight: memory it uses is about to change, or the GPU to be used beside it."""
        self.context.context.synchronize()

    def lend_workspaces(self, sizes: list[int]) -> list[drv.DeviceAllocation | None]:
        """Per-stream workspaces of at least ``sizes`` bytes."""
        for k, size in enumerate(sizes):
            if size > self.workspace_bytes[k]:
                self.settle()
                if self.workspace[k] is not None:
                    self.workspace[k].free()
                self.workspace[k] = drv.mem_alloc(size)
                self.workspace_bytes[k] = size
        return [self.workspace[k] if size else None for k, size in enumerate(sizes)]

    def lend_arena(self, nbytes: int) -> drv.DeviceAllocation:
        """An arena of at least ``nbytes`` bytes of random values."""
        if nbytes > self.arena_bytes:
            self.settle()
            if self.memory is not None:
                self.memory.free()
            self.arena_bytes = max(align(nbytes, ARENA_ALIGNMENT), 2 * self.arena_bytes, MIN_ARENA)
            self.memory = drv.mem_alloc(self.arena_bytes)
            self.randomize()
        elif self.uses % REFRESH_EVERY == 0:
            self.settle()
            self.randomize()
        self.uses += 1
        return self.memory

    def randomize(self, seed: int = 1) -> None:
        """Fill the arena with values in [-1, 1) of its element type, other ones each time it is refreshed."""
        device.fill_random(self.kernels, int(self.memory), self.arena_bytes, seed + self.uses)


@cache
def resources(kernel_dir: str | None, element: Element) -> Resources:
    """The process's one `Resources` per element type (like the engine's convolution library, made on first use)."""
    return Resources(kernel_dir, element)


class WeightStore:
    """Every convolution weight of one graph on the GPU, uploaded the first time a stage needs it."""

    def __init__(self, graph: Graph, weights: dict[str, Params], layout: str, own_depthwise: bool,
                 element: Element) -> None:
        self.graph, self.params, self.layout, self.own_depthwise = graph, weights, layout, own_depthwise
        self.element = element
        self.at: dict[WeightKey, WeightAddress] = {}
        self._memory: list[drv.DeviceAllocation] = []

    def get(self, key: WeightKey, task: Weighted) -> WeightAddress:
        """Where the weights of ``key``, which ``task`` reads (a convolution, LayerNorm or squeeze-and-excitation),
        are."""
        found = self.at.get(key)
        if found is None:
            packed = pack(conv_params(self.graph, self.params, key), self.layout, ours(task, self.own_depthwise),
                          self.element)
            memory = drv.to_device(packed.host)
            self._memory.append(memory)
            found = self.at[key] = WeightAddress.of(packed, int(memory))
        return found


class StagePlan:
    """One lowered stage on borrowed `Resources` and a `WeightStore`: a `LaunchContext` over them and its launches.

    `close` returns nothing to the lenders: only the captured graph is the stage plan's own.
    """

    def __init__(self, program: Program, precision: str, store: WeightStore, options: PlanOptions,
                 pool: Resources) -> None:
        self.program, self.precision = program, precision
        library = conv_library(options.autotune, options.tune_cache)
        arena = pool.lend_arena(program.arena_bytes)
        streams, handles = pool.lend_streams(program.streams)
        weights = {key: store.get(key, t) for key, t in program.weighted().items()}
        self.context = LaunchContext(program, precision, options.own_depthwise, pool.context.multiprocessors,
                                     pool.kernels, library, tuple(streams), tuple(handles), int(arena), weights)
        prepared = prepare_program(self.context, options.combine_pointwise)
        workspaces = pool.lend_workspaces(workspace_sizes(prepared, len(streams)))
        width = max((len(stage) for stage in program.stages), default=1)
        events = pool.lend_events(width + 1) if width > 1 else []
        forks = tuple(events[0] if len(stage) > 1 else None for stage in program.stages)
        joins = tuple(tuple(events[1:len(stage) + 1]) if len(stage) > 1 else () for stage in program.stages)
        self.launches = Launches(bind(prepared, [device.address(w) for w in workspaces]), tuple(streams), forks, joins)
        self.captured: device.CapturedGraph | None = None

    @property
    def streams(self) -> tuple[drv.Stream, ...]:
        return self.context.streams

    def capture_runs(self, number: int) -> device.CapturedGraph:
        """One CUDA graph running the stage ``number`` times back to back (work in flight may go on meanwhile)."""
        self.captured = device.CapturedGraph(self.streams[0], self.launches.enqueue, copies=number)
        return self.captured

    def close(self) -> None:
        """Destroy the captured graph; the borrowed memory, streams and handles stay with their owners."""
        if self.captured is not None:
            self.streams[0].synchronize()
            self.captured.close()
            self.captured = None


class _Timed:
    """A captured stage and its replays in flight (`Replays`): its milliseconds per run once they are done."""

    def __init__(self, plan: StagePlan, timing: Timing, marks: list[drv.Event]) -> None:
        self.plan = plan
        self.replays = Replays(plan.captured.launch, plan.streams[0], timing, marks, copies=timing.number)

    def result(self) -> float:
        """Milliseconds per run of the median sample (waits for the replays; closes the stage plan whatever happens).

        The median is taken before dividing by ``number``, as every shipped stage profile was computed.
        """
        try:
            elapsed = self.replays.elapsed()
        finally:
            self.plan.close()
        return statistics.median(elapsed) / self.replays.number


class GpuBackend:
    """Times one-stage programs of one graph on the current GPU (the `Backend` of `gpu_profiler`)."""

    def __init__(self, graph: Graph, precision: str, weights: dict[str, Params] | None, options: PlanOptions) -> None:
        self.precision, self.options = precision, options
        element = element_of(precision)
        self.pool = resources(options.kernel_dir, element)
        weights = weights if weights is not None else make_weights(graph)
        self.store = WeightStore(graph, weights, options.layout, options.own_depthwise, element)
        self.library = conv_library(options.autotune, options.tune_cache)
        self._tuned = len(self.library.cache.entries)

    def time_all(self, programs: Iterator[Program], timing: Timing) -> Iterator[float | Exception]:
        """Each program's milliseconds per run, or its error; the next is built while the GPU times this one."""
        running: _Timed | None = None
        for program in programs:
            try:
                plan = self._capture(program, timing)
            except Exception as error:  # noqa: BLE001 -- handed back: the profiler records it against the stage
                plan = error
            if running is not None:
                yield self._result(running)
                running = None
            if isinstance(plan, Exception):
                yield plan
                continue
            try:
                running = _Timed(plan, timing, self.pool.lend_marks(timing.repeat + 1))
            except Exception as error:  # noqa: BLE001
                plan.close()
                yield error
        if running is not None:
            yield self._result(running)

    @staticmethod
    def _result(running: _Timed) -> float | Exception:
        try:
            return running.result()
        except Exception as error:  # noqa: BLE001
            return error

    def _capture(self, program: Program, timing: Timing) -> StagePlan:
        plan = StagePlan(program, self.precision, self.store, self.options, self.pool)
        try:
            plan.capture_runs(timing.number)
        except Exception:
            plan.close()
            raise
        self._save_tuning()
        return plan

    def _save_tuning(self) -> None:
        """Write the tune cache when this stage tuned a new geometry (a few dozen times per model)."""
        cache_ = self.library.cache
        if len(cache_.entries) != self._tuned:
            cache_.save()
            self._tuned = len(cache_.entries)


def gpu_profiler(graph: Graph, batch: int, precision: str = "fp32", weights: dict[str, Params] | None = None,
                 options: PlanOptions | None = None, timing: Timing | None = None) -> StageProfiler:
    """A `StageProfiler` on the current GPU.

    Every profiler of the process shares one set of streams, cuDNN handles, workspaces and arena,
    and the engine's convolution library (one cuDNN graph per geometry, autotuned once).
    """
    options = padding_supported(options or PlanOptions())
    backend = GpuBackend(graph, precision, weights, options)  # refuses a precision the engine does not implement
    return StageProfiler(graph, batch, backend, timing, options, element_of(precision).itemsize)
