"""The graph IR: operators as data (`ops`), the graph (`graph`), its rules (`lint`) and a builder."""

from ios_core.ir.builder import GraphBuilder, pair
from ios_core.ir.graph import Block, Graph, Node, Slice, Term, Value, concat, is_placeholder
from ios_core.ir.lint import GraphError, build_graph, lint, topological_order
from ios_core.ir.ops import (
    ACTIVATIONS,
    OPS,
    Activation,
    Conv,
    Elementwise,
    Identity,
    Op,
    OpDef,
    Placeholder,
    Pool,
    Sequential,
    Shape,
    ShapeError,
    UnknownOpError,
    describe,
    rules_of,
)

__all__ = [
    "ACTIVATIONS", "OPS", "Activation", "Block", "Conv", "Elementwise", "Graph", "GraphBuilder", "GraphError",
    "Identity", "Node", "Op", "OpDef", "Placeholder", "Pool", "Sequential", "Shape", "ShapeError", "Slice", "Term",
    "UnknownOpError", "Value", "build_graph", "concat", "describe", "is_placeholder", "lint", "pair", "rules_of",
    "topological_order",
]
