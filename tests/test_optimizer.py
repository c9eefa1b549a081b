"""The optimizer: the ending rules on a small DAG, the DP's guarantees, parts, statistics, the entry point."""

from collections import Counter
from math import comb

import numpy as np
import pytest

from ios_core import models
from ios_core.cost import CachedCost, DeviceProfile, SimulatedCost, schedule_latency
from ios_core.ir import GraphBuilder, concat
from ios_core.models.demo import demo
from ios_core.optimizer import (
    OptimizerOptions,
    ending_generator,
    make_part,
    merge_endings,
    optimize,
    parallel_endings,
    search,
    split_parts,
)
from ios_core.optimizer import endings as endings_module
from ios_core.optimizer import part as part_module
from ios_core.optimizer.endings import FastEndings
from ios_core.optimizer.part import MAX_MERGE_CLASS
from ios_core.reference import run_graph, run_schedule
from ios_core.schedule import greedy, sequential
from ios_core.weights import make_input, make_weights

H100 = DeviceProfile(name="h100", real=True, sm_count=132, fp32_tflops=66.9, tf32_tflops=494.7, memory_gbps=3350)


def diamond():
    """a, b (mergeable convolutions of the input) -> c = a + b; d another convolution of the input."""
    b = GraphBuilder("diamond", 8, 9, 9)
    x = b.conv(b.input, 8, 1, name="a")
    y = b.conv(b.input, 8, 3, padding=1, name="b")
    b.add(x, y, name="c")
    b.end_block(b.conv(b.input, 8, 1, act="none", name="d"))
    return b.build()


def ending_sets(part, endings):
    return sorted(("+" if e.merge else "") + "".join(part.names[i] for i in range(4) if e.mask >> i & 1)
                  for e in endings)


def test_parallel_endings_are_every_successor_closed_set_within_r_and_s():
    g = diamond()
    part = make_part(g, g.blocks[0].nodes)
    assert part.names == ("a", "b", "c", "d")
    full = part.full
    assert ending_sets(part, parallel_endings(part, full, 3, 8)) == sorted(
        ["c", "d", "cd", "ac", "acd", "bc", "bcd", "abc", "abcd"]
    )
    # r=2: the three-operator group {a, b, c} is too big; s=1: two groups are too many.
    assert ending_sets(part, parallel_endings(part, full, 2, 8)) == sorted(["c", "d", "cd", "ac", "acd", "bc", "bcd"])
    assert ending_sets(part, parallel_endings(part, full, 3, 1)) == sorted(["c", "d", "ac", "bc", "abc"])


def test_a_group_may_have_two_roots_which_ios_chain_endings_miss():
    g = diamond()
    part = make_part(g, g.blocks[0].nodes)
    [abc] = [e for e in parallel_endings(part, 0b0111, 3, 8) if e.mask == 0b0111]
    assert abc.groups == (0b0111,)  # one group: a and b both feed c
    assert str(part.stage(abc).groups[0]) == "chain a > b > c"


def test_merge_endings_are_single_sinks_and_legal_merges_of_sinks():
    g = diamond()
    part = make_part(g, g.blocks[0].nodes)
    assert ending_sets(part, merge_endings(part, part.full)) == ["c", "d"]
    assert ending_sets(part, merge_endings(part, 0b0011)) == ["+ab", "a", "b"]  # d's activation differs: no merge
    assert part.merges == (0b0011,)


def states_of(part):
    """Every state of a part: the sets closed under predecessors, each reached by taking sinks away."""
    seen, todo = {part.full}, [part.full]
    while todo:
        state = todo.pop()
        for i in range(len(part.names)):
            rest = state & ~(1 << i)
            if rest != state and not part.succ[i] & state and rest not in seen:
                seen.add(rest)
                todo.append(rest)
    return sorted(seen - {0})


@pytest.mark.parametrize("model", ["inception_v3", "nasnet", "randwire"])
def test_the_fast_endings_are_the_plain_generators_lists_on_every_state(model):
    g = models.get(model)
    block = max(g.blocks, key=lambda b: len(b.nodes)) if model != "randwire" else g.blocks[1]
    part = make_part(g, block.nodes[:14])
    plain = {
        "parallel": lambda state, r, s: parallel_endings(part, state, r, s),
        "merge": lambda state, r, s: merge_endings(part, state),
        "both": lambda state, r, s: parallel_endings(part, state, r, s) + [
            e for e in merge_endings(part, state) if e.merge],
    }
    for opt, r, s in (("both", 3, 8), ("parallel", 2, 3), ("merge", 3, 8), ("both", 1, 8), ("parallel", 4, 2)):
        fast = ending_generator(part, opt, r, s)
        assert isinstance(fast, FastEndings)
        for state in states_of(part):
            assert fast(state) == plain[opt](state, r, s), (opt, r, s, bin(state))  # same endings, same order


def test_a_part_with_too_many_pieces_falls_back_to_the_plain_generator(monkeypatch):
    g = demo()
    part = make_part(g, g.blocks[1].nodes)
    monkeypatch.setattr(endings_module, "MAX_PIECES", 0)
    generator = ending_generator(part, "both", 3, 8)
    assert not isinstance(generator, FastEndings)
    assert generator(part.full) == ending_generator(make_part(g, g.blocks[1].nodes), "both", 3, 8)(part.full)


def test_split_parts_cuts_a_topological_order_into_consecutive_slices():
    assert split_parts(("a", "b", "c", "d", "e"), 2) == [("a", "b"), ("c", "d"), ("e",)]


@pytest.mark.parametrize("opt", ["parallel", "merge", "both"])
def test_the_dp_never_costs_more_than_sequential_and_its_schedule_is_valid_and_correct(opt):
    g = demo()
    cost = SimulatedCost(H100)
    result = search(g, cost, 1, OptimizerOptions(opt))
    assert result.latency_ms == pytest.approx(schedule_latency(cost, g, result.schedule, 1))
    assert result.latency_ms <= schedule_latency(cost, g, sequential(g), 1) + 1e-12
    weights, x = make_weights(g), make_input(g, 2)
    np.testing.assert_allclose(run_schedule(g, result.schedule, x, weights), run_graph(g, x, weights), rtol=1e-12)


def test_with_one_operator_per_group_and_stage_the_dp_costs_what_sequential_does():
    g = models.get("squeezenet")
    cost = SimulatedCost(H100)
    result = search(g, cost, 1, OptimizerOptions("parallel", r=1, s=1))
    assert all(len(stage.ops) == 1 for stage in result.schedule.stages)
    assert result.latency_ms == pytest.approx(schedule_latency(cost, g, sequential(g), 1))


def test_both_is_at_least_as_good_as_merge_and_parallel_and_all_beat_sequential_on_inception():
    g = models.get("inception_v3")
    cost = CachedCost(SimulatedCost(H100), "simulated/h100/fp32")
    latency = {opt: search(g, cost, 1, OptimizerOptions(opt)).latency_ms for opt in ("merge", "parallel", "both")}
    sequential_ms = schedule_latency(cost, g, sequential(g), 1)
    assert latency["both"] <= min(latency["merge"], latency["parallel"]) + 1e-12
    assert max(latency.values()) < sequential_ms


def test_inception_v3_searches_the_papers_1206_states():
    result = search(models.get("inception_v3"), SimulatedCost(H100), 1, OptimizerOptions("both", r=3, s=8))
    assert result.stats.states == 1206
    assert result.stats.parts == 13


def test_parts_bound_every_stage_and_are_counted():
    g = demo()
    result = search(g, SimulatedCost(H100), 1, OptimizerOptions("both", max_part_size=2))
    assert result.stats.parts == 1 + 5
    part_of = {name: (block, i // 2) for block, b in enumerate(g.blocks) for i, name in enumerate(b.nodes)}
    for stage in result.schedule.stages:
        assert len({part_of[name] for name in stage.ops}) == 1


def test_sequential_and_greedy_come_from_the_same_entry_point():
    g = demo()
    cost = SimulatedCost(H100)
    assert optimize(g, cost, 1, OptimizerOptions("sequential")) == sequential(g)
    result = search(g, cost, 1, OptimizerOptions("greedy"))
    assert result.schedule == greedy(g)
    assert result.latency_ms == pytest.approx(schedule_latency(cost, g, greedy(g), 1))


def test_statistics_are_returned_and_recorded_in_the_schedule_meta():
    g = demo()
    seen = []
    result = search(g, SimulatedCost(H100), 4, OptimizerOptions("both", r=2, s=3), progress=lambda d, t: seen.append(d))
    stats, meta = result.stats, result.schedule.meta
    assert seen == [2, 11]
    assert stats.states > 0 and stats.transitions >= stats.stages > 0 and stats.seconds >= stats.cost_seconds > 0
    assert meta["opt"] == "both" and (meta["r"], meta["s"], meta["batch"]) == (2, 3, 4)
    assert meta["cost"] == "simulated" and meta["latency_ms"] == result.latency_ms
    assert (meta["dp_states"], meta["distinct_stages"]) == (stats.states, stats.stages)


def fan_out(n):
    """``n`` 1x1 convolutions reading one operand, concatenated: one merge class of ``n``."""
    b = GraphBuilder("fan_out", 4, 6, 6)
    x = b.conv(b.input, 4, 1, name="x")
    b.end_block(concat([b.conv(x, 4, 1, name=f"c{i}") for i in range(n)]))
    return b.build()


def test_a_merge_class_beyond_the_limit_is_pruned_to_pairs():
    def merge_sizes(n):
        g = fan_out(n)
        return Counter(m.bit_count() for m in make_part(g, g.blocks[0].nodes).merges)

    assert merge_sizes(MAX_MERGE_CLASS) == {k: comb(MAX_MERGE_CLASS, k) for k in range(2, MAX_MERGE_CLASS + 1)}
    assert merge_sizes(MAX_MERGE_CLASS + 2) == {2: comb(MAX_MERGE_CLASS + 2, 2)}


@pytest.mark.parametrize("opt", ["parallel", "both"])
def test_fourteen_convolutions_of_one_operand_are_searched(opt):
    g = fan_out(14)
    cost = SimulatedCost(H100)
    result = search(g, cost, 1, OptimizerOptions(opt, r=1, s=1))  # r = s = 1: 2**14 states, few endings each
    assert result.latency_ms == pytest.approx(schedule_latency(cost, g, result.schedule, 1))


def test_opt_parallel_never_looks_for_merges(monkeypatch):
    def refuse(*args):
        raise AssertionError("merge_error called")

    monkeypatch.setattr(part_module, "merge_error", refuse)
    search(demo(), SimulatedCost(H100), 1, OptimizerOptions("parallel"))
    with pytest.raises(AssertionError, match="merge_error called"):
        search(demo(), SimulatedCost(H100), 1, OptimizerOptions("both"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"opt": "dp"}, "unknown opt 'dp'"), ({"r": 0}, "r must be"), ({"s": -1}, "s must be"),
     ({"max_part_size": 1000}, "max_part_size must be")],
)
def test_bad_options_are_rejected_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OptimizerOptions(**kwargs)
