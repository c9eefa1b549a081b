"""How the engine times on the GPU: `ios_core.timing.Timing` with CUDA events, for whole plans and single stages.

`Replays` is the one primitive: ``warmup`` untimed launches of what is timed, then ``repeat`` samples of
``number`` runs enqueued back to back on one stream, an event (a *mark*) between two samples, read once
they are done -- so the host may build the next stage meanwhile (`ios_core.engine.gpu.stageplan`).
`time_replays` waits for each sample before enqueuing the next (a plan, a kernel in a benchmark), and
`latency` times a whole plan's CUDA-graph replays that way; every `Measurement` carries the GPU, driver,
cuDNN version, batch, precision and the clocks NVML read before and after. Autotuning times each cuDNN
candidate with `Replays` too (`ios_core.engine.gpu.convs`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import pycuda.driver as drv

from ios_core import gpu
from ios_core.engine.gpu.environment import environment
from ios_core.timing import Timing

if TYPE_CHECKING:  # for the annotation only: a plan's convolutions (convs) are themselves timed here
    from ios_core.engine.gpu.plan import Plan


class Replays:
    """Samples of ``launch`` enqueued on ``stream`` now, timed by ``marks`` (``timing.repeat + 1`` timing events).

    ``copies`` is how many runs one launch makes: a stage captured ``number`` times into one CUDA graph is
    launched once per sample (``timing.number`` must be a multiple of it). Warm-up counts launches.
    """

    def __init__(self, launch: Callable[[], None], stream: drv.Stream, timing: Timing, marks: Sequence[drv.Event],
                 copies: int = 1) -> None:
        if len(marks) != timing.repeat + 1 or timing.number % copies:
            raise ValueError(f"{len(marks)} marks and {copies} runs a launch cannot time {timing}")
        self.marks, self.number = marks, timing.number
        for _ in range(timing.warmup):
            launch()
        marks[0].record(stream)
        for mark in marks[1:]:
            for _ in range(timing.number // copies):
                launch()
            mark.record(stream)

    def elapsed(self) -> list[float]:
        """Milliseconds of each sample, all ``number`` runs of it (waits for the last)."""
        self.marks[-1].synchronize()
        return [start.time_till(end) for start, end in pairwise(self.marks)]

    def samples(self) -> list[float]:
        """Milliseconds per run of each sample (waits for the last)."""
        return [ms / self.number for ms in self.elapsed()]


def time_replays(launch: Callable[[], None], stream: drv.Stream, timing: Timing) -> list[float]:
    """Milliseconds per ``launch()`` of each sample, each sample waited for before the next is enqueued."""
    for _ in range(timing.warmup):
        launch()
    one = replace(timing, warmup=0, repeat=1)
    marks = (drv.Event(), drv.Event())
    return [ms for _ in range(timing.repeat) for ms in Replays(launch, stream, one, marks).samples()]


def settle(plan: Plan, ms: float, replays_between_checks: int = 8) -> None:
    """Replay ``plan`` until ``ms`` of wall clock have passed (at least once when ``ms`` > 0)."""
    if ms <= 0:
        return
    deadline = time.perf_counter() + ms / 1000.0
    while True:
        for _ in range(replays_between_checks):
            plan.replay()
        plan.synchronize()
        if time.perf_counter() >= deadline:
            return


@dataclass(frozen=True)
class Measurement:
    """One latency measurement and the conditions it was taken in."""

    ms: float
    samples: tuple[float, ...]
    timing: Timing
    batch: int
    precision: str
    layout: str
    graph: str
    device: dict[str, Any] = field(default_factory=dict)
    clocks_before: dict[str, Any] = field(default_factory=dict)
    clocks_after: dict[str, Any] = field(default_factory=dict)


def latency(plan: Plan, timing: Timing | None = None, settle_ms: float = 0.0) -> Measurement:
    """Median over ``timing.repeat`` of the mean of ``timing.number`` replays of the plan's CUDA graph, in ms.

    ``timing`` is IOS's profiling setting (2 warm-up, 6 x 6) when None. The graph is captured first if it was not
    yet. With ``settle_ms`` the plan is first replayed for that long (wall clock), so that a GPU come from idle has
    raised its clocks before the warm-up.
    """
    timing = timing or Timing()
    plan.capture()
    plan.synchronize()
    settle(plan, settle_ms)
    before = gpu.clocks()
    samples = time_replays(plan.replay, plan.streams[0], timing)
    after = gpu.clocks()
    program = plan.program
    return Measurement(ms=statistics.median(samples), samples=tuple(samples), timing=timing, batch=program.batch,
                       precision=plan.precision, layout=program.layout, graph=program.graph, device=environment(),
                       clocks_before=before, clocks_after=after)
