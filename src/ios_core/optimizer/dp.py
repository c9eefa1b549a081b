"""The dynamic program over one part: the cheapest sequence of stages, by the last stage first.

For a state ``S`` (the part's operators still to place, closed under predecessors)::

    dp[{}] = 0
    dp[S]  = min over endings E of S of  dp[S - E] + cost(E)

``S - E`` is again closed under predecessors (nothing left in it reads ``E``), so the recursion
stays among such states; each is solved once (memoized) and remembers its best ending, from which
the schedule is read back from the full part down. Stage costs are asked once per distinct ending,
all the new endings of a state in one call: a measured cost overlaps the building of one stage
with the timing of the one before, and needs several stages at a time to do so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ios_core.optimizer.endings import EndingGenerator
from ios_core.optimizer.part import Ending, Part


@dataclass(frozen=True)
class PartSolution:
    """The best stages of one part in run order, their summed cost and how much was searched."""

    latency: float
    endings: tuple[Ending, ...]
    states: int
    transitions: int
    stages: int


def solve_part(part: Part, endings: EndingGenerator,
               stage_costs: Callable[[Sequence[Ending]], Sequence[float]]) -> PartSolution:
    """Minimize the summed stage cost of ``part`` over the endings ``endings(state)`` offers.

    Parameters
    ----------
    part
        The operators and their masks.
    endings
        The candidate last stages of a state (`ios_core.optimizer.endings`).
    stage_costs
        The latencies of several endings' stages, in milliseconds, in the order given.
    """
    best: dict[int, tuple[float, Ending | None]] = {0: (0.0, None)}
    costs: dict[int, float] = {}  # by mask; a merge by the mask's complement, so both kinds fit one dict
    transitions = 0

    def solve(state: int) -> float:
        nonlocal transitions
        if state in best:
            return best[state][0]
        value, choice = float("inf"), None
        candidates = [(~e.mask if e.merge else e.mask, e) for e in endings(state)]
        new = {key: ending for key, ending in candidates if key not in costs}
        costs.update(zip(new, stage_costs(list(new.values())), strict=True))
        for key, ending in candidates:
            transitions += 1
            cost = costs[key]
            rest = state & ~ending.mask
            done = best.get(rest)
            total = (solve(rest) if done is None else done[0]) + cost
            if total < value:
                value, choice = total, ending
        if choice is None:
            raise RuntimeError(f"state {state:#x} of part {part.names[:3]}... has no ending: the generator is broken")
        best[state] = (value, choice)
        return value

    latency = solve(part.full)  # recursion depth: one frame per operator, plus the generator's (see MAX_PART_SIZE)
    chosen, state = [], part.full
    while state:
        ending = best[state][1]
        chosen.append(ending)
        state &= ~ending.mask
    return PartSolution(latency, tuple(reversed(chosen)), len(best) - 1, transitions, len(costs))
