"""Convolutions through the cuDNN graph API: one graph per distinct geometry, cached, optionally autotuned.

A geometry is everything cuDNN sees -- dims and strides of input, weight and output (a channel
slice of a larger buffer has the larger buffer's strides), padding, stride, dilation, the fused
activation and the precision -- so two convolutions with one geometry share one built graph and
differ only in the pointers they execute with. Every tensor's strides are set explicitly.

Bias, a residual addend and activation are fused into the graph (conv -> bias -> add -> act) when some engine
supports it; otherwise the graph is the convolution alone and the caller applies bias, addend and activation
with our pointwise kernel (``ConvGraph.fused`` says which). Where a graph with the addend or activation finds no
engine, the caller asks for the convolution with its bias alone, and applies the rest itself.

Engine choice: ``autotune=False`` takes cuDNN's heuristic (mode A, then fallback) first plan
that builds; ``autotune=True`` builds every candidate, times each inside a captured CUDA graph,
and keeps the fastest -- remembered in a `TuneCache` (`ios_core.engine.tunecache`: a JSON file when given
a path) by GPU, driver, CUDA and cuDNN version and geometry, so the next build of the same geometry only
builds the winner. One `ConvLibrary` per autotuning setting and tune cache serves the whole process
(`conv_library`): every plan and stage plan shares its graphs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from functools import cache
from typing import Any

import cudnn
import pycuda.driver as drv

from ios_core.engine.elements import element_of
from ios_core.engine.gpu import device
from ios_core.engine.gpu.environment import environment
from ios_core.engine.gpu.timing import Replays
from ios_core.engine.options import PlanOptions
from ios_core.engine.tunecache import CANDIDATE_REPLAYS, CANDIDATE_RUNS, WORKSPACE_LIMIT, TuneCache
from ios_core.timing import Timing

CANDIDATE_TIMING = Timing(warmup=1, number=CANDIDATE_REPLAYS * CANDIDATE_RUNS, repeat=1)
"""How a candidate engine is timed: `CANDIDATE_RUNS` runs captured in a graph, replayed `CANDIDATE_REPLAYS` times."""

def _hard_sigmoid(g: Any, y: Any) -> Any:
    """``clip(y / 6 + 1/2, 0, 1)``, its two constants passed by value."""
    f32 = cudnn.data_type.FLOAT
    scaled = g.add(a=g.mul(a=y, b=g.tensor_scalar(1.0 / 6.0, f32)), b=g.tensor_scalar(0.5, f32))
    return g.relu(input=scaled, lower_clip=0.0, upper_clip=1.0, name="act")


CUDNN_ACTIVATIONS: dict[str, Callable[[Any, Any], Any]] = {
    "relu": lambda g, y: g.relu(input=y, name="act"),
    "relu6": lambda g, y: g.relu(input=y, lower_clip=0.0, upper_clip=6.0, name="act"),
    "sigmoid": lambda g, y: g.sigmoid(input=y, name="act"),
    "tanh": lambda g, y: g.tanh(input=y, name="act"),
    "silu": lambda g, y: g.swish(input=y, name="act"),  # SWISH_FWD, beta 1
    "gelu": lambda g, y: g.gelu(input=y, name="act"),  # GELU_FWD: the erf form
    "gelu_tanh": lambda g, y: g.gelu_approx_tanh(input=y, name="act"),
    "hardsigmoid": _hard_sigmoid,
    "hardswish": lambda g, y: g.mul(a=y, b=_hard_sigmoid(g, y), name="hardswish"),
}
"""The activations a convolution's cuDNN graph applies after its bias (and addend), by the pointwise nodes that
compute each: one node where cuDNN has a mode for it, a chain for ``hardsigmoid`` and ``hardswish`` (which it has
not). Where no engine runs a graph with its activation, the launcher builds the convolution with its bias alone and
runs the activation with our pointwise kernel, in place, right after (`ios_core.engine.gpu.launch`).
"""


def padding_supported(options: PlanOptions) -> PlanOptions:
    """``options``, with `PlanOptions.pad_asymmetric` set where this cuDNN frontend's ``conv_fprop`` takes no
    ``pre_padding`` and ``post_padding`` (older ones take one ``padding`` for both sides)."""
    conv_fprop = getattr(getattr(cudnn, "pygraph", None), "conv_fprop", None)
    if options.pad_asymmetric or "post_padding" in (getattr(conv_fprop, "__doc__", None) or ""):
        return options
    return replace(options, pad_asymmetric=True)


def fused_activation(act: str) -> str:
    """The activation the convolution's cuDNN graph applies: ``act`` when the graph can, else none."""
    return act if act in CUDNN_ACTIVATIONS else "none"


@dataclass(frozen=True)
class Geometry:
    """What a cuDNN convolution graph is built for (dims and strides in N, C, H, W order)."""

    x_dims: tuple[int, ...]
    x_strides: tuple[int, ...]
    w_dims: tuple[int, ...]
    w_strides: tuple[int, ...]
    y_dims: tuple[int, ...]
    y_strides: tuple[int, ...]
    padding: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    act: str
    precision: str
    padding_end: tuple[int, int] | None = None  # bottom and right, when they differ from ``padding``
    addend_strides: tuple[int, ...] | None = None  # of a tensor of ``y_dims`` added before the activation, if any

    @property
    def bias_strides(self) -> tuple[int, ...]:
        k = self.y_dims[1]
        return (k, 1, k, k) if self.y_strides[1] == 1 else (k, 1, 1, 1)

    def key(self) -> str:
        fields = asdict(self)
        for name in ("padding_end", "addend_strides"):  # keys made before these existed stay valid without them
            if fields[name] is None:
                del fields[name]
        return json.dumps(fields, sort_keys=True)


@dataclass
class ConvGraph:
    """A built cuDNN graph, its five tensors, and what running it needs."""

    geometry: Geometry
    graph: object
    tensors: tuple  # X, W, B and Z (each None when not fused, Z also without an addend), Y
    fused: bool
    workspace: int
    engine: str
    tuned_ms: float | None = None
    heuristic_ms: float | None = None

    def execute(self, handle: object, x: int, w: int, b: int, y: int, workspace: int, z: int = 0) -> None:
        X, W, B, Z, Y = self.tensors
        pack = {X: x, W: w, Y: y} | ({} if B is None else {B: b}) | ({} if Z is None else {Z: z})
        self.graph.execute(pack, workspace, handle=handle)


def _graph(geometry: Geometry, fused: bool, handle: object) -> tuple[object, tuple]:
    # Tensors in memory (X, W, B, Y) are of the precision's element type; the convolution accumulates in float32
    # and a fused graph's intermediate values (the convolution's output before bias and activation) stay float32.
    f32 = cudnn.data_type.FLOAT
    io = getattr(cudnn.data_type, element_of(geometry.precision).cudnn)
    g = cudnn.pygraph(io_data_type=io, intermediate_data_type=f32, compute_data_type=f32, handle=handle)
    X = g.tensor(name="X", dim=list(geometry.x_dims), stride=list(geometry.x_strides), data_type=io)
    W = g.tensor(name="W", dim=list(geometry.w_dims), stride=list(geometry.w_strides), data_type=io)
    if geometry.padding_end is None:
        pads = {"padding": list(geometry.padding)}
    else:
        pads = {"pre_padding": list(geometry.padding), "post_padding": list(geometry.padding_end)}
    y = g.conv_fprop(image=X, weight=W, **pads, stride=list(geometry.stride), dilation=list(geometry.dilation),
                     compute_data_type=f32, name="conv")
    y.set_dim(list(geometry.y_dims)).set_stride(list(geometry.y_strides)).set_data_type(f32)
    B = Z = None
    if fused:
        B = g.tensor(name="B", dim=[1, geometry.y_dims[1], 1, 1], stride=list(geometry.bias_strides), data_type=io)
        y = g.bias(input=y, bias=B, name="bias")
        y.set_dim(list(geometry.y_dims)).set_stride(list(geometry.y_strides)).set_data_type(f32)
        if geometry.addend_strides is not None:
            Z = g.tensor(name="Z", dim=list(geometry.y_dims), stride=list(geometry.addend_strides), data_type=io)
            y = g.add(a=y, b=Z, name="addend")
            y.set_dim(list(geometry.y_dims)).set_stride(list(geometry.y_strides)).set_data_type(f32)
        if geometry.act != "none":
            y = CUDNN_ACTIVATIONS[geometry.act](g, y)
            y.set_dim(list(geometry.y_dims)).set_stride(list(geometry.y_strides)).set_data_type(f32)
    y.set_data_type(io).set_output(True)  # the last node's output is Y, in memory
    g.validate()
    g.build_operation_graph()
    g.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
    if geometry.precision == "fp32-strict":
        g.deselect_numeric_notes([cudnn.numerical_note.TENSOR_CORE])
    g.deselect_workspace_greater_than(WORKSPACE_LIMIT)
    g.check_support()
    return g, (X, W, B, Z, y)


@dataclass
class TuningBuffers:
    """Pointers a candidate runs on while it is timed: the plan's own buffers, and a workspace grown on demand."""

    x: int
    w: int
    b: int
    y: int
    z: int = 0
    workspace: drv.DeviceAllocation | None = None
    workspace_bytes: int = 0

    def grow(self, size: int) -> int:
        if size > self.workspace_bytes:
            self.workspace = drv.mem_alloc(size)
            self.workspace_bytes = size
        return int(self.workspace) if self.workspace is not None else 0


class ConvLibrary:
    """Built cuDNN convolution graphs by geometry, for one process and precision policy."""

    def __init__(self, handle: object, autotune: bool, cache: TuneCache) -> None:
        self.handle, self.autotune, self.cache = handle, autotune, cache
        self.graphs: dict[Geometry, ConvGraph] = {}
        self.stream = device.new_stream()
        cudnn.set_stream(self.handle, self.stream.handle)

    def get(self, geometry: Geometry, buffers: TuningBuffers) -> ConvGraph:
        """The graph for ``geometry``, built (and tuned on ``buffers``) the first time it is asked for."""
        if geometry not in self.graphs:
            self.graphs[geometry] = self._build(geometry, buffers)
        return self.graphs[geometry]

    def _build(self, geometry: Geometry, buffers: TuningBuffers) -> ConvGraph:
        errors = []
        for fused in (True, False):
            try:
                g, tensors = _graph(geometry, fused, self.handle)
            except Exception as error:  # noqa: BLE001 -- cuDNN declines with several exception types
                errors.append(f"{'fused' if fused else 'conv only'}: {error}")
                continue
            conv = ConvGraph(geometry, g, tensors, fused, 0, "")
            try:
                return self._select(conv, buffers)
            except Exception as error:  # noqa: BLE001
                errors.append(f"{'fused' if fused else 'conv only'}: {error}")
        hint = "" if geometry.padding_end is None else " (PlanOptions(pad_asymmetric=True) pads it symmetrically)"
        raise RuntimeError(f"cuDNN cannot run convolution {geometry}{hint}: " + "; ".join(errors))

    def _select(self, conv: ConvGraph, buffers: TuningBuffers) -> ConvGraph:
        g = conv.graph
        key = self.cache.key(conv.fused, conv.geometry.key())
        known = self.cache.entries.get(key)
        names = [g.get_plan_name_at_index(i) for i in range(g.get_execution_plan_count())]
        if self.autotune and known is not None and known["engine"] in names:
            g.build_plan_at_index(names.index(known["engine"]))
            conv.tuned_ms, conv.heuristic_ms = known.get("ms"), known.get("heuristic_ms")
        elif self.autotune:
            drv.Context.synchronize()  # candidates are timed on an idle GPU, not beside a stage being profiled
            times = self._time_candidates(conv, buffers, len(names))
            if not times:
                raise RuntimeError("no candidate plan built and ran")
            best = min(times, key=times.get)
            g.build_plan_at_index(best)
            conv.tuned_ms, conv.heuristic_ms = times[best], times[min(times)]
            self.cache.entries[key] = {"engine": names[best], "ms": times[best], "heuristic_ms": conv.heuristic_ms}
        else:
            g.build_plans()
        conv.engine = g.get_plan_name_at_index(g._plan_index) if hasattr(g, "_plan_index") else ""
        conv.workspace = g.get_workspace_size()
        return conv

    def _time_candidates(self, conv: ConvGraph, buffers: TuningBuffers, count: int) -> dict[int, float]:
        """Milliseconds per execution of every candidate that builds and runs, each timed in a CUDA graph."""
        times = {}
        start, end = drv.Event(), drv.Event()
        for index in range(count):
            try:
                conv.graph.build_plan_at_index(index)
                workspace = buffers.grow(conv.graph.get_workspace_size())

                def enqueue(workspace: int = workspace) -> None:
                    for _ in range(CANDIDATE_RUNS):
                        conv.execute(self.handle, buffers.x, buffers.w, buffers.b, buffers.y, workspace, buffers.z)

                captured = device.CapturedGraph(self.stream, enqueue)
                # one warm-up launch (it uploads the graph), then one sample of every replay
                replays = Replays(captured.launch, self.stream, CANDIDATE_TIMING, (start, end), copies=CANDIDATE_RUNS)
                times[index] = replays.samples()[0]
                captured.close()
            except Exception:  # noqa: BLE001 -- a candidate that fails to build, capture or run is skipped
                self.stream.synchronize()
                continue
        return times


@cache
def conv_library(autotune: bool, tune_cache: str | None) -> ConvLibrary:
    """The process's library for one autotuning setting and tune cache, made on first use."""
    device.device_context()  # the handle belongs to the current context: make it first
    return ConvLibrary(cudnn.create_handle(), autotune, TuneCache.load(tune_cache, environment()))
