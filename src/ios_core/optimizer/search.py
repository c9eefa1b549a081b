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

import heapq
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
MAX_CANDIDATES = 64  # each is kept per DP state, and each is timed end to end when re-ranked

Progress = Callable[[int, int], None]
"""Called after each part with (operators placed so far, operators in all)."""


@dataclass(frozen=True)
class OptimizerOptions:
    """What to search: ``opt`` (one of `OPTS`), at most ``r`` operators per group and ``s`` groups per
    stage (parallel endings), parts of at most ``max_part_size`` operators, and how many of the cheapest
    schedules to find (``candidates``: the DP's k best, which `ios_core.optimizer.rerank` times end to end)."""

    opt: str = "both"
    r: int = 3
    s: int = 8
    max_part_size: int = 40
    candidates: int = 1

    def __post_init__(self) -> None:
        if self.opt not in OPTS:
            raise ValueError(f"unknown opt {self.opt!r}; expected one of {', '.join(OPTS)}")
        limits = {"r": None, "s": None, "max_part_size": MAX_PART_SIZE, "candidates": MAX_CANDIDATES}
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
    """The schedule, its latency under the cost it was searched with, and the search statistics; ``ranked``: the
    ``options.candidates`` cheapest schedules with their latencies, cheapest first (the first is ``schedule``)."""

    schedule: Schedule
    latency_ms: float
    stats: SearchStats
    ranked: tuple[tuple[float, Schedule], ...] = ()


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
        ranked = [(latency, stages)]
        stats = SearchStats(stages=len(stages))
    else:
        solved = _solve_parts(graph, timed, batch, options, progress)
        ranked = _cheapest_combinations(solved, options.candidates)
        latency, stages = ranked[0]
        stats = SearchStats(
            parts=len(solved),
            states=sum(solution.states for _, solution in solved),
            transitions=sum(solution.transitions for _, solution in solved),
            stages=sum(solution.stages for _, solution in solved),
        )
    stats = replace(stats, seconds=time.perf_counter() - start, cost_seconds=timed.seconds)
    meta = {"opt": options.opt, "r": options.r, "s": options.s, "max_part_size": options.max_part_size,
            "batch": batch, "cost": cost.kind, "latency_ms": latency, **_prefixed(stats)}
    schedules = [Schedule(graph.name, stages, meta | {"latency_ms": ms}) for ms, stages in ranked]
    for schedule in schedules:
        validate(graph, schedule)
    return SearchResult(schedules[0], latency, stats, tuple(zip((ms for ms, _ in ranked), schedules, strict=True)))


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
            solved.append((part, solve_part(part, endings, _part_cost(part, cost, batch), options.candidates)))
            placed += len(names)
            if progress is not None:
                progress(placed, len(graph.operators))
    return solved


def _cheapest_combinations(solved: list[tuple[Part, PartSolution]],
                           keep: int) -> list[tuple[float, tuple[Stage, ...]]]:
    """The ``keep`` cheapest whole schedules, one of each part's ranked schedules in a row, cheapest first.

    Parts are solved independently and their stages concatenated, so a whole schedule's cost is the sum of its
    parts'; the ``keep`` cheapest sums are among the ``keep`` cheapest of the parts before and the ``keep`` of this
    one, which keeps each step at ``keep * keep`` sums. Ties keep the first part's order, the one-best's first.
    """
    combined: list[tuple[float, tuple[int, ...]]] = [(0.0, ())]
    for _, solution in solved:
        sums = ((ms + part_ms, picks + (rank,)) for ms, picks in combined
                for rank, (part_ms, _) in enumerate(solution.ranked))
        combined = heapq.nsmallest(keep, sums, key=lambda option: option[0])
    return [(ms, tuple(part.stage(e) for (part, solution), rank in zip(solved, picks, strict=True)
                       for e in solution.ranked[rank][1]))
            for ms, picks in combined]


def _part_cost(part: Part, cost: StageCost, batch: int) -> Callable[[Sequence[Ending]], list[float]]:
    return lambda endings: stage_latencies(cost, part.graph, [part.stage(e) for e in endings], batch)


def _prefixed(stats: SearchStats) -> dict[str, float | int]:
    """The statistics under names that cannot be mistaken for the schedule's own (its stages, say)."""
    names = {"states": "dp_states", "stages": "distinct_stages", "seconds": "search_seconds"}
    return {names.get(k, k): v for k, v in asdict(stats).items()}
