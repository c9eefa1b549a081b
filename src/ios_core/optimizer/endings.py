"""Endings: the stages that may run last among a state's operators, of the kinds each ``opt`` allows.

An *ending* ``E`` of a state ``S`` (a set of operators, closed under predecessors within the
part) is a non-empty subset that can run last: no operator of ``S - E`` reads an operator of
``E``. Equivalently, ``E`` holds every successor in ``S`` of each of its operators.

* ``parallel``: any such ``E`` whose weakly connected components (in the subgraph ``E`` induces)
  number at most ``s`` and have at most ``r`` operators each; each component is a group, run in
  topological order on its own stream. A single operator is the ending of one group of one.
* ``merge``: a single operator of ``S`` that nothing in ``S`` reads, or two or more of them that
  are convolutions forming a legal merge (`ios_core.schedule.merge_error`: the same operand,
  stride and dilation, ``groups=1``, the same activation, compatible padding), run as one wider
  convolution. As in IOS, any number of them may merge -- unless more than
  `ios_core.optimizer.part.MAX_MERGE_CLASS` could, in which case only pairs are tried
  (`ios_core.optimizer.part.merge_size_limit`: the search space is pruned, not refused).
* ``both``: the union of the two (a mergeable set appears twice: as parallel groups and as a merge).

Every kind contains every single-operator ending, so every topological order -- the sequential
schedule among them -- is in the search space for any ``r, s >= 1``.

`parallel_endings` and `merge_endings` are the plain definitions; the search uses `ending_generator`, whose
`FastEndings` makes the same lists, in the same order (the DP's ties depend on it), several times faster.
"""

from __future__ import annotations

from collections.abc import Callable

from ios_core.optimizer.part import Ending, Part, bits

EndingGenerator = Callable[[int], list[Ending]]


def parallel_endings(part: Part, state: int, r: int, s: int) -> list[Ending]:
    """Every parallel ending of ``state`` (see the module docstring), in depth-first order.

    A depth-first choice, operator by operator in reverse topological order, of in or out.
    An operator may go in only if all its successors in ``state`` are in; so leaving one out
    blocks all its ancestors. Components grow as operators join them (adding an operator joins
    it to the components of its successors), which prunes groups over ``r`` at once; a set of
    components is abandoned as soon as more than ``s`` of them can no longer be joined.
    """
    pred, succ, ancestors, limit = part.pred, part.succ, part.ancestors, r * s
    found: list[Ending] = []

    def visit(undecided: int, chosen: int, size: int, blocked: int, comps: tuple[tuple[int, int], ...]) -> None:
        free = undecided & ~blocked
        if not free or size == limit:
            if chosen and len(comps) <= s:
                found.append(Ending(chosen, tuple(mask for mask, _ in comps)))
            return
        if len(comps) > s:
            # Only a free predecessor of a member can still join a component to another; without one it is closed.
            closed, joinable = 0, 0
            for _, preds in comps:
                if preds & free:
                    joinable = 1
                else:
                    closed += 1
            if closed + joinable > s:
                return
        v = free.bit_length() - 1
        bit = 1 << v
        below = undecided & (bit - 1)
        successors = succ[v]
        joined, joined_preds, rest = bit, pred[v], []
        for comp in comps:
            if comp[0] & successors:
                joined, joined_preds = joined | comp[0], joined_preds | comp[1]
            else:
                rest.append(comp)
        if joined.bit_count() <= r:
            rest.append((joined, joined_preds))
            visit(below, chosen | bit, size + 1, blocked, tuple(rest))
        visit(below, chosen, size, blocked | ancestors[v], comps)

    visit(state, 0, 0, 0, ())
    return found


def merge_endings(part: Part, state: int) -> list[Ending]:
    """Every single-operator ending of ``state`` and every legal merge of its sinks."""
    sinks = part.sinks(state)
    found = [Ending(1 << i, (1 << i,)) for i in range(len(part.names)) if sinks >> i & 1]
    found += [Ending(m, (m,), merge=True) for m in part.merges if m & sinks == m]
    return found


def ending_generator(part: Part, opt: str, r: int, s: int) -> EndingGenerator:
    """The endings of a state for ``opt`` in ``parallel``, ``merge`` or ``both``: the lists `parallel_endings`
    and `merge_endings` make, in their order, made faster (`FastEndings`) where the part allows."""
    if opt not in ("parallel", "merge", "both"):
        raise ValueError(f"no endings for opt={opt!r}; expected parallel, merge or both")
    fast = FastEndings.make(part, r, s, parallel=opt != "merge", merges=opt != "parallel")
    if fast is not None:
        return fast
    if opt == "parallel":
        return lambda state: parallel_endings(part, state, r, s)
    if opt == "merge":
        return lambda state: merge_endings(part, state)
    return lambda state: parallel_endings(part, state, r, s) + [e for e in merge_endings(part, state) if e.merge]


MAX_PIECES = 1 << 16
"""The most connected sets of at most ``r`` operators `FastEndings` lists for a part; beyond, the plain generators."""


class FastEndings:
    """The endings of a state built from *pieces*, each made once per part, each ending object once per mask.

    A parallel ending's groups are its weakly connected components, and each is itself closed under successors
    within the state (a successor of a member is in the ending, and joined to that member). So the parallel endings
    of ``S`` are exactly the unions of at most ``s`` pieces of ``S`` -- connected sets of at most ``r`` operators
    closed under successors within ``S`` -- no two of which overlap or touch. A piece's highest operator is a sink
    of ``S``: the pieces of a part are listed once, by that operator, and each state keeps those it holds that
    nothing else of it reads. Unions are formed a piece at a time, in list comprehensions, as masks; only a mask
    not seen before gets its `Ending` (its groups). The list comes out as `parallel_endings` makes it: by mask,
    highest first (that depth-first search decides the highest operator first, "in" before "out"), each ending's
    groups by lowest operator, highest first; merges follow in `Part.merges` order, as `merge_endings` has them.
    """

    def __init__(self, part: Part, pieces: list[int], s: int, parallel: bool, merges: bool) -> None:
        self.part, self.s = part, s
        near = part.neighbours
        # per highest operator: (piece, its successors outside it, the piece with every operator next to it)
        self.by_top: list[list[tuple[int, int, int]]] = [[] for _ in part.names]
        for piece in pieces if parallel else [1 << i for i in range(len(part.names))]:
            after, touching = 0, piece
            for i in bits(piece):
                after |= part.succ[i]
                touching |= near[i]
            self.by_top[piece.bit_length() - 1].append((piece, after & ~piece, touching))
        self.parallel = parallel
        self.merges = [Ending(m, (m,), merge=True) for m in part.merges] if merges else []
        self._made: dict[int, Ending] = {}

    @classmethod
    def make(cls, part: Part, r: int, s: int, parallel: bool, merges: bool) -> FastEndings | None:
        """The generator for ``part``, or None where it has more than `MAX_PIECES` pieces of at most ``r``."""
        pieces = connected_sets(part, r, MAX_PIECES) if parallel else []
        return None if pieces is None else cls(part, pieces, s, parallel, merges)

    def __call__(self, state: int) -> list[Ending]:
        """The endings of ``state``, as `parallel_endings` and `merge_endings` list them (see the class)."""
        succ, sinks, found, touching = self.part.succ, 0, [], []
        left = state
        while left:
            top = left.bit_length() - 1
            bit = 1 << top
            left ^= bit
            if succ[top] & state:
                continue
            sinks |= bit
            for piece, after, near in self.by_top[top]:
                if piece & state == piece and not after & state:
                    found.append(piece)
                    touching.append(near)
        masks = self._unions(found, touching) if self.parallel else found[::-1]  # single sinks, lowest first
        made = self._made
        endings = [made.get(m) or self._ending(m, found, touching) for m in masks]
        if self.merges:
            endings += [e for e in self.merges if e.mask & sinks == e.mask]
        return endings

    def _unions(self, found: list[int], touching: list[int]) -> list[int]:
        """Every union of at most ``s`` pieces no two of which overlap or touch, as masks, highest first."""
        count = len(found)
        level = [(piece, near, i) for i, (piece, near) in enumerate(zip(found, touching, strict=True))]
        masks = list(found)
        for _ in range(self.s - 1):
            level = [(mask | found[j], near | touching[j], j) for mask, near, i in level
                     for j in range(i + 1, count) if not found[j] & near]
            if not level:
                break
            masks += [mask for mask, _, _ in level]
        masks.sort(reverse=True)
        return masks

    def _ending(self, mask: int, found: list[int], touching: list[int]) -> Ending:
        """The ending of a union of the state's pieces ``found``: its groups are those pieces in it that touch
        nothing else of it, by lowest operator, highest first (as `parallel_endings` has them)."""
        groups = sorted((piece for piece, near in zip(found, touching, strict=True) if near & mask == piece),
                        key=lambda g: g & -g, reverse=True)
        ending = self._made[mask] = Ending(mask, tuple(groups))
        return ending


def connected_sets(part: Part, r: int, most: int) -> list[int] | None:
    """Every weakly connected set of at most ``r`` operators of ``part`` that is closed under successors within
    itself and its ancestors (so within some state), as masks; None if there are more than ``most``."""
    near = part.neighbours
    level = {1 << i for i in range(len(part.names))}
    found = set(level)
    for _ in range(r - 1):
        grown = set()
        for piece in level:
            around = 0
            for i in bits(piece):
                around |= near[i]
            for i in bits(around & ~piece):
                grown.add(piece | 1 << i)
        found |= grown
        if len(found) > most:
            return None
        if not grown:
            break
        level = grown
    return sorted(piece for piece in found if _convex(part, piece))


def _convex(part: Part, piece: int) -> bool:
    """Whether no path leaves ``piece`` and comes back: no successor outside it is an ancestor of a member."""
    after, above = 0, 0
    for i in bits(piece):
        after |= part.succ[i]
        above |= part.ancestors[i]
    return not after & ~piece & above
