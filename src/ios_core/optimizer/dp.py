"""The dynamic program over one part: the cheapest sequences of stages, by the last stage first.

For a state ``S`` (the part's operators still to place, closed under predecessors)::

    dp[{}] = 0
    dp[S]  = min over endings E of S of  dp[S - E] + cost(E)

``S - E`` is again closed under predecessors (nothing left in it reads ``E``), so the recursion
stays among such states; each is solved once (memoized) and remembers its best ending, from which
the schedule is read back from the full part down. Stage costs are asked once per distinct ending,
all the new endings of a state in one call: a measured cost overlaps the building of one stage
with the timing of the one before, and needs several stages at a time to do so.

With ``keep = k > 1`` each state remembers its ``k`` cheapest ways instead of one (a k-shortest-paths
DP): the ``k`` cheapest of ``S`` are among the ``k`` cheapest of each ``S - E`` plus ``cost(E)``, so
the part's ``k`` cheapest schedules come out exactly, cheapest first, the first being the one-best DP's.
The search re-ranks such runners-up end to end (`ios_core.optimizer.rerank`).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter

from ios_core.optimizer.endings import EndingGenerator
from ios_core.optimizer.part import Ending, Part

Way = tuple[float, Ending | None, int]
"""One way to finish a state: its total cost, its last stage, and which of the rest's ways precedes it (by rank)."""


@dataclass(frozen=True)
class PartSolution:
    """The best stages of one part in run order, their summed cost and how much was searched; ``ranked`` holds the
    ``keep`` cheapest schedules of the part as (summed cost, stages), cheapest first -- the first is the best."""

    latency: float
    endings: tuple[Ending, ...]
    states: int
    transitions: int
    stages: int
    ranked: tuple[tuple[float, tuple[Ending, ...]], ...] = ()


def solve_part(part: Part, endings: EndingGenerator,
               stage_costs: Callable[[Sequence[Ending]], Sequence[float]], keep: int = 1) -> PartSolution:
    """Minimize the summed stage cost of ``part`` over the endings ``endings(state)`` offers.

    Parameters
    ----------
    part
        The operators and their masks.
    endings
        The candidate last stages of a state (`ios_core.optimizer.endings`).
    stage_costs
        The latencies of several endings' stages, in milliseconds, in the order given.
    keep
        How many of the cheapest schedules to find (``ranked``); fewer where the part has fewer.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    prices = _Prices(part, endings, stage_costs)
    if keep == 1:
        ways, transitions = _one_best(part, prices)
    else:
        ways, transitions = _k_best(part, prices, keep)
    ranked = tuple((total, _read_back(ways, part.full, rank)) for rank, (total, _, _) in enumerate(ways[part.full]))
    latency, chosen = ranked[0]
    return PartSolution(latency, chosen, len(ways) - 1, transitions, len(prices.costs), ranked)


class _Prices:
    """Each state's endings with their stage costs, as ``(cost, mask, ending)``: every distinct ending costed once,
    all the new ones of a state in one call (a merge is keyed by its mask's complement, so both kinds fit one dict)."""

    def __init__(self, part: Part, endings: EndingGenerator,
                 stage_costs: Callable[[Sequence[Ending]], Sequence[float]]) -> None:
        self.part, self.endings, self.stage_costs = part, endings, stage_costs
        self.costs: dict[int, float] = {}

    def __call__(self, state: int) -> list[tuple[float, int, Ending]]:
        found = self.endings(state)
        if not found:
            raise RuntimeError(f"state {state:#x} of part {self.part.names[:3]}... has no ending: the generator is "
                               "broken")
        keys = [~e.mask if e.merge else e.mask for e in found]
        costs = self.costs
        new = {key: ending for key, ending in zip(keys, found, strict=True) if key not in costs}
        if new:
            costs.update(zip(new, self.stage_costs(list(new.values())), strict=True))
        return [(costs[key], e.mask, e) for key, e in zip(keys, found, strict=True)]


def _one_best(part: Part, prices: _Prices) -> tuple[dict[int, list[Way]], int]:
    """The cheapest way of each state (keep=1), and the transitions tried: `_k_best` with one way, less its lists."""
    totals: dict[int, float] = {0: 0.0}
    chosen: dict[int, Ending] = {}
    transitions = 0

    def solve(state: int) -> float:
        nonlocal transitions
        priced = prices(state)
        transitions += len(priced)
        best, best_ending = 0.0, None
        for cost, mask, ending in priced:
            rest = state & ~mask
            total = totals.get(rest)
            if total is None:
                total = solve(rest)
            total += cost
            # As `min` does: the first of equal totals wins, in the generator's order.
            if best_ending is None or total < best:
                best, best_ending = total, ending
        totals[state], chosen[state] = best, best_ending
        return best

    solve(part.full)
    # recursion depth above: one frame per operator, plus the generator's (see MAX_PART_SIZE)
    ways: dict[int, list[Way]] = {state: [(total, chosen.get(state), 0)] for state, total in totals.items()}
    return ways, transitions


def _k_best(part: Part, prices: _Prices, keep: int) -> tuple[dict[int, list[Way]], int]:
    """The ``keep`` cheapest ways of each state, cheapest first, and the transitions tried."""
    ways: dict[int, list[Way]] = {0: [(0.0, None, 0)]}  # by state, cheapest first
    transitions = 0

    def solve(state: int) -> list[Way]:
        nonlocal transitions
        options: list[Way] = []
        priced = prices(state)
        for cost, mask, ending in priced:
            rest = state & ~mask
            for rank, way in enumerate(ways.get(rest) or solve(rest)):
                options.append((way[0] + cost, ending, rank))
        transitions += len(priced)
        # Ties keep the generator's order (`nsmallest` is stable), so keep=1 and keep=k agree.
        best = heapq.nsmallest(keep, options, key=itemgetter(0))
        ways[state] = best
        return best

    solve(part.full)
    return ways, transitions


def _read_back(ways: dict[int, list[Way]], state: int, rank: int) -> tuple[Ending, ...]:
    """The stages, in run order, of the ``rank``-th cheapest way to finish ``state``."""
    chosen = []
    while state:
        _, ending, rank = ways[state][rank]
        chosen.append(ending)
        state &= ~ending.mask
    return tuple(reversed(chosen))
