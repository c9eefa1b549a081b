"""The critical-path bound: no schedule of a graph can beat its longest dependency chain.

If every operator ran alone at its own latency and nothing but the dependencies mattered -- as
many streams as wanted, no contention, no launch or synchronization cost -- a graph would take
the latency of its heaviest chain of dependent operators. That is a lower bound on every
schedule's latency under an additive cost, and the yardstick IOS-Both is measured against.
"""

from __future__ import annotations

from dataclasses import dataclass

from ios_core.cost.protocol import StageCost
from ios_core.ir import Graph
from ios_core.schedule import Group, Stage


@dataclass(frozen=True)
class CriticalPath:
    """The bound in milliseconds, the chain that attains it (first operator first) and every operator's latency."""

    ms: float
    chain: tuple[str, ...]
    operator_ms: dict[str, float]


def critical_path(graph: Graph, cost: StageCost, batch: int) -> CriticalPath:
    """The heaviest dependency chain of ``graph`` when each operator costs its latency alone under ``cost``."""
    alone = {n.name: cost.stage_latency(graph, Stage((Group((n.name,)),)), batch) for n in graph.operators}
    finish: dict[str, float] = {}
    before: dict[str, str | None] = {}
    for node in graph.operators:  # topological order
        ready = [(finish[p], p) for p in node.producers if p in finish]
        start, parent = max(ready) if ready else (0.0, None)
        finish[node.name], before[node.name] = start + alone[node.name], parent
    if not finish:
        return CriticalPath(0.0, (), alone)
    last = max(finish, key=finish.get)
    chain = [last]
    while (parent := before[chain[-1]]) is not None:
        chain.append(parent)
    return CriticalPath(finish[last], tuple(reversed(chain)), alone)
