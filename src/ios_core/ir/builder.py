"""`GraphBuilder`: write a model as straight-line code, block by block, and get a linted `Graph`."""

from __future__ import annotations

from collections import Counter

from ios_core.ir.graph import Block, Graph, Node, Value
from ios_core.ir.lint import GraphError, build_graph, check_node
from ios_core.ir.ops import Activation, Conv, Elementwise, Identity, Op, Placeholder, Pool, Sequential, Shape, rules_of

IntOrPair = int | tuple[int, int]


def pair(x: IntOrPair) -> tuple[int, int]:
    return (x, x) if isinstance(x, int) else (int(x[0]), int(x[1]))


class GraphBuilder:
    """Appends nodes to the current block; `end_block` closes it at an exit value.

    Each method returns the `Value` of the node it added. Names default to ``<kind><n>``
    (``conv1``, ``pool3``...), numbered per kind in order of creation.
    """

    def __init__(self, name: str, channels: int, height: int, width: int) -> None:
        self.name = name
        self._nodes: list[Node] = [Node("input", Placeholder(channels, height, width))]
        self._shapes = {"input": Shape(channels, height, width)}
        self._blocks: list[Block] = []
        self._open: list[str] = []
        self._counts: Counter[str] = Counter()

    @property
    def input(self) -> Value:
        return Value.of("input", channels=self._shapes["input"].channels)

    def node(self, op: Op, *inputs: Value, name: str | None = None, prefix: str | None = None) -> Value:
        """Add any operator; its output shape is inferred now so that mistakes surface where they are made."""
        if name is None:
            prefix = prefix or rules_of(op).name
            self._counts[prefix] += 1
            name = f"{prefix}{self._counts[prefix]}"
        if name in self._shapes:
            raise GraphError(f"duplicate node name {name!r}")
        node = Node(name, op, tuple(inputs))
        self._shapes[name] = check_node(node, self._shapes)
        self._nodes.append(node)
        self._open.append(name)
        return Value.of(name, self._shapes[name].channels)

    def conv(
        self,
        x: Value,
        out_channels: int,
        kernel: IntOrPair,
        stride: IntOrPair = 1,
        padding: IntOrPair = 0,
        act: str = "relu",
        groups: int = 1,
        name: str | None = None,
    ) -> Value:
        op = Conv(out_channels, pair(kernel), pair(stride), pair(padding), (1, 1), groups, act)
        return self.node(op, x, name=name)

    def pool(
        self,
        x: Value,
        kind: str,
        kernel: IntOrPair = 1,
        stride: IntOrPair = 1,
        padding: IntOrPair = 0,
        name: str | None = None,
    ) -> Value:
        return self.node(Pool(kind, pair(kernel), pair(stride), pair(padding)), x, name=name)

    def identity(self, x: Value, name: str | None = None) -> Value:
        return self.node(Identity(), x, name=name)

    def add(self, *xs: Value, name: str | None = None) -> Value:
        return self.node(Elementwise("add"), *xs, name=name, prefix="add")

    def mul(self, *xs: Value, name: str | None = None) -> Value:
        return self.node(Elementwise("mul"), *xs, name=name, prefix="mul")

    def activation(self, x: Value, kind: str = "relu", name: str | None = None) -> Value:
        return self.node(Activation(kind), x, name=name, prefix=kind)

    def sequential(self, x: Value, *ops: Op, name: str | None = None) -> Value:
        return self.node(Sequential(tuple(ops)), x, name=name, prefix="seq")

    def end_block(self, exit_value: Value) -> Value:
        """Close the current block at ``exit_value``; a value that is not one whole node gets an identity."""
        if not self._open:
            raise GraphError("end_block called on an empty block")
        whole = exit_value.nodes[0] if len(exit_value.nodes) == 1 else None
        if whole is None or whole not in self._open or exit_value != Value.of(whole, self._shapes[whole].channels):
            whole = self.identity(exit_value).nodes[0]
        enter = self._blocks[-1].exit if self._blocks else "input"
        self._blocks.append(Block(enter, tuple(self._open), whole))
        self._open = []
        return Value.of(whole, self._shapes[whole].channels)

    def build(self) -> Graph:
        if self._open:
            raise GraphError(f"graph {self.name!r}: nodes {self._open} were added after the last end_block")
        return build_graph(self.name, self._nodes, self._blocks)
