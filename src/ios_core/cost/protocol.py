"""The contract between the optimizer and every cost: one method, a latency in milliseconds."""

from __future__ import annotations

from typing import Protocol

from ios_core.ir import Graph
from ios_core.schedule import Schedule, Stage


class StageCost(Protocol):
    """The latency of one stage, in milliseconds, at a batch size; ``kind`` labels the numbers."""

    kind: str

    def stage_latency(self, graph: Graph, stage: Stage, batch: int) -> float: ...


def schedule_latency(cost: StageCost, graph: Graph, schedule: Schedule, batch: int) -> float:
    """A schedule's latency under ``cost``: its stages run one after another, so their latencies add."""
    return sum(cost.stage_latency(graph, stage, batch) for stage in schedule.stages)
