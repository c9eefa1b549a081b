"""The stage-cost cache (memory and disk), the table cost, and building costs by kind."""

import dataclasses
import errno
import json
import os

import pytest

from ios_core import models
from ios_core.cost import (
    CachedCost,
    CostSpec,
    CostUnavailableError,
    DeviceProfile,
    MissingStageError,
    SimulatedCost,
    TableCost,
    build_cost,
    digest,
)
from ios_core.cost import factory as cost_factory
from ios_core.cost import simulated as simulated_module
from ios_core.cost.cache import append_lines
from ios_core.cost.key import StageKeys
from ios_core.ir import GraphBuilder
from ios_core.models.demo import demo
from ios_core.optimizer import OptimizerOptions, search
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


def test_an_interrupted_run_resumes_from_every_complete_line_and_cuts_the_torn_one(tmp_path, capsys):
    g, path = demo(), tmp_path / "costs.jsonl"
    with CachedCost(Counting(), "s", path, flush_every=1) as cost:
        cost.stage_latency(g, one("conv2"), 1)
        cost.stage_latency(g, one("conv3"), 1)
    whole = path.read_bytes()
    with path.open("a") as f:
        f.write('{"space": "s", "key": "torn')  # a write cut short
    inner = Counting()
    with CachedCost(inner, "s", path) as cost:
        assert (cost.stats.loaded, cost.stats.invalid) == (2, 1)
        cost.stage_latency(g, one("conv2"), 1)
        cost.stage_latency(g, one("conv4"), 1)
    assert inner.calls == 1
    text = path.read_bytes()
    assert text.startswith(whole) and text.count(b"\n") == 3 and text.endswith(b"\n")  # the new entry on its own line
    assert [json.loads(line)["space"] for line in text.splitlines()] == ["s"] * 3
    assert CachedCost(Counting(), "s", path).stats.invalid == 0
    assert capsys.readouterr().err.count("warning:") == 1


@pytest.mark.parametrize(("content", "kept"), [(b"no newline at all", b""), (b"a\n" + b"x" * 200_000, b"a\n"),
                                               (b"a\nb\n", b"a\nb\n")])
def test_a_torn_tail_is_cut_back_to_the_last_newline(tmp_path, content, kept):
    path = tmp_path / "costs.jsonl"
    path.write_bytes(content)
    append_lines(path, b"new\n")
    assert path.read_bytes() == kept + b"new\n"


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
    h100 = DeviceProfile(name="h100", real=True)
    cost = build_cost(CostSpec("simulated", "fp32-strict"), h100)
    assert cost.kind == "simulated" and cost.space == SimulatedCost(h100, "fp32-strict").space
    assert cost.space.startswith("simulated/h100/fp32-strict/")  # readable names, then the digest of every input
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
    assert cost.space.startswith("counting/h100/fp32/")
    other = build_cost(CostSpec("measured"), DeviceProfile(name="h100", real=True, launch_us=50.0))
    assert other.space != cost.space  # a cost that names no space of its own gets one of all it was built from


def searched(spec, device):
    """IOS-Both on SqueezeNet under the cost ``spec`` builds on ``device``: its result and the cost's misses."""
    with build_cost(spec, device) as cost:
        return search(models.get("squeezenet"), cost, 1, OptimizerOptions("both")), cost.stats.misses


H100 = DeviceProfile(name="h100", real=True)


@pytest.mark.parametrize("change", [{"launch_us": 50.0, "sync_us": 50.0}, {"compute_efficiency": 0.3},
                                    {"memory_gbps": 300.0}, {"sm_count": 4}])
def test_a_changed_device_profile_never_reuses_the_disk_cache(tmp_path, change):
    spec = CostSpec(cache=str(tmp_path / "c.jsonl"))
    first, misses = searched(spec, H100)
    assert misses > 0 and searched(spec, H100)[1] == 0  # the same profile: all from disk
    changed, misses = searched(spec, dataclasses.replace(H100, **change))  # the same name, other numbers
    fresh, _ = searched(CostSpec(), dataclasses.replace(H100, **change))
    assert misses > 0 and changed.latency_ms == fresh.latency_ms != first.latency_ms
    assert changed.schedule == fresh.schedule


def test_a_value_is_an_input_whatever_its_spelling(tmp_path):
    spec = CostSpec(cache=str(tmp_path / "c.jsonl"))
    searched(spec, dataclasses.replace(H100, launch_us=50.0))
    assert searched(spec, dataclasses.replace(H100, launch_us=50))[1] == 0  # launch_us=50 on the command line


@pytest.mark.parametrize("change", ["precision", "revision"])
def test_a_changed_cost_parameter_never_reuses_the_disk_cache(tmp_path, monkeypatch, change):
    spec = CostSpec(cache=str(tmp_path / "c.jsonl"))
    first, _ = searched(spec, H100)
    if change == "precision":
        spec = dataclasses.replace(spec, precision="fp32-strict")
    else:
        monkeypatch.setattr(simulated_module, "MODEL_REVISION", simulated_module.MODEL_REVISION + 1)
    assert searched(spec, H100)[1] > 0


def test_a_table_is_its_own_space_by_content():
    assert TableCost({"a": 1.0}, "one").space == TableCost({"a": 1.0}, "two").space != TableCost({"a": 2.0}).space


POISONS = [{"ms": -1}, {"ms": float("nan")}, {"ms": float("inf")}, {"ms": None}, {"ms": "x"}, {}, {"ms": True},
           {"ms": [1.0]}, {"key": 5, "ms": 1.0}]


def test_invalid_lines_are_skipped_counted_warned_once_and_costed_again(tmp_path, capsys):
    g, path, space = demo(), tmp_path / "costs.jsonl", "counting/sim/fp32"
    keys = StageKeys(g)

    def entry(batch, **fields):
        return json.dumps({"space": space, "key": digest(keys.text(one("conv2"), batch)), **fields}).encode()

    poisoned = [entry(batch, **fields) for batch, fields in enumerate(POISONS, start=10)]
    poisoned += [entry(30, ms=2.0).replace(b"counting", b"co\xffnting"), b'{"space": ', b"[1, 2]"]
    lines = [entry(1, ms=7.0), entry(2, ms=0.0), *poisoned, entry(3, ms=5.0).replace(space.encode(), b"other")]
    path.write_bytes(b"\n".join(lines) + b"\n")
    inner = Counting()
    cost = CachedCost(inner, space, path)
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: stage-cost cache {path}: skipped {len(poisoned)} invalid or torn line(s); "
                   "their stages are costed again"]
    assert (cost.stats.loaded, cost.stats.invalid) == (2, len(poisoned))
    assert cost.stage_latency(g, one("conv2"), 1) == 7.0 and cost.stage_latency(g, one("conv2"), 2) == 0.0
    assert [cost.stage_latency(g, one("conv2"), b) for b in range(10, 10 + len(POISONS))] == [1.0] * len(POISONS)
    assert inner.calls == len(POISONS)


def test_a_full_disk_mid_search_is_said_once_and_the_search_goes_on(tmp_path, monkeypatch, capsys):
    graph, path = models.get("squeezenet"), tmp_path / "c.jsonl"
    inner = SimulatedCost(H100)
    expected = search(graph, CachedCost(inner, inner.space), 1, OptimizerOptions("both"))

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with CachedCost(inner, inner.space, path, flush_every=1) as cost:
        found = search(graph, cost, 1, OptimizerOptions("both"))
    assert found.schedule == expected.schedule and found.latency_ms == expected.latency_ms
    assert capsys.readouterr().err.splitlines() == [
        f"warning: stage-cost cache {path}: cannot write (No space left on device); going on with the cache in memory "
        "only"]
    assert path.read_bytes() == b""
