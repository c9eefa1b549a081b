"""The rules a graph must satisfy, kept apart from the data: each violation names the node and the rule.

`build_graph` is the one way a checked `Graph` is made: it sorts the nodes topologically (raising
``cycle detected`` with the cycle), then checks operands, slices, shapes and blocks.
"""

from __future__ import annotations

from collections.abc import Iterable

from ios_core.ir.graph import Block, Graph, Node, Value, is_placeholder
from ios_core.ir.ops import Shape, ShapeError, UnknownOpError, rules_of


class GraphError(ValueError):
    """A graph breaks one of the IR's rules."""


def build_graph(name: str, nodes: Iterable[Node], blocks: Iterable[Block]) -> Graph:
    """A linted graph from nodes in any order and blocks; raises `GraphError` naming what is wrong."""
    nodes, blocks = list(nodes), list(blocks)
    _check_names(nodes)
    ordered = topological_order(nodes)
    order = {n.name: i for i, n in enumerate(ordered)}
    blocks = [Block(b.enter, tuple(sorted(b.nodes, key=lambda n: order.get(n, -1))), b.exit) for b in blocks]
    graph = Graph(name, tuple(ordered), tuple(blocks))
    lint(graph)
    return graph


def _check_names(nodes: list[Node]) -> None:
    seen: set[str] = set()
    for node in nodes:
        if not isinstance(node.name, str) or not node.name:
            raise GraphError(f"node name must be a non-empty string, got {node.name!r}")
        if node.name in seen:
            raise GraphError(f"duplicate node name {node.name!r}")
        seen.add(node.name)
    for node in nodes:
        for producer in node.producers:
            if producer not in seen:
                raise GraphError(f"node {node.name!r} reads {producer!r}, which is not in the graph (dangling input)")


def topological_order(nodes: list[Node]) -> list[Node]:
    """Nodes ordered so that producers come first, keeping the given order where it is already valid."""
    by_name = {n.name: n for n in nodes}
    state: dict[str, str] = {}
    ordered: list[Node] = []

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "active":
            cycle = path[path.index(name) :] + [name]
            raise GraphError("cycle detected: " + " -> ".join(reversed(cycle)))
        state[name] = "active"
        for producer in by_name[name].producers:
            visit(producer, path + [name])
        state[name] = "done"
        ordered.append(by_name[name])

    for node in nodes:
        visit(node.name, [])
    return ordered


def lint(graph: Graph) -> None:
    """Check every rule of the IR on a graph; raise `GraphError` at the first violation."""
    if not graph.nodes or not is_placeholder(graph.nodes[0]):
        raise GraphError(f"graph {graph.name!r} must start with its one placeholder input")
    shapes: dict[str, Shape] = {}
    for position, node in enumerate(graph.nodes):
        if is_placeholder(node) and position != 0:
            raise GraphError(f"node {node.name!r}: a graph has exactly one placeholder, first")
        shapes[node.name] = check_node(node, shapes)
    _check_blocks(graph)


def check_node(node: Node, shapes: dict[str, Shape]) -> Shape:
    """The output shape of ``node`` given its producers' shapes, after checking its operator and operands."""
    try:
        rules = rules_of(node.op)
    except UnknownOpError as error:
        raise GraphError(f"node {node.name!r}: {error}") from None
    count = len(node.inputs)
    if count < rules.min_operands or (rules.max_operands is not None and count > rules.max_operands):
        most = "any number of" if rules.max_operands is None else f"at most {rules.max_operands}"
        raise GraphError(
            f"node {node.name!r}: {rules.name} takes at least {rules.min_operands} and {most} operands, got {count}"
        )
    for producer in node.producers:
        if producer not in shapes:
            raise GraphError(f"node {node.name!r} reads {producer!r}, which is not before it in the graph")
    operands = tuple(_checked_value(node, v, shapes) for v in node.inputs)
    try:
        return rules.shape(node.op, operands)
    except ShapeError as error:
        raise GraphError(f"node {node.name!r} ({rules.name}): {error}") from None


def _checked_value(node: Node, value: Value, shapes: dict[str, Shape]) -> Shape:
    """The shape of one operand, after checking its slices, concatenations and sums."""
    if not value.terms or any(not term for term in value.terms):
        raise GraphError(f"node {node.name!r}: an operand needs at least one term of at least one slice")
    term_shapes = []
    for term in value.terms:
        spatial = set()
        for s in term:
            size = shapes[s.node].channels
            if not 0 <= s.begin < s.end <= size:
                raise GraphError(f"node {node.name!r}: slice {s} out of range, {s.node!r} has {size} channels")
            spatial.add(shapes[s.node][1:])
        if len(spatial) > 1:
            raise GraphError(f"node {node.name!r}: concatenated slices differ in height x width: {sorted(spatial)}")
        term_shapes.append(Shape(sum(s.channels for s in term), *spatial.pop()))
    if any(t != term_shapes[0] for t in term_shapes):
        raise GraphError(f"node {node.name!r}: summed terms differ in shape: {', '.join(map(str, term_shapes))}")
    return term_shapes[0]


def _check_blocks(graph: Graph) -> None:
    if not graph.blocks:
        raise GraphError(f"graph {graph.name!r} has no blocks")
    owner: dict[str, int] = {}
    for i, block in enumerate(graph.blocks):
        for name in block.nodes:
            if name not in graph.by_name or is_placeholder(graph[name]):
                raise GraphError(f"block {i} lists {name!r}, which is not an operator of the graph")
            if name in owner:
                raise GraphError(f"node {name!r} is in blocks {owner[name]} and {i}; each operator is in one block")
            owner[name] = i
        if block.exit not in block.nodes:
            raise GraphError(f"block {i}: its exit {block.exit!r} is not one of its nodes")
        expected_enter = graph.input.name if i == 0 else graph.blocks[i - 1].exit
        if block.enter != expected_enter:
            raise GraphError(f"block {i}: enters from {block.enter!r}, expected the previous exit {expected_enter!r}")
    for node in graph.operators:
        if node.name not in owner:
            raise GraphError(f"node {node.name!r} is in no block")
        for producer in node.producers:
            if producer in owner and owner[producer] > owner[node.name]:
                raise GraphError(f"node {node.name!r} in block {owner[node.name]} reads a later block's {producer!r}")
