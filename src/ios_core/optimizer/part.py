"""A part: the operators one DP runs over, as bitmasks, with everything the ending generators precompute.

Bit ``i`` stands for ``names[i]``; operators are in topological order, so every edge goes from a
lower bit to a higher one. Only edges inside the part are kept: an operator that reads the
block's enter node, an earlier block or an earlier part reads something already computed, and
is not constrained by it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from itertools import combinations
from typing import NamedTuple

from ios_core.ir import Conv, Graph
from ios_core.schedule import Group, Stage, merge_error

MAX_MERGE_CLASS = 12  # convolutions sharing one operand; 2**12 subsets is still cheap to check once


class Ending(NamedTuple):
    """A candidate last stage of a state: its operators, one mask per group, and whether it is a merge.

    A named tuple rather than a dataclass: the DP makes millions of them, and tuples are made fastest.
    """

    mask: int
    groups: tuple[int, ...]
    merge: bool = False


@dataclass(frozen=True)
class Part:
    """Operators ``names`` (topological order) with per-bit successor, predecessor and ancestor masks.

    ``merges`` lists every set of at least two convolutions of the part that may run as one
    (`ios_core.schedule.merge_error` returns None for it).
    """

    graph: Graph
    names: tuple[str, ...]
    succ: tuple[int, ...]
    pred: tuple[int, ...]
    ancestors: tuple[int, ...]
    merges: tuple[int, ...]

    @property
    def full(self) -> int:
        return (1 << len(self.names)) - 1

    def sinks(self, state: int) -> int:
        """The operators of ``state`` that no other operator of ``state`` reads."""
        return sum(1 << i for i in bits(state) if not self.succ[i] & state)

    def stage(self, ending: Ending) -> Stage:
        """The `Stage` an ending runs: groups by first operator, each group's operators in topological order."""
        groups = sorted(ending.groups, key=lambda m: m & -m)
        return Stage(tuple(Group(tuple(self.names[i] for i in bits(m)), ending.merge) for m in groups))


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
    return Part(graph, names, tuple(succ), tuple(pred), tuple(ancestors), _merges(graph, names))


def _merges(graph: Graph, names: tuple[str, ...]) -> tuple[int, ...]:
    """Every legal merge among the part's convolutions, as masks."""
    classes: dict[object, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        op = graph[name].op
        if isinstance(op, Conv) and op.groups == 1:
            classes[(graph[name].inputs, op.stride, op.dilation, op.act)].append(i)
    merges = []
    for members in classes.values():
        if len(members) > MAX_MERGE_CLASS:
            raise ValueError(f"{len(members)} convolutions read one operand; at most {MAX_MERGE_CLASS} are supported")
        for size in range(2, len(members) + 1):
            for subset in combinations(members, size):
                if merge_error(graph, tuple(names[i] for i in subset)) is None:
                    merges.append(sum(1 << i for i in subset))
    return tuple(merges)


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
