"""The engine: runs a graph under a schedule on an NVIDIA GPU, every stage's groups on their own streams.

Two halves, one per folder. This package is the half that runs anywhere and imports nothing beyond
numpy: `lower` makes a `Program` (buffers in one arena, channel-slice views, tasks per stream; `placement`
and `memory` decide where values live), `dependencies` finds which earlier groups each group must follow,
`simulate` runs it with numpy, `elements` says how each precision stores tensors (float32, or 16 bits with float32
arithmetic), `packing` lays out weights, `depthwise`, `pooling`, `excitation` and `channelwise` (pads,
norms over channels, shuffles, the pointwise kernel's arguments) choose our kernels' launches, `profile` is the
CPU half of stage profiling and `tunecache` keeps autotuning winners. The GPU half, ``ios_core.engine.gpu``,
imports PyCUDA and the cuDNN frontend; the four functions below import it only when called, so
``import ios_core.engine`` works anywhere and touches no GPU:

    plan = build_plan(graph, schedule, batch, "fp32", weights, PlanOptions())  # or fp32-strict, fp16, bf16
    y = plan(x)                    # upload, one CUDA-graph replay, download (plan(x, graph_mode=False): eager)
    m = latency(plan, Timing())    # median of 6 means of 6 replays, with GPU, driver, cuDNN and clocks

A stage alone is a plan too -- what the measured cost needs:
``build_plan(graph, [stage], batch, precision, weights, PlanOptions(schedule=schedule))``
allocates the stage's inputs (random values), runs its groups on their streams, and is timed by
the same `latency`. `gpu_profiler` times thousands of stages so, on memory shared between them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ios_core.engine.lower import LoweringError, conv_params, lower, unplanned_bytes
from ios_core.engine.options import PlanOptions
from ios_core.engine.placement import Placement, place
from ios_core.engine.program import (
    LAYOUTS,
    Buffer,
    ConvTask,
    ExciteTask,
    NormTask,
    PadTask,
    PointwiseTask,
    PoolTask,
    Program,
    ProgramError,
    ShuffleTask,
    View,
    WeightKey,
    verify,
)
from ios_core.engine.simulate import simulate
from ios_core.precision import PRECISIONS

if TYPE_CHECKING:
    from ios_core.engine.gpu.plan import Plan
    from ios_core.engine.gpu.timing import Measurement
    from ios_core.engine.profile import StageProfiler
    from ios_core.ir import Graph
    from ios_core.schedule import Schedule
    from ios_core.timing import Timing
    from ios_core.weights import Params

SETTLE_MS = 50.0
"""How long a whole schedule is replayed before it is timed end to end. The search times its contenders right after
the DP's CPU-bound seconds, when the GPU's clocks have fallen towards idle (the lent H100 read 345 MHz at rest); a
few warm-up replays of a 0.1-1 ms network end before they are back up. On the H100 the search's end-to-end time
of torchvision's Inception V3 was 5% above the benchmark's for the same schedule (10 warm-up replays, 20 x 7)."""


def build_plan(*args: Any, **kwargs: Any) -> Plan:
    """Build an executable plan on the current GPU; see `ios_core.engine.gpu.plan.build_plan`."""
    from ios_core.engine.gpu.plan import build_plan as build

    return build(*args, **kwargs)


def latency(plan: Plan, timing: Timing | None = None, settle_ms: float = 0.0) -> Measurement:
    """Time CUDA-graph replays of a plan (IOS's 2 warm-up, 6 x 6 when ``timing`` is None), after ``settle_ms`` of
    replays; see `ios_core.engine.gpu.timing.latency`."""
    from ios_core.engine.gpu.timing import latency as measure

    return measure(plan, timing, settle_ms)


def gpu_profiler(graph: Graph, batch: int, precision: str = "fp32", weights: dict[str, Params] | None = None,
                 options: PlanOptions | None = None, timing: Timing | None = None) -> StageProfiler:
    """A stage profiler on the current GPU; see `ios_core.engine.gpu.stageplan.gpu_profiler`."""
    from ios_core.engine.gpu.stageplan import gpu_profiler as profiler

    return profiler(graph, batch, precision, weights, options, timing)


def end_to_end_latency(graph: Graph, schedule: Schedule, batch: int, precision: str = "fp32",
                       weights: dict[str, Params] | None = None, options: PlanOptions | None = None,
                       timing: Timing | None = None) -> float:
    """The median latency of a whole schedule's plan, in ms: built, replayed for `SETTLE_MS`, timed by `latency`,
    freed (what the measured cost's end-to-end re-ranking asks)."""
    plan = build_plan(graph, schedule, batch, precision, weights, options)
    try:
        return latency(plan, timing, SETTLE_MS).ms
    finally:
        plan.close()


def environment() -> dict[str, Any]:
    """This GPU's name, driver, CUDA and cuDNN versions and more (creates no CUDA context); see
    `ios_core.engine.gpu.environment.environment`."""
    from ios_core.engine.gpu.environment import environment as read

    return read()


__all__ = [
    "LAYOUTS", "PRECISIONS", "Buffer", "ConvTask", "ExciteTask", "LoweringError", "NormTask", "PadTask", "Placement",
    "PlanOptions", "PointwiseTask", "PoolTask", "Program", "ProgramError", "ShuffleTask", "View", "WeightKey",
    "build_plan", "conv_params", "end_to_end_latency", "environment", "gpu_profiler", "latency", "lower", "place",
    "simulate", "unplanned_bytes", "verify",
]
