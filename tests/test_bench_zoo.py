"""bench/zoo.py on a CPU: the dry run (simulated cost, float64 reference against ONNX Runtime), resumed from its
rows, and the README table; exports are left out where PyTorch is not installed (CI), ONNX files given instead."""

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from ios_core import models
from ios_core.onnx_io import Network, save_onnx
from ios_core.timing import Timing
from ios_core.weights import make_weights

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def zoo(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # a folder of scripts: zoo imports its sibling records
    import zoo

    return zoo


def dry_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "zoo.py"), "--dry-run", "--onnx-dir", str(tmp_path),
                           "--out", str(tmp_path / "zoo.json"), *args], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path)


def onnx_file(tmp_path: Path, name: str) -> None:
    """The demo network (3 x 16 x 16) written where the dry run looks for the zoo network ``name``."""
    demo = models.get("demo")
    save_onnx(Network(demo, make_weights(demo, seed=5)), tmp_path / name)


def test_a_dry_run_imports_searches_and_checks_each_file_and_resumes_from_its_rows(tmp_path):
    onnx_file(tmp_path, "squeezenet1_1.torchscript.onnx")
    args = ("--models", "squeezenet1_1", "--exporters", "torchscript", "--resolution", "16", "--pack")
    done = dry_run(tmp_path, *args, "--keep", str(tmp_path / "first"))
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "zoo.json").read_text())
    rows = {r["mode"]: r for r in document["rows"]}
    assert rows.keys() == {"sequential", "ios_both"}  # no PyTorch timing in a dry run
    for r in rows.values():
        assert (r["model"], r["exporter"], r["batch"], r["precision"], r["source"]) == (
            "squeezenet1_1", "torchscript", 1, "fp32", "simulated")
        assert r["ms"] > 0 and r["error"] is None and r["rel_l2"] < 1e-6 and r["ops"] == 12
    assert rows["ios_both"]["ms"] <= rows["sequential"]["ms"]
    kept = ["schedules/squeezenet1_1_torchscript_b1_both.json", "squeezenet1_1_b1_16px_onnxruntime.npy"]
    with tarfile.open(tmp_path / "zoo.json.records.tar.gz") as tar:  # --keep, packed beside --out
        assert {f"./{name}" for name in kept} <= set(tar.getnames())
    again = dry_run(tmp_path, *args, "--keep", str(tmp_path / "second"))  # another machine: a fresh folder
    assert again.returncode == 0, again.stderr
    assert all((tmp_path / "second" / name).is_file() for name in kept)  # unpacked
    assert json.loads((tmp_path / "zoo.json").read_text()) == document  # nothing ran again, nothing was written
    assert "squeezenet1_1 | 12 |" in again.stdout


def test_a_network_without_a_file_gets_rows_that_say_why(tmp_path, zoo):
    if zoo.torch_importable():
        pytest.skip("PyTorch is installed here: the dry run would export the network")
    done = dry_run(tmp_path, "--models", "resnet50", "--exporters", "dynamo")
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "zoo.json").read_text())["rows"]
    assert [(r["mode"], r["ms"]) for r in rows] == [("sequential", None), ("ios_both", None)]
    assert all(r["error"] == "RuntimeError: no resnet50.dynamo.onnx in --onnx-dir and PyTorch is not importable"
               for r in rows)


def test_a_dry_run_exports_where_pytorch_is_installed(tmp_path):
    pytest.importorskip("torchvision")
    done = dry_run(tmp_path, "--models", "squeezenet1_1", "--resolution", "64")
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "zoo.json").read_text())["rows"]
    assert {(r["exporter"], r["mode"]) for r in rows} == {(e, m) for e in ("torchscript", "dynamo")
                                                          for m in ("sequential", "ios_both")}
    assert all(r["error"] is None and r["rel_l2"] < 1e-4 for r in rows)


def row(model, mode, ms, exporter="torchscript", error=None, **more):
    return {"model": model, "exporter": exporter, "batch": 1, "precision": "fp32", "mode": mode, "ms": ms,
            "error": error, **more}


def test_the_table_gives_ios_both_against_sequential_and_torch_compile_and_their_geometric_mean(zoo):
    rows = [row("a", "sequential", 2.0, ops=10), row("a", "ios_both", 1.0, ops=10),
            row("a", "torch_compile_freeze", 4.0, exporter=None),
            row("b", "sequential", 3.0, ops=20), row("b", "ios_both", 2.0, ops=20),
            row("b", "torch_compile_freeze", 1.0, exporter=None),
            row("c", "ios_both", None, error="UnsupportedOperatorError: Foo"),
            row("d", "ios_both", 1.0, error="output differs from ONNX Runtime's: rel L2 1e+00 > 1e-02")]
    lines = zoo.table(rows).splitlines()
    assert lines[2] == "| a | 10 | 1.000 | 2.00x | 4.00x |"
    assert lines[3] == "| b | 20 | 2.000 | 1.50x | 0.50x |"
    assert lines[4] == lines[5].replace("| d |", "| c |") == "| c | - | - | - | - |"  # no number, or a wrong one
    assert lines[-1] == "| geometric mean (2 networks) | | | | 1.41x |"


def test_rows_are_resumed_and_failed_ones_retried_when_asked(tmp_path, zoo):
    bench = zoo.Bench(zoo.Call(tmp_path / "zoo.json", "h200", dry_run=True), tmp_path / "keep", 1, zoo.MODES)
    rows = zoo.row_file(bench.call.out, {"machine": 1}, {})
    rows.add(zoo.row(bench, "a", "torchscript", "sequential", 1.0, revisions=zoo.REVISIONS))
    rows.add(zoo.row(bench, "a", "torchscript", "ios_both", error="RuntimeError: no GPU", revisions=zoo.REVISIONS))
    again = zoo.row_file(bench.call.out, {"machine": 2}, {})
    assert again.environments == [{"machine": 1}, {"machine": 2}]
    assert zoo.pending(bench, again, "a", "torchscript", zoo.ENGINE_MODES) == []
    bench.call.retry_failed = True
    assert zoo.pending(bench, again, "a", "torchscript", zoo.ENGINE_MODES) == ["ios_both"]
    again.add(zoo.row(bench, "a", "torchscript", "ios_both", 0.5))
    assert [(r["mode"], r["ms"], r["call"]) for r in zoo.row_file(bench.call.out, {}, {}).rows] == [
        ("sequential", 1.0, 0), ("ios_both", 0.5, 1)]


def test_engine_rows_of_an_older_import_or_engine_are_measured_again_and_pytorch_rows_are_not(tmp_path, zoo):
    bench = zoo.Bench(zoo.Call(tmp_path / "zoo.json", "h200", dry_run=True), tmp_path / "keep", 1, zoo.MODES)
    rows = zoo.row_file(bench.call.out, {"machine": 1}, {})
    older = {**zoo.REVISIONS, "import": zoo.REVISIONS["import"] - 1}
    rows.add(zoo.row(bench, "a", "torchscript", "sequential", 1.0, revisions=older))
    rows.add(zoo.row(bench, "a", "torchscript", "ios_both", 0.5))  # before rows said what they were measured with
    rows.add(zoo.row(bench, "a", None, "torch_eager", 2.0))
    assert zoo.pending(bench, rows, "a", "torchscript", zoo.ENGINE_MODES) == ["sequential", "ios_both"]
    assert zoo.pending(bench, rows, "a", None, zoo.TORCH_MODES) == ["torch_cudagraph", "torch_compile_freeze"]
    rows.add(zoo.row(bench, "a", "torchscript", "sequential", 0.9, revisions=zoo.REVISIONS))  # replaces the old row
    assert zoo.pending(bench, rows, "a", "torchscript", zoo.ENGINE_MODES) == ["ios_both"]
    assert [r["ms"] for r in rows.rows if r["mode"] == "sequential"] == [0.9]


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # the fake GPU downloads uninitialized memory
def test_on_a_fake_gpu_the_engine_runs_the_file_s_weights_and_a_search_that_fails_says_why(tmp_path, zoo,
                                                                                           monkeypatch):
    """The GPU path up to the GPU (`fake_gpu`: every call recorded, nothing computed, so every output is wrong):
    Sequential's plan on the file's weights, its row and ``measure`` record, all packed. The search runs as its own
    process (``python -m ios_core.optimize``), where the fake is not: its row says why it gave no schedule."""
    from fake_gpu import FakeGpu

    from ios_core import engine
    from ios_core.onnx_io import load_onnx
    from ios_core.tracking import read

    onnx_file(tmp_path, "squeezenet1_1.torchscript.onnx")
    weights = load_onnx(tmp_path / "squeezenet1_1.torchscript.onnx").weights
    monkeypatch.setattr(engine, "environment", lambda: {"name": "NVIDIA H200", "driver": "580", "cuda": "13.0",
                                                         "cudnn": "9.19.0"})
    call = zoo.Call(tmp_path / "zoo.json", "h200", Timing(warmup=1, number=2, repeat=3))
    bench = zoo.Bench(call, tmp_path / "keep", 1, zoo.ENGINE_MODES, onnx_dir=tmp_path, resolution=16, pack=True)
    gpu = FakeGpu()
    try:
        rows = {r["mode"]: r for r in zoo.run(bench, ["squeezenet1_1"], ("torchscript",)).rows}
        uploaded = [a.host for a in gpu.recorder.allocs.values() if a.host is not None]
    finally:
        gpu.close()
    sequential, both = rows["sequential"], rows["ios_both"]
    assert sequential["ms"] > 0 and sequential["source"] == "measured" and sequential["ops"] == both["ops"] == 12
    assert sequential["error"].startswith("output differs from ONNX Runtime's")
    assert both["ms"] is None and both["error"].startswith("SearchError: the search failed: error: cost=measured")
    assert "NaN" not in (tmp_path / "zoo.json").read_text()  # strict JSON: the fake's NaN error is null
    uploaded = b"".join(host.tobytes() for host in uploaded)
    assert all(p["bias"].astype(np.float32).tobytes() in uploaded for p in weights.values())  # the file's biases
    record = read(tmp_path / "keep" / "records" / "squeezenet1_1_torchscript_b1_sequential.json")
    assert (record.kind, record.tags["exporter"], record.params["opt"]) == ("measure", "torchscript", "sequential")
    assert bench.packed.is_file()


def test_a_search_that_does_not_end_in_time_is_a_row_that_says_so(tmp_path):
    onnx_file(tmp_path, "squeezenet1_1.torchscript.onnx")
    done = dry_run(tmp_path, "--models", "squeezenet1_1", "--exporters", "torchscript", "--resolution", "16",
                   "--search-timeout-s", "0.01")
    assert done.returncode == 0, done.stderr
    rows = {r["mode"]: r for r in json.loads((tmp_path / "zoo.json").read_text())["rows"]}
    assert rows["sequential"]["ms"] > 0 and rows["ios_both"]["ms"] is None
    assert rows["ios_both"]["error"] == "SearchError: the search did not end within 0.01 s"


def test_the_scripts_share_one_zoo_table_that_needs_no_torch(zoo):
    import ios_core.models.zoo as table

    assert zoo.ZOO is table.ZOO and zoo.EXPORTERS is table.EXPORTERS and zoo.build_module is table.build_module
    make_zoo = (ROOT / "tests" / "zoo" / "make_zoo.py").read_text()
    assert "from ios_core.models.zoo import" in make_zoo and "Source(" not in make_zoo
    probe = "import sys, ios_core.models.zoo; print(sorted({'torch', 'torchvision', 'timm'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout == "[]\n"
