"""Exact dependencies between the groups of a program: the earlier groups each one must run after.

A program's stages are barriers: stage ``s + 1`` starts when every group of stage ``s`` has ended. That is more
order than correctness needs. A group (``(stage, stream)`` of a `Program`) only needs to run after every earlier
group it conflicts with: one that wrote memory it reads (read after write), read memory it writes (write after
read) or wrote memory it writes (write after write). Any execution that keeps those orders computes what the staged
one computes, so a relaxed barrier is still a correct execution of the schedule.

Conflicts are over memory, not graph edges, because the arena reuses bytes: buffers whose stage intervals do not
meet may share them (`ios_core.engine.memory.assign_offsets`), so a group writing a buffer placed over a dead one
must wait for every earlier group that touched those bytes. What a view touches is taken as:

- within its own buffer, exactly its channels (channel slices of one buffer are disjoint sets of elements in
  either layout, which is what lets the groups of one stage write slices of one concatenation side by side);
- against any other buffer, the bytes from its first element to its last: a superset of its elements, so overlapping
  spans over-approximate a conflict and never miss one.

Groups of one stage never conflict (`ios_core.engine.program.verify`), so only earlier stages are searched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ios_core.engine.program import Program, View

Group = tuple[int, int]
"""A group of a program: ``(stage, stream)``, the tasks ``program.stages[stage][stream]``."""


@dataclass(frozen=True)
class _Access:
    """A view a task reads or writes: its buffer and channels ``[channel, end)``, and its arena bytes ``[lo, hi)``."""

    buffer: int
    channel: int
    end: int
    lo: int
    hi: int
    write: bool

    def conflicts(self, other: _Access) -> bool:
        if not (self.write or other.write):
            return False
        if self.buffer == other.buffer:
            return self.channel < other.end and other.channel < self.end
        return self.lo < other.hi and other.lo < self.hi


def _access(program: Program, view: View, write: bool) -> _Access:
    offset, dims, strides = program.locate(view)
    last = offset + sum((d - 1) * s for d, s in zip(dims, strides, strict=True))
    size = program.itemsize
    return _Access(view.buffer, view.channel, view.channel + view.channels, offset * size, (last + 1) * size, write)


def _accesses(program: Program, group: Group) -> set[_Access]:
    found = set()
    for task in program.stages[group[0]][group[1]]:
        found.update(_access(program, view, False) for view in task.reads())
        found.add(_access(program, task.y, True))
    return found


def _neighbours(program: Program) -> list[list[int]]:
    """For each buffer, the buffers whose arena bytes overlap its own (itself included)."""
    spans = [(program.offsets[b.index], program.offsets[b.index] + program.buffer_bytes(b.index))
             for b in program.buffers]
    return [[j for j, (lo2, hi2) in enumerate(spans) if lo < hi2 and lo2 < hi] for lo, hi in spans]


def groups(program: Program) -> list[Group]:
    """Every group of the program in program order: by stage, then stream."""
    return [(s, k) for s, stage in enumerate(program.stages) for k in range(len(stage))]


def dependencies(program: Program) -> dict[Group, frozenset[Group]]:
    """For each group, every earlier group it conflicts with (see the module), none pruned.

    Invariant: for groups ``g`` of stage ``s`` and ``h`` of a stage before ``s``, ``h`` is in ``dependencies[g]``
    exactly when a task of one writes arena memory a task of the other reads or writes (up to the byte-span
    over-approximation across buffers); no group depends on one of its own stage or a later one.
    """
    neighbours = _neighbours(program)
    seen: list[list[tuple[Group, _Access]]] = [[] for _ in program.buffers]
    found: dict[Group, frozenset[Group]] = {}
    for s, stage in enumerate(program.stages):
        accesses = {(s, k): _accesses(program, (s, k)) for k in range(len(stage))}
        for group, mine in accesses.items():
            deps: set[Group] = set()
            for a in mine:
                for buffer in neighbours[a.buffer]:
                    deps.update(h for h, b in seen[buffer] if h not in deps and a.conflicts(b))
            found[group] = frozenset(deps)
        for group, mine in accesses.items():  # seen only by later stages: a stage's groups never conflict
            for a in mine:
                seen[a.buffer].append((group, a))
    return found


@dataclass(frozen=True)
class Waits:
    """The event waits that run a program's groups in dependency order on its streams.

    ``before[g]``: the groups of other streams whose ends group ``g`` waits for before it starts -- its
    `dependencies` less those already ended when it starts, through its own stream's order (a stream runs its
    groups one after another) or through the waits of a group it already follows. ``end``: the last group of every
    side stream, which stream 0 waits for after its own last group, so that it ends holding the whole program.
    """

    before: Mapping[Group, tuple[Group, ...]]
    end: tuple[Group, ...]

    @property
    def recorded(self) -> frozenset[Group]:
        """The groups whose end some wait needs (an event is recorded after each)."""
        return frozenset(g for waited in (*self.before.values(), self.end) for g in waited)


def waits(program: Program, deps: Mapping[Group, frozenset[Group]] | None = None) -> Waits:
    """The fewest waits that order the program's groups after their `dependencies` (``deps``, computed if None)."""
    deps = dependencies(program) if deps is None else deps
    ended: dict[Group, frozenset[Group]] = {}  # every group surely ended when each group starts
    last: dict[int, Group] = {}
    before: dict[Group, tuple[Group, ...]] = {}
    for group in groups(program):
        previous = last.get(group[1])
        done = set() if previous is None else {previous, *ended[previous]}
        chosen = []
        for h in sorted(deps[group] - done, reverse=True):  # latest first: an earlier group cannot imply a later one
            if h not in done:
                chosen.append(h)
                done |= {h, *ended[h]}
        before[group], ended[group], last[group[1]] = tuple(sorted(chosen)), frozenset(done), group
    # Not pruned: a capture ends only once every stream it forked is joined to the origin stream, and an extra wait
    # costs no node in the instantiated graph.
    end = tuple(sorted(g for k, g in last.items() if k > 0))
    return Waits(before, end)
