"""bench/frameworks.py on a CPU: the dry run on the demo network (IOS-Both's simulated latency, every framework's
availability with its reason), resuming from its rows, the README table, the figure, and the records' pack."""

import json
import time
from pathlib import Path

import pytest

from ios_core import models
from ios_core import schedule as S
from ios_core.baselines import FRAMEWORKS, Measurement
from ios_core.tracking import Record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # a folder of scripts: it imports its siblings
    import frameworks

    return frameworks


@pytest.fixture
def demo_schedule(tmp_path) -> str:
    """A schedule of the demo network at batch 1 (no IOS-Both schedule is committed for it); the path template."""
    S.save(S.greedy(models.get("demo")), tmp_path / "demo_b1_both.json")
    return str(tmp_path / "{model}_b{batch}_both.json")


def dry_run(bench, out: Path, schedule: str, *args: str) -> dict:
    assert bench.main(["--dry-run", "--models", "demo", "--out", str(out), "--ios-schedule", schedule, *args]) == 0
    return json.loads(out.read_text())


def test_a_dry_run_writes_a_row_per_model_batch_and_framework_with_reasons(bench, demo_schedule, tmp_path, capsys):
    document = dry_run(bench, tmp_path / "frameworks.json", demo_schedule)
    rows = {(r["model"], r["batch"], r["framework"]): r for r in document["rows"]}
    gpu_frameworks = [name for name, f in FRAMEWORKS.items() if f.device == "cuda"]
    assert set(rows) == {("demo", b, name) for b in (1, 16) for name in ["ios_both", *gpu_frameworks]}
    assert {"torch_compile_freeze", "torch_compile_max_autotune", "xla", "hidet", "tensorrt"} <= set(gpu_frameworks)
    for (*_, name), row in rows.items():
        assert set(row) >= {"model", "batch", "precision", "framework", "ms", "error_vs_reference", "source"}
        assert row["precision"] == "fp32" and row["source"] == "simulated"
        if name == "ios_both":
            assert row["ms"] > 0 and row["schedule"].endswith("demo_b1_both.json")  # batch 16: batch 1's schedule
        else:
            ok, reason = FRAMEWORKS[name].available()
            assert row["ms"] is None and row["available"] == ok
            assert row["reason"] == (reason if not ok else "dry run: not run")
    # The slow frameworks come after every other row.
    order = [r["framework"] for r in document["rows"]]
    assert max(order.index(n) for n in order if n not in bench.SLOW) < min(order.index(n) for n in bench.SLOW)
    out = capsys.readouterr().out
    assert "| demo | 1 | " in out and "TensorRT: not available (" in out
    assert not (tmp_path / "frameworks.json.records.tar.gz").exists()  # a dry run measures nothing to record


def test_a_second_call_skips_the_rows_there_and_retries_failed_ones(bench, demo_schedule, tmp_path, capsys):
    out = tmp_path / "frameworks.json"
    first = dry_run(bench, out, demo_schedule, "--frameworks", "ios_both,tensorrt")
    assert len(first["rows"]) == 4
    capsys.readouterr()
    kept = {**first["rows"][0], "ms": 123.0}  # a row already there is not measured again
    out.write_text(json.dumps({**first, "rows": [kept, *first["rows"][1:]]}))
    second = dry_run(bench, out, demo_schedule, "--frameworks", "ios_both,tensorrt", "--batches", "1,16")
    assert second["rows"][0]["ms"] == 123.0 and len(second["environments"]) == 1  # nothing ran, nothing written
    assert "ms " not in capsys.readouterr().out.split("|")[0]  # no row printed as it was run
    third = dry_run(bench, out, demo_schedule, "--frameworks", "ios_both,tensorrt", "--retry-failed")
    assert {r["call"] for r in third["rows"] if r["framework"] == "tensorrt"} == {1}  # no number: run again
    assert {r["call"] for r in third["rows"] if r["framework"] == "ios_both"} == {0}


def test_a_row_past_its_timeout_is_failed_with_the_reason_and_the_next_rows_run(bench, demo_schedule, tmp_path,
                                                                                   monkeypatch):
    def compiling_forever(net, name, batch, bench_, pack):
        if name == "tensorrt":
            time.sleep(30)  # interrupted by the row's timer
        return {"available": True, "status": "not run", "reason": "dry run: not run"}

    monkeypatch.setattr(bench, "framework_row", compiling_forever)
    started = time.perf_counter()
    document = dry_run(bench, tmp_path / "frameworks.json", demo_schedule, "--frameworks", "tensorrt,xla",
                       "--batches", "1", "--row-timeout-s", "0.2")
    assert time.perf_counter() - started < 10
    rows = {r["framework"]: r for r in document["rows"]}
    assert rows["tensorrt"]["status"] == "failed" and rows["tensorrt"]["ms"] is None
    assert rows["tensorrt"]["reason"].endswith("did not finish within 0.2 s (--row-timeout-s)")
    assert rows["xla"]["status"] == "not run"
    time.sleep(0.3)  # the timer of the last row is gone with it: nothing fires later


def test_again_runs_the_named_rows_of_earlier_calls_once_more(bench, demo_schedule, tmp_path):
    out = tmp_path / "frameworks.json"
    dry_run(bench, out, demo_schedule, "--frameworks", "ios_both,tensorrt")
    again = dry_run(bench, out, demo_schedule, "--frameworks", "ios_both,tensorrt", "--again", "ios_both")
    calls = {(r["framework"], r["batch"]): r["call"] for r in again["rows"]}
    assert calls == {("ios_both", 1): 1, ("ios_both", 16): 1, ("tensorrt", 1): 0, ("tensorrt", 16): 0}
    kept = dry_run(bench, out, demo_schedule, "--frameworks", "ios_both,tensorrt")  # without it: nothing runs
    assert {(r["framework"], r["batch"]): r["call"] for r in kept["rows"]} == calls


def test_with_a_cost_cache_ios_both_is_searched_at_the_batch_its_file_lacks(bench, demo_schedule, tmp_path):
    costs = tmp_path / "costs.jsonl"
    document = dry_run(bench, tmp_path / "frameworks.json", demo_schedule, "--frameworks", "ios_both",
                       "--search", str(costs))
    schedules = {r["batch"]: r["schedule"] for r in document["rows"]}
    assert schedules[1].endswith("demo_b1_both.json")  # there already: not searched again
    assert schedules[16].endswith("demo_b16_both.json") and costs.exists()
    searched = S.load(Path(schedules[16]), models.get("demo"))
    assert searched.meta["batch"] == 16 and searched.meta["opt"] == "both" and searched.meta["precision"] == "fp32"
    assert document["settings"]["search"] == str(costs)


def row(framework: str, batch: int, ms: float | None, **more) -> dict:
    return {"model": "inception_v3", "batch": batch, "precision": "fp32", "framework": framework, "ms": ms,
            "error_vs_reference": 1e-6, "error": None, "available": True, "reason": "", "source": "measured", **more}


def measured_document() -> dict:
    rows = [row("ios_both", 1, 0.5), row("torch_cudagraph", 1, 1.0), row("torch_compile_freeze", 1, 0.8),
            row("xla", 1, 0.3, error="output differs from the float64 reference: rel L2 1e-01 > 1e-02"),
            row("hidet", 1, None, status="failed", reason="RuntimeError: nvcc failed"),
            row("tensorrt", 1, None, available=False, reason="tensorrt not installed (pip install tensorrt)"),
            row("ios_both", 16, 2.0), row("torch_cudagraph", 16, None, available=True, reason="OOM"),
            row("torch_compile_freeze", 16, 2.5), row("tensorrt", 16, None, available=False, reason="x")]
    environment = {"name": "NVIDIA H200", "driver": "580", "cudnn": "91900", "source": "measured",
                   "torch": {"torch": "2.11.0"}, "versions": {"jax": "0.11.0"}}
    return {"benchmark": "frameworks", "environments": [environment], "rows": rows}


def test_the_table_puts_ios_both_over_the_fastest_correct_framework(bench):
    text = bench.table(measured_document())
    lines = text.splitlines()
    assert lines[0] == ("| model | batch | IOS-Both | PyTorch + CUDA graph | XLA (JAX) | torch.compile (frozen) "
                        "| hidet | IOS-Both over the best |")
    assert lines[2] == "| inception_v3 | 1 | 0.500 | 1.000 | 0.300* | 0.800 | failed | 1.60x |"  # XLA's is wrong
    assert lines[3] == "| inception_v3 | 16 | 2.000 | failed | - | 2.500 | - | 1.25x |"
    assert "- TensorRT: not available (tensorrt not installed (pip install tensorrt))" in lines
    assert "- hidet inception_v3 b1: RuntimeError: nvcc failed" in lines
    assert "- xla inception_v3 b1: output differs from the float64 reference: rel L2 1e-01 > 1e-02" in lines
    assert bench.caption(measured_document()) == "NVIDIA H200, driver 580, cuDNN 91900, torch 2.11.0, jax 0.11.0"


def test_table_and_figure_from_the_rows_file(bench, tmp_path, capsys):
    out = tmp_path / "frameworks.json"
    out.write_text(json.dumps(measured_document()))
    assert bench.main(["--out", str(out), "--table", "--figure", str(tmp_path / "fig" / "frameworks.png")]) == 0
    assert capsys.readouterr().out.startswith("Measured on NVIDIA H200, driver 580")
    csv = (tmp_path / "fig" / "frameworks.csv").read_text()
    assert (tmp_path / "fig" / "frameworks.png").stat().st_size > 0
    assert "inception_v3 b16,16,torch.compile (frozen)" in csv and ",tensorrt,," in csv


def test_records_are_packed_and_read_back(bench, tmp_path):
    from records import RecordPack, Run, baseline_record

    from ios_core.timing import Timing

    pack = RecordPack(tmp_path / "f.json.records.tar.gz")
    m = Measurement("tensorrt", "demo", 1, "unavailable", False, reason="tensorrt not installed", precision="fp32")
    pack.add("demo_b1_tensorrt.json", baseline_record(Run("demo", 1, "h200"), m, Timing()))
    again = RecordPack(tmp_path / "f.json.records.tar.gz")
    assert list(again.files) == ["demo_b1_tensorrt.json"]
    from ios_core.tracking.record import from_json

    record: Record = from_json(again.files["demo_b1_tensorrt.json"].decode())
    assert record.kind == "baseline" and not record.available and record.tags["reason"] == "tensorrt not installed"
