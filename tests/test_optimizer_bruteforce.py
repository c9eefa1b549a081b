"""Proof of optimality: on random small DAGs the DP's cost equals an independent brute force's.

The brute force shares nothing with the optimizer's ending generators. It walks *forward* from the
inputs: from a set of done operators, every non-empty set ``F`` of operators not yet run, all of
whose producers are done or in ``F``, is a candidate next stage. ``F`` is legal as

* ``parallel`` (opt ``parallel`` or ``both``): its weakly connected components -- found by
  networkx -- number at most ``s`` and have at most ``r`` operators; each is a group;
* ``merge`` (opt ``merge`` or ``both``): two or more operators for which
  `ios_core.schedule.merge_error` finds nothing wrong, run as one group -- no more of them than
  `ios_core.optimizer.merge_size_limit` allows for their merge class in the part: the search
  space's one pruning rule, which the brute force shares with the optimizer as it shares
  ``merge_error``;
* a single operator (opt ``merge``; the other two have it as a parallel stage of one group).

With parts, ``F`` must lie in the first part not yet finished. Every stage gets a random cost,
by canonical key, through the ``table`` cost. A schedule's cost is the sum of its stages', so
the minimum over all sequences of legal stages is found by memoizing, per done-set, the cheapest
way to finish -- still a search over every sequence, just without repeating shared suffixes.

A DP whose endings follow IOS's rule -- a group is one operator plus everything downstream of it
(IOS issue #10) -- misses multi-root groups, and `test_the_ios_ending_rule_is_not_optimal` shows
the comparison failing for it.
"""

from __future__ import annotations

import math
from functools import cache
from itertools import combinations

import networkx as nx
import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ios_core.cost import TableCost, digest, schedule_latency
from ios_core.cost.key import StageKeys
from ios_core.ir import Graph, GraphBuilder, concat
from ios_core.optimizer import (
    Ending,
    OptimizerOptions,
    make_part,
    merge_class,
    merge_size_limit,
    parallel_endings,
    search,
    solve_part,
    split_parts,
)
from ios_core.optimizer import part as part_module
from ios_core.schedule import Group, Schedule, Stage, merge_error, validate

# ---- random graphs -------------------------------------------------------------------------------


@st.composite
def small_dags(draw, max_ops: int = 10) -> Graph:
    """Up to ``max_ops`` convolutions (1x1, 3x3, two activations, two widths), pools and adds, in 1 or 2 blocks."""
    channels, size = draw(st.sampled_from([2, 4])), draw(st.sampled_from([3, 5]))
    b = GraphBuilder("dag", channels, size, size)
    values = [b.input]
    count = draw(st.integers(1, max_ops))
    cut = draw(st.integers(1, count))  # operators in the first block
    for i in range(count):
        x = draw(st.sampled_from(values))
        kind = draw(st.sampled_from(["conv1", "conv3", "pool", "add"]))
        if kind == "add":
            out = b.add(x, draw(st.sampled_from([v for v in values if v.channels == x.channels])))
        elif kind == "pool":
            out = b.pool(x, "max", 3, 1, 1)
        else:
            kernel = 1 if kind == "conv1" else 3
            width = draw(st.sampled_from([channels, 2 * channels]))
            out = b.conv(x, width, kernel, padding=kernel // 2, act=draw(st.sampled_from(["relu", "none"])))
        values.append(out)
        if i + 1 in (cut, count):
            values.append(b.end_block(out))
    return b.build()


# ---- the brute force -----------------------------------------------------------------------------


def forward_stages(graph: Graph, done: frozenset[str], parts: list[tuple[str, ...]], opt: str,
                   r: int, s: int) -> list[Stage]:
    """Every legal next stage after ``done`` (see the module docstring)."""
    part = next(p for p in parts if any(n not in done for n in p))
    waiting = [n for n in part if n not in done]
    operators = {n.name for n in graph.operators}
    stages = []
    for size in range(1, len(waiting) + 1):
        for picked in combinations(waiting, size):
            chosen = set(picked)
            reads = {p for n in picked for p in graph[n].producers if p in operators}
            if not reads <= done | chosen:
                continue
            if opt in ("parallel", "both"):
                sub = nx.DiGraph()
                sub.add_nodes_from(picked)
                sub.add_edges_from((p, n) for n in picked for p in graph[n].producers if p in chosen)
                groups = [sorted(c, key=picked.index) for c in nx.weakly_connected_components(sub)]
                if len(groups) <= s and all(len(g) <= r for g in groups):
                    groups.sort(key=lambda g: picked.index(g[0]))
                    stages.append(Stage(tuple(Group(tuple(g)) for g in groups)))
            if opt == "merge" and size == 1:
                stages.append(Stage((Group(picked),)))
            if opt in ("merge", "both") and is_merge(graph, part, picked):
                stages.append(Stage((Group(picked, merge=True),)))
    return stages


def is_merge(graph: Graph, part: tuple[str, ...], picked: tuple[str, ...]) -> bool:
    """Whether ``picked`` may run as one merged convolution of ``part``: a legal merge within the pruning rule."""
    if len(picked) < 2 or merge_error(graph, picked) is not None:
        return False
    return len(picked) <= merge_size_limit(sum(merge_class(graph, n) == merge_class(graph, picked[0]) for n in part))


def brute_force(graph: Graph, opt: str, r: int, s: int, max_part_size: int, seed: int):
    """The table of random stage costs, the minimum schedule cost over every legal schedule, and one minimum."""
    parts = [p for block in graph.blocks for p in split_parts(block.nodes, max_part_size)]
    everything = frozenset(n.name for n in graph.operators)
    successors: dict[frozenset[str], list[Stage]] = {}
    todo = [frozenset()]
    while todo:  # every reachable done-set and the stages that can leave it
        done = todo.pop()
        if done in successors or done == everything:
            continue
        successors[done] = forward_stages(graph, done, parts, opt, r, s)
        todo += [done | set(stage.ops) for stage in successors[done]]
    keys = StageKeys(graph)
    texts = sorted({keys.text(stage, 1) for stages in successors.values() for stage in stages})
    rng = np.random.default_rng(seed)
    costs = {digest(t): float(c) for t, c in zip(texts, rng.uniform(0.1, 1.0, len(texts)), strict=True)}
    table = TableCost(costs, "random")

    @cache
    def finish(done: frozenset[str]) -> tuple[float, tuple[Stage, ...]]:
        if done == everything:
            return 0.0, ()
        options = []
        for stage in successors[done]:
            rest, stages = finish(done | set(stage.ops))
            options.append((table.stage_latency(graph, stage, 1) + rest, (stage, *stages)))
        return min(options, key=lambda o: o[0])

    best, stages = finish(frozenset())
    return table, best, Schedule(graph.name, stages)


def cheapest_totals(graph: Graph, table: TableCost, opt: str, r: int, s: int, max_part_size: int,
                    k: int) -> list[float]:
    """The ``k`` smallest costs over every legal schedule (with repeats: distinct schedules may cost the same)."""
    parts = [p for block in graph.blocks for p in split_parts(block.nodes, max_part_size)]
    everything = frozenset(n.name for n in graph.operators)

    @cache
    def totals(done: frozenset[str]) -> tuple[float, ...]:
        if done == everything:
            return (0.0,)
        options = []
        for stage in forward_stages(graph, done, parts, opt, r, s):
            cost = table.stage_latency(graph, stage, 1)
            options += [cost + rest for rest in totals(done | set(stage.ops))]
        return tuple(sorted(options)[:k])

    return list(totals(frozenset()))


# ---- the properties ------------------------------------------------------------------------------


def assert_dp_is_optimal(graph: Graph, options: OptimizerOptions, seed: int) -> None:
    table, best, witness = brute_force(graph, options.opt, options.r, options.s, options.max_part_size, seed)
    validate(graph, witness)  # the brute force's own minimum is a legal schedule
    result = search(graph, table, 1, options)  # a stage the brute force deems illegal is missing from the table
    assert math.isclose(result.latency_ms, schedule_latency(table, graph, result.schedule, 1), rel_tol=1e-9)
    assert math.isclose(result.latency_ms, best, rel_tol=1e-9), f"DP {result.latency_ms} != brute force {best}"


@pytest.mark.parametrize("opt", ["parallel", "merge", "both"])
@settings(max_examples=150, deadline=None)
@given(graph=small_dags(), r=st.integers(1, 4), s=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_the_dp_finds_the_cheapest_schedule(opt, graph, r, s, seed):
    event(f"{len(graph.operators)} operators")
    assert_dp_is_optimal(graph, OptimizerOptions(opt, r, s), seed)


@settings(max_examples=60, deadline=None)
@given(graph=small_dags(), r=st.integers(1, 3), s=st.integers(1, 3), size=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1))
def test_the_dp_finds_the_cheapest_schedule_within_parts(graph, r, s, size, seed):
    assert_dp_is_optimal(graph, OptimizerOptions("both", r, s, max_part_size=size), seed)


@pytest.mark.parametrize("opt", ["parallel", "merge", "both"])
@settings(max_examples=60, deadline=None)
@given(graph=small_dags(max_ops=7), r=st.integers(1, 3), s=st.integers(1, 3), size=st.integers(2, 7),
       k=st.integers(2, 6), seed=st.integers(0, 2**32 - 1))
def test_the_dp_finds_the_k_cheapest_schedules(opt, graph, r, s, size, k, seed):
    table, best, _ = brute_force(graph, opt, r, s, size, seed)
    expected = cheapest_totals(graph, table, opt, r, s, size, k)
    result = search(graph, table, 1, OptimizerOptions(opt, r, s, max_part_size=size, candidates=k))
    found = [ms for ms, _ in result.ranked]
    assert len(found) == len(expected)  # k, or every schedule there is
    assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(found, expected, strict=True)), (found, expected)
    assert result.ranked[0][1] is result.schedule and math.isclose(found[0], best, rel_tol=1e-9)
    assert len({schedule.stages for _, schedule in result.ranked}) == len(found)  # distinct schedules
    for ms, schedule in result.ranked:  # each a legal schedule costing what it is ranked at
        validate(graph, schedule)
        assert math.isclose(schedule_latency(table, graph, schedule, 1), ms, rel_tol=1e-9)


def fan_out(convs: list[tuple[int, int]]) -> Graph:
    """Convolutions ``(width, kernel)`` that all read one operand: one merge class, concatenated."""
    b = GraphBuilder("fan_out", 4, 5, 5)
    x = b.conv(b.input, 4, 1, name="x")
    b.end_block(concat([b.conv(x, w, k, padding=k // 2, name=f"c{i}") for i, (w, k) in enumerate(convs)]))
    return b.build()


@pytest.mark.parametrize("opt", ["merge", "both"])
@pytest.mark.parametrize("seed", range(4))
def test_a_pruned_merge_class_is_pruned_alike_in_the_dp_and_the_brute_force(monkeypatch, opt, seed):
    monkeypatch.setattr(part_module, "MAX_MERGE_CLASS", 3)  # four convolutions of one class: pairs only
    graph = fan_out([(2, 1), (4, 1), (2, 3), (4, 3)])
    part = make_part(graph, graph.blocks[0].nodes)
    assert part.merges and all(m.bit_count() == 2 for m in part.merges)
    assert_dp_is_optimal(graph, OptimizerOptions(opt, r=2, s=2), seed)


# ---- IOS's ending rule fails the same comparison -------------------------------------------------


def ios_endings(part, state: int, r: int, s: int) -> list[Ending]:
    """IOS's parallel endings: groups are ``{u} + everything downstream of u in the state``, disjoint."""
    inside = [i for i in range(len(part.names)) if state >> i & 1]
    downstream = {}
    for u in reversed(inside):
        downstream[u] = 1 << u
        for v in inside:
            if part.succ[u] >> v & 1:
                downstream[u] |= downstream[v]
    found = []
    for k in range(1, s + 1):
        for roots in combinations(inside, k):
            groups = [downstream[u] for u in roots]
            union = 0
            for g in groups:
                union = -1 if union == -1 or union & g else union | g
            if union != -1 and all(g.bit_count() <= r for g in groups):
                found.append(Ending(union, tuple(groups)))
    return found


def two_roots() -> Graph:
    """a and b read the input, c = a + b: the one-group stage a > b > c has two roots."""
    b = GraphBuilder("two_roots", 4, 5, 5)
    x, y = b.conv(b.input, 4, 1, name="a"), b.pool(b.input, "max", 3, 1, 1, name="b")
    b.end_block(b.add(x, y, name="c"))
    return b.build()


def dp_with(graph: Graph, table: TableCost, generator) -> float:
    """The DP's cost on a one-part graph with another ending generator."""
    part = make_part(graph, tuple(n.name for n in graph.operators))
    return solve_part(part, lambda state: generator(part, state, 3, 8),
                      lambda endings: [table.stage_latency(graph, part.stage(e), 1) for e in endings]).latency


def test_the_ios_ending_rule_is_not_optimal():
    graph = two_roots()
    table, best, _ = brute_force(graph, "parallel", 3, 8, 40, seed=0)
    whole = digest(StageKeys(graph).text(Stage((Group(("a", "b", "c")),)), 1))
    table = TableCost({k: (0.1 if k == whole else 1.0) for k in table.costs})
    assert dp_with(graph, table, parallel_endings) == pytest.approx(0.1)  # a > b > c as one stage
    assert dp_with(graph, table, ios_endings) == pytest.approx(2.0)  # {c} last, then {a, b}: no IOS group has all


def test_the_optimality_check_catches_the_ios_rule_on_random_costs():
    graph = two_roots()
    misses = 0
    for seed in range(20):
        table, best, _ = brute_force(graph, "parallel", 3, 8, 40, seed)
        assert dp_with(graph, table, parallel_endings) == pytest.approx(best)
        misses += dp_with(graph, table, ios_endings) > best + 1e-9
    assert misses > 0
