"""The stage-cost cache (memory and disk), the table cost, and building costs by kind."""

import json

import pytest

from ios_core.cost import (
    CachedCost,
    CostSpec,
    CostUnavailableError,
    DeviceProfile,
    MissingStageError,
    SimulatedCost,
    TableCost,
    build_cost,
    cost_space,
    digest,
)
from ios_core.cost import factory as cost_factory
from ios_core.cost.key import StageKeys
from ios_core.ir import GraphBuilder
from ios_core.models.demo import demo
from ios_core.schedule import Group, Stage


class Counting:
    """A cost that counts how often it is asked; every stage costs 1 ms per group."""

    kind = "counting"

    def __init__(self):
        self.calls = 0

    def stage_latency(self, graph, stage, batch):
        self.calls += 1
        return float(len(stage.groups))


def twins():
    """Two identical convolutions under different names, in different blocks."""
    b = GraphBuilder("twins", 4, 6, 6)
    x = b.end_block(b.conv(b.input, 4, 1, name="first"))
    b.end_block(b.conv(x, 4, 1, name="second"))
    return b.build()


def one(name):
    return Stage((Group((name,)),))


def test_identical_stages_are_costed_once():
    g, inner = twins(), Counting()
    cost = CachedCost(inner, "counting/sim/fp32")
    assert cost.stage_latency(g, one("first"), 1) == cost.stage_latency(g, one("second"), 1) == 1.0
    assert inner.calls == 1 and (cost.stats.hits, cost.stats.misses) == (1, 1)
    cost.stage_latency(g, one("first"), 2)  # another batch size is another stage
    assert inner.calls == 2


class Batching(Counting):
    """A `Counting` cost that also answers many stages per call, and records each call's stages."""

    def __init__(self):
        super().__init__()
        self.batches = []

    def stage_latencies(self, graph, stages, batch):
        self.batches.append([str(s.groups[0]) for s in stages])
        return [float(len(s.groups)) for s in stages]


def test_a_batch_asks_the_cost_once_for_its_distinct_unknown_stages():
    g, inner = twins(), Batching()
    cost = CachedCost(inner, "counting/sim/fp32")
    cost.stage_latency(g, one("first"), 1)
    pair = Stage((Group(("first",)), Group(("second",))))
    assert cost.stage_latencies(g, [one("second"), pair, one("first"), pair], 1) == [1.0, 2.0, 1.0, 2.0]
    # "second" is "first" by its canonical key: known; the pair is asked for once
    assert inner.batches == [["chain first"], ["chain first"]] and inner.calls == 0
    assert (cost.stats.hits, cost.stats.misses) == (3, 2)


def test_the_disk_cache_is_reused_across_runs_and_kept_apart_by_space(tmp_path):
    g, path = demo(), tmp_path / "cache" / "costs.jsonl"
    stages = [one("conv2"), Stage((Group(("conv2",)), Group(("conv3",))))]
    with CachedCost(Counting(), "counting/h100/fp32", path) as cost:
        first = [cost.stage_latency(g, s, 1) for s in stages]
    again = Counting()
    with CachedCost(again, "counting/h100/fp32", path) as cost:
        assert [cost.stage_latency(g, s, 1) for s in stages] == first
        assert cost.stats.loaded == 2
    assert again.calls == 0
    other = Counting()
    with CachedCost(other, "counting/v100/fp32", path) as cost:
        cost.stage_latency(g, stages[0], 1)
    assert other.calls == 1
    assert len(path.read_text().splitlines()) == 3


def test_an_interrupted_run_resumes_from_every_complete_line(tmp_path):
    g, path = demo(), tmp_path / "costs.jsonl"
    with CachedCost(Counting(), "s", path, flush_every=1) as cost:
        cost.stage_latency(g, one("conv2"), 1)
        cost.stage_latency(g, one("conv3"), 1)
    with path.open("a") as f:
        f.write('{"space": "s", "key": "torn')  # a write cut short
    inner = Counting()
    with CachedCost(inner, "s", path) as cost:
        cost.stage_latency(g, one("conv2"), 1)
        cost.stage_latency(g, one("conv4"), 1)
    assert inner.calls == 1


def test_entries_are_flushed_in_batches_and_on_close(tmp_path):
    g, path = demo(), tmp_path / "costs.jsonl"
    cost = CachedCost(Counting(), "s", path, flush_every=2)
    cost.stage_latency(g, one("conv2"), 1)
    assert not path.exists()
    cost.stage_latency(g, one("conv3"), 1)
    assert len(path.read_text().splitlines()) == 2
    cost.stage_latency(g, one("conv4"), 1)
    cost.close()
    assert [json.loads(line)["space"] for line in path.read_text().splitlines()] == ["s"] * 3


def test_a_table_is_looked_up_by_key_and_round_trips_through_json(tmp_path):
    g = demo()
    keys = StageKeys(g)
    table = TableCost({digest(keys.text(one("conv2"), 1)): 0.5}, "mine")
    assert table.kind == "table"
    assert table.stage_latency(g, one("conv2"), 1) == 0.5
    loaded = TableCost.load(table.save(tmp_path / "t.json"))
    assert loaded.stage_latency(g, one("conv2"), 1) == 0.5
    with pytest.raises(MissingStageError, match=r"no cost for stage \[chain conv3\] at batch 1"):
        loaded.stage_latency(g, one("conv3"), 1)


def test_a_disk_cache_replays_as_a_table(tmp_path):
    g, path = demo(), tmp_path / "costs.jsonl"
    sim = SimulatedCost(DeviceProfile())
    with CachedCost(sim, "simulated/sim/fp32", path) as cost:
        expected = cost.stage_latency(g, one("conv2"), 4)
    assert TableCost.from_cache(path, "simulated/sim/fp32").stage_latency(g, one("conv2"), 4) == expected


def test_costs_are_built_by_kind_and_cached():
    cost = build_cost(CostSpec("simulated", "fp32-strict"), DeviceProfile(name="h100", real=True))
    assert (
        cost.kind == "simulated"
        and cost.space == cost_space("simulated", "h100", "fp32-strict") == "simulated/h100/fp32-strict"
    )
    with pytest.raises(CostUnavailableError, match="unknown cost kind 'guess'; known kinds: measured, simulated"):
        build_cost(CostSpec("guess"), DeviceProfile())
    with pytest.raises(CostUnavailableError, match="cost.table="):
        build_cost(CostSpec("table"), DeviceProfile())


def test_measured_cost_without_a_gpu_or_engine_is_a_clear_error(monkeypatch):
    h100 = DeviceProfile(name="h100", real=True)
    with pytest.raises(CostUnavailableError, match="device=sim is a simulated profile"):
        build_cost(CostSpec("measured"), DeviceProfile())
    monkeypatch.setattr(cost_factory, "gpu_present", lambda: False)
    with pytest.raises(CostUnavailableError, match="needs an NVIDIA GPU .* none was found"):
        build_cost(CostSpec("measured"), h100)
    monkeypatch.setattr(cost_factory, "gpu_present", lambda: True)
    with pytest.raises(CostUnavailableError, match="needs the GPU engine"):
        build_cost(CostSpec("measured"), h100)


def test_the_engine_plugs_its_measured_cost_in_by_kind(monkeypatch):
    monkeypatch.setitem(cost_factory.COSTS, "measured", lambda spec, device: Counting())
    cost = build_cost(CostSpec("measured"), DeviceProfile(name="h100", real=True))
    assert cost.space == "counting/h100/fp32"
