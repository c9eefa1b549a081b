"""Schedules timed side by side on one GPU, in one process, in rotating rounds.

Every schedule is built as one plan of this GPU and run once; its output is checked against the first schedule's
(Sequential's, by convention). Then round k times every plan once with `ios_core.engine.latency`, starting with the
k-th, so that no schedule is always timed first or last. `bench/records.py` turns each into a ``measure`` record.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ios_core.engine import PlanOptions, build_plan, latency
from ios_core.ir import Graph
from ios_core.reference import relative_error
from ios_core.schedule import Schedule
from ios_core.timing import Timing
from ios_core.weights import make_input, make_weights


@dataclass
class Timed:
    """One schedule timed side by side: the measurement of each round and its plan's numbers (metrics)."""

    schedule: Schedule
    rounds: list[Any] = field(default_factory=list)
    plan: dict[str, float] = field(default_factory=dict)


def side_by_side(graph: Graph, schedules: dict[str, Schedule], batch: int, timing: Timing, rounds: int,
                 options: PlanOptions) -> dict[str, Timed]:
    """Each of ``schedules`` (by label) built, checked against the first and timed in ``rounds`` rotating rounds."""
    weights, x = make_weights(graph), make_input(graph, batch)
    plans, timed, reference = {}, {}, None
    try:
        for label, schedule in schedules.items():
            started = time.perf_counter()
            plan = plans[label] = build_plan(graph, schedule, batch, "fp32", weights, options)
            out = plan(x)
            reference = out if reference is None else reference
            timed[label] = Timed(schedule, plan={
                "build_s": time.perf_counter() - started, "streams": plan.program.streams,
                "arena_bytes": plan.program.arena_bytes, "graph_nodes": plan.captured.node_count,
                "rel_error_vs_sequential": relative_error(out, reference)})
        order = list(schedules)
        for r in range(rounds):
            for label in order[r % len(order):] + order[: r % len(order)]:
                timed[label].rounds.append(latency(plans[label], timing))
    finally:
        for plan in plans.values():
            plan.close()
    return timed
