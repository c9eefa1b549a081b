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
"""

from __future__ import annotations

from collections.abc import Callable

from ios_core.optimizer.part import Ending, Part

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
    """The endings of a state for ``opt`` in ``parallel``, ``merge`` or ``both``."""
    if opt == "parallel":
        return lambda state: parallel_endings(part, state, r, s)
    if opt == "merge":
        return lambda state: merge_endings(part, state)
    if opt == "both":
        return lambda state: parallel_endings(part, state, r, s) + [e for e in merge_endings(part, state) if e.merge]
    raise ValueError(f"no endings for opt={opt!r}; expected parallel, merge or both")
