"""Re-ranking end to end (`ios_core.optimizer.rerank`) with a fake cost whose whole schedules run slower than their
stages add up, the more so the more groups a stage has: what the GPU shows (issue 18)."""

from __future__ import annotations

import math
import re

import pytest

from ios_core.config import device_profile
from ios_core.cost import CachedCost, SimulatedCost
from ios_core.cost.protocol import end_to_end_latency, schedule_latency
from ios_core.models import get
from ios_core.optimizer import NARROWER, OptimizerOptions, search, search_end_to_end
from ios_core.optimizer.rerank import (
    GRAPH_ORDER,
    REPLAY_NOISE,
    Contender,
    contenders,
    keep_winning_merges,
    one_at_a_time,
    split,
)
from ios_core.schedule import sequential, validate

GROUP_PENALTY_MS = 0.004


class ContextCost:
    """Stages as the simulated cost times them; whole schedules slower by a fixed cost per extra group."""

    kind = "context"
    end_to_end = True

    def __init__(self) -> None:
        self.stages, self.schedules = SimulatedCost(device_profile("h100")), []

    def stage_latency(self, graph, stage, batch):
        return self.stages.stage_latency(graph, stage, batch)

    def end_to_end_latency(self, graph, schedule, batch):
        self.schedules.append(schedule.stages)
        alone = sum(self.stage_latency(graph, stage, batch) for stage in schedule.stages)
        return alone + GROUP_PENALTY_MS * sum(len(stage.groups) - 1 for stage in schedule.stages)


@pytest.fixture(scope="module")
def inception():
    return get("inception_v3")


@pytest.fixture(scope="module")
def reranked(inception):
    cost = ContextCost()
    return cost, search_end_to_end(inception, cost, 1, OptimizerOptions("both", candidates=4))


def test_the_answer_is_the_fastest_contender_end_to_end(inception, reranked):
    _, result = reranked
    meta = result.schedule.meta
    timed = {c["label"]: c for c in meta["rerank"]}
    assert list(timed)[:4] == ["both#1", "both#2", "both#3", "both#4"]
    others = set(timed) - {"both#1", "both#2", "both#3", "both#4"}
    assert {label for label in others if "/split" not in label} <= {*NARROWER["both"], "both r=2", GRAPH_ORDER}
    fastest = min(timed.values(), key=lambda c: c["end_to_end_ms"])
    assert meta["chosen"] == fastest["label"] and result.latency_ms == meta["latency_ms"] == fastest["end_to_end_ms"]
    assert math.isclose(end_to_end_latency(ContextCost(), inception, result.schedule, 1), result.latency_ms)
    assert meta["latency_kind"] == "end to end" and meta["stage_sum_ms"] == fastest["stage_sum_ms"]
    validate(inception, result.schedule)


def test_the_dp_ranks_by_stage_sums_and_the_end_to_end_order_differs(reranked):
    _, result = reranked
    sums = [c["stage_sum_ms"] for c in result.schedule.meta["rerank"] if re.fullmatch(r"both#\d+", c["label"])]
    assert sums == sorted(sums)
    # The penalty on groups favours a schedule the stage sums rank lower: the re-ranking changed the answer.
    assert result.schedule.meta["chosen"] != "both#1"
    assert result.schedule.meta["stage_sum_ms"] >= sums[0]


def test_each_contender_is_timed_once_and_contenders_are_distinct(reranked):
    cost, result = reranked
    assert len(cost.schedules) == len(set(cost.schedules)) == len(result.schedule.meta["rerank"])


class MergedInContextCost(ContextCost):
    """Stages as the simulated cost times them; whole schedules slower by a fixed cost per merged stage (a merge
    that wins alone and loses in context, as Inception V3's did on the H100)."""

    def end_to_end_latency(self, graph, schedule, batch):
        self.schedules.append(schedule.stages)
        alone = sum(self.stage_latency(graph, stage, batch) for stage in schedule.stages)
        return alone + 0.05 * sum(any(g.merge for g in stage.groups) for stage in schedule.stages)


def merged_stages(schedule) -> int:
    return sum(any(g.merge for g in stage.groups) for stage in schedule.stages)


@pytest.fixture(scope="module")
def both_best(inception):
    return search(inception, SimulatedCost(device_profile("h100")), 1, OptimizerOptions("both")).schedule


@pytest.mark.parametrize("cost, splits_win", [(MergedInContextCost(), True), (ContextCost(), False)],
                         ids=["merges-lose-in-context", "extra-groups-lose-in-context"])
def test_a_merge_that_loses_in_context_is_split_and_one_that_wins_is_kept(inception, both_best, cost, splits_win):
    best = Contender("both#1", both_best, schedule_latency(cost, inception, both_best, 1),
                     end_to_end_latency(cost, inception, both_best, 1))
    kept, tried = keep_winning_merges(inception, cost, 1, best, most_groups=8)
    merged = [i for i, stage in enumerate(both_best.stages) if stage.groups[0].merge]
    assert len(merged) > 0 and [c.label.rsplit("/", 1)[1] for c in tried] == [f"split{i}" for i in merged]
    validate(inception, kept.schedule)
    if splits_win:  # each split pays for itself: all kept, one after another
        assert merged_stages(kept.schedule) == 0 and kept.label == "both#1/" + "/".join(f"split{i}" for i in merged)
        assert kept.end_to_end_ms < best.end_to_end_ms * (1 - REPLAY_NOISE)
    else:
        assert kept == best


def test_the_search_tries_the_splits_of_the_fastest_contender(reranked):
    _, result = reranked
    labels = [c["label"] for c in result.schedule.meta["rerank"]]
    splits = [label for label in labels if "/split" in label]
    assert splits and {label.split("/")[0] for label in splits} == {result.schedule.meta["chosen"]}


def test_a_split_stage_runs_the_merged_convolutions_side_by_side(inception, both_best):
    both = both_best
    index = next(i for i, stage in enumerate(both.stages) if stage.groups[0].merge)
    parted = split(both, index)
    validate(inception, parted)
    assert [g.ops for g in parted.stages[index].groups] == [(op,) for op in both.stages[index].groups[0].ops]
    assert not any(g.merge for g in parted.stages[index].groups)
    assert parted.stages[:index] + parted.stages[index + 1:] == both.stages[:index] + both.stages[index + 1:]


class NearlySequentialCost(ContextCost):
    """Whole schedules that run one operator at a time take 1 ms; any other takes ``others_ms``."""

    def __init__(self, others_ms: float) -> None:
        super().__init__()
        self.others_ms = others_ms

    def end_to_end_latency(self, graph, schedule, batch):
        self.schedules.append(schedule.stages)
        return 1.0 if one_at_a_time(schedule) else self.others_ms


@pytest.mark.parametrize("others_ms, plain", [(1 - REPLAY_NOISE / 2, True), (1 - 2 * REPLAY_NOISE, False)])
def test_one_operator_at_a_time_wins_unless_beaten_by_more_than_replay_noise(inception, others_ms, plain):
    result = search_end_to_end(inception, NearlySequentialCost(others_ms), 1, OptimizerOptions("both", candidates=2))
    assert one_at_a_time(result.schedule) is plain
    assert result.latency_ms == (1.0 if plain else others_ms)


def test_sequential_in_the_graphs_order_is_the_last_contender(inception):
    _, found = contenders(inception, SimulatedCost(device_profile("h100")), 1, OptimizerOptions("both", candidates=2))
    label, schedule, stage_sum = found[-1]
    assert label == GRAPH_ORDER and schedule.stages == sequential(inception).stages and stage_sum > 0


def test_the_same_space_with_smaller_groups_is_a_contender(inception):
    cost = SimulatedCost(device_profile("h100"))
    _, found = contenders(inception, cost, 1, OptimizerOptions("both", r=3, candidates=2))
    smaller = {label: schedule for label, schedule, _ in found}["both r=2"]
    assert max(len(g.ops) for stage in smaller.stages for g in stage.groups if not g.merge) <= 2
    assert smaller.stages == search(inception, cost, 1, OptimizerOptions("both", r=2)).schedule.stages
    _, found = contenders(inception, cost, 1, OptimizerOptions("both", r=1, candidates=2))
    assert not any(" r=" in label for label, _, _ in found)


def test_a_cost_that_times_stages_only_gets_the_dps_best_unchanged(inception):
    cost = SimulatedCost(device_profile("h100"))
    plain = search(inception, cost, 1, OptimizerOptions("both"))
    reranked = search_end_to_end(inception, cost, 1, OptimizerOptions("both", candidates=8))
    assert reranked.schedule.stages == plain.schedule.stages and "rerank" not in reranked.schedule.meta
    assert reranked.latency_ms == plain.latency_ms


def test_one_candidate_or_a_schedule_without_a_dp_is_not_reranked(inception):
    cost = ContextCost()
    for options in (OptimizerOptions("both", candidates=1), OptimizerOptions("sequential", candidates=8)):
        assert "rerank" not in search_end_to_end(inception, cost, 1, options).schedule.meta
    assert cost.schedules == []


def test_the_cache_times_each_schedule_once_and_keeps_it_on_disk(tmp_path, inception):
    schedule = search(inception, SimulatedCost(device_profile("h100")), 1, OptimizerOptions("parallel")).schedule
    path = tmp_path / "costs.jsonl"
    inner = ContextCost()
    with CachedCost(inner, "space", path) as cached:
        first = cached.end_to_end_latency(inception, schedule, 1)
        assert cached.end_to_end_latency(inception, schedule, 1) == first and len(inner.schedules) == 1
    again = ContextCost()
    with CachedCost(again, "space", path) as cached:
        assert cached.end_to_end_latency(inception, schedule, 1) == first and again.schedules == []
        assert cached.end_to_end_latency(inception, schedule, 16) != first  # the batch is part of the key


def test_a_cache_over_a_stage_cost_adds_the_stages_up(inception):
    schedule = search(inception, SimulatedCost(device_profile("h100")), 1, OptimizerOptions("parallel")).schedule
    cached = CachedCost(SimulatedCost(device_profile("h100")), "space")
    assert not cached.end_to_end
    assert math.isclose(cached.end_to_end_latency(inception, schedule, 1), schedule.meta["latency_ms"])


@pytest.mark.parametrize("kwargs", [{"candidates": 0}, {"candidates": 65}])
def test_bad_candidate_counts_are_refused_by_name(kwargs):
    with pytest.raises(ValueError, match="candidates"):
        OptimizerOptions(**kwargs)
