"""The timing primitive: the median over ``repeat`` of the mean of ``number`` CUDA-graph replays.

Replays are timed with CUDA events on the plan's first stream (where the captured graph starts
and ends) after ``warmup`` replays; every `Measurement` carries the GPU, driver, cuDNN version,
batch, precision and the clocks NVML read before and after.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import cudnn
import pycuda.driver as drv

from ios_core import gpu
from ios_core.engine.plan import Plan


@dataclass(frozen=True)
class Measurement:
    """One latency measurement and the conditions it was taken in."""

    ms: float
    samples: tuple[float, ...]
    warmup: int
    number: int
    repeat: int
    batch: int
    precision: str
    layout: str
    graph: str
    device: dict[str, Any] = field(default_factory=dict)
    clocks_before: dict[str, Any] = field(default_factory=dict)
    clocks_after: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def environment() -> dict[str, Any]:
    """GPU name, driver, CUDA driver and cuDNN versions (NVML plus the cuDNN library in use)."""
    info = gpu.describe()
    info["cudnn"] = cudnn.backend_version_string() if hasattr(cudnn, "backend_version_string") else str(
        cudnn.backend_version())
    info["cuda_driver_api"] = drv.get_driver_version()
    return info


def time_replays(launch: Callable[[], None], stream: drv.Stream, warmup: int, number: int, repeat: int) -> list[float]:
    """Milliseconds per ``launch()``: for each of ``repeat`` samples, ``number`` launches between two events."""
    for _ in range(warmup):
        launch()
    start, end = drv.Event(), drv.Event()
    samples = []
    for _ in range(repeat):
        start.record(stream)
        for _ in range(number):
            launch()
        end.record(stream)
        end.synchronize()
        samples.append(start.time_till(end) / number)
    return samples


def latency(plan: Plan, warmup: int = 2, number: int = 6, repeat: int = 6) -> Measurement:
    """Median over ``repeat`` of the mean of ``number`` replays of the plan's CUDA graph, in milliseconds.

    The defaults are IOS's profiling setting (2 warm-up, 6 x 6). The graph is captured first if
    it was not yet.
    """
    plan.capture()
    plan.synchronize()
    before = gpu.clocks()
    samples = time_replays(plan.replay, plan.streams[0], warmup, number, repeat)
    after = gpu.clocks()
    program = plan.program
    return Measurement(statistics.median(samples), tuple(samples), warmup, number, repeat, program.batch,
                       plan.precision, program.layout, program.graph, environment(), before, after)
