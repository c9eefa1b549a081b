"""`Network`: a graph with its weights (and, for an imported model, its head) -- what every engine runs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ios_core.ir import Graph
from ios_core.onnx_io.head import Head, run_head
from ios_core.reference import run_graph
from ios_core.weights import Params, make_weights


@dataclass(frozen=True)
class Network:
    """A graph, its float64 weights keyed like `ios_core.weights.make_weights`, and an optional head.

    The graph is the scheduled body; ``head`` (Flatten, Gemm... after it) is None for built-in models.
    """

    graph: Graph
    weights: dict[str, Params]
    head: Head | None = None

    @property
    def name(self) -> str:
        return self.graph.name

    @staticmethod
    def of(graph: Graph, seed: int = 0) -> Network:
        """A built-in graph with its deterministic weights (`make_weights`)."""
        return Network(graph, make_weights(graph, seed))


def run_network(network: Network, x: np.ndarray, head: bool = True) -> np.ndarray:
    """The network's output for input batch ``x`` by the float64 reference: the body, then the head if any."""
    out = run_graph(network.graph, x, network.weights)
    return run_head(network.head, out) if head and network.head is not None else out
