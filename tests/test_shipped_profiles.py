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


# Each profile with the schedules searched under it: the H100's of the current revision (top level, also the
# warm start for searches on an H100 now); the H200's of revision 2 (before the fast pooling kernels), kept
# under results/profiles/r2/ with the H200 schedules it produced.
PROFILES = {"h100": ROOT / "results" / "profiles" / "stage_costs_h100.jsonl",
            "h200": ROOT / "results" / "profiles" / "r2" / "stage_costs_h200.jsonl"}


@pytest.mark.parametrize("device", ["h100", "h200"])
@pytest.mark.parametrize("model", ["inception_v3", "squeezenet"])
@pytest.mark.parametrize("opt", ["both", "parallel", "merge"])
def test_a_shipped_profile_reproduces_its_schedule(device, model, opt):
    profile = PROFILES[device]
    shipped = load(ROOT / "schedules" / f"{model}_b1_{opt}_{device}_fp32_measured.json")
    graph = models.get(model)
    cost = TableCost.from_cache(profile, space_of(profile))  # raises on any stage the profile lacks
    found = search(graph, cost, 1, OptimizerOptions(opt, shipped.meta["r"], shipped.meta["s"]))
    assert found.schedule.stages == shipped.stages
    assert found.latency_ms == pytest.approx(shipped.meta["latency_ms"])


def test_the_shipped_profiles_are_of_the_current_profile_revision():
    from ios_core.cost.measured import PROFILE_REVISION

    for profile in sorted((ROOT / "results" / "profiles").glob("stage_costs_*.jsonl")):  # r2/ holds older ones
        with profile.open() as lines:
            assert {json.loads(line)["space"].rsplit("/", 1)[1] for line in lines} == {f"r{PROFILE_REVISION}"}
