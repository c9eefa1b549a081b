"""Stage costs: the one question the optimizer asks -- how long does this stage take?

The optimizer sees only the `StageCost` protocol. How the answer is obtained (an analytical
roofline, a table read from JSON, a measurement on the GPU) is the implementation's business;
``kind`` names it so that every number can be labelled ``simulated``, ``table`` or ``measured``.
"""

from __future__ import annotations

from typing import Protocol

from ios_core.ir import Graph
from ios_core.schedule import Stage


class StageCost(Protocol):
    """The latency of one stage, in milliseconds, at a batch size."""

    kind: str

    def stage_latency(self, graph: Graph, stage: Stage, batch: int) -> float: ...
