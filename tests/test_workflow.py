"""The Snakemake workflow: its DAG (dry run), a reduced real run on the demo model, and resuming after a kill.

The reduced run is the default configuration shrunk to the demo model, run on CPU (simulated) in a
temporary working directory. It is killed (SIGKILL, the whole process group) once a few jobs have
finished, then run again: the second run must redo none of the finished jobs, finish the rest,
and leave every record in the MLflow store exactly once.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ios_core.tracking import read
from ios_core.tracking.store import RECORD_ID_TAG, load, open_store, record_files

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
FIGURES = ("schedules", "frameworks", "utilization", "specialization", "pruning", "batch_sizes", "intra_inter")

DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())  # every experiment, on the demo model


def snakemake(workdir, *args, config=None, **popen):
    """Run snakemake on this repository's workflow in ``workdir`` (a Popen when ``popen`` asks for one)."""
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir), "--cores", "2", *args]
    if config is not None:
        command += ["--configfile", str(config)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    if popen:
        return subprocess.Popen(command, env=env, **popen)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def demo_config(tmp_path, **changes):
    config = {**DEMO, **changes, "results": "results", "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db",
                                                                     "experiment": "ios-core"}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_default_configuration_dry_run(tmp_path):
    """The README's `snakemake --cores 1 all` plans every experiment (nothing runs)."""
    done = snakemake(tmp_path, "-n", "all", config=ROOT / "config" / "config.yaml")
    assert done.returncode == 0, done.stderr + done.stdout
    for rule in ("optimize", "measure", "baseline", "track", *(f"figure_{f}" for f in FIGURES)):
        assert f"\n{rule} " in done.stdout, rule


def test_gpu_configuration_dry_run_declares_gpus(tmp_path):
    """With device=h100 the same DAG is measured: every GPU job declares gpu=1 and runs under the GPU lock."""
    done = snakemake(tmp_path, "-n", "-p", "all", "--config", "device=h100", config=demo_config(tmp_path))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "gpu=1" in done.stdout and "ios_core.gpu_lock" in done.stdout
    assert "cost=measured" in done.stdout
    assert "needs a GPU matching device=h200" in done.stdout  # the other device's cells are recorded as not available


def test_the_gpu_campaign_is_a_configuration_of_the_workflow(tmp_path):
    """README's `snakemake --cores 1 all --configfile config/campaign.yaml --config device=h200`: merged over
    config/config.yaml (as the Snakefile loads it, given here since the run is elsewhere), it plans the paper's four
    models searched with the measured cost at r=3, s=8, run and timed as the campaign timed them, and the PyTorch
    baselines beside them, for experiments 1, 2, 3 and 6 only -- 6 in fp32 and in fp16."""
    done = snakemake(tmp_path, "-n", "-p", "all", "--configfile", str(ROOT / "config" / "config.yaml"),
                     str(ROOT / "config" / "campaign.yaml"), "--config", "device=h200")
    assert done.returncode == 0, done.stderr + done.stdout
    commands = [line for line in done.stdout.splitlines() if " -m ios_core." in line]
    searches = {word_pair(c, "model", "opt") for c in commands if "ios_core.optimize" in c and " batch=1 " in c}
    models = ("inception_v3", "randwire", "nasnet", "squeezenet")
    assert searches == {(m, o) for m in models for o in ("sequential", "greedy", "merge", "parallel", "both")}
    for line in (c for c in commands if "ios_core.optimize" in c):
        assert " cost=measured " in line and " device=h200 " in line and " r=1 " not in line
        assert " r=3 s=8 " in line or " opt=sequential " in line or " opt=greedy " in line
    measured = [c for c in commands if "ios_core.measure " in c and " precision=fp32 " in c]
    baselines = {(*word_pair(c, "framework", "batch"), word_pair(c, "model", "device")[0])
                 for c in commands if "ios_core.baseline " in c and " precision=fp32 " in c}
    assert len(measured) == 4 * 5 + 4 * 2  # experiment 1, and Sequential and IOS-Both at batch 16..128
    assert all("timing.warmup=10 timing.number=20 timing.repeat=7" in c and "autotune=true" in c for c in measured)
    frameworks = ("torch_eager", "torch_cudagraph", "torch_compile", "torch_compile_freeze")
    assert baselines == {(f, "1", m) for f in frameworks for m in models} | {
        ("torch_compile", str(b), "inception_v3") for b in (16, 32, 64, 128)}
    figures = set(re.findall(r"^rule figure_(\w+):", done.stdout, re.MULTILINE))
    assert figures == {"schedules", "frameworks", "utilization", "batch_sizes"}
    for c in commands:  # each in its precision's folder: fp32, or fp16 for experiment 6
        precision = re.search(r" precision=(\S+) ", c)
        assert re.search(r"results/campaign/h200/fp(32|16)/", c)
        assert precision is None or f"results/campaign/h200/{precision[1]}/" in c


def test_experiment_6_of_the_campaign_runs_in_fp16_beside_fp32(tmp_path):
    """The campaign's precision axis: experiment 6 (batch sizes) searched, measured and compared with torch.compile
    in fp16 too, under results/campaign/h200/fp16/, with its own figure and MLflow summary; no other experiment."""
    done = snakemake(tmp_path, "-n", "-p", "all", "--configfile", str(ROOT / "config" / "config.yaml"),
                     str(ROOT / "config" / "campaign.yaml"), "--config", "device=h200")
    assert done.returncode == 0, done.stderr + done.stdout
    half = [c for c in done.stdout.splitlines() if " -m ios_core." in c and " precision=fp16 " in c]
    batches = ("1", "16", "32", "64", "128")
    searches = {word_pair(c, "opt", "batch") for c in half if "ios_core.optimize" in c}
    assert searches == {(opt, b) for opt in ("sequential", "both") for b in batches}
    runs = [word_pair(c, "model", "batch") for c in half if "ios_core.measure " in c]
    assert sorted(runs) == sorted(("inception_v3", b) for b in batches for _ in ("sequential", "both"))
    baselines = {word_pair(c, "framework", "batch") for c in half if "ios_core.baseline " in c}
    assert baselines == {("torch_compile", b) for b in batches}
    assert all("results/campaign/h200/fp16/" in c for c in half)
    for output in ("results/campaign/figures/h200/fp16/batch_sizes.png", "results/campaign/h200/fp16/mlflow.json"):
        assert output in done.stdout
    assert "results/campaign/figures/h200/fp16/schedules.png" not in done.stdout


def test_the_schema_names_every_precision_of_the_package():
    from ios_core.precision import PRECISIONS

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert tuple(schema["definitions"]["precision"]["enum"]) == PRECISIONS


def word_pair(command: str, first: str, second: str) -> tuple[str, str]:
    """The values of two ``key=value`` words of a command line."""
    words = dict(word.split("=", 1) for word in command.split() if "=" in word and not word.startswith("-"))
    return words[first], words[second]


def test_misspelt_config_key_is_rejected(tmp_path):
    done = snakemake(tmp_path, "-n", "all", "--config", "devcie=h100", config=demo_config(tmp_path))
    assert done.returncode != 0 and "devcie" in done.stderr + done.stdout


def test_a_job_runs_in_strict_and_half_precision_beside_the_default_one(tmp_path):
    """precision=fp32-strict and fp16, as documented, through the schema and a job; outputs sit apart from fp32's."""
    config = demo_config(tmp_path)
    outputs = {}
    for precision in ("fp32-strict", "fp32", "fp16"):
        target = f"results/sim/{precision}/schedules/h100/demo/b1/sequential.json"
        done = snakemake(tmp_path, target, "--config", f"precision={precision}", config=config)
        assert done.returncode == 0, done.stderr[-3000:]
        outputs[precision] = json.loads((tmp_path / target).read_text())
    assert {p: o["meta"]["precision"] for p, o in outputs.items()} == {p: p for p in ("fp32-strict", "fp32", "fp16")}


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory):
    """Start the demo workflow, kill it after a few jobs, note what had finished, then run it to the end."""
    tmp_path = tmp_path_factory.mktemp("workflow")
    config = demo_config(tmp_path)
    log = (tmp_path / "first.log").open("w")
    first = snakemake(tmp_path, "all", config=config, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    records = tmp_path / "results" / "sim" / "fp32" / "measure"
    deadline = time.monotonic() + 240
    while len(list(records.rglob("*.json"))) < 4 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    log.close()
    assert first.poll() is None, "the first run ended before it could be killed:\n" + (
        tmp_path / "first.log").read_text()[-3000:]
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*.json")}
    # A killed Snakemake leaves its lock: the documented recovery is --unlock, then a rerun.
    assert snakemake(tmp_path, "--unlock", config=config).returncode == 0
    second = snakemake(tmp_path, "all", "--rerun-incomplete", config=config)
    assert second.returncode == 0, second.stderr[-3000:]
    return tmp_path, finished, second


def test_reduced_run_draws_every_figure(interrupted_run):
    tmp_path, _, _ = interrupted_run
    for name in FIGURES:
        for ext in ("png", "pdf", "csv"):
            path = tmp_path / "results" / "figures" / "sim" / "fp32" / f"{name}.{ext}"
            assert path.stat().st_size > 0, path
    record = read(tmp_path / "results" / "sim" / "fp32" / "figures" / "schedules.json")
    assert record.tags["title_source"] == "simulated H100 (analytical model)"


def test_resume_redoes_no_finished_job(interrupted_run):
    tmp_path, finished, second = interrupted_run
    assert finished, "the first run was killed before any job finished"
    redone = [p for p, mtime in finished.items() if p.exists() and p.stat().st_mtime_ns != mtime]
    assert len(redone) <= 2, redone  # at most the jobs running at the kill (--cores 2), whose output was unsure
    assert len(finished) - len(redone) >= 3


def test_resume_loses_no_measurement(interrupted_run):
    """Every record file, and every searched schedule, is in the store exactly once."""
    tmp_path, _, _ = interrupted_run
    expected = {load(p).id for p in record_files([tmp_path / "results" / "sim" / "fp32"]) if _loadable(p)}
    store = open_store(f"sqlite:///{tmp_path}/mlflow.db", "ios-core")
    runs = [r.data.tags[RECORD_ID_TAG] for r in store.client.search_runs([store.experiment_id], max_results=5000)]
    assert len(runs) == len(set(runs)), "a measurement was logged twice"
    assert set(runs) == expected
    summary = json.loads((tmp_path / "results" / "sim" / "fp32" / "mlflow.json").read_text())
    assert not summary["unreadable"]


def _loadable(path):
    try:
        load(path)
    except Exception:  # noqa: BLE001 -- not a record nor a schedule
        return False
    return True


def test_each_gpu_job_gets_its_own_gpu(tmp_path):
    from ios_core.gpu_lock import claim_gpu

    first, fd1 = claim_gpu(["0", "1"], tmp_path)
    second, fd2 = claim_gpu(["0", "1"], tmp_path)
    assert {first, second} == {"0", "1"}
    with pytest.raises(TimeoutError):
        claim_gpu(["0", "1"], tmp_path, poll_s=0.01, timeout_s=0.05)
    os.close(fd1)  # the job on the first GPU ends: its lock goes with it
    assert claim_gpu(["0", "1"], tmp_path)[0] == first


@pytest.mark.parametrize("experiment", FIGURES)
def test_experiment_configs_compose_and_match_the_workflow(experiment):
    """Each conf/experiment/<name>.yaml composes for ios_core.optimize, and sweeps the models the workflow runs."""
    from ios_core.config import compose

    cfg = compose("optimize", [f"+experiment={experiment}"], return_hydra_config=True)
    workflow = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())["experiments"][experiment]
    sweep = cfg.hydra.sweeper.params
    models = sweep["model"].split(",") if "model" in sweep else [cfg.model.name]
    # The CPU default may run fewer models than the paper (see config/config.yaml), never others.
    assert set(workflow.get("models", [workflow.get("model")])) <= set(models)
    assert str(cfg.output).startswith(f"schedules/{experiment}/")
