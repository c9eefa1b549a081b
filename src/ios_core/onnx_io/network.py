"""`Network`: a graph with its weights -- what every engine runs -- and the shape of its output."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ios_core.ir import Graph
from ios_core.reference import run_graph
from ios_core.weights import Params, make_weights


@dataclass(frozen=True)
class Network:
    """A graph, its float64 weights keyed like `ios_core.weights.make_weights`, and its output's shape.

    The graph is the whole network, classifier included. ``output_shape`` is the per-sample shape of an
    imported model's output where it is not the graph output's C x H x W -- ``(1000,)`` for a classifier,
    whose graph output is 1000 x 1 x 1 -- and None where it is.
    """

    graph: Graph
    weights: dict[str, Params]
    output_shape: tuple[int, ...] | None = None

    @property
    def name(self) -> str:
        return self.graph.name

    @staticmethod
    def of(graph: Graph, seed: int = 0) -> Network:
        """A built-in graph with its deterministic weights (`make_weights`)."""
        return Network(graph, make_weights(graph, seed))


def run_network(network: Network, x: np.ndarray) -> np.ndarray:
    """The network's output for input batch ``x`` by the float64 reference, in the shape of ``output_shape``."""
    out = run_graph(network.graph, x, network.weights)
    return out if network.output_shape is None else out.reshape(len(out), *network.output_shape)
