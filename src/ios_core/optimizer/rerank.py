"""The search's answer judged end to end: of the schedules the DP ranks best, the one that runs fastest as a whole.

The DP minimizes the sum of stage latencies, each stage timed alone. A schedule runs its stages one after another in
one replay, each after its real predecessor, and that can reorder schedules whose sums are close (issue 18). Where
the cost can time a whole schedule (`ios_core.cost.protocol.measures_end_to_end`: the measured cost builds and
replays the plan), `search_end_to_end` times a few contenders and returns the fastest:

* the ``candidates`` cheapest schedules of ``opt``'s space under the stage cost (the DP's k best,
  `ios_core.optimizer.dp`);
* the best schedule of each narrower space inside it (`NARROWER`: IOS-Both's space holds IOS-Parallel's,
  IOS-Merge's and Sequential's for the same ``r``, ``s`` and parts), whose stages the cost has mostly seen already;
* the best of the same space with groups of at most ``r - 1`` operators, whose stages the cost has all seen: on the
  H100, Inception V3's IOS-Both at r=2 ran faster end to end than at r=3 (experiment 5: 0.518 against 0.538 ms),
  although r=3's space holds it;
* Sequential in the graph's own order (`GRAPH_ORDER`), the schedule a user compares against.

Then, in IOS-Both's space, a local search keeps a merge only where it wins in context (`keep_winning_merges`): a
merged stage may look cheaper alone than it runs inside the schedule (on the H100, torchvision's Inception V3:
Both's best schedules ran 21% above their stage sums end to end, Parallel's, without merges, 14%), so each merged
stage of the fastest contender is split, in order, into its convolutions side by side -- a parallel ending of the
same operators -- and the split is kept where the whole schedule then runs faster by more than `REPLAY_NOISE`.
Last, a schedule that runs one operator at a time (the fastest such contender) is chosen over the answer unless the
answer beats it by more than `REPLAY_NOISE`: on a chain (ConvNeXt on the H100) the DP's best ran 0.3% faster than
Sequential in the search, and 0.6% slower in the benchmark after it.

Every contender is a schedule of the space searched, so the answer is too; under the stage cost it is never cheaper
than the DP's best (which is proven optimal for that cost), and a cost that cannot time whole schedules gets the
DP's best unchanged. Ties keep the DP's order. The contenders and their two latencies are in the schedule's
``meta["rerank"]``; ``latency_ms`` becomes the chosen schedule's end-to-end latency and ``stage_sum_ms`` its sum.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ios_core.cost.protocol import StageCost, end_to_end_latency, measures_end_to_end, schedule_latency
from ios_core.ir import Graph
from ios_core.optimizer.search import OptimizerOptions, Progress, SearchResult, search
from ios_core.schedule import Group, Schedule, Stage, sequential

NARROWER = {"both": ("parallel", "merge", "sequential"), "parallel": ("sequential",), "merge": ("sequential",)}
"""The spaces inside each DP's space, for the same r, s and parts."""

REPLAY_NOISE = 0.005
"""How much faster (relative) a schedule must run end to end to be preferred over a simpler one (a merged stage
over its split, one operator at a time over several streams): less is replay noise."""

GRAPH_ORDER = "sequential (graph order)"
"""The label of Sequential in the graph's order among the contenders (the DP's Sequential may order otherwise)."""


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
    the DP's ranked schedules first, then the best of each `NARROWER` space, then (``r`` > 1) the best of ``opt``'s
    space at ``r - 1`` (label ``<opt> r=<r - 1>``), then Sequential in the graph's order (`GRAPH_ORDER`)."""
    result = search(graph, cost, batch, options, progress)
    found = [(f"{options.opt}#{rank}", schedule, ms) for rank, (ms, schedule) in enumerate(result.ranked, 1)]
    narrower = [(opt, replace(options, opt=opt, candidates=1)) for opt in NARROWER.get(options.opt, ())]
    if options.r > 1:
        narrower.append((f"{options.opt} r={options.r - 1}", replace(options, r=options.r - 1, candidates=1)))
    for label, space in narrower:
        best = search(graph, cost, batch, space)
        found.append((label, best.schedule, best.latency_ms))
    in_order = sequential(graph)
    found.append((GRAPH_ORDER, in_order, schedule_latency(cost, graph, in_order, batch)))
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


def split(schedule: Schedule, index: int) -> Schedule:
    """``schedule`` with stage ``index`` -- one merged group -- run as one group per convolution, side by side."""
    (merged,) = schedule.stages[index].groups
    side_by_side = Stage(tuple(Group((op,)) for op in merged.ops))
    return Schedule(schedule.graph, (*schedule.stages[:index], side_by_side, *schedule.stages[index + 1:]))


def keep_winning_merges(graph: Graph, cost: StageCost, batch: int, best: Contender,
                        most_groups: int) -> tuple[Contender, list[Contender]]:
    """``best`` with each of its merged stages split where that makes the whole schedule faster by more than
    `REPLAY_NOISE`, one pass in stage order (a stage split only if it keeps at most ``most_groups`` groups, the
    space's ``s``); the answer and every split timed (labelled ``<label>/split<index>``)."""
    tried = []
    for index, stage in enumerate(best.schedule.stages):
        if len(stage.groups) != 1 or not stage.groups[0].merge or len(stage.groups[0].ops) > most_groups:
            continue
        schedule = split(best.schedule, index)
        contender = Contender(f"{best.label}/split{index}", schedule, schedule_latency(cost, graph, schedule, batch),
                              end_to_end_latency(cost, graph, schedule, batch))
        tried.append(contender)
        if contender.end_to_end_ms < best.end_to_end_ms * (1 - REPLAY_NOISE):
            best = contender
    return best, tried


def one_at_a_time(schedule: Schedule) -> bool:
    """Whether ``schedule`` runs one operator per stage (a Sequential, in whatever order)."""
    return all(len(stage.groups) == 1 and len(stage.groups[0].ops) == 1 for stage in schedule.stages)


def unless_within_noise_of_one_at_a_time(best: Contender, timed: Sequence[Contender]) -> Contender:
    """``best``, or the fastest contender of ``timed`` that runs one operator at a time where ``best`` does not beat
    it by more than `REPLAY_NOISE`."""
    plain = min((c for c in timed if one_at_a_time(c.schedule)), key=lambda c: c.end_to_end_ms, default=None)
    if plain is None or best.end_to_end_ms < plain.end_to_end_ms * (1 - REPLAY_NOISE):
        return best
    return plain


def choose(graph: Graph, cost: StageCost, batch: int, labelled: Sequence[tuple[str, Schedule, float]],
           most_groups: int | None) -> tuple[Contender, list[Contender]]:
    """The answer among ``labelled`` (label, schedule, stage sum) and every schedule timed for it: the fastest end to
    end (`fastest`; ties keep the order given), its merged stages split where that wins (`keep_winning_merges`, at
    most ``most_groups`` groups a stage; None: a space without merges), then one operator at a time where the
    answer does not beat it by more than the noise (`unless_within_noise_of_one_at_a_time`)."""
    best, timed = fastest(graph, cost, batch, labelled)
    if most_groups is not None:
        best, splits = keep_winning_merges(graph, cost, batch, best, most_groups)
        timed += splits
    return unless_within_noise_of_one_at_a_time(best, timed), timed


def search_end_to_end(graph: Graph, cost: StageCost, batch: int, options: OptimizerOptions | None = None,
                      progress: Progress | None = None) -> SearchResult:
    """`search`, then the fastest of its contenders end to end where ``cost`` times whole schedules; see the module
    docstring. With ``options.candidates == 1`` or a cost that only times stages, `search`'s answer as it is."""
    options = options or OptimizerOptions()
    if options.candidates == 1 or options.opt not in NARROWER or not measures_end_to_end(cost):
        return search(graph, cost, batch, replace(options, candidates=1), progress)
    start = time.perf_counter()
    result, found = contenders(graph, cost, batch, options, progress)
    best, timed = choose(graph, cost, batch, found, options.s if options.opt == "both" else None)
    meta = {**result.schedule.meta, "latency_ms": best.end_to_end_ms, "latency_kind": "end to end",
            "stage_sum_ms": best.stage_sum_ms, "chosen": best.label, "rerank": [c.as_dict() for c in timed],
            "search_seconds": time.perf_counter() - start}
    return replace(result, schedule=replace(best.schedule, meta=meta), latency_ms=best.end_to_end_ms)
