"""The engine: runs a graph under a schedule on an NVIDIA GPU, every stage's groups on their own streams.

Two halves. The CPU half is plain data and imports nothing beyond numpy: `lower` makes a
`Program` (buffers in one arena, channel-slice views, tasks per stream) and `simulate` runs it
with numpy. The GPU half imports PyCUDA and the cuDNN frontend only when called, so
``import ios_core.engine`` works anywhere and touches no GPU:

    plan = build_plan(graph, schedule, batch, "fp32", weights, PlanOptions())  # or "fp32-strict"
    y = plan(x)                    # upload, one CUDA-graph replay, download (plan(x, graph_mode=False): eager)
    m = latency(plan, 2, 6, 6)     # median of 6 means of 6 replays, with GPU, driver, cuDNN and clocks

A stage alone is a plan too -- what the measured cost needs:
``build_plan(graph, [stage], batch, precision, weights, PlanOptions(schedule=schedule))``
allocates the stage's inputs (random values), runs its groups on their streams, and is timed by
the same `latency`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ios_core.engine.lower import LoweringError, conv_params, lower, peak_bytes, unplanned_bytes
from ios_core.engine.options import PlanOptions
from ios_core.engine.placement import Placement, place
from ios_core.engine.program import (
    LAYOUTS,
    Buffer,
    ConvTask,
    PointwiseTask,
    PoolTask,
    Program,
    ProgramError,
    View,
    WeightKey,
    verify,
)
from ios_core.engine.simulate import simulate
from ios_core.precision import PRECISIONS

if TYPE_CHECKING:
    from ios_core.engine.plan import Plan
    from ios_core.engine.timing import Measurement

def build_plan(*args: Any, **kwargs: Any) -> Plan:
    """Build an executable plan on the current GPU; see `ios_core.engine.plan.build_plan`."""
    from ios_core.engine.plan import build_plan as build

    return build(*args, **kwargs)


def latency(plan: Plan, warmup: int = 2, number: int = 6, repeat: int = 6) -> Measurement:
    """Time CUDA-graph replays of a plan; see `ios_core.engine.timing.latency`."""
    from ios_core.engine.timing import latency as measure

    return measure(plan, warmup, number, repeat)


__all__ = [
    "LAYOUTS", "PRECISIONS", "Buffer", "ConvTask", "LoweringError", "Placement", "PlanOptions", "PointwiseTask",
    "PoolTask",
    "Program", "ProgramError", "View", "WeightKey", "build_plan", "conv_params", "latency", "lower", "peak_bytes",
    "place", "simulate", "unplanned_bytes", "verify",
]
