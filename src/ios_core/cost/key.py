"""Canonical stage keys: two stages that compute the same thing get the same key, whatever their names.

A cost depends on what a stage computes, not on what its operators are called, so the cache is
keyed by a description that leaves names out:

* an operator is its attributes (the frozen `Op` itself), the shape of each operand, and each
  operand's layout: per summed term, per concatenated slice, either ``("group", p, begin, end)``
  -- channels of the ``p``-th operator of its own group -- or ``("input", begin, end, channels)``
  -- channels of a tensor made before the stage, which has ``channels`` channels in all;
* a group is its merge flag and its operators in run order (a merge's in sorted order: it is a set);
* a stage is the batch size and its groups, sorted (groups run concurrently; their order is not
  part of what the stage computes).

So Inception's repeated blocks, or NASNet's repeated cells, share their entries. The key exists in
two forms: `StageKey`, structured, for costs that compute from it, and its canonical text
(`key_text`), which caches use; `digest` shortens the text for caches on disk. What a cost's
numbers depend on besides the stage -- the device profile, the precision, the GPU and its
software, the timing -- is kept beside the key, in the cache's *space* (`content_space`), not in it.

`StageKeys` computes the same text for many stages of one graph quickly, reusing what it has
seen of each operator; `stage_key` and `key_text` are the plain definition it must agree with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any, NamedTuple

from ios_core.ir import Graph, Node, Op
from ios_core.schedule import Group, Stage

Source = tuple[str, int, int, int]


class OperandKey(NamedTuple):
    """One operand: its (channels, height, width) and, per summed term, its concatenated sources."""

    shape: tuple[int, int, int]
    terms: tuple[tuple[Source, ...], ...]


class OpKey(NamedTuple):
    op: Op
    operands: tuple[OperandKey, ...]


class GroupKey(NamedTuple):
    merge: bool
    ops: tuple[OpKey, ...]


class StageKey(NamedTuple):
    batch: int
    groups: tuple[GroupKey, ...]


def op_key(graph: Graph, node: Node, position: dict[str, int]) -> OpKey:
    """The key of ``node`` in a group whose operators are at ``position``."""
    operands = []
    for value in node.inputs:
        shape = graph.operand_shape(value, graph.shapes)
        terms = tuple(
            tuple(
                ("group", position[s.node], s.begin, s.end) if s.node in position
                else ("input", s.begin, s.end, graph.shapes[s.node].channels)
                for s in term
            )
            for term in value.terms
        )
        operands.append(OperandKey(tuple(shape), terms))
    return OpKey(node.op, tuple(operands))


FIELDS_KEYED_SINCE = ("padding_end", "ceil_mode", "count_include_pad")
"""Operator fields added after the shipped stage costs (``results/profiles``) were keyed: left out of an
operator's text while at their defaults, so an operator that does not use them keeps the key it always had."""


def op_repr(op: Op) -> str:
    """The dataclass ``repr`` of an operator (a `Sequential`'s inner ones too), less `FIELDS_KEYED_SINCE` at their
    defaults."""
    parts = []
    for field in fields(op):
        value = getattr(op, field.name)
        if field.name in FIELDS_KEYED_SINCE and value == field.default:
            continue
        if isinstance(value, tuple) and value and is_dataclass(value[0]):  # a Sequential's operators
            value = "(" + ", ".join(map(op_repr, value)) + ("," if len(value) == 1 else "") + ")"
        else:
            value = repr(value)
        parts.append(f"{field.name}={value}")
    return f"{type(op).__qualname__}({', '.join(parts)})"


def op_text(key: OpKey) -> str:
    return op_repr(key.op) + repr(key.operands)


def group_text(merge: bool, op_texts: list[str]) -> str:
    """A group's canonical text from its operators' texts (in run order; sorted here for a merge)."""
    return ("merge[" + "; ".join(sorted(op_texts)) + "]") if merge else ("chain[" + "; ".join(op_texts) + "]")


def group_key(graph: Graph, group: Group) -> GroupKey:
    position = {name: i for i, name in enumerate(group.ops)}
    ops = [op_key(graph, graph[n], position) for n in group.ops]
    if group.merge:
        ops.sort(key=op_text)
    return GroupKey(group.merge, tuple(ops))


def stage_key(graph: Graph, stage: Stage, batch: int) -> StageKey:
    """The structured, name-independent key of ``stage`` at ``batch`` (see the module docstring)."""
    groups = [group_key(graph, g) for g in stage.groups]
    return StageKey(batch, tuple(sorted(groups, key=lambda g: group_text(g.merge, [op_text(o) for o in g.ops]))))


def key_text(key: StageKey) -> str:
    """The canonical text of a key: equal texts, equal keys."""
    groups = [group_text(g.merge, [op_text(o) for o in g.ops]) for g in key.groups]
    return f"batch {key.batch}: " + " | ".join(groups)


def digest(text: str) -> str:
    """A 32-hex-digit digest of a key's text: stable across runs, processes and machines."""
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _by_value(value: Any) -> Any:
    """``value`` with every number a float, so that an input given as ``50`` or ``50.0`` is one input."""
    if isinstance(value, Mapping):
        return {str(k): _by_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_by_value(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def content_space(inputs: Mapping[str, Any], *names: str) -> str:
    """The namespace of cached values that depend on ``inputs``: ``names/.../<digest of inputs>``.

    ``names`` are for people (``"simulated", "h100", "fp32"``); the digest, of the canonical JSON of every
    input, is what keeps values apart -- so a changed input, named or not, never finds an old value.
    """
    text = json.dumps(_by_value(inputs), sort_keys=True, separators=(",", ":"))
    return "/".join((*names, digest(text)))


class StageKeys:
    """The canonical texts of many stages of one graph, equal to ``key_text(stage_key(...))``, fast.

    An operator none of whose producers is in its own group (the common case) has one text
    whatever the stage; it is computed once.
    """

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self._alone: dict[str, str] = {}
        self._groups: dict[Group, str] = {}

    def text(self, stage: Stage, batch: int) -> str:
        groups = sorted(self.group_text(g) for g in stage.groups)
        return f"batch {batch}: " + " | ".join(groups)

    def group_text(self, group: Group) -> str:
        text = self._groups.get(group)
        if text is None:
            text = self._groups[group] = group_text(group.merge, [self._op_text(n, group) for n in group.ops])
        return text

    def _op_text(self, name: str, group: Group) -> str:
        node = self.graph[name]
        if len(group.ops) > 1 and any(p in group.ops for p in node.producers):
            return op_text(op_key(self.graph, node, {n: i for i, n in enumerate(group.ops)}))
        text = self._alone.get(name)
        if text is None:
            text = self._alone[name] = op_text(op_key(self.graph, node, {}))
        return text


class KeysByGraph:
    """One `StageKeys` per graph seen, held with its graph so that an ``id`` is never reused while cached."""

    def __init__(self) -> None:
        self._keys: dict[int, StageKeys] = {}

    def __call__(self, graph: Graph) -> StageKeys:
        keys = self._keys.get(id(graph))
        if keys is None or keys.graph is not graph:
            keys = self._keys[id(graph)] = StageKeys(graph)
        return keys
