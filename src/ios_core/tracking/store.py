"""Logging records into MLflow: batched, idempotent, with the timestamps the records carry.

Each record becomes one MLflow run tagged ``ios.record_id``, an id that comes with the record's content (a
record file keeps the id it was made with, a schedule's is a digest of its text), never with where the file
lies. Logging a record whose run already exists and is closed does nothing, so ingesting a folder twice, a
copy of it elsewhere, or after a crash halfway, never duplicates a measurement; a run left open by a crash
during ingestion is deleted and logged again. `ingest` passes over MLflow's own folders (the artifact copies
it keeps of what was logged) and JSON files that carry neither a record's nor a schedule's format marker; a
file that carries one but cannot be read is reported, never passed over.

MLflow is imported only here and only when a function is called: it takes seconds to import, and a
workflow job that only measures must not pay for it. A tracking server is probed before MLflow talks to
it: MLflow retries an unreachable server for minutes, then ends in a long traceback.
"""

from __future__ import annotations

import errno
import json
import os
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ios_core.errors import UserError, json_error
from ios_core.schedule import FORMAT as SCHEDULE_FORMAT
from ios_core.tracking.adapters import from_schedule
from ios_core.tracking.record import FORMAT as RECORD_FORMAT
from ios_core.tracking.record import Record, RecordError, from_document

DEFAULT_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "ios-core"
RECORD_ID_TAG = "ios.record_id"
# MLflow 3's UI opens an experiment on the page of its kind; without this tag it infers GenAI and opens on an
# overview of traces, which ios-core has none of. "custom_model_development" is its kind for model training: the
# runs table (the value is the UI's, MLflow's Python API has no constant for it).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# MLflow's limits for one log_batch call.
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
MAX_PARAM_LENGTH = 6000
PROBE_TIMEOUT_S = 5.0
# MLflow's own folders: a file store or artifact root under its default names, a file store's experiment or run
# (they hold a meta.yaml), and a run's artifacts (``<run id>/artifacts``) wherever the artifact root is.
MLFLOW_FOLDERS = ("mlruns", "mlartifacts")
RUN_ID = re.compile(r"[0-9a-f]{32}")


class NotARecord(RecordError):
    """A JSON file that carries neither a record's nor a schedule's format marker: someone else's file."""


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


def check_reachable(uri: str) -> None:
    """Raise `UserError` unless the server of an http(s) tracking ``uri`` answers within `PROBE_TIMEOUT_S`.

    Any answer will do, an error status or a certificate MLflow may be told to accept included: only
    whether something is there is asked. Other URIs are not servers and pass.
    """
    if urlsplit(uri).scheme not in ("http", "https"):
        return
    try:
        urllib.request.urlopen(urllib.request.Request(uri, method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
    except urllib.error.HTTPError:
        return
    except OSError as error:  # URLError, a timeout, a refused connection
        reason = getattr(error, "reason", error)
        if isinstance(reason, ssl.SSLError):
            return
        raise UserError(f"tracking server {uri} is unreachable ({reason}); the files written are kept: log them "
                        "later with python -m ios_core.tracking ingest") from error


def open_store(uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> Store:
    """Connect to the tracking store (creating a sqlite file and the experiment when missing).

    The experiment is tagged `EXPERIMENT_KIND` (model training), so that MLflow's UI opens it on its runs table.

    Raises
    ------
    UserError
        If the server does not answer, the URI's scheme is unknown or the store is not one MLflow can open
        (a corrupt sqlite file); the message names the URI.
    """
    uri = tracking_uri(uri)
    check_reachable(uri)  # first: an unreachable server is told in a second, not after MLflow's import
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from sqlalchemy.exc import SQLAlchemyError

    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            experiment_id = client.create_experiment(experiment, artifact_root(uri),
                                                     tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        else:
            experiment_id = found.experiment_id
            if EXPERIMENT_KIND_TAG not in found.tags:  # a store made before the tag; a kind someone chose is kept
                client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    except (MlflowException, SQLAlchemyError) as error:
        why = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"tracking store {uri} cannot be opened: {why}") from error
    return Store(client, experiment_id)


def _chunks(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def filter_tags(record: Record) -> dict[str, str]:
    """The tags a user filters and groups the runs table by, where the record's own tags lack them.

    ``cost_kind`` is the kind of cost that searched the schedule (an ``optimize`` record tags it, a ``measure``
    record has it as param ``cost``); ``schedule_type`` is what the latency is of: ``opt`` (sequential, greedy,
    merge, parallel, both) or a baseline's framework. A value a record does not have is left out, never empty.
    Beside them every run carries tag ``source`` and the params ``model``, ``batch``, ``precision``, ``device``
    (and ``opt``, ``r``, ``s`` where a schedule was searched) from its entry point.
    """
    derived = {"cost_kind": record.params.get("cost"),
               "schedule_type": record.params.get("opt") or record.params.get("framework")}
    return {key: value for key, value in derived.items() if value}


def log_record(store: Store, record: Record, base: Path | None = None) -> str:
    """Log ``record`` as one new run, in batches of MLflow's limits; returns the run id."""
    from mlflow.entities import Metric, Param, RunTag

    client = store.client
    tags = {**filter_tags(record), **record.tags, RECORD_ID_TAG: record.id, "ios.kind": record.kind}
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
    """What `ingest` did, by record file; ``unreadable`` maps a file to why it was not logged."""

    logged: tuple[str, ...]
    skipped: tuple[str, ...]
    replaced: tuple[str, ...]
    unreadable: Mapping[str, str]

    def __str__(self) -> str:
        return (f"logged {len(self.logged)} new runs, replaced {len(self.replaced)} left open by a crash, "
                f"skipped {len(self.skipped)} already logged, {len(self.unreadable)} unreadable")


def is_mlflow_folder(folder: Path) -> bool:
    """Whether ``folder`` is MLflow's own (see `MLFLOW_FOLDERS`): what it holds are copies of what was logged."""
    return (folder.name in MLFLOW_FOLDERS or (folder / "meta.yaml").is_file()
            or (folder.name == "artifacts" and RUN_ID.fullmatch(folder.parent.name) is not None))


def record_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """The files named, and the ``*.json`` files under the folders named, in order.

    MLflow's folders are passed over, and so are hidden files and folders: a tool's state (``.snakemake``,
    ``.git``) or a file still being written (`ios_core.files.write_atomic`'s temporary files). A folder that
    cannot be listed is an `OSError`, never passed over.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            found.append(path)
            continue
        for folder, folders, files in os.walk(path, onerror=_unreadable_folder):
            folders[:] = sorted(f for f in folders if not f.startswith(".") and not is_mlflow_folder(Path(folder, f)))
            found += [Path(folder, f) for f in sorted(files) if f.endswith(".json") and not f.startswith(".")]
    return found


def _unreadable_folder(error: OSError) -> None:
    raise error  # os.walk would pass over a folder it cannot list, and the records in it with it


def load(path: Path) -> Record:
    """A record file as it is, or a schedule file as the ``optimize`` record of its search.

    Raises
    ------
    NotARecord
        If the file is JSON that carries neither format marker (a summary, a results file).
    RecordError
        If it is torn, not text, or breaks the format it claims (a schedule of another version included).
    """
    try:
        data = json.loads(path.read_text())
    except UnicodeDecodeError as error:
        raise RecordError(f"{path}: not a text file ({error.reason})") from error
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}: {json_error(error)}") from error
    marker = data.get("format") if isinstance(data, dict) else None
    if marker == SCHEDULE_FORMAT:
        return from_schedule(path)
    if marker != RECORD_FORMAT:
        raise NotARecord(f"{path}: neither an {RECORD_FORMAT} nor an {SCHEDULE_FORMAT} file")
    try:
        return from_document(data)
    except RecordError as error:
        raise RecordError(f"{path}: {error}") from error


def ingest(paths: Iterable[str | os.PathLike], uri: str | None = None,
           experiment: str = DEFAULT_EXPERIMENT) -> IngestReport:
    """Log every record (and searched schedule) under ``paths`` not yet in the store, keeping timestamps and tags.

    Every file is tried: one that cannot be read is reported in ``unreadable`` with why, the rest are logged.
    Other JSON files under a folder (`NotARecord`) are passed over quietly; one named explicitly is unreadable.

    Raises
    ------
    OSError
        If a path named does not exist or a folder cannot be listed (before anything is logged).
    UserError
        If the store cannot be opened (see `open_store`).
    """
    paths = [Path(p) for p in paths]
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(errno.ENOENT, "no such file or folder to ingest", str(path))
    named = {p for p in paths if not p.is_dir()}
    files = record_files(paths)
    store = open_store(uri, experiment)
    done = logged_runs(store)
    logged, skipped, replaced, unreadable = [], [], [], {}
    for path in files:
        try:
            record = load(path)
        except NotARecord as error:
            if path in named:
                unreadable[str(path)] = str(error)
            continue
        except RecordError as error:
            unreadable[str(path)] = str(error)
            continue
        except OSError as error:  # a file that vanished or may not be read is lost like a torn one: reported
            unreadable[str(path)] = f"{path}: {error.strerror or error}"
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
    return IngestReport(tuple(logged), tuple(skipped), tuple(replaced), unreadable)
