"""Logging records into MLflow: batched, idempotent, with the timestamps the records carry.

Each record becomes one MLflow run tagged ``ios.record_id``. Logging a record whose run already
exists and is closed does nothing, so ingesting a folder twice, or after a crash halfway, never
duplicates a measurement; a run left open by a crash during ingestion is deleted and logged again.
MLflow is imported only here and only when a function is called: it takes seconds to import, and a
workflow job that only measures must not pay for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ios_core.tracking.adapters import from_schedule
from ios_core.tracking.record import Record, RecordError, read

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "ios-core"
RECORD_ID_TAG = "ios.record_id"
# MLflow's limits for one log_batch call.
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
MAX_PARAM_LENGTH = 6000


def tracking_uri(uri: str | None = None) -> str:
    """``uri`` if given, else ``$MLFLOW_TRACKING_URI``, else the project's sqlite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


@dataclass(frozen=True)
class Store:
    """An MLflow client and the experiment records are logged into."""

    client: object
    experiment_id: str


def artifact_root(uri: str) -> str | None:
    """Where a sqlite store keeps artifacts: ``mlruns/`` beside the database file, whatever the working directory."""
    if not uri.startswith("sqlite:///"):
        return None  # a server or another store decides for itself
    return (Path(uri.removeprefix("sqlite:///")).parent / "mlruns").resolve().as_uri()


def open_store(uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> Store:
    """Connect to the tracking store (creating a sqlite file and the experiment when missing)."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    return Store(client, found.experiment_id if found else client.create_experiment(experiment, artifact_root(uri)))


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def log_record(store: Store, record: Record, base: Path | None = None) -> str:
    """Log ``record`` as one new run, in batches of MLflow's limits; returns the run id."""
    from mlflow.entities import Metric, Param, RunTag

    client = store.client
    tags = {**record.tags, RECORD_ID_TAG: record.id, "ios.kind": record.kind}
    run = client.create_run(store.experiment_id, start_time=record.start_time, tags=tags, run_name=record.name)
    run_id = run.info.run_id
    params = [Param(k, v[:MAX_PARAM_LENGTH]) for k, v in record.params.items()]
    metrics = [Metric(name, p.value, p.timestamp, p.step) for name, s in record.metrics.items() for p in s]
    for chunk in _chunks(params, MAX_PARAMS):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks(metrics, MAX_METRICS):
        client.log_batch(run_id, metrics=chunk)
    missing = []
    for artifact in record.artifacts:
        path = _resolve(artifact, base)
        if path is None:
            missing.append(artifact)
        elif path.is_dir():
            client.log_artifacts(run_id, str(path), artifact_path=path.name)
        else:
            client.log_artifact(run_id, str(path))
    if missing:
        client.log_batch(run_id, tags=[RunTag("ios.missing_artifacts", ", ".join(missing)[:5000])])
    status = "FAILED" if record.status == "RUNNING" else record.status  # an open record was abandoned
    client.set_terminated(run_id, status, end_time=record.end_time or record.start_time)
    return run_id


def _resolve(artifact: str, base: Path | None) -> Path | None:
    """An artifact path as written (absolute or relative to the working directory), else beside the record."""
    for candidate in (Path(artifact), (base or Path()) / artifact):
        if candidate.exists():
            return candidate
    return None


def logged_runs(store: Store) -> dict[str, tuple[str, str]]:
    """Every run of the experiment that carries a record id: record id -> (run id, status)."""
    runs: dict[str, tuple[str, str]] = {}
    token = None
    while True:
        page = store.client.search_runs([store.experiment_id], max_results=5000, page_token=token)
        for run in page:
            record_id = run.data.tags.get(RECORD_ID_TAG)
            if record_id:
                runs[record_id] = (run.info.run_id, run.info.status)
        token = page.token
        if not token:
            return runs


@dataclass(frozen=True)
class IngestReport:
    """What `ingest` did, by record file."""

    logged: tuple[str, ...]
    skipped: tuple[str, ...]
    replaced: tuple[str, ...]
    unreadable: tuple[str, ...]

    def __str__(self) -> str:
        return (f"logged {len(self.logged)} new runs, replaced {len(self.replaced)} left open by a crash, "
                f"skipped {len(self.skipped)} already logged, {len(self.unreadable)} unreadable")


def record_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The record files named, or found under the folders named (``*.json`` that are records)."""
    found: list[Path] = []
    for path in map(Path, paths):
        found += sorted(path.rglob("*.json")) if path.is_dir() else [path]
    return found


def load(path: Path) -> Record:
    """A record file as it is, or a schedule file as the ``optimize`` record of its search."""
    try:
        return read(path)
    except RecordError:
        return from_schedule(path)


def ingest(paths: Iterable[str | os.PathLike], uri: str | None = None,
           experiment: str = DEFAULT_EXPERIMENT) -> IngestReport:
    """Log every record (and searched schedule) under ``paths`` not yet in the store, keeping timestamps and tags.

    Other JSON files under a folder are passed over quietly; a file named explicitly that is
    neither a record nor a schedule is reported as unreadable.
    """
    paths = list(paths)
    named = {Path(p) for p in paths if not Path(p).is_dir()}
    store = open_store(uri, experiment)
    done = logged_runs(store)
    logged, skipped, replaced, unreadable = [], [], [], []
    for path in record_files(paths):
        try:
            record = load(path)
        except (RecordError, KeyError, TypeError, ValueError):
            if path in named:
                unreadable.append(str(path))
            continue
        previous = done.get(record.id)
        if previous and previous[1] != "RUNNING":
            skipped.append(str(path))
            continue
        if previous:
            store.client.delete_run(previous[0])
            replaced.append(str(path))
        else:
            logged.append(str(path))
        done[record.id] = (log_record(store, record, path.parent), record.status)
    return IngestReport(tuple(logged), tuple(skipped), tuple(replaced), tuple(unreadable))
