"""The committed GPU profiles still reproduce the committed schedules on a CPU.

A measured stage profile (`results/profiles/*.jsonl`) is keyed by canonical stage keys, in the space of the
GPU, software and settings it was measured with (`ios_core.cost.measured.measured_space`); the autotuning
caches beside it (`tune_*.json`) likewise (`ios_core.engine.tunecache`). If the IR, a model or the key
design changes, the shipped profile silently stops matching and a "warm" search would profile everything
again; these tests catch that, and check that each committed measured schedule is what the optimizer
finds under the profile it was measured with.
"""

import json
import shutil
from pathlib import Path

import pytest

from ios_core import models
from ios_core.cost import CachedCost, TableCost
from ios_core.cost.measured import PROFILE_REVISION, MeasuredCost, MeasureSettings, measured_space
from ios_core.engine.tunecache import TuneCache, tune_space
from ios_core.optimizer import OptimizerOptions, search
from ios_core.schedule import load

ROOT = Path(__file__).parent.parent


def space_of(profile: Path) -> str:
    with profile.open() as lines:
        return json.loads(next(lines))["space"]


# Each profile with the schedules searched under it, in the folder of the revision it was measured at
# (results/profiles/r<N>/; a profile of the current revision would lie at the top): the H100's of revision 3
# (before global pools over many pixels ran in two passes, which no paper model has) and the H200's of
# revision 2 (before the fast pooling kernels), with the schedules they produced.
PROFILES = {"h100": ROOT / "results" / "profiles" / "r3" / "stage_costs_h100.jsonl",
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


# Where the shipped profiles were measured (GPU, driver, cuDNN of their campaigns' records, results/h*/ios_campaign/).
ENVIRONMENTS = {device: {"name": name, "driver": "580.159.04", "cuda": "13.0", "cudnn": "9.19.0"}
                for device, name in (("h100", "NVIDIA H100 80GB HBM3"), ("h200", "NVIDIA H200"))}


def test_the_shipped_profiles_are_keyed_for_the_gpu_and_the_revision_of_their_folder():
    profiles = sorted((ROOT / "results" / "profiles").glob("**/stage_costs_*.jsonl"))
    assert set(PROFILES.values()) <= set(profiles)
    for profile in profiles:
        environment = ENVIRONMENTS[profile.stem.rsplit("_", 1)[1]]
        folder = profile.parent.name
        revision = int(folder[1:]) if folder.startswith("r") else PROFILE_REVISION
        with profile.open() as lines:
            assert {json.loads(line)["space"] for line in lines} == {
                measured_space(MeasureSettings(), environment, revision)}


def test_the_shipped_tune_caches_are_keyed_for_the_gpus_they_were_tuned_on(capsys):
    spaces = {tune_space(environment) for environment in ENVIRONMENTS.values()}
    for path in sorted((ROOT / "results" / "profiles").glob("tune_*.json")):
        cache = TuneCache.load(path, ENVIRONMENTS[path.stem.split("_", 1)[1]])
        assert cache.entries and {key.split("|", 1)[0] for key in cache.entries} <= spaces
    assert capsys.readouterr().err == ""  # every entry valid


def test_a_warm_measured_search_on_the_shipped_profile_profiles_nothing(tmp_path):
    def no_gpu(graph, batch):
        raise AssertionError("a stage the shipped profile holds was profiled")

    profile = tmp_path / "stage_costs.jsonl"
    shutil.copy(PROFILES["h100"], profile)
    shipped = load(ROOT / "schedules" / "inception_v3_b1_both_h100_fp32_measured.json")
    options = OptimizerOptions("both", shipped.meta["r"], shipped.meta["s"])
    inner = MeasuredCost(MeasureSettings(), no_gpu, ENVIRONMENTS["h100"])
    with CachedCost(inner, space_of(profile), profile) as cost:  # the profile's revision, not necessarily today's
        found = search(models.get("inception_v3"), cost, 1, options)
    assert cost.stats.misses == 0 and found.schedule.stages == shipped.stages


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_a_half_precision_profile_is_kept_apart_from_the_shipped_fp32_ones(precision):
    """Measured stage costs and autotuning winners are per precision: a 16-bit search never reads fp32 numbers."""
    environment = ENVIRONMENTS["h200"]
    space = measured_space(MeasureSettings(precision=precision), environment)
    assert space != measured_space(MeasureSettings(), environment) and f"/{precision}/" in space
    assert space_of(PROFILES["h200"]) != space
