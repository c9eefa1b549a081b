"""The search's answer judged end to end: of the schedules the DP ranks best, the one that runs fastest as a whole.

The DP minimizes the sum of stage latencies, each stage timed alone. A schedule runs its stages one after another in
one replay, each after its real predecessor, and that can reorder schedules whose sums are close (issue 18). Where
the cost can time a whole schedule (`ios_core.cost.protocol.measures_end_to_end`: the measured cost builds and
replays the plan), `search_end_to_end` times a few contenders and returns the fastest:

* the ``candidates`` cheapest schedules of ``opt``'s space under the stage cost (the DP's k best,
  `ios_core.optimizer.dp`);
* the best schedule of each narrower space inside it (`NARROWER`: IOS-Both's space holds IOS-Parallel's,
  IOS-Merge's and Sequential's for the same ``r``, ``s`` and parts), whose stages the cost has mostly seen already.

Every contender is a schedule of the space searched, so the answer is too; under the stage cost it is never cheaper
than the DP's best (which is proven optimal for that cost), and a cost that cannot time whole schedules gets the
DP's best unchanged. Ties keep the DP's order. The contenders and their two latencies are in the schedule's
``meta["rerank"]``; ``latency_ms`` becomes the chosen schedule's end-to-end latency and ``stage_sum_ms`` its sum.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ios_core.cost.protocol import StageCost, end_to_end_latency, measures_end_to_end
from ios_core.ir import Graph
from ios_core.optimizer.search import OptimizerOptions, Progress, SearchResult, search
from ios_core.schedule import Schedule

NARROWER = {"both": ("parallel", "merge", "sequential"), "parallel": ("sequential",), "merge": ("sequential",)}
"""The spaces inside each DP's space, for the same r, s and parts."""


@dataclass(frozen=True)
class Contender:
    """One schedule timed end to end: where it came from (``both#2``: the DP's second best; ``parallel``: the best
    of that space), its stage sum under the search's cost and its end-to-end latency."""

    label: str
    schedule: Schedule
    stage_sum_ms: float
    end_to_end_ms: float

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "stage_sum_ms": self.stage_sum_ms, "end_to_end_ms": self.end_to_end_ms}


def contenders(graph: Graph, cost: StageCost, batch: int, options: OptimizerOptions,
               progress: Progress | None = None) -> tuple[SearchResult, list[tuple[str, Schedule, float]]]:
    """The search of ``options`` keeping its ``candidates`` best, and the contenders as (label, schedule, stage sum):
    the DP's ranked schedules first, then the best of each `NARROWER` space."""
    result = search(graph, cost, batch, options, progress)
    found = [(f"{options.opt}#{rank}", schedule, ms) for rank, (ms, schedule) in enumerate(result.ranked, 1)]
    for opt in NARROWER.get(options.opt, ()):
        narrower = search(graph, cost, batch, replace(options, opt=opt, candidates=1))
        found.append((opt, narrower.schedule, narrower.latency_ms))
    return result, found


def fastest(graph: Graph, cost: StageCost, batch: int,
            labelled: Sequence[tuple[str, Schedule, float]]) -> tuple[Contender, list[Contender]]:
    """Each distinct schedule of ``labelled`` (label, schedule, stage sum) timed end to end by ``cost``, once (the
    first label of equal schedules is kept), and the fastest of them; ties keep the order given."""
    timed, seen = [], set()
    for label, schedule, stage_sum in labelled:
        if schedule.stages not in seen:
            seen.add(schedule.stages)
            timed.append(Contender(label, schedule, stage_sum, end_to_end_latency(cost, graph, schedule, batch)))
    return min(timed, key=lambda c: c.end_to_end_ms), timed


def search_end_to_end(graph: Graph, cost: StageCost, batch: int, options: OptimizerOptions | None = None,
                      progress: Progress | None = None) -> SearchResult:
    """`search`, then the fastest of its contenders end to end where ``cost`` times whole schedules; see the module
    docstring. With ``options.candidates == 1`` or a cost that only times stages, `search`'s answer as it is."""
    options = options or OptimizerOptions()
    if options.candidates == 1 or options.opt not in NARROWER or not measures_end_to_end(cost):
        return search(graph, cost, batch, replace(options, candidates=1), progress)
    start = time.perf_counter()
    result, found = contenders(graph, cost, batch, options, progress)
    best, timed = fastest(graph, cost, batch, found)  # the first of equals: the DP's order
    meta = {**result.schedule.meta, "latency_ms": best.end_to_end_ms, "latency_kind": "end to end",
            "stage_sum_ms": best.stage_sum_ms, "chosen": best.label, "rerank": [c.as_dict() for c in timed],
            "search_seconds": time.perf_counter() - start}
    return replace(result, schedule=replace(best.schedule, meta=meta), latency_ms=best.end_to_end_ms)
