"""The one entry point for every schedule type of the paper: sequential, greedy and IOS's three DPs.

`search` runs, per block and per part of at most ``max_part_size`` operators (as IOS does for
NASNet's huge blocks), the DP of `ios_core.optimizer.dp` over the endings ``opt`` allows
(`ios_core.optimizer.endings`), and concatenates the parts' stages. It knows nothing of how stage
costs are obtained: it asks the `StageCost` it is given.

Because every ending kind contains every single-operator ending, the sequential schedule is in
the search space and the result never costs more than it (under the same cost). The schedule is
checked with `ios_core.schedule.validate` before it is returned.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

from ios_core.cost.protocol import StageCost, stage_latencies
from ios_core.ir import Graph
from ios_core.optimizer.dp import PartSolution, solve_part
from ios_core.optimizer.endings import ending_generator
from ios_core.optimizer.part import Ending, Part, make_part, split_parts
from ios_core.schedule import Schedule, Stage, greedy, sequential, validate

OPTS = ("sequential", "greedy", "parallel", "merge", "both")
MAX_PART_SIZE = 128  # the DP recurses two frames per operator at most: this stays well under Python's limit

Progress = Callable[[int, int], None]
"""Called after each part with (operators placed so far, operators in all)."""


@dataclass(frozen=True)
class OptimizerOptions:
    """What to search: ``opt`` (one of `OPTS`), at most ``r`` operators per group and ``s`` groups per
    stage (parallel endings), and parts of at most ``max_part_size`` operators."""

    opt: str = "both"
    r: int = 3
    s: int = 8
    max_part_size: int = 40

    def __post_init__(self) -> None:
        if self.opt not in OPTS:
            raise ValueError(f"unknown opt {self.opt!r}; expected one of {', '.join(OPTS)}")
        limits = {"r": None, "s": None, "max_part_size": MAX_PART_SIZE}
        for name, most in limits.items():
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1 or (most is not None and value > most):
                bound = f" and <= {most}" if most else ""
                raise ValueError(f"{name} must be an integer >= 1{bound}, got {value!r}")


@dataclass(frozen=True)
class SearchStats:
    """How much the search did: DP ``states`` and ``transitions`` (state, ending pairs), distinct
    ``stages`` costed (endings, per part), ``parts``, wall ``seconds`` and the part of it spent in the cost."""

    parts: int = 0
    states: int = 0
    transitions: int = 0
    stages: int = 0
    seconds: float = 0.0
    cost_seconds: float = 0.0


@dataclass(frozen=True)
class SearchResult:
    """The schedule, its latency under the cost it was searched with, and the search statistics."""

    schedule: Schedule
    latency_ms: float
    stats: SearchStats


class _TimedCost:
    """Counts the time spent inside the cost, so the optimizer's own overhead can be told apart."""

    def __init__(self, cost: StageCost) -> None:
        self.cost, self.seconds = cost, 0.0

    def stage_latency(self, graph: Graph, stage: Stage, batch: int) -> float:
        return self.stage_latencies(graph, [stage], batch)[0]

    def stage_latencies(self, graph: Graph, stages: Sequence[Stage], batch: int) -> list[float]:
        start = time.perf_counter()
        try:
            return stage_latencies(self.cost, graph, stages, batch)
        finally:
            self.seconds += time.perf_counter() - start


def search(graph: Graph, cost: StageCost, batch: int, options: OptimizerOptions | None = None,
           progress: Progress | None = None) -> SearchResult:
    """The best schedule of ``graph`` at ``batch`` under ``cost`` for ``options``, with statistics.

    ``sequential`` and ``greedy`` are built directly (`ios_core.schedule`) and only costed.
    The returned schedule's ``meta`` records the options, the cost kind, the predicted latency
    and the statistics.
    """
    options = options or OptimizerOptions()
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    start, timed = time.perf_counter(), _TimedCost(cost)
    if options.opt in ("sequential", "greedy"):
        stages = (sequential(graph) if options.opt == "sequential" else greedy(graph)).stages
        latency = sum(timed.stage_latency(graph, stage, batch) for stage in stages)
        stats = SearchStats(stages=len(stages))
    else:
        solved = _solve_parts(graph, timed, batch, options, progress)
        stages = tuple(part.stage(e) for part, solution in solved for e in solution.endings)
        latency = sum(solution.latency for _, solution in solved)
        stats = SearchStats(
            parts=len(solved),
            states=sum(solution.states for _, solution in solved),
            transitions=sum(solution.transitions for _, solution in solved),
            stages=sum(solution.stages for _, solution in solved),
        )
    stats = replace(stats, seconds=time.perf_counter() - start, cost_seconds=timed.seconds)
    meta = {"opt": options.opt, "r": options.r, "s": options.s, "max_part_size": options.max_part_size,
            "batch": batch, "cost": cost.kind, "latency_ms": latency, **_prefixed(stats)}
    schedule = Schedule(graph.name, stages, meta)
    validate(graph, schedule)
    return SearchResult(schedule, latency, stats)


def optimize(graph: Graph, cost: StageCost, batch: int, options: OptimizerOptions | None = None,
             progress: Progress | None = None) -> Schedule:
    """The schedule `search` finds; its statistics are in ``schedule.meta``."""
    return search(graph, cost, batch, options, progress).schedule


def _solve_parts(graph: Graph, cost: StageCost, batch: int, options: OptimizerOptions,
                 progress: Progress | None) -> list[tuple[Part, PartSolution]]:
    """Each block's parts, in order, each solved by the DP."""
    solved, placed = [], 0
    for block in graph.blocks:
        for names in split_parts(block.nodes, options.max_part_size):
            part = make_part(graph, names)
            endings = ending_generator(part, options.opt, options.r, options.s)
            solved.append((part, solve_part(part, endings, _part_cost(part, cost, batch))))
            placed += len(names)
            if progress is not None:
                progress(placed, len(graph.operators))
    return solved


def _part_cost(part: Part, cost: StageCost, batch: int) -> Callable[[Sequence[Ending]], list[float]]:
    return lambda endings: stage_latencies(cost, part.graph, [part.stage(e) for e in endings], batch)


def _prefixed(stats: SearchStats) -> dict[str, float | int]:
    """The statistics under names that cannot be mistaken for the schedule's own (its stages, say)."""
    names = {"states": "dp_states", "stages": "distinct_stages", "seconds": "search_seconds"}
    return {names.get(k, k): v for k, v in asdict(stats).items()}
