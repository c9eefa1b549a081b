"""The committed GPU profiles still reproduce the committed schedules on a CPU.

A measured stage profile (`results/profiles/*.jsonl`) is keyed by canonical stage keys. If the IR,
a model or the key design changes, the shipped profile silently stops matching and a "warm" search
would profile everything again; these tests catch that, and check that each committed measured
schedule is what the optimizer finds under the profile it was measured with.
"""

import json
from pathlib import Path

import pytest

from ios_core import models
from ios_core.cost import TableCost
from ios_core.optimizer import OptimizerOptions, search
from ios_core.schedule import load

ROOT = Path(__file__).parent.parent


def space_of(profile: Path) -> str:
    with profile.open() as lines:
        return json.loads(next(lines))["space"]


# The H200 profile is the one its schedules were searched with. The H100 one is a warm start only: its
# SqueezeNet stages and four Inception merges were measured before merges wrote straight into
# concatenations and were dropped, so it no longer reproduces the H100 schedules (searched with them).
@pytest.mark.parametrize("device", ["h200"])
@pytest.mark.parametrize("model", ["inception_v3", "squeezenet"])
@pytest.mark.parametrize("opt", ["both", "parallel", "merge"])
def test_a_shipped_profile_reproduces_its_schedule(device, model, opt):
    profile = ROOT / "results" / "profiles" / f"stage_costs_{device}.jsonl"
    shipped = load(ROOT / "schedules" / f"{model}_b1_{opt}_{device}_measured.json")
    graph = models.get(model)
    cost = TableCost.from_cache(profile, space_of(profile))  # raises on any stage the profile lacks
    found = search(graph, cost, 1, OptimizerOptions(opt, shipped.meta["r"], shipped.meta["s"]))
    assert found.schedule.stages == shipped.stages
    assert found.latency_ms == pytest.approx(shipped.meta["latency_ms"])


def test_the_shipped_profiles_are_of_the_current_profile_revision():
    from ios_core.cost.measured import PROFILE_REVISION

    for profile in sorted((ROOT / "results" / "profiles").glob("stage_costs_*.jsonl")):
        with profile.open() as lines:
            assert {json.loads(line)["space"].rsplit("/", 1)[1] for line in lines} == {f"r{PROFILE_REVISION}"}
