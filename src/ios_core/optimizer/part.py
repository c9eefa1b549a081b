"""A part: the operators one DP runs over, as bitmasks, with everything the ending generators precompute.

Bit ``i`` stands for ``names[i]``; operators are in topological order, so every edge goes from a
lower bit to a higher one. Only edges inside the part are kept: an operator that reads the
block's enter node, an earlier block or an earlier part reads something already computed, and
is not constrained by it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from functools import cached_property
from itertools import combinations
from typing import NamedTuple

from ios_core.ir import Conv, Graph
from ios_core.schedule import Group, Stage, merge_error

MAX_MERGE_CLASS = 12
"""The largest merge class (`merge_class`) whose every subset may be a merge, as in IOS.

A class of ``n`` convolutions has ``2**n - n - 1`` subsets of two or more: each is checked once when
the part is made, and the DP offers each one in every state that holds its members as sinks --
about ``3**n`` transitions for ``n`` independent convolutions. Twelve keeps that near half a
million; a larger class is pruned to its pairs, ``n(n-1)/2`` of them (`merge_size_limit`).
"""


class Ending(NamedTuple):
    """A candidate last stage of a state: its operators, one mask per group, and whether it is a merge.

    A named tuple rather than a dataclass: the DP makes millions of them, and tuples are made fastest.
    """

    mask: int
    groups: tuple[int, ...]
    merge: bool = False


@dataclass(frozen=True)
class Part:
    """Operators ``names`` (topological order) with per-bit successor, predecessor and ancestor masks."""

    graph: Graph
    names: tuple[str, ...]
    succ: tuple[int, ...]
    pred: tuple[int, ...]
    ancestors: tuple[int, ...]

    @property
    def full(self) -> int:
        return (1 << len(self.names)) - 1

    @cached_property
    def neighbours(self) -> tuple[int, ...]:
        """Per bit, the mask of the operators it reads or that read it (an edge either way)."""
        return tuple(succ | pred for succ, pred in zip(self.succ, self.pred, strict=True))

    @cached_property
    def merges(self) -> tuple[int, ...]:
        """Every set of two or more convolutions of the part that may run as one, as masks.

        A subset of one `merge_class` of at most `merge_size_limit` members for which
        `ios_core.schedule.merge_error` finds nothing wrong. Computed when first asked for, so a
        search without merge endings (``opt=parallel``) never enumerates a class.
        """
        classes: dict[Hashable, list[int]] = defaultdict(list)
        for i, name in enumerate(self.names):
            key = merge_class(self.graph, name)
            if key is not None:
                classes[key].append(i)
        return tuple(
            sum(1 << i for i in subset)
            for members in classes.values()
            for size in range(2, merge_size_limit(len(members)) + 1)
            for subset in combinations(members, size)
            if merge_error(self.graph, tuple(self.names[i] for i in subset)) is None
        )

    def sinks(self, state: int) -> int:
        """The operators of ``state`` that no other operator of ``state`` reads."""
        return sum(1 << i for i in bits(state) if not self.succ[i] & state)

    def stage(self, ending: Ending) -> Stage:
        """The `Stage` an ending runs: groups by first operator, each group's operators in topological order."""
        groups = sorted(ending.groups, key=lambda m: m & -m)
        return Stage(tuple(self.group(m, ending.merge) for m in groups))

    def group(self, mask: int, merge: bool = False) -> Group:
        """The `Group` of the operators of ``mask``, one object per mask and kind: the many stages the DP costs
        share their groups, and a cost's caches find one again by identity, before comparing names."""
        key = ~mask if merge else mask
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = Group(tuple(self.names[i] for i in bits(mask)), merge)
        return group

    @cached_property
    def _groups(self) -> dict[int, Group]:
        return {}


def make_part(graph: Graph, names: tuple[str, ...]) -> Part:
    """Precompute the masks of a part; ``names`` must be in topological order."""
    index = {name: i for i, name in enumerate(names)}
    succ, pred = [0] * len(names), [0] * len(names)
    for i, name in enumerate(names):
        for producer in graph[name].producers:
            if producer in index:
                pred[i] |= 1 << index[producer]
                succ[index[producer]] |= 1 << i
    ancestors = [0] * len(names)
    for i in range(len(names)):
        for j in bits(pred[i]):
            ancestors[i] |= (1 << j) | ancestors[j]
    return Part(graph, names, tuple(succ), tuple(pred), tuple(ancestors))


def merge_class(graph: Graph, name: str) -> Hashable | None:
    """The class within which operator ``name`` may merge, or None for one that never merges.

    Convolutions of one class (``groups=1``) read the same operand with the same stride, dilation
    and activation: every legal merge (`ios_core.schedule.merge_error`) lies inside one class.
    """
    node = graph[name]
    if not isinstance(node.op, Conv) or node.op.groups != 1:
        return None
    return node.inputs, node.op.stride, node.op.dilation, node.op.act


def merge_size_limit(class_size: int) -> int:
    """The most convolutions one merge may join in a part's merge class of ``class_size`` members.

    All of them up to `MAX_MERGE_CLASS`, two beyond it. This is the one pruning rule of the search
    space: `Part.merges` follows it, and so does the brute force that checks the DP's optimality.
    """
    return class_size if class_size <= MAX_MERGE_CLASS else 2


def split_parts(names: tuple[str, ...], max_part_size: int) -> list[tuple[str, ...]]:
    """A block's operators (topological order) cut into consecutive parts of at most ``max_part_size``.

    Each part is a prefix-closed slice of a topological order, so running the parts one after
    another respects every edge; as in IOS, a schedule never mixes operators of two parts in a stage.
    """
    return [names[i:i + max_part_size] for i in range(0, len(names), max_part_size)]


def bits(mask: int) -> list[int]:
    """The positions of the set bits of ``mask``, lowest first."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out
