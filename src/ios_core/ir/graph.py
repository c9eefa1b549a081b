"""The graph: nodes whose operands are sums of concatenated channel slices, grouped into blocks.

A `Slice` names channels ``[begin, end)`` of one node's output. A `Term` concatenates slices
along channels, and a `Value` sums terms. So concatenation and splitting are not operators: they
are how an operand is described, and an engine can realize them as views that copy nothing.

A `Block` is the unit the optimizer schedules on its own, as in IOS: the nodes between an *enter*
value (the previous block's exit, or the input) and the block's *exit* node, which every later
block reads through. Invariants, checked by `ios_core.ir.lint`: node names are unique, ``nodes``
is in topological order with the placeholder first, every non-placeholder node is in exactly one
block, each block enters from the previous block's exit, and a node reads only its own block or
earlier ones (NASNet cells read the exits of the two blocks before theirs).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property

from ios_core.ir.ops import Op, Placeholder, Shape, describe, rules_of


@dataclass(frozen=True)
class Slice:
    """Channels ``[begin, end)`` of the output of node ``node``."""

    node: str
    begin: int
    end: int

    @property
    def channels(self) -> int:
        return self.end - self.begin

    def __str__(self) -> str:
        return f"{self.node}[{self.begin}:{self.end}]"


Term = tuple[Slice, ...]
"""Slices concatenated along channels, in order."""


@dataclass(frozen=True)
class Value:
    """A sum of terms; each term a channel concatenation of slices. All terms have equal channels."""

    terms: tuple[Term, ...]

    @staticmethod
    def of(node: str, channels: int) -> Value:
        """The whole output of ``node``, which has ``channels`` channels."""
        return Value(((Slice(node, 0, channels),),))

    @property
    def channels(self) -> int:
        return sum(s.channels for s in self.terms[0])

    @property
    def nodes(self) -> tuple[str, ...]:
        """The producers this value reads, each once, in order of first appearance."""
        return tuple(dict.fromkeys(s.node for term in self.terms for s in term))

    def __add__(self, other: Value) -> Value:
        return Value(self.terms + other.terms)

    def __getitem__(self, channels: slice) -> Value:
        """Channels ``[start, stop)`` of a single-term value, e.g. ``v[0:64]``; a split costs nothing."""
        if len(self.terms) != 1 or channels.step not in (None, 1):
            raise ValueError("only a single-term value can be sliced, with step 1")
        start, stop = channels.start or 0, self.channels if channels.stop is None else channels.stop
        if not 0 <= start < stop <= self.channels:
            raise ValueError(f"slice [{start}:{stop}] out of range for a value of {self.channels} channels")
        picked, offset = [], 0
        for s in self.terms[0]:
            lo, hi = max(start - offset, 0), min(stop - offset, s.channels)
            if lo < hi:
                picked.append(Slice(s.node, s.begin + lo, s.begin + hi))
            offset += s.channels
        return Value((tuple(picked),))

    def __str__(self) -> str:
        return " + ".join(" ++ ".join(map(str, term)) for term in self.terms)


def concat(values: Iterable[Value]) -> Value:
    """Single-term values concatenated along channels."""
    values = list(values)
    if any(len(v.terms) != 1 for v in values):
        raise ValueError("only single-term values can be concatenated; materialize a sum with an identity first")
    return Value((tuple(s for v in values for s in v.terms[0]),))


@dataclass(frozen=True)
class Node:
    """One operator applied to its operands. ``inputs`` holds one `Value` per operand."""

    name: str
    op: Op
    inputs: tuple[Value, ...] = ()

    @property
    def producers(self) -> tuple[str, ...]:
        """The nodes this node reads, each once."""
        return tuple(dict.fromkeys(n for value in self.inputs for n in value.nodes))

    def __str__(self) -> str:
        operands = ", ".join(f"({v})" for v in self.inputs)
        return f"{self.name} = {describe(self.op)}{' ' if operands else ''}{operands}"


@dataclass(frozen=True)
class Block:
    """Nodes scheduled together, between the ``enter`` value and the ``exit`` node (one of ``nodes``)."""

    enter: str
    nodes: tuple[str, ...]
    exit: str


@dataclass(frozen=True)
class Graph:
    """A CNN as a DAG of nodes: the placeholder first, then every operator in topological order.

    Construct through `ios_core.ir.build_graph` (or `GraphBuilder`), which sorts and lints; a
    ``Graph`` built directly is trusted to satisfy the invariants in this module's docstring.
    """

    name: str
    nodes: tuple[Node, ...]
    blocks: tuple[Block, ...]

    @cached_property
    def by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def __getitem__(self, name: str) -> Node:
        return self.by_name[name]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    @property
    def input(self) -> Node:
        return self.nodes[0]

    @property
    def output(self) -> str:
        """The exit of the last block: the graph's result."""
        return self.blocks[-1].exit

    @property
    def operators(self) -> tuple[Node, ...]:
        """Every node but the placeholder: what a schedule must run."""
        return self.nodes[1:]

    @cached_property
    def shapes(self) -> dict[str, Shape]:
        """The per-sample output shape of every node (batch size multiplies, never changes them)."""
        shapes: dict[str, Shape] = {}
        for node in self.nodes:
            shapes[node.name] = rules_of(node.op).shape(
                node.op, tuple(self.operand_shape(v, shapes) for v in node.inputs)
            )
        return shapes

    @staticmethod
    def operand_shape(value: Value, shapes: dict[str, Shape]) -> Shape:
        """The shape of a value, from its producers' shapes (no checks: lint does those)."""
        first = shapes[value.terms[0][0].node]
        return Shape(value.channels, first.height, first.width)

    def operand_shapes(self, node: Node) -> tuple[Shape, ...]:
        return tuple(self.operand_shape(v, self.shapes) for v in node.inputs)

    @cached_property
    def consumers(self) -> dict[str, tuple[str, ...]]:
        """For each node, the nodes that read it, in topological order."""
        users: dict[str, list[str]] = {n.name: [] for n in self.nodes}
        for node in self.nodes:
            for producer in node.producers:
                users[producer].append(node.name)
        return {name: tuple(u) for name, u in users.items()}

    def flops(self, name: str) -> int:
        """FLOPs of one node, per sample."""
        node = self[name]
        return rules_of(node.op).flops(node.op, self.operand_shapes(node), self.shapes[name])

    def weight_shapes(self, name: str) -> dict[str, tuple[int, ...]]:
        node = self[name]
        return rules_of(node.op).weights(node.op, self.operand_shapes(node))

    def block_of(self, name: str) -> int:
        return self._block_index[name]

    @cached_property
    def _block_index(self) -> dict[str, int]:
        return {n: i for i, block in enumerate(self.blocks) for n in block.nodes}

    def count(self, kind: type) -> int:
        """How many operators of this kind the graph runs, each one inside a `Sequential` included."""
        return sum(isinstance(op, kind) for node in self.operators for op in (node.op, *getattr(node.op, "ops", ())))

    def __str__(self) -> str:
        lines = [f"graph {self.name}: {len(self.operators)} operators in {len(self.blocks)} blocks"]
        lines.append(f"  {self.input}")
        for i, block in enumerate(self.blocks):
            lines.append(f"  block {i} (enter {block.enter}, exit {block.exit})")
            lines += [f"    {self[name]}  # {self.shapes[name]}" for name in block.nodes]
        return "\n".join(lines)


def is_placeholder(node: Node) -> bool:
    return isinstance(node.op, Placeholder)
