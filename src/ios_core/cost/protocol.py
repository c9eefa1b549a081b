"""The contract between the optimizer and every cost: one method, a latency in milliseconds.

A cost may also answer for many stages at once (``stage_latencies``): the measured one builds the
next stage on the host while the GPU times the one before. `stage_latencies` asks a cost that way
when it can, one stage at a time otherwise.

A cost that can also time a whole schedule as it runs -- its stages one after another in one replay, each after
its real predecessor -- says so with ``end_to_end = True`` and answers `EndToEndCost.end_to_end_latency`; the
search re-ranks its best schedules with it (`ios_core.optimizer.rerank`). For any other cost a schedule's
latency is the sum of its stages' (`end_to_end_latency`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ios_core.ir import Graph
from ios_core.schedule import Schedule, Stage


class StageCost(Protocol):
    """The latency of one stage, in milliseconds, at a batch size; ``kind`` labels the numbers."""

    kind: str

    def stage_latency(self, graph: Graph, stage: Stage, batch: int) -> float: ...


def stage_latencies(cost: StageCost, graph: Graph, stages: Sequence[Stage], batch: int) -> list[float]:
    """The latencies of ``stages``, in order: in one call where ``cost`` has ``stage_latencies``."""
    many = getattr(cost, "stage_latencies", None)
    if many is not None:
        return list(many(graph, stages, batch))
    return [cost.stage_latency(graph, stage, batch) for stage in stages]


class EndToEndCost(StageCost, Protocol):
    """A stage cost that also times whole schedules end to end (``end_to_end`` is True)."""

    end_to_end: bool

    def end_to_end_latency(self, graph: Graph, schedule: Schedule, batch: int) -> float: ...


def measures_end_to_end(cost: StageCost) -> bool:
    """Whether ``cost`` times a whole schedule as it runs, rather than adding its stages up."""
    return bool(getattr(cost, "end_to_end", False))


def end_to_end_latency(cost: StageCost, graph: Graph, schedule: Schedule, batch: int) -> float:
    """``schedule``'s latency as a whole where ``cost`` can time it so, else the sum of its stages' latencies."""
    if measures_end_to_end(cost):
        return cost.end_to_end_latency(graph, schedule, batch)
    return sum(stage_latencies(cost, graph, schedule.stages, batch))


def schedule_latency(cost: StageCost, graph: Graph, schedule: Schedule, batch: int) -> float:
    """A schedule's latency under ``cost``: its stages run one after another, so their latencies add."""
    return sum(cost.stage_latency(graph, stage, batch) for stage in schedule.stages)
