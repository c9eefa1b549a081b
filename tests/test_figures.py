"""Figures: every experiment's figure from records, with its source in the title, n/a shown, numbers in a CSV."""

import json
from pathlib import Path

import pandas as pd
import pytest

from ios_core.errors import UserError
from ios_core.figures import FIGURES, MixedSourcesError, frame, make, source_label
from ios_core.figures.search import batch_panel
from ios_core.tracking import Record, write

OPTS = ("sequential", "greedy", "merge", "parallel", "both")


def measure(model, opt, batch=1, latency=1.0, source="simulated", device="h100", **extra):
    """A measure record as ios_core.measure writes it (latency None: not available)."""
    params = {"model": model, "batch": str(batch), "device": device, "opt": opt, "r": "3", "s": "8",
              "schedule_batch": str(extra.pop("schedule_batch", batch)),
              "schedule_device": extra.pop("schedule_device", device), "variant": extra.pop("variant", ""),
              "device_name": device.upper() if source == "simulated" else "NVIDIA H100 80GB HBM3"}
    params.update({k: str(v) for k, v in extra.pop("params", {}).items()})
    tags = {"source": source, "available": str(latency is not None).lower(),
            "reason": "" if latency is not None else extra.pop("reason", "needs a GPU")}
    record = Record(f"measure/{model}/{opt}", "measure", params, tags)
    if latency is not None:
        record.log_series("latency_ms", [latency])
        record.log_metric("median_ms", latency)
    for name, value in extra.items():
        record.log_metric(name, value)
    record.status = "FINISHED"
    return record


def baseline(model, framework, batch=1, reason="torch not installed (pip install torch)"):
    return Record(f"baseline/{framework}", "baseline", {"framework": framework, "model": model, "batch": str(batch),
                                                        "device_profile": "sim"},
                  {"source": "measured", "available": "false", "reason": reason}, status="FINISHED")


def draw(tmp_path, name, records, **options):
    paths = []
    for i, record in enumerate(records):
        paths.append(write(record, tmp_path / "records" / f"{i}.json"))
    out = make(name, paths, tmp_path / "fig" / name, **options)
    assert [p.suffix for p in out] == [".png", ".pdf", ".csv"]
    assert all(p.stat().st_size > 0 for p in out)
    return pd.read_csv(out[2]), out


def test_schedules_normalizes_to_sequential(tmp_path):
    records = [measure(m, o, latency=2.0 / (1 + i)) for m in ("inception_v3", "nasnet") for i, o in enumerate(OPTS)]
    data, _ = draw(tmp_path, "schedules", records)
    both = data[(data["model"] == "nasnet") & (data["schedule"] == "IOS-Both")]
    assert both["speedup"].iloc[0] == pytest.approx(5.0)
    assert set(data["schedule"]) == {"Sequential", "Greedy", "IOS-Merge", "IOS-Parallel", "IOS-Both"}


def test_frameworks_keep_unavailable_baselines(tmp_path):
    records = [measure("inception_v3", "both"), baseline("inception_v3", "tensorrt"), baseline("inception_v3", "taso")]
    data, _ = draw(tmp_path, "frameworks", records)
    assert list(data["system"]) == ["IOS (ours)", "TensorRT", "TASO"]
    assert data["available"].tolist() == [True, False, False]
    assert "not installed" in data["reason"].iloc[1]


def test_utilization_plots_stage_series(tmp_path):
    records = []
    for opt, stages in (("sequential", [0.1, 0.2, 0.1]), ("both", [0.15, 0.1])):
        record = measure("inception_v3", opt, latency=sum(stages), params={"utilization_metric": "FLOP/s, % of peak"})
        record.log_series("stage_latency_ms", stages)
        record.log_series("stage_utilization_pct", [30.0] * len(stages))
        records.append(record)
    data, _ = draw(tmp_path, "utilization", records)
    assert data.groupby("schedule")["end_ms"].max().to_dict() == pytest.approx({"Sequential": 0.4, "IOS-Both": 0.25})


def test_utilization_without_stage_numbers_is_not_available(tmp_path):
    data, _ = draw(tmp_path, "utilization", [measure("inception_v3", "both", source="measured")])
    assert data.empty


def test_specialization_heat_maps(tmp_path):
    batches = (1, 16)
    records = [measure("inception_v3", "both", batch=rb, schedule_batch=sb, latency=1.0 + (sb != rb))
               for sb in batches for rb in batches]
    records += [measure("inception_v3", "both", device=rd, schedule_device=od, latency=1.0 + (od != rd))
                for od in ("h100", "h200") for rd in ("h100", "h200") if (od, rd) != ("h100", "h100")]
    records[-1] = measure("inception_v3", "both", device="h200", schedule_device="h200", latency=None,
                          reason="needs a H200 GPU")
    data, _ = draw(tmp_path, "specialization", records, device_batch=1)
    assert len(data) == 7 and (~data["available"]).sum() == 1


def test_specialization_batch_panel_holds_one_device(tmp_path):
    """Two GPUs' runs of their own schedules at batch 1 never average into one batch-panel cell."""
    records = [measure("inception_v3", "both", device=rd, schedule_device=od, latency=1.0 + (rd == "h200"))
               for od in ("h100", "h200") for rd in ("h100", "h200")]
    draw(tmp_path, "specialization", records, device_batch=1)
    home, _, table = batch_panel(frame(records))
    assert home == "h100" and table.to_numpy().tolist() == [[1.0]]  # not the mean of 1.0 (H100) and 2.0 (H200)


def test_pruning_reports_search_cost(tmp_path):
    records = [measure("inception_v3", "both", params={"r": r, "s": s}, latency=1.0 + 0.1 / r,
                       search_time_s=0.1 * r * s, dp_states=100, stages_costed=10 * r * s)
               for r in (1, 2, 3) for s in (3, 8)]
    data, _ = draw(tmp_path, "pruning", records)
    assert data["relative_latency"].min() == pytest.approx(1.0)
    assert data.set_index(["r", "s"]).loc[(3, 8), "search_time_s"] == pytest.approx(2.4)


def test_batch_sizes_throughput(tmp_path):
    records = [measure("inception_v3", o, batch=b, latency=b * 0.1) for b in (1, 16) for o in ("sequential", "both")]
    records += [baseline("inception_v3", "tensorrt", batch=b) for b in (1, 16)]
    data, _ = draw(tmp_path, "batch_sizes", records)
    assert data.dropna(subset=["throughput"])["throughput"].tolist() == pytest.approx([10000.0] * 4)


def test_intra_inter_marks_autotuning_unavailable_without_gpu(tmp_path):
    records = [measure("squeezenet", o, latency=1.0 if o == "sequential" else 0.5) for o in ("sequential", "both")]
    records += [measure("squeezenet", o, variant="autotune", latency=None, reason="needs a GPU")
                for o in ("sequential", "both")]
    data, _ = draw(tmp_path, "intra_inter", records)
    assert data["speedup"].tolist()[:2] == [1.0, 2.0] and data["speedup"].isna().sum() == 2


def test_titles_name_the_source():
    assert source_label(frame([measure("demo", "both")])) == "simulated H100 (analytical model)"
    assert source_label(frame([measure("demo", "both", source="measured")])) == "measured on NVIDIA H100 80GB HBM3"


def test_simulated_and_measured_never_share_a_figure(tmp_path):
    records = [measure("demo", "sequential"), measure("demo", "both", source="measured")]
    with pytest.raises(MixedSourcesError):
        draw(tmp_path, "schedules", records)


def test_every_experiment_has_a_figure():
    assert list(FIGURES) == ["schedules", "frameworks", "utilization", "specialization", "pruning", "batch_sizes",
                             "intra_inter"]


@pytest.mark.parametrize("name", ["schedules", "frameworks", "specialization", "pruning", "batch_sizes", "intra_inter"])
def test_a_figure_of_nothing_available_still_draws(tmp_path, name):
    """On a node where nothing could be measured, every figure says so instead of failing."""
    records = [measure("demo", o, batch=b, latency=None, reason="needs a H100 GPU", source="measured")
               for o in ("sequential", "both") for b in (1, 2)]
    data, _ = draw(tmp_path, name, records, **({"device_batch": 1} if name == "specialization" else {}))
    assert not data["available"].any()


def test_without_the_baseline_to_normalize_by_latencies_are_shown(tmp_path):
    """IOS not measurable here but PyTorch measured: its latency is drawn, not hidden behind a failed ratio."""
    records = [measure("demo", "both", latency=None, source="measured"), baseline("demo", "tensorrt")]
    measured = Record("baseline/torch_eager", "baseline", {"framework": "torch_eager", "model": "demo", "batch": "1"},
                      {"source": "measured", "available": "true", "device": "NVIDIA H200"}, status="FINISHED")
    measured.log_series("latency_ms", [0.5, 0.4])
    measured.log_metric("median_ms", 0.45)
    data, _ = draw(tmp_path, "frameworks", [*records, measured])
    assert data["latency_ms"].iloc[2] == pytest.approx(0.45) and data["relative"].isna().all()


def test_a_missing_record_is_one_line_naming_it(tmp_path, one_line_error):
    good = write(measure("demo", "both"), tmp_path / "good.json")
    one_line_error("ios_core.figures", "schedules", str(good), "missing.json", "--out", "fig/schedules",
                   naming="missing.json")
    assert not (tmp_path / "fig").exists()


@pytest.mark.parametrize(("content", "why"), [
    ('{"format": "ios-core/rec', "not JSON, torn or truncated"),
    ('{"format": "ios-core/record", "version": 1, "status": "FINISHED"}', "a malformed ios-core/record"),
    ('{"format": "ios-core/schedule", "version": 1}', "not an ios-core/record"),
])
def test_a_malformed_record_is_a_user_error_naming_it(tmp_path, content, why):
    malformed = tmp_path / "malformed.json"
    malformed.write_text(content)
    with pytest.raises(UserError, match=f"^{malformed}: {why}"):
        make("schedules", [write(measure("demo", "both"), tmp_path / "good.json"), malformed], tmp_path / "fig" / "s")
    assert not (tmp_path / "fig").exists()


RESULTS = Path(__file__).resolve().parents[1] / "results"
MODELS = ("inception_v3", "nasnet", "randwire", "squeezenet")


def campaign(gpu: str, *names: str) -> list[Path]:
    return sorted(path for name in names for path in (RESULTS / gpu / "ios_campaign").glob(name))


# The README's GPU figures (results/figures/<gpu>/campaign/, results/figures/campaign/) and the committed records
# each is drawn from (README.md, "Results, measured", says how).
COMMITTED = {
    **{f"{gpu}/campaign/schedules": ("schedules", lambda gpu=gpu: campaign(gpu, *(f"{m}_b1_{o}.json" for m in MODELS
                                                                              for o in OPTS)))
       for gpu in ("h100", "h200")},
    **{f"{gpu}/campaign/frameworks": ("frameworks", lambda gpu=gpu: campaign(gpu, "*_b1_both.json", "torch_*.json"))
       for gpu in ("h100", "h200")},
    "h100/campaign/utilization": ("utilization", lambda: campaign("h100", "inception_v3_b1_sequential.json",
                                                                  "inception_v3_b1_both.json")),
    "h100/campaign/batch_sizes": ("batch_sizes", lambda: sorted((RESULTS / "h100" / "engine_vs_torch").glob("*.json"))),
    "campaign/specialization_devices": ("specialization", lambda: campaign("h100", "*_on_*.json")
                                        + campaign("h200", "*_on_*.json")),
}


@pytest.mark.parametrize("figure", sorted(COMMITTED))
def test_the_committed_gpu_figures_are_what_the_committed_records_give(tmp_path, figure):
    name, records = COMMITTED[figure]
    make(name, records(), tmp_path / "figure")
    drawn = pd.read_csv(tmp_path / "figure.csv")
    committed = pd.read_csv(RESULTS / "figures" / f"{figure}.csv")
    key = [c for c in ("model", "batch", "system", "schedule", "schedule_device", "device", "stage") if c in drawn]
    pd.testing.assert_frame_equal(drawn.sort_values(key, ignore_index=True),
                                  committed.sort_values(key, ignore_index=True))



def test_every_framework_has_a_label_in_the_figures():
    from ios_core.baselines import FRAMEWORKS
    from ios_core.figures.latency import FRAMEWORK_LABELS

    assert set(FRAMEWORKS) - set(FRAMEWORK_LABELS) == set()


def test_the_committed_side_by_side_figure_is_what_the_committed_rows_give(tmp_path):
    """bench/frameworks.py's experiment 2 (README) from its rows, results/<gpu>/frameworks.json."""
    from ios_core.figures.latency import frameworks_of_rows

    for rows in sorted(RESULTS.glob("*/frameworks.json")):
        document = json.loads(rows.read_text())
        frameworks_of_rows(document["rows"], tmp_path / rows.parent.name, document["environments"][-1]["name"])
        committed = RESULTS / "figures" / rows.parent.name / "campaign" / "frameworks_side_by_side.csv"
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / f"{rows.parent.name}.csv"), pd.read_csv(committed))
