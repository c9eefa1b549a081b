"""Baselines: the registry and its table, measurements that are always recorded, the entry point and the sweep.

Here (no GPU) ONNX Runtime's CPU build is the framework that really runs; the GPU ones are
checked for the reasons they give. ``-m gpu`` runs the PyTorch variants on the lent GPU.
"""

import importlib.util
import json

import numpy as np
import pytest
from random_graphs import every_op_graph

from ios_core import models
from ios_core.baseline import run, summary
from ios_core.baselines import (
    ALIASES,
    FRAMEWORKS,
    Framework,
    Run,
    frameworks_table,
    get,
    load_network,
    measure,
    sweep_frameworks,
)
from ios_core.baselines.frameworks import UnknownFrameworkError
from ios_core.baselines.sweep import sweep, table
from ios_core.config import compose
from ios_core.onnx_io import Network, run_network, save_onnx
from ios_core.reference import relative_error
from ios_core.timing import Timing
from ios_core.tracking import read
from ios_core.weights import make_input

FAST = Timing(warmup=1, number=2, repeat=3)
PAPER = {
    "torch_eager",
    "torch_cudagraph",
    "torch_compile",
    "torch_compile_freeze",
    "onnxruntime_cuda",
    "tensorrt",
    "tvm_cudnn",
    "taso",
    "tensorflow",
    "tensorflow_xla",
}


@pytest.fixture(scope="module")
def demo() -> Network:
    return Network.of(models.get("demo"))


def test_the_table_lists_every_framework_with_a_reason_for_each_absence():
    rows = frameworks_table()
    assert {row["framework"] for row in rows} >= PAPER
    assert [row["framework"] for row in rows] == list(FRAMEWORKS)
    for row in rows:
        assert row["available"] or row["reason"], row
    json.dumps(rows)
    cpu = next(row for row in rows if row["framework"] == "onnxruntime_cpu")
    assert cpu["available"] and not cpu["in_sweep"] and cpu["precisions"] == ["fp32", "fp32-strict"]
    assert "onnxruntime_cpu" not in sweep_frameworks() and "torch_compile_max_autotune" not in sweep_frameworks()


@pytest.mark.skipif(importlib.util.find_spec("torch") is not None, reason="torch is installed here")
def test_a_missing_package_is_named():
    ok, reason = get("torch_eager").available()
    assert not ok and reason == "torch not installed (pip install torch)"


def test_onnxruntime_cpu_measures_the_demo(demo):
    m = measure(get("onnxruntime_cpu"), demo, 3, FAST)
    assert (m.status, m.available, m.framework, m.model, m.batch) == ("measured", True, "onnxruntime_cpu", "demo", 3)
    assert len(m.latencies_ms) == 3 and m.median_ms == sorted(m.latencies_ms)[1] and m.median_ms > 0
    assert m.rel_error < 1e-5 and m.clock == "wall-clock" and "onnxruntime" in m.versions
    assert json.loads(m.to_json())["timing"] == {"warmup": 1, "number": 2, "repeat": 3}


def test_the_timing_and_the_precision_reach_the_framework_and_the_record(demo):
    seen = {}

    def run(network, x, timing, precision, options):
        seen.update(timing=timing, precision=precision)
        return Run([1.0, 3.0, 2.0], "fake", {}, "fake clock")

    m = measure(Framework("fake", "-", "cuda", lambda: (True, ""), run), demo, 1, FAST, precision="fp32-strict")
    assert seen == {"timing": FAST, "precision": "fp32-strict"}
    assert (m.precision, m.timing, m.median_ms) == ("fp32-strict", {"warmup": 1, "number": 2, "repeat": 3}, 2.0)


def test_an_unavailable_framework_is_recorded_with_its_reason(demo):
    def never_runs(*args):
        raise AssertionError("an unavailable framework must not run")

    absent = Framework("absent", "-", "cuda", lambda: (False, "absent not installed"), never_runs)
    m = measure(absent, demo, 1, FAST)
    assert (m.status, m.available, m.reason, m.median_ms, m.latencies_ms) == (
        "unavailable",
        False,
        "absent not installed",
        None,
        [],
    )
    assert summary(m) == "absent demo batch 1: unavailable -- absent not installed"


def test_a_failure_is_recorded_not_raised(demo):
    def broken(*args):
        raise RuntimeError("engine build failed")

    m = measure(Framework("broken", "-", "cuda", lambda: (True, ""), broken), demo, 1, FAST)
    assert (m.status, m.available, m.reason) == ("failed", True, "RuntimeError: engine build failed")


def test_being_stopped_is_not_a_failure_of_the_framework(demo):
    from ios_core.tracking import Stopped

    def stopped(*args):
        raise Stopped("stopped by signal 15")  # a workflow stopping its jobs, mid-compile

    with pytest.raises(Stopped):
        measure(Framework("stopped", "-", "cuda", lambda: (True, ""), stopped), demo, 1, FAST)


def test_names_aliases_and_timing_rules(demo):
    assert get("cuda_graph") is FRAMEWORKS["torch_cudagraph"]
    assert all(target in FRAMEWORKS for target in ALIASES.values())
    with pytest.raises(UnknownFrameworkError, match="unknown framework 'mxnet'; known: torch_eager"):
        get("mxnet")
    with pytest.raises(ValueError, match="unknown precision"):
        measure(get("onnxruntime_cpu"), demo, 1, FAST, precision="fp8")
    with pytest.raises(ValueError, match="repeat >= 1"):
        Timing(repeat=0)


def test_an_onnx_file_is_a_model(tmp_path, demo):
    path = save_onnx(demo, tmp_path / "net.onnx")
    network = load_network(str(path))
    assert network.name == "net" and len(network.graph.operators) >= len(demo.graph.operators) - 1
    assert measure(get("onnxruntime_cpu"), network, 2, FAST).rel_error < 1e-5


def test_onnxruntime_cpu_runs_every_operator():
    assert measure(get("onnxruntime_cpu"), Network.of(every_op_graph()), 2, FAST).rel_error < 1e-5


@pytest.mark.parametrize("graph", [every_op_graph(), models.get("demo")], ids=["every_op", "demo"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_the_torch_module_equals_the_reference_in_float64(graph, channels_last):
    torch = pytest.importorskip("torch")
    from ios_core.baselines.torch_module import torch_module

    network = Network.of(graph, seed=2)
    x = make_input(graph, 2)
    module, batch = torch_module(graph, network.weights, torch.float64), torch.from_numpy(x)
    if channels_last:
        module, batch = module.to(memory_format=torch.channels_last), batch.to(memory_format=torch.channels_last)
    assert relative_error(module(batch).detach().numpy(), run_network(network, x)) < 1e-12


def compose_baseline(*overrides):
    return compose("baseline", overrides)


def test_the_entry_point_prints_and_writes_a_record(tmp_path, capsys):
    out = tmp_path / "record.json"
    cfg = compose_baseline(
        "framework=onnxruntime_cpu", "model=demo", "batch=2", "tracking.mlflow=false", f"out={out}", "timing.repeat=4"
    )
    m = run(cfg)
    assert capsys.readouterr().out.startswith("onnxruntime_cpu demo batch 2: ")
    record = read(out)
    assert record.status == "FINISHED" and record.kind == "baseline"
    assert record.params["framework"] == "onnxruntime_cpu" and record.params["batch"] == "2"
    assert record.tags["available"] == "true" and record.tags["status"] == "measured"
    assert record.values("latency_ms") == pytest.approx(m.latencies_ms) and len(m.latencies_ms) == 4
    assert record.latest("median_ms") == pytest.approx(m.median_ms)


def test_the_entry_point_records_absence(tmp_path):
    out = tmp_path / "record.json"
    run(compose_baseline("framework=taso", "model=demo", "tracking.mlflow=false", f"out={out}"))
    tags = read(out).tags
    assert tags["available"] == "false" and tags["status"] == "unavailable" and "taso" in tags["reason"]
    simulated = run(
        compose_baseline(
            "framework=onnxruntime_cpu",
            "model=demo",
            "device=sim",
            "tracking.mlflow=false",
            f"out={tmp_path / 'sim.json'}",
        )
    )
    assert simulated.status == "unavailable" and "simulated" in simulated.reason


def test_the_default_config_composes():
    cfg = compose_baseline()
    assert (cfg.framework, cfg.model.name, cfg.batch, cfg.device.name) == ("torch_eager", "inception_v3", 1, "h100")
    assert cfg.out == "results/baselines/h100/inception_v3/b1/torch_eager_fp32.json"


def test_the_sweep_records_every_framework_at_every_batch():
    seen = []
    results = sweep("demo", ["onnxruntime_cpu", "tensorrt"], [1, 2], FAST, progress=seen.append)
    assert [(m.framework, m.batch) for m in results] == [
        ("onnxruntime_cpu", 1),
        ("onnxruntime_cpu", 2),
        ("tensorrt", 1),
        ("tensorrt", 2),
    ]
    assert seen == results
    lines = table(results).splitlines()
    assert lines[0].split() == ["framework", "b1", "b2"]
    if not FRAMEWORKS["tensorrt"].available()[0]:
        assert lines[2].split() == ["tensorrt", "n/a", "n/a"]
        assert lines[3].startswith("  tensorrt: tensorrt not installed")


@pytest.mark.parametrize("graph", [models.get("demo"), every_op_graph()], ids=["demo", "every_op"])
def test_tensorflow_translation_matches_the_reference(graph):
    tf = pytest.importorskip("tensorflow")
    from ios_core.baselines.tensorflow_adapter import tf_forward

    network = Network.of(graph, seed=1)
    x = make_input(graph, 2)
    out = tf_forward(tf, network)(tf.constant(x.astype(np.float32))).numpy()
    assert relative_error(out, run_network(network, x)) < 1e-5


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["torch_eager", "torch_cudagraph", "onnxruntime_cuda"])
def test_gpu_baselines_measure_the_demo(name, demo):
    framework = get(name)
    if not framework.available()[0]:
        pytest.skip(framework.available()[1])
    m = measure(framework, demo, 2, FAST)
    assert m.status == "measured", m.reason
    assert m.rel_error < 1e-2 and m.clock == "cuda-events"  # TF32 by default


def test_a_precision_the_framework_does_not_run_is_unavailable_with_the_reason(demo):
    m = measure(get("onnxruntime_cpu"), demo, 1, FAST, precision="fp16")
    assert (m.status, m.available, m.precision) == ("unavailable", False, "fp16")
    assert m.reason == "onnxruntime_cpu does not run precision fp16 (only fp32, fp32-strict)"


def test_pytorch_and_xla_run_every_precision_the_others_float32():
    from ios_core.precision import FLOAT32_PRECISIONS, PRECISIONS

    every = {name for name, f in FRAMEWORKS.items() if f.precisions == PRECISIONS}
    assert every == {"torch_eager", "torch_cudagraph", "torch_compile", "torch_compile_freeze",
                     "torch_compile_max_autotune", "xla"}
    assert all(f.precisions == FLOAT32_PRECISIONS for name, f in FRAMEWORKS.items() if name not in every)


def test_the_torch_module_in_bfloat16_is_within_the_bf16_tolerance():
    torch = pytest.importorskip("torch")
    from ios_core.baselines.torch_module import torch_module
    from ios_core.precision import TOLERANCE

    network = Network.of(models.get("squeezenet"), seed=2)
    x = make_input(network.graph, 2)
    module = torch_module(network.graph, network.weights, torch.bfloat16).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = module(torch.from_numpy(x).to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
    assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    assert relative_error(out.double().numpy(), run_network(network, x)) <= TOLERANCE["bf16"]


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
@pytest.mark.parametrize("name", ["torch_eager", "torch_cudagraph"])
def test_gpu_torch_baselines_measure_the_demo_in_sixteen_bits(name, precision, demo):
    from ios_core.precision import TOLERANCE

    framework = get(name)
    if not framework.available()[0]:
        pytest.skip(framework.available()[1])
    m = measure(framework, demo, 2, FAST, precision=precision)
    assert m.status == "measured", m.reason
    assert m.rel_error <= TOLERANCE[precision] and m.precision == precision
