"""bench/half_precision.py on a CPU: the dry run (the engine modes' simulated latency in fp16 and bf16, PyTorch's
rows without a number), the rows it plans, resuming from its output, and a plan with no 16-bit path refused."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def half(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # a folder of scripts: it imports its siblings
    import half_precision

    return half_precision


def dry_run(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / "half_precision.py"), "--dry-run", "--out", str(out),
                           "--models", "squeezenet,inception_v3", *args], capture_output=True, text=True, timeout=600)


def test_a_dry_run_writes_every_row_and_resumes_from_them(tmp_path):
    out = tmp_path / "half_precision.json"
    done = dry_run(out)
    assert done.returncode == 0, done.stderr
    document = json.loads(out.read_text())
    rows = {(r["model"], r["batch"], r["precision"], r["mode"]): r for r in document["rows"]}
    engine = {"sequential", "ios_both"}
    pytorch = {"torch_cudagraph", "torch_compile_freeze"}
    expected = {(m, b, "fp16", mode) for m in ("squeezenet", "inception_v3") for b in (1, 16)
                for mode in engine | pytorch} | {("inception_v3", b, "fp16", "lib_compile_freeze") for b in (1, 16)}
    assert set(rows) == expected  # torchvision and timm have no RandWire nor this SqueezeNet: no library row
    for (*_, mode), row in rows.items():
        assert set(row) >= {"model", "batch", "precision", "mode", "ms", "error_vs_reference"}
        if mode in engine:
            assert row["ms"] > 0 and row["source"] == "simulated" and row["error"] is None
        else:
            assert row["ms"] is None and row["error"] == "dry run: PyTorch is not timed"
    ios = rows[("inception_v3", 1, "fp16", "ios_both")]
    assert ios["schedule"].endswith("schedules/inception_v3_b1_both_h200_fp32_measured.json")
    assert ios["ms"] < rows[("inception_v3", 1, "fp16", "sequential")]["ms"]
    assert "| inception_v3 | 16 | fp16 |" in done.stdout

    again = dry_run(out, "--bf16")  # the fp16 rows are there: only bf16's are new
    assert again.returncode == 0, again.stderr
    document = json.loads(out.read_text())
    assert len(document["rows"]) == 2 * len(expected) and len(document["environments"]) == 2
    assert " fp16 " not in again.stdout.split("|")[0] and " bf16 " in again.stdout
    assert {r["call"] for r in document["rows"] if r["precision"] == "bf16"} == {1}


def test_the_simulated_ios_both_is_faster_in_fp16_than_in_fp32_at_batch_16(half, tmp_path):
    """fp16 halves the bytes and doubles the tensor peak: the dry run's IOS-Both at batch 16 beats fp32's."""
    from ios_core.config import device_profile
    from ios_core.measure import simulated

    bench = half.Bench(half.Call(tmp_path / "x.json", "h200", dry_run=True))
    graph = half.network("inception_v3").graph
    schedule, _ = half.engine_schedule(graph, "ios_both", 16, "fp16", bench)
    fp32 = simulated(graph, schedule, 16, device_profile("h200"), "fp32").samples_ms[0]
    fp16 = half.engine_row(half.network("inception_v3"), "ios_both", 16, "fp16", bench)["ms"]
    assert fp16 < fp32


def test_ios_both_is_searched_at_the_rows_batch_and_precision_where_its_file_is_missing(half, tmp_path):
    template = str(tmp_path / "{model}_b{batch}_both_{device}_{precision}.json")
    bench = half.Bench(half.Call(tmp_path / "x.json", "h200", dry_run=True),
                       half.BothSchedules(template, cost_cache=str(tmp_path / "costs.jsonl")))
    graph = half.network("squeezenet").graph
    schedule, source = half.engine_schedule(graph, "ios_both", 16, "fp16", bench)
    assert source == str(tmp_path / "squeezenet_b16_both_h200_fp16.json") and Path(source).exists()
    assert schedule.meta["batch"] == 16 and schedule.meta["precision"] == "fp16" and schedule.meta["opt"] == "both"
    again, _ = half.engine_schedule(graph, "ios_both", 16, "fp16", bench)  # read back, not searched again
    assert again.stages == schedule.stages


def test_a_plan_that_stores_float32_weights_is_no_fp16_plan(half):
    network = half.network("squeezenet")
    elements = sum(a.size for p in network.weights.values() for a in p.values())
    float32_plan = SimpleNamespace(stats=SimpleNamespace(weight_bytes=4 * elements + 256))
    half_plan = SimpleNamespace(stats=SimpleNamespace(weight_bytes=2 * elements + 256))
    assert "no fp16 path" in half.float32_storage(float32_plan, network, "fp16")
    assert half.float32_storage(half_plan, network, "fp16") is None
    assert half.float32_storage(float32_plan, network, "fp32") is None


def test_the_planned_rows_put_the_compiled_modes_last_and_batch_128_on_request(half):
    args = SimpleNamespace(models=["nasnet", "randwire"], batches=[1, 16, 128], precisions=["fp16"],
                           modes=list(half.MODES))
    rows = half.planned(args)
    modes = [mode for *_, mode in rows]
    first_compiled = modes.index("torch_compile_freeze")
    assert set(modes[:first_compiled]) == set(half.FAST_MODES)
    assert set(modes[first_compiled:]) == set(half.COMPILED_MODES)
    assert ("randwire", 128, "fp16", "lib_compile_freeze") not in rows and ("nasnet", 128, "fp16",
                                                                          "lib_compile_freeze") in rows
