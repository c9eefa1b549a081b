"""One search's stages spread over N devices, with fake devices: worker processes that each run the simulated cost."""

from __future__ import annotations

import functools
import json
import os

import pytest

from ios_core.cost import CachedCost, DeviceProfile, SimulatedCost
from ios_core.cost.spread import DEVICE_VARIABLE, SpreadCost, SpreadError, WorkerError
from ios_core.models.demo import demo
from ios_core.optimizer import OptimizerOptions, search
from ios_core.schedule import sequential


class FakeDeviceCost(SimulatedCost):
    """The simulated cost on the device the worker was given; ``space`` names the device when ``per_device``."""

    def __init__(self, per_device: bool, crash_on: str | None) -> None:
        super().__init__(DeviceProfile(), "fp32")
        self.visible = os.environ[DEVICE_VARIABLE]
        self.crash_on = crash_on
        self.space = f"fake/{self.visible}" if per_device else "fake/same-sku"

    def stage_latency(self, graph, stage, batch):
        if self.visible == self.crash_on:
            os._exit(3)  # a worker killed mid-measurement
        return super().stage_latency(graph, stage, batch)


def fake_device(per_device: bool = False, crash_on: str | None = None, fail_on: str | None = None) -> FakeDeviceCost:
    if os.environ[DEVICE_VARIABLE] == fail_on:
        raise RuntimeError("no GPU here")
    return FakeDeviceCost(per_device, crash_on)


class FakeEndToEndCost(FakeDeviceCost):
    """Times whole schedules too: their stage sum plus the device's index, so the answer says who timed it."""

    end_to_end = True

    def end_to_end_latency(self, graph, schedule, batch):
        return sum(self.stage_latency(graph, stage, batch) for stage in schedule.stages) + int(self.visible)


def fake_end_to_end() -> FakeEndToEndCost:
    return FakeEndToEndCost(per_device=False, crash_on=None)


@pytest.fixture(scope="module")
def spread():
    with SpreadCost(fake_device, ["0", "1", "2"]) as cost:
        yield cost


def test_stages_are_dealt_to_every_device_and_answered_in_order(spread):
    graph = demo()
    stages = sequential(graph).stages
    alone = SimulatedCost(DeviceProfile(), "fp32")
    assert spread.stage_latencies(graph, stages, 4) == [alone.stage_latency(graph, s, 4) for s in stages]
    assert spread.last_devices == [str(i % 3) for i in range(len(stages))]
    assert spread.kind == "simulated" and spread.space == "fake/same-sku"


def test_a_search_over_three_devices_finds_what_one_finds(spread, tmp_path):
    graph, options = demo(), OptimizerOptions(opt="both", r=2, s=2)
    alone = search(graph, SimulatedCost(DeviceProfile(), "fp32"), 1, options)
    with CachedCost(spread, spread.space, tmp_path / "cache.jsonl") as cached:
        spread_out = search(graph, cached, 1, options)
    assert str(spread_out.schedule) == str(alone.schedule)
    assert spread_out.latency_ms == pytest.approx(alone.latency_ms)
    lines = [json.loads(line) for line in (tmp_path / "cache.jsonl").read_text().splitlines()]
    assert {line["by"] for line in lines} == {"0", "1", "2"}  # the cache says which device measured what


def test_a_whole_schedule_is_timed_by_the_first_device_and_cached_as_its():
    graph = demo()
    schedule = sequential(graph)
    alone = sum(SimulatedCost(DeviceProfile(), "fp32").stage_latency(graph, s, 1) for s in schedule.stages)
    with SpreadCost(fake_end_to_end, ["2", "1"]) as spread:
        assert spread.end_to_end and CachedCost(spread, spread.space).end_to_end
        assert spread.end_to_end_latency(graph, schedule, 1) == pytest.approx(alone + 2)
        assert spread.last_devices == ["2"]


def test_a_spread_of_stage_costs_does_not_time_whole_schedules(spread):
    assert not spread.end_to_end


def test_devices_that_differ_are_refused_before_anything_is_timed():
    with pytest.raises(SpreadError, match="not comparable.*device 0: simulated fake/0"):
        SpreadCost(functools.partial(fake_device, per_device=True), ["0", "1"])


def test_a_device_whose_cost_cannot_be_built_is_named():
    with pytest.raises(SpreadError, match="device 1: the worker could not build its cost: RuntimeError: no GPU here"):
        SpreadCost(functools.partial(fake_device, fail_on="1"), ["0", "1"])


def test_a_worker_that_dies_is_named_and_the_others_stop():
    graph = demo()
    with SpreadCost(functools.partial(fake_device, crash_on="1"), ["0", "1"]) as cost, pytest.raises(
        WorkerError, match="device 1 died"
    ):
        cost.stage_latencies(graph, sequential(graph).stages, 1)


@pytest.mark.parametrize("devices", [[], ["0", "0"]])
def test_devices_must_be_distinct_and_given(devices):
    with pytest.raises(SpreadError, match="distinct devices"):
        SpreadCost(fake_device, devices)


def test_the_optimize_command_spreads_its_stages_over_cost_gpus(tmp_path):
    from ios_core.config import compose
    from ios_core.optimize import run

    def optimize(*overrides):
        base = ("model=demo", "device=sim", "opt=both", "r=2", "s=2", "progress=false", "tracking.mlflow=false")
        return run(compose("optimize", [*base, *overrides]))

    alone = optimize(f"output={tmp_path}/alone.json")
    spread = optimize("cost.gpus=[0,1]", f"cost.cache={tmp_path}/c.jsonl", f"output={tmp_path}/spread.json")
    assert spread.schedule.stages == alone.schedule.stages
    assert spread.result.latency_ms == pytest.approx(alone.result.latency_ms)
    lines = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert {line["by"] for line in lines} == {"0", "1"}
