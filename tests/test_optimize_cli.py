"""The entry point: every config group composes, `run(cfg)` writes a valid schedule, the CLI fails cleanly."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from ios_core import models
from ios_core.config import CONF_DIR, ConfigError, compose, device_profile
from ios_core.cost import CostUnavailableError, SimulatedCost, TableCost
from ios_core.cost import factory as cost_factory
from ios_core.optimize import run
from ios_core.precision import PRECISIONS
from ios_core.reference import run_graph, run_schedule
from ios_core.schedule import load
from ios_core.weights import make_input, make_weights

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {group: sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))
          for group in ("model", "device", "cost", "optimizer")}


def config(*overrides: str):
    return compose("optimize", ["progress=false", "tracking.mlflow=false", *overrides])


def test_the_defaults_and_the_default_output_path():
    cfg = config()
    assert (cfg.model.name, cfg.batch, str(cfg.opt), cfg.r, cfg.s, cfg.device.name, cfg.cost.kind) == (
        "demo", 1, "both", 3, 8, "h100", "simulated")
    assert cfg.output == "schedules/demo_b1_both_h100_fp32_simulated.json"


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_config_group_option_composes(group, option):
    cfg = config(f"{group}={option}")
    OmegaConf.to_container(cfg, resolve=True)


def test_every_registered_model_has_a_model_config():
    assert GROUPS["model"] == sorted([*models.names(), "onnx"])


def test_an_onnx_model_is_optimized_like_a_built_in_one(tmp_path):
    from ios_core.onnx_io import Network, save_onnx

    save_onnx(Network.of(models.get("demo"), seed=0), tmp_path / "demo.onnx")
    out = tmp_path / "onnx.json"
    run(config("model=onnx", f"model.path={tmp_path / 'demo.onnx'}", "device=sim", f"output={out}"))
    assert load(out, models.get("onnx", path=str(tmp_path / "demo.onnx"))).ops


def test_networks_read_from_files_are_named_by_the_file_in_outputs_and_records():
    """Two ONNX files never share a default schedule path, a baseline record or an MLflow run's model."""
    resnet = config("model=onnx", "model.path=nets/resnet50.onnx", "device=h100")
    mobilenet = config("model=onnx", "model.path=other/mobilenet_v2.onnx", "device=h100")
    assert resnet.output == "schedules/resnet50_b1_both_h100_fp32_simulated.json"
    assert mobilenet.output == "schedules/mobilenet_v2_b1_both_h100_fp32_simulated.json"
    baseline = compose("baseline", ["model=onnx", "model.path=nets/resnet50.onnx", "device=h100"])
    assert "/resnet50/b1/" in baseline.out
    # no file named yet: the template still resolves; building the model says what is missing (test_models)
    assert config("model=onnx").output == "schedules/onnx_b1_both_h100_fp32_simulated.json"


def test_run_writes_a_valid_schedule_with_its_provenance_that_computes_the_graph(tmp_path, capsys):
    out = tmp_path / "demo.json"
    outcome = run(config("model=demo", "batch=2", "device=sim", "opt=both", "r=2", "s=4", f"output={out}"))
    graph = models.get("demo")
    schedule = load(out, graph)  # validates
    meta = schedule.meta
    assert (meta["model"], meta["batch"], meta["device"], meta["opt"], meta["r"], meta["s"]) == ("demo", 2, "sim",
                                                                                                 "both", 2, 4)
    assert meta["cost"] == meta["latency_label"] == "simulated"
    assert meta["latency_ms"] == pytest.approx(outcome.result.latency_ms)
    for key in ("search_seconds", "dp_states", "distinct_stages", "precision", "cost_evaluations"):
        assert key in meta
    assert 0 < meta["critical_path_ms"] <= meta["latency_ms"]  # no schedule beats the longest dependency chain
    weights, x = make_weights(graph), make_input(graph, 2)
    np.testing.assert_allclose(run_schedule(graph, schedule, x, weights), run_graph(graph, x, weights), rtol=1e-12)
    printed = capsys.readouterr().out
    assert "predicted" in printed and "(simulated; critical-path bound" in printed and str(out) in printed


def test_run_rejects_a_bad_value_an_unknown_model_and_an_unavailable_cost(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="r must be"):
        run(config("r=0", f"output={tmp_path}/x.json"))
    with pytest.raises(models.UnknownModelError, match="known models: demo"):
        run(config("model.name=nope", f"output={tmp_path}/x.json"))
    monkeypatch.setattr(cost_factory, "gpu_present", lambda: False)
    with pytest.raises(CostUnavailableError, match="cost=measured needs an NVIDIA GPU"):
        run(config("cost=measured", "device=h100", f"output={tmp_path}/x.json"))
    assert not list(tmp_path.iterdir())


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "ios_core.optimize", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_the_command_writes_its_schedule_and_its_mlflow_run_and_nothing_else(tmp_path):
    done = cli("model=demo", "batch=1", "opt=both", "r=3", "s=8", "cost=simulated", "device=h100", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written[:1] == ["mlflow.db"] and written[-1] == "schedules/demo_b1_both_h100_fp32_simulated.json"
    assert all(p.startswith("mlruns/") for p in written[1:-1])  # the run's artifact; no outputs/, .hydra/ or logs
    assert "predicted" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["batchh=3"], "Key 'batchh' not in 'OptimizeConfig'"),
        (["model=nope"], "Could not find 'model/nope'"),
        (["opt=dp"], "Invalid value 'dp', expected one of [sequential, greedy, parallel, merge, both]"),
        (["cost=measured", "device=sim"], "error: cost=measured needs a real GPU"),
    ],
)
def test_a_bad_command_is_one_clear_message_not_a_stack_trace(tmp_path, args, message):
    done = cli(*args, cwd=tmp_path)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


def test_a_search_replays_from_its_disk_cache_through_the_table_cost(tmp_path):
    cache = tmp_path / "costs.jsonl"
    first = run(config("model=squeezenet", f"cost.cache={cache}", f"output={tmp_path}/a.json"))
    TableCost.from_cache(cache, SimulatedCost(device_profile("h100")).space).save(tmp_path / "table.json")
    replay = run(config("model=squeezenet", "cost=table", f"cost.table={tmp_path}/table.json",
                        f"output={tmp_path}/b.json"))
    assert replay.schedule.meta["latency_label"] == "table"
    assert replay.result.latency_ms == first.result.latency_ms
    assert replay.schedule == first.schedule


def test_a_search_by_hand_is_logged_to_mlflow_with_its_stages(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "demo.json"
    stages = tmp_path / "demo.stages.jsonl"  # the cost's disk cache beside the schedule: every stage costed
    run(config("tracking.mlflow=true", f"tracking.uri={uri}", f"cost.cache={stages}", f"output={out}"))
    client = MlflowClient(uri)
    (found,) = client.search_runs([client.get_experiment_by_name("ios-core").experiment_id])
    assert found.data.params["opt"] == "both" and found.data.tags["source"] == "simulated"
    assert found.data.metrics["dp_states"] > 0
    assert len(client.get_metric_history(found.info.run_id, "stage_latency_ms")) == len(stages.read_text().splitlines())


@pytest.mark.parametrize("precision", PRECISIONS)
def test_every_precision_is_accepted_in_its_documented_spelling_and_named_in_the_output_path(precision):
    cfg = config(f"precision={precision}")
    assert str(cfg.precision) == precision
    assert cfg.output == f"schedules/demo_b1_both_h100_{precision}_simulated.json"


def test_every_config_file_is_installed_with_the_package():
    """A non-editable install finds its configs: every file under the config tree is named by the package data."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ios_core"]
    package = Path(CONF_DIR).parent
    files = [p.relative_to(package).as_posix() for p in Path(CONF_DIR).rglob("*") if p.is_file()]
    assert files and [f for f in files if not any(fnmatch.fnmatch(f, p) for p in patterns)] == []
