"""RandWire-WS, the "large" network IOS measures: C=154 at 224x224, stages wired by Watts-Strogatz graphs.

As in IOS (``randwire_large``, after Xie et al. 2019's regular regime): a 3x3 stride-2 convolution
to C/2 channels, four random stages of 16, 32, 32 and 32 nodes with C, 2C, 4C and 8C channels, then
ReLU, a 1x1 convolution to 1280 channels and global average pooling. The first stage has N/2 = 16
nodes, not 32: that is the paper's conv2 stage and what gives IOS's count of 120 operators
(1 + 17 + 3 x 33 + 3). Each stage is one block.

Every node of a stage is one operator, ReLU -> 3x3 depthwise -> 1x1 pointwise run as a `Sequential`
(batch norm folded). A node sums its predecessors' outputs (a free `Value` sum, as IOS does, in
place of the paper's learned weighted sum); nodes with no predecessor read the stage input with
stride 2; the stage exits at an identity that sums the nodes with no successor.

The stage graphs are drawn here from ``seed`` rather than read from IOS's generated files, so the
wiring differs from IOS's but the operator count and shapes do not.
"""

from __future__ import annotations

from functools import reduce
from operator import add

import numpy as np

from ios_core.ir import Graph, GraphBuilder, Value
from ios_core.models.common import relu_sep_conv

CHANNELS = 154
STAGE_NODES = (16, 32, 32, 32)
NEIGHBOURS = 4
REWIRE_PROBABILITY = 0.75


def watts_strogatz(nodes: int, neighbours: int, p: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """The edges ``(u, v)``, ``u < v``, of a Watts-Strogatz small-world graph, sorted.

    Start from a ring where each node links to its ``neighbours / 2`` nearest on each side; then,
    one ring distance at a time as in networkx, rewire each node's edge at that distance with
    probability ``p`` to a node picked uniformly among those it is not linked to. Rewiring keeps
    the rewiring node's degree, so no node is ever left without edges. Orienting every edge from
    the lower index to the higher makes the graph a DAG whose index order is topological.
    """
    if neighbours % 2 or not 0 < neighbours < nodes:
        raise ValueError(f"neighbours must be even and in (0, {nodes}), got {neighbours}")
    linked = [set() for _ in range(nodes)]
    for u in range(nodes):
        for distance in range(1, neighbours // 2 + 1):
            _link(linked, u, (u + distance) % nodes)
    for distance in range(1, neighbours // 2 + 1):
        for u in range(nodes):
            if rng.random() >= p:
                continue
            free = [w for w in range(nodes) if w != u and w not in linked[u]]
            if free:
                v = (u + distance) % nodes
                linked[u].discard(v)
                linked[v].discard(u)
                _link(linked, u, free[rng.integers(len(free))])
    return sorted((u, v) for u in range(nodes) for v in linked[u] if u < v)


def _link(linked: list[set[int]], u: int, v: int) -> None:
    linked[u].add(v)
    linked[v].add(u)


def randwire_stage(b: GraphBuilder, x: Value, channels: int, nodes: int, edges: list[tuple[int, int]]) -> Value:
    """One random stage as a block: halves ``x``'s height and width and outputs ``channels``."""
    predecessors: list[list[int]] = [[] for _ in range(nodes)]
    has_successor = [False] * nodes
    for u, v in edges:
        predecessors[v].append(u)
        has_successor[u] = True
    outputs: list[Value] = []
    for node in range(nodes):  # index order is topological: edges run from lower to higher
        inputs = [outputs[u] for u in predecessors[node]]
        if inputs:
            outputs.append(relu_sep_conv(b, reduce(add, inputs), channels, 3, padding=1))
        else:
            outputs.append(relu_sep_conv(b, x, channels, 3, stride=2, padding=1))
    sinks = [out for out, later in zip(outputs, has_successor, strict=True) if not later]
    # Always an identity exit, as in IOS, even in the unlikely case of a single sink.
    return b.end_block(b.identity(reduce(add, sinks)))


def randwire(seed: int = 0) -> Graph:
    """RandWire-WS(k=4, p=0.75), C=154, 3x224x224: 120 operators in 6 blocks, output 1280x1x1.

    Parameters
    ----------
    seed
        Seeds one `numpy.random.default_rng` that draws the four stage graphs in turn; the same
        seed always gives the same graph.
    """
    rng = np.random.default_rng(seed)
    b = GraphBuilder("randwire", channels=3, height=224, width=224)
    x = b.end_block(b.conv(b.input, CHANNELS // 2, 3, stride=2, padding=1, act="none"))
    for stage, nodes in enumerate(STAGE_NODES):
        edges = watts_strogatz(nodes, NEIGHBOURS, REWIRE_PROBABILITY, rng)
        x = randwire_stage(b, x, CHANNELS * 2**stage, nodes, edges)
    x = b.activation(x, "relu")
    x = b.conv(x, 1280, 1, act="none")
    b.end_block(b.pool(x, "global_avg"))
    return b.build()
