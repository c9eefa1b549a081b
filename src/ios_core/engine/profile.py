"""Stage profiling: one candidate stage, built alone and timed on the GPU, thousands of times per search.

A `StageProfiler` answers "how long does this stage take?" for one graph at one batch size. Each
stage is lowered alone (`ios_core.engine.lower`: the nodes it reads become the program's inputs,
its groups its streams) and handed to a `Backend` that times the program. This module is the CPU
half -- lowering, empty stages, failures, statistics -- testable without a GPU;
`ios_core.engine.gpu_profiler` pairs it with the GPU backend (`ios_core.engine.gpu.stageplan`).

What one measurement is (`ios_core.timing.Timing`): the stage runs ``number`` times back to back
inside one CUDA graph -- so it runs as it would inside a whole schedule's graph, and the graph launch
is paid once per ``number`` runs -- the graph is replayed ``warmup`` times untimed, then ``repeat``
times back to back with a CUDA event between replays; the latency is the median replay divided by
``number``. IOS profiled with 2 warm-up runs and 6 x 6 timed ones: the defaults.

Profiling is bound by the host as much as by the GPU (a stage is lowered, its launches prepared
and captured in ~2 ms of Python; its 48 runs take about as long on the GPU), so stages are asked
for in batches (`StageProfiler.latencies`, one DP state's new endings at a time) and the GPU
backend builds the next stage while the GPU times the one before.

A stage that lowers to no task at all (an identity that only aliases or hosts its operand) costs
0 without touching the GPU. A stage the backend fails on costs ``inf`` (the search avoids it) and
is recorded in `ProfileStats.errors`; after `MAX_FAILURES` failures the profiler stops with
`ProfileError`, since something is wrong with the machine rather than with one stage.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ios_core.engine.lower import lower_planned
from ios_core.engine.options import PlanOptions
from ios_core.engine.program import Program
from ios_core.ir import Graph
from ios_core.schedule import Stage
from ios_core.timing import Timing

MAX_FAILURES = 20
MAX_ERRORS_KEPT = 10


class ProfileError(RuntimeError):
    """Profiling cannot go on: too many stages failed."""


@dataclass
class ProfileStats:
    """What profiling did: stages timed, stages free (no task), failures, and where the seconds went."""

    stages: int = 0
    empty: int = 0
    failed: int = 0
    lower_s: float = 0.0
    backend_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"stages": self.stages, "empty": self.empty, "failed": self.failed, "lower_s": self.lower_s,
                "backend_s": self.backend_s, "errors": list(self.errors)}


class Backend(Protocol):
    """Times lowered one-stage programs: milliseconds per run of each, in order, or the error it raised.

    Programs come from an iterator so that a backend may build the next while the GPU still times the
    one before (`ios_core.engine.gpu.stageplan.GpuBackend` does).
    """

    def time_all(self, programs: Iterator[Program], timing: Timing) -> Iterator[float | Exception]: ...


class SerialBackend:
    """A `Backend` that times one program at a time with ``time`` (fakes in tests, dry runs)."""

    def time(self, program: Program, timing: Timing) -> float:
        raise NotImplementedError

    def time_all(self, programs: Iterator[Program], timing: Timing) -> Iterator[float | Exception]:
        for program in programs:
            try:
                yield self.time(program, timing)
            except Exception as error:  # noqa: BLE001 -- handed back: the profiler records it against the stage
                yield error


class StageProfiler:
    """Stage latencies of one graph at one batch size, each stage lowered alone and timed by ``backend``.

    Parameters
    ----------
    graph, batch
        The network and the batch size every stage is built for.
    backend
        Times each program (`ios_core.engine.gpu.stageplan.GpuBackend` on a GPU, a fake in tests).
    timing
        Warm-up, runs per replay and replays (`ios_core.timing.Timing`).
    options
        The layout and lowering switches of the plans the schedule will run in (`PlanOptions`).
    itemsize
        Bytes per element of the precision the stages are timed in (`ios_core.engine.elements.Element.itemsize`).
    """

    def __init__(self, graph: Graph, batch: int, backend: Backend, timing: Timing | None = None,
                 options: PlanOptions | None = None, itemsize: int = 4) -> None:
        self.graph, self.batch, self.backend, self.itemsize = graph, batch, backend, itemsize
        self.timing = timing or Timing()
        self.options = options or PlanOptions()
        self.stats = ProfileStats()

    def program(self, stage: Stage) -> Program:
        """The stage alone, lowered as the plan of a whole schedule would lower it."""
        return lower_planned(self.graph, [stage], self.batch, self.options, self.itemsize)

    def latency(self, stage: Stage) -> float:
        """Milliseconds per run of ``stage`` alone; 0 for a stage with no task, ``inf`` for one that failed."""
        return self.latencies([stage])[0]

    def latencies(self, stages: Sequence[Stage]) -> list[float]:
        """`latency` of each stage, the backend timing them one after another as they are lowered."""
        started, lowering = time.perf_counter(), 0.0
        result: list[float] = [0.0] * len(stages)
        busy: list[int] = []  # the stages with work for the GPU, in the order the backend gets them

        def lowered() -> Iterator[Program]:
            nonlocal lowering
            for k, stage in enumerate(stages):
                begin = time.perf_counter()
                program = self.program(stage)
                lowering += time.perf_counter() - begin
                if program.tasks:
                    busy.append(k)
                    yield program
                else:
                    self.stats.empty += 1

        answers = list(self.backend.time_all(lowered(), self.timing))
        self.stats.lower_s += lowering
        self.stats.backend_s += time.perf_counter() - started - lowering
        for k, answer in zip(busy, answers, strict=True):
            if isinstance(answer, Exception):
                result[k] = self._failed(stages[k], answer)
            elif not (isinstance(answer, float | int) and answer > 0 and math.isfinite(answer)):
                result[k] = self._failed(stages[k], ValueError(f"the backend returned {answer!r} ms"))
            else:
                self.stats.stages += 1
                result[k] = float(answer)
        return result

    def _failed(self, stage: Stage, error: Exception) -> float:
        self.stats.failed += 1
        groups = " | ".join(str(g) for g in stage.groups)
        message = f"stage [{groups}]: {type(error).__name__}: {error}"
        if len(self.stats.errors) < MAX_ERRORS_KEPT:
            self.stats.errors.append(message)
        if self.stats.failed >= MAX_FAILURES:
            raise ProfileError(f"{self.stats.failed} stages failed to profile; the first: {self.stats.errors[0]}")
        return math.inf
