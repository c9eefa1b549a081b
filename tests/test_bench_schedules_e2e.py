"""bench/schedules_e2e.py on a CPU: the dry run (every schedule type searched with the simulated cost, its stage sum
as ``ms``), the committed schedules instead of a search, resuming from the output, the budget and the table."""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TYPES = ("sequential", "greedy", "merge", "parallel", "both")
NARROWER_OF_BOTH = ("parallel", "merge", "sequential")


@pytest.fixture
def e2e(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))  # a folder of scripts: it imports its siblings
    import schedules_e2e

    return schedules_e2e


def rows_of(out: Path) -> dict[tuple[str, str], dict]:
    return {(r["model"], r["schedule"]): r for r in json.loads(out.read_text())["rows"]}


def test_a_dry_run_searches_every_type_and_resumes_from_its_rows(e2e, tmp_path, capsys):
    out, costs = tmp_path / "schedules_e2e.json", tmp_path / "stage_costs.jsonl"
    common = ["--dry-run", "--out", str(out), "--cost-cache", str(costs)]
    assert e2e.main([*common, "--models", "squeezenet"]) == 0
    rows = rows_of(out)
    assert set(rows) == {("squeezenet", t) for t in TYPES}
    for row in rows.values():
        assert set(row) >= {"model", "batch", "precision", "schedule", "predicted_ms", "ms", "stage_sum_ms",
                            "rel_error_vs_sequential", "searched", "source"}
        assert row["batch"] == 1 and row["precision"] == "fp32" and row["source"] == "simulated"
        assert row["searched"] is True and row["error"] is None and row["ms"] == row["predicted_ms"] > 0
    both = rows[("squeezenet", "both")]
    assert all(both["predicted_ms"] <= rows[("squeezenet", t)]["predicted_ms"] for t in NARROWER_OF_BOTH)
    assert "search_s" in both and costs.stat().st_size > 0  # the shared cost wrote its stages

    capsys.readouterr()
    assert e2e.main([*common, "--models", "squeezenet,demo"]) == 0  # squeezenet's rows are there: only demo runs
    printed = capsys.readouterr().out
    assert "squeezenet    both" not in printed and "demo          both" in printed
    document = json.loads(out.read_text())
    assert len(document["rows"]) == 10 and len(document["environments"]) == 2
    assert {r["call"] for r in document["rows"] if r["model"] == "demo"} == {1}
    assert {r["call"] for r in document["rows"] if r["model"] == "squeezenet"} == {0}

    assert e2e.main(["--table", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| squeezenet | yes |" in table and "| demo | yes |" in table and "ms: simulated" in table


def test_the_committed_schedules_stand_in_for_a_search(e2e, tmp_path):
    out = tmp_path / "schedules_e2e.json"
    assert e2e.main(["--dry-run", "--out", str(out), "--models", "squeezenet", "--from-schedules",
                     str(ROOT / "schedules")]) == 0
    rows = rows_of(out)
    assert {row["searched"] for row in rows.values()} == {False}
    assert rows[("squeezenet", "merge")]["schedule_file"].endswith("squeezenet_b1_merge_h200_fp32_measured.json")
    both = rows[("squeezenet", "both")]
    # the rerank's rule: the fastest end to end (here the stage sum) of the files of IOS-Both's space and narrower,
    # then its merged stages split where that is faster
    contenders = {c["label"]: c["end_to_end_ms"] for c in both["rerank"]}
    files = {label: ms for label, ms in contenders.items() if "/split" not in label}
    assert set(files) <= {"both", *NARROWER_OF_BOTH} and "both" in files
    root = both["chosen"].split("/")[0]
    assert both["predicted_ms"] == contenders[both["chosen"]] <= min(files.values()) == files[root]
    assert {label.split("/")[0] for label in contenders if "/split" in label} <= {root}
    assert both["schedule_file"].endswith(f"squeezenet_b1_{root}_h200_fp32_measured.json")


def test_the_budget_stops_before_a_model_and_between_two_parts_of_a_search(e2e, tmp_path, capsys):
    out = tmp_path / "schedules_e2e.json"
    assert e2e.main(["--dry-run", "--out", str(out), "--models", "squeezenet", "--budget-s", "0"]) == 0
    assert "stopped by --budget-s 0.0" in capsys.readouterr().out
    assert not out.exists()  # no row: nothing written

    from ios_core import models
    from ios_core.config import device_profile
    from ios_core.cost.factory import CostSpec, build_cost

    bench = e2e.Bench(e2e.Call(out, "h200", dry_run=True, budget_s=0), e2e.OptimizerOptions())
    with build_cost(CostSpec(), device_profile("h200")) as cost, pytest.raises(e2e.OutOfBudget, match="operators"):
        e2e.by_search(models.get("demo"), cost, bench)


def test_the_table_gives_the_gap_and_whether_both_is_the_fastest_within_the_noise(e2e):
    def rows(model: str, ms: dict[str, float], predicted: float) -> list[dict]:
        return [{"model": model, "batch": 1, "precision": "fp32", "schedule": t, "ms": m, "searched": True,
                 "source": "measured", "predicted_ms": predicted if t == "both" else m} for t, m in ms.items()]

    ms = {"sequential": 1.0, "greedy": 0.7, "merge": 0.8, "parallel": 0.5}
    table = e2e.table(rows("inception_v3", {**ms, "both": 0.504}, 0.48)
                      + rows("nasnet", {**ms, "both": 0.52}, 0.52))
    lines = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    assert lines["inception_v3"].endswith("| 0.5040 | 0.4800 | -4.8% | yes |")  # 0.8% slower: within 1%
    assert lines["nasnet"].endswith("| 0.5200 | +0.0% | no (parallel 0.5000) |")
    assert table.splitlines()[2].startswith("| inception_v3 |")  # the models in the benchmark's order


def test_a_measured_row_takes_the_median_of_the_rounds_and_flags_a_wrong_output(e2e, tmp_path, monkeypatch):
    """The side-by-side timing's rows, with a stand-in for the GPU's `side_by_side`."""
    from types import SimpleNamespace

    from ios_core import models
    from ios_core.schedule import sequential

    def fake(graph, schedules, batch, timing, rounds, options):
        assert list(schedules) == list(TYPES)  # Sequential first: the reference of the others' outputs
        return {opt: SimpleNamespace(rounds=[SimpleNamespace(ms=ms, clocks_before={"sm_mhz": 1}, clocks_after={})
                                             for ms in (0.3, 0.1, 0.2)],
                                     plan={"rel_error_vs_sequential": 1.0 if opt == "merge" else 0.0, "streams": 2,
                                           "build_s": 0.5})
                for opt in schedules}

    monkeypatch.setattr(e2e, "side_by_side", fake)
    schedule = sequential(models.get("demo"))
    found = {opt: e2e.Predicted(schedule, 0.2, 0.2) for opt in TYPES}
    bench = e2e.Bench(e2e.Call(tmp_path / "x.json", "h200"), e2e.OptimizerOptions())
    times = e2e.measured(models.get("demo"), found, bench)
    assert times["both"]["ms"] == 0.2 and times["both"]["rounds_ms"] == [0.3, 0.1, 0.2]
    assert times["both"]["error"] is None and times["both"]["clocks_before"] == {"sm_mhz": 1}
    assert "differs from Sequential's" in times["merge"]["error"]
