"""Tracking: records as files, closed FINISHED or FAILED, logged into MLflow in batches, ingested idempotently."""

import json
import os
import random
import shutil
import signal
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ios_core import schedule, tracking
from ios_core.errors import UserError
from ios_core.models import get
from ios_core.schedule import sequential
from ios_core.tracking import Record, StageLog, recording
from ios_core.tracking.record import RecordError, from_json, to_json, write
from ios_core.tracking.stages import read_csv
from ios_core.tracking.store import RECORD_ID_TAG, ingest, load, log_record, open_store, record_files

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(values=st.lists(finite, max_size=20), params=st.dictionaries(st.text(min_size=1, max_size=8),
                                                                    st.text(max_size=8), max_size=5))
@settings(max_examples=30, deadline=None)
def test_json_round_trip(values, params):
    record = Record("run", "measure", params, {"source": "simulated"})
    record.log_series("latency_ms", values)
    record.log_metric("median_ms", 1.5)
    again = from_json(to_json(record))
    assert again == record


def test_not_a_record_is_rejected(tmp_path):
    with pytest.raises(RecordError, match="not an ios-core/record"):
        from_json(json.dumps({"format": "ios-core/schedule", "version": 1}))
    (tmp_path / "torn.json").write_text('{"format": "ios-core/rec')
    with pytest.raises(RecordError, match="torn.json"):
        tracking.read(tmp_path / "torn.json")


def test_recording_finishes_into_out(tmp_path):
    out = tmp_path / "r" / "a.json"
    with recording("a", "measure", {"batch": 1, "r": None}, {"source": "simulated"}, out) as record:
        record.log_series("latency_ms", [1.0, 2.0, 3.0])
    read = tracking.read(out)
    assert read.status == "FINISHED" and read.end_time >= read.start_time
    assert read.params == {"batch": "1", "r": ""}
    assert [p.step for p in read.metrics["latency_ms"]] == [0, 1, 2]


def test_a_crash_is_recorded_as_failed_beside_out(tmp_path):
    out = tmp_path / "b.json"
    with pytest.raises(ZeroDivisionError), recording("b", "measure", {}, {}, out) as record:
        record.log_metric("latency_ms", 4.0)
        1 / 0  # noqa: B018
    assert not out.exists()  # a workflow must see the job as failed, not finished
    (failed,) = tmp_path.glob("b.*.failed.json")
    read = tracking.read(failed)
    assert read.status == "FAILED" and read.values("latency_ms") == [4.0]


def test_sigterm_closes_the_record_as_failed(tmp_path):
    out, before = tmp_path / "c.json", signal.getsignal(signal.SIGTERM)
    with pytest.raises(tracking.Stopped), recording("c", "measure", {}, {}, out) as record:
        record.log_metric("latency_ms", 1.0)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this
    assert tracking.read(next(tmp_path.glob("c.*.failed.json"))).status == "FAILED"
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


class FixedCost:
    kind = "simulated"

    def stage_latency(self, graph, stage, batch):
        return 0.01 * len(stage.ops)


def test_stage_log_records_every_call_and_writes_a_csv(tmp_path):
    graph = get("demo")
    cost = StageLog(FixedCost())
    for stage in sequential(graph).stages:
        cost.stage_latency(graph, stage, 2)
    record = Record("opt", "optimize")
    cost.write(record, tmp_path / "stages.csv")
    assert record.latest("stages_costed") == len(graph.operators)
    assert len(record.metrics["stage_latency_ms"]) == len(graph.operators)
    rows = read_csv(tmp_path / "stages.csv")
    assert rows[0]["stage"].startswith("chain ") and rows[0]["batch"] == "2"
    assert cost.kind == "simulated"


def test_stage_log_overhead_is_small():
    """Recording a stage costs well under the few microseconds of the cheapest (cached) cost lookup."""
    graph = get("demo")
    stage = sequential(graph).stages[0]
    bare, logged = FixedCost(), StageLog(FixedCost())
    n = 20_000

    def per_call(cost):
        start = time.perf_counter()
        for _ in range(n):
            cost.stage_latency(graph, stage, 1)
        return (time.perf_counter() - start) / n

    overhead = min(per_call(logged) for _ in range(3)) - min(per_call(bare) for _ in range(3))
    print(f"StageLog overhead: {overhead * 1e6:.2f} us per stage")
    assert overhead < 20e-6  # generous: CI machines are noisy; typically 1-3 us


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root}/mlflow.db"


def test_ingest_keeps_timestamps_and_is_idempotent(tmp_path, store_uri):
    records = tmp_path / "results"
    with recording("ok", "measure", {"model": "demo"}, {"source": "simulated"}, records / "ok.json") as ok:
        ok.log_series("latency_ms", [1.0, 1.2])
        ok.log_metric("median_ms", 1.1)
    with pytest.raises(RuntimeError), recording("bad", "measure", {}, {"source": "measured"}, records / "bad.json"):
        raise RuntimeError("crash")
    (records / "mlflow.json").write_text('{"uri": "sqlite:///mlflow.db", "logged": []}')  # a summary: passed over

    first = ingest([records], store_uri, "test-ingest")
    assert len(first.logged) == 2 and not first.unreadable
    again = ingest([records], store_uri, "test-ingest")
    assert not again.logged and len(again.skipped) == 2

    store = open_store(store_uri, "test-ingest")
    runs = {r.data.tags[RECORD_ID_TAG]: r for r in store.client.search_runs([store.experiment_id])}
    run = runs[ok.id]
    assert run.info.start_time == ok.start_time and run.info.end_time == ok.end_time
    assert run.info.status == "FINISHED" and run.data.tags["source"] == "simulated"
    history = store.client.get_metric_history(run.info.run_id, "latency_ms")
    assert [(m.value, m.step, m.timestamp) for m in history] == [(p.value, p.step, p.timestamp)
                                                                 for p in ok.metrics["latency_ms"]]
    failed = [r for r in runs.values() if r.info.run_name == "bad"]
    assert failed[0].info.status == "FAILED"


def test_a_run_left_open_by_a_crashed_ingest_is_replaced(tmp_path, store_uri):
    path = tmp_path / "r.json"
    with recording("r", "measure", {}, {"source": "simulated"}, path) as record:
        record.log_metric("median_ms", 2.0)
    store = open_store(store_uri, "test-replace")
    half = store.client.create_run(store.experiment_id, tags={RECORD_ID_TAG: record.id})  # killed before closing
    report = ingest([path], store_uri, "test-replace")
    assert report.replaced == (str(path),)
    runs = store.client.search_runs([store.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id != half.info.run_id and runs[0].info.status == "FINISHED"


def test_batched_logging_of_thousands_of_stage_measurements(store_uri):
    record = Record("search", "optimize", {"model": "inception_v3"}, {"source": "simulated"})
    record.log_series("stage_latency_ms", [0.01] * 5000)
    store = open_store(store_uri, "test-batch")
    start = time.perf_counter()
    run_id = log_record(store, record)
    seconds = time.perf_counter() - start
    print(f"logged 5000 stage measurements in {seconds:.2f} s")
    assert len(store.client.get_metric_history(run_id, "stage_latency_ms")) == 5000
    assert seconds < 30


def test_ingest_command_reports_unreadable_files(tmp_path, store_uri, capsys):
    from ios_core.tracking.__main__ import main

    bogus = tmp_path / "bogus.json"
    bogus.write_text("{}")
    summary = tmp_path / "summary.json"
    assert main(["ingest", str(bogus), "--uri", store_uri, "--summary", str(summary)]) == 2
    assert list(json.loads(summary.read_text())["unreadable"]) == [str(bogus)]
    assert capsys.readouterr().err == f"error: {bogus}: neither an ios-core/record nor an ios-core/schedule file\n"


def test_a_crashed_entry_point_is_logged_as_failed(tmp_path, store_uri):
    cfg = tracking.TrackingConfig(mlflow=True, uri=store_uri, experiment="test-crash")
    with pytest.raises(KeyError), tracking.tracked("crash", "measure", {}, {"source": "simulated"},
                                                   tmp_path / "c.json", cfg) as record:
        record.log_metric("latency_ms", 3.0)
        raise KeyError("boom")
    store = open_store(store_uri, "test-crash")
    (run,) = store.client.search_runs([store.experiment_id])
    assert run.info.status == "FAILED" and run.data.metrics["latency_ms"] == 3.0


def test_a_searched_schedule_is_ingested_with_every_stage_it_costed(tmp_path, store_uri):
    from ios_core.cost import CostSpec, DeviceProfile, build_cost
    from ios_core.optimizer import OptimizerOptions, search
    from ios_core.schedule import save
    from ios_core.tracking.adapters import from_schedule, stage_log

    graph = get("demo")
    path = tmp_path / "both.json"
    with build_cost(CostSpec(cache=str(stage_log(path))), DeviceProfile()) as cost:
        result = search(graph, cost, 1, OptimizerOptions("both"))
    save(result.schedule, path)
    record = from_schedule(path)
    assert record.kind == "optimize" and record.params["opt"] == "both" and record.tags["source"] == "simulated"
    assert len(record.values("stage_latency_ms")) == result.stats.stages  # each distinct stage, costed once
    assert record.latest("stages_costed") == result.stats.stages
    assert from_schedule(path).id == record.id  # the same file is the same run
    first = ingest([tmp_path], store_uri, "test-schedule")
    assert first.logged == (str(path),) and ingest([path], store_uri, "test-schedule").skipped == (str(path),)


def finished_run(folder: Path) -> Path:
    """What a workflow leaves: a measure record, a searched schedule, and a summary that is no record."""
    with recording("m", "measure", {"model": "demo"}, {"source": "simulated"}, folder / "measure" / "m.json") as m:
        m.log_metric("median_ms", 1.0)
    schedule.save(sequential(get("demo")), folder / "schedules" / "demo.json")
    (folder / "mlflow.json").write_text('{"uri": "sqlite:///mlflow.db", "logged": []}')
    return folder


def record_ids(uri: str, experiment: str) -> list[str]:
    store = open_store(uri, experiment)
    return [run.data.tags[RECORD_ID_TAG] for run in store.client.search_runs([store.experiment_id])]


def test_ingesting_twice_or_a_copy_elsewhere_adds_no_run(tmp_path, store_uri):
    original = finished_run(tmp_path / "a" / "results")
    first = ingest([original], store_uri, "test-twice")
    assert len(first.logged) == 2 and not first.unreadable
    copy = shutil.copytree(original, tmp_path / "b" / "elsewhere", copy_function=shutil.copy)  # new paths and times
    for folder in (original, copy):
        again = ingest([folder], store_uri, "test-twice")
        assert not again.logged and len(again.skipped) == 2 and not again.unreadable
    assert len(record_ids(store_uri, "test-twice")) == 2


def test_mlflows_own_folders_are_passed_over(tmp_path):
    """A store kept in the results folder: its mlruns/ holds MLflow's copy of the schedule, which is no new run."""
    folder = finished_run(tmp_path / "run")
    uri = f"sqlite:///{folder}/mlflow.db"
    ingest([folder], uri, "test-mlruns")
    assert list((folder / "mlruns").rglob("demo.json"))
    again = ingest([folder], uri, "test-mlruns")
    assert not again.logged and not again.unreadable
    assert sorted(again.skipped) == [str(folder / "measure" / "m.json"), str(folder / "schedules" / "demo.json")]
    experiment = folder / "elsewhere" / "1"  # an experiment of MLflow's file store, under any name
    experiment.mkdir(parents=True)
    (experiment / "meta.yaml").write_text("name: ios-core\n")
    shutil.copy(folder / "measure" / "m.json", experiment)
    assert all("mlruns" not in p.parts and "elsewhere" not in p.parts for p in record_files([folder]))


def test_a_schedule_record_id_is_its_content_not_its_path(tmp_path):
    a = schedule.save(sequential(get("demo")), tmp_path / "a.json")
    b = shutil.copy(a, tmp_path / "b.json")
    assert load(a).id == load(Path(b)).id != load(schedule.save(sequential(get("squeezenet")), tmp_path / "c.json")).id


def test_a_torn_record_or_an_unsupported_schedule_is_named_and_fails_ingest_once_the_rest_is_in(
        tmp_path, store_uri, capsys):
    from ios_core.tracking.__main__ import main

    folder = finished_run(tmp_path / "results")
    text = to_json(Record("torn", "measure", status="FINISHED"))
    (folder / "torn.json").write_text(text[: len(text) // 2])  # a write cut short
    future = json.loads(schedule.to_json(sequential(get("demo")))) | {"version": 2}
    (folder / "v2.json").write_text(json.dumps(future))
    with pytest.raises(RecordError, match="version"):
        load(folder / "v2.json")
    assert main(["ingest", str(folder), "--uri", store_uri, "--experiment", "test-torn"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and errors[0].startswith(f"error: {folder / 'torn.json'}: not JSON")
    assert errors[1].startswith("error: ") and str(folder / "v2.json") in errors[1] and "version=2" in errors[1]
    assert len(record_ids(store_uri, "test-torn")) == 2  # the record and the schedule are in


def test_an_unreachable_server_fails_fast_in_one_line_and_the_record_is_ingested_later(tmp_path, one_line_error):
    server, out = "http://127.0.0.1:9", tmp_path / "r.json"
    with pytest.raises(UserError, match=server), tracking.tracked("r", "measure", {}, {"source": "simulated"}, out,
                                                                  tracking.TrackingConfig(uri=server)):
        pass
    start = time.monotonic()
    line = one_line_error("ios_core.tracking", "ingest", str(out), "--uri", server, naming=server)
    assert time.monotonic() - start < 15 and "unreachable" in line
    assert ingest([out]).logged == (str(out),)  # the record file was kept; the test's own store takes it


@pytest.mark.parametrize(("args", "naming"), [
    (["ingest", "missing.json"], "missing.json"),
    (["ingest", "r.json", "--uri", "foo://tracking"], "foo://tracking"),
    (["ingest", "r.json", "--uri", "sqlite:///corrupt.db"], "sqlite:///corrupt.db"),
])
def test_an_ingest_that_cannot_start_is_one_line_naming_why(tmp_path, one_line_error, args, naming):
    write(Record("r", "measure", status="FINISHED"), tmp_path / "r.json")
    noise = random.Random(0).randbytes(4096)
    (tmp_path / "corrupt.db").write_bytes(noise)
    one_line_error("ios_core.tracking", *args, naming=naming)
    assert (tmp_path / "corrupt.db").read_bytes() == noise


RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_every_committed_gpu_result_is_a_record_and_each_is_there_once():
    """What bench/ measured on the lent GPUs and the README and figures use is records, nothing else."""
    folders = [p for gpu in ("h100", "h200") for p in sorted((RESULTS / gpu).iterdir())
               if p.is_dir() and p.name.startswith(("ios_campaign", "engine_"))]
    records = [tracking.read(path) for folder in folders for path in sorted(folder.glob("*.json"))]
    assert len(folders) >= 9 and len(records) > 200
    assert len({r.id for r in records}) == len(records)
    assert {r.kind for r in records} == {"measure", "baseline", "optimize"}
    assert all(r.status == "FINISHED" and r.tags["source"] == "measured" for r in records)

