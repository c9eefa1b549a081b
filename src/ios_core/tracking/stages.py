"""Recording every stage the optimizer costs, cheaply enough to leave on during a search.

`StageLog` wraps any `ios_core.cost.StageCost`: each call is timed and appended to a list (two
clock reads and an append, well under a microsecond of bookkeeping), and nothing is formatted or
written until the search ends. Then `StageLog.write` turns the list into a record's metric series
(``stage_latency_ms`` by call order) plus a CSV artifact naming every stage, logged in batches.
"""

from __future__ import annotations

import csv
import io
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ios_core.cost.protocol import stage_latencies
from ios_core.files import write_atomic
from ios_core.ir import Graph
from ios_core.schedule import Stage
from ios_core.tracking.record import Point, Record, now_ms


class StageCall(NamedTuple):
    """One question asked of the cost: a stage at a batch, its answer, when it was asked and how long it took."""

    stage: Stage
    batch: int
    latency_ms: float
    timestamp_ns: int
    wall_ns: int


@dataclass
class StageLog:
    """A `StageCost` that records every answer of the cost it wraps."""

    cost: object
    calls: list[tuple] = field(default_factory=list)  # StageCall fields, as plain tuples

    @property
    def kind(self) -> str:
        return self.cost.kind

    def stage_latency(self, graph: Graph, stage: Stage, batch: int) -> float:
        return self.stage_latencies(graph, [stage], batch)[0]

    def stage_latencies(self, graph: Graph, stages: Sequence[Stage], batch: int) -> list[float]:
        """Many stages in one call to the cost (see `ios_core.cost.stage_latencies`); each call records an even
        share of the wall time."""
        clock = time.perf_counter_ns
        start = clock()
        latencies = stage_latencies(self.cost, graph, stages, batch)
        share = (clock() - start) // max(len(stages), 1)
        self.calls.extend((stage, batch, ms, start + k * share, share)  # plain tuples: the cheapest record
                          for k, (stage, ms) in enumerate(zip(stages, latencies, strict=True)))
        return latencies

    def __getattr__(self, name: str):
        if name in ("cost", "calls"):  # not yet set (copy, pickle): never recurse
            raise AttributeError(name)
        return getattr(self.cost, name)  # anything else the wrapped cost offers (a cache, its device)

    def write(self, record: Record, csv_path: str | os.PathLike | None = None) -> None:
        """Add the calls to ``record``: series ``stage_latency_ms`` and ``stage_cost_time_ms``, and a CSV."""
        if not self.calls:
            return
        # perf_counter has no epoch: place the calls on the wall clock by their offset from the last.
        calls = [StageCall(*call) for call in self.calls]
        offset_ms = now_ms() - calls[-1].timestamp_ns / 1e6
        latency, spent = record.metrics.setdefault("stage_latency_ms", []), record.metrics.setdefault(
            "stage_cost_time_ms", [])
        for step, call in enumerate(calls):
            stamp = int(call.timestamp_ns / 1e6 + offset_ms)
            latency.append(Point(call.latency_ms, step, stamp))
            spent.append(Point(call.wall_ns / 1e6, step, stamp))
        record.log_metric("stages_costed", len(self.calls))
        if csv_path is not None:
            write_atomic(csv_path, self.to_csv())
            record.artifacts.append(str(csv_path))

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["step", "batch", "latency_ms", "cost_time_ms", "stage"])
        for step, call in enumerate(map(StageCall._make, self.calls)):
            groups = " | ".join(str(g) for g in call.stage.groups)
            writer.writerow([step, call.batch, f"{call.latency_ms:.6g}", f"{call.wall_ns / 1e6:.4g}", groups])
        return out.getvalue()


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows `StageLog.to_csv` wrote."""
    with Path(path).open() as f:
        return list(csv.DictReader(f))
