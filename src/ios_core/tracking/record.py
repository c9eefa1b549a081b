"""Measurement records: every latency the project measures, as one JSON file per run.

A `Record` is what one run of an entry point measured -- its params, tags, metric series and
artifacts, with wall-clock timestamps -- in a form that needs no MLflow: the lent GPU machine
returns files only, and a workflow job must not wait on a database. `ios_core.tracking.store`
logs records into MLflow, now or later (``python -m ios_core.tracking ingest``), keeping the
timestamps taken here.

Invariants: a record's ``id`` is unique and never changes (ingestion is idempotent on it);
``status`` is ``RUNNING`` only while the run is alive -- `recording` ends it as ``FINISHED``, or
``FAILED`` when the body raised or the process was told to stop; files are written atomically.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ios_core.errors import UserError, json_error
from ios_core.files import write_atomic

FORMAT = "ios-core/record"
VERSION = 1
STATUSES = ("RUNNING", "FINISHED", "FAILED")
SOURCES = ("simulated", "measured")


class RecordError(UserError, ValueError):
    """A file is not a record of this format, or a record breaks an invariant; the message names the file."""


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class Point:
    """One value of a metric series: ``step`` orders the series, ``timestamp`` is wall-clock ms."""

    value: float
    step: int
    timestamp: int


@dataclass
class Record:
    """What one run measured. Build it through `recording`; ``metrics`` maps a name to its series."""

    name: str
    kind: str
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, list[Point]] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    start_time: int = field(default_factory=now_ms)
    end_time: int | None = None
    status: str = "RUNNING"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Append one value to series ``name`` (step defaults to the series' length)."""
        series = self.metrics.setdefault(name, [])
        series.append(Point(float(value), len(series) if step is None else step, now_ms()))

    def log_series(self, name: str, values: Iterable[float]) -> None:
        """Append many values to series ``name``, stepped in order, stamped now."""
        stamp, series = now_ms(), self.metrics.setdefault(name, [])
        first = len(series)
        series.extend([Point(float(v), first + i, stamp) for i, v in enumerate(values)])

    def latest(self, name: str) -> float | None:
        """The last value of series ``name``, or None when it was never logged."""
        series = self.metrics.get(name)
        return series[-1].value if series else None

    def values(self, name: str) -> list[float]:
        return [p.value for p in self.metrics.get(name, [])]

    @property
    def available(self) -> bool:
        """False for a measurement that could not be made here (see tag ``reason``)."""
        return self.tags.get("available", "true") == "true"


def to_json(record: Record) -> str:
    """One JSON document; a metric series is stored as parallel lists of values, steps and timestamps."""
    metrics = {
        name: {"values": [p.value for p in s], "steps": [p.step for p in s], "timestamps": [p.timestamp for p in s]}
        for name, s in record.metrics.items()
    }
    data = {
        "format": FORMAT, "version": VERSION, "id": record.id, "name": record.name, "kind": record.kind,
        "status": record.status, "start_time": record.start_time, "end_time": record.end_time,
        "params": record.params, "tags": record.tags, "metrics": metrics, "artifacts": record.artifacts,
    }
    return json.dumps(data, indent=1) + "\n"


def from_json(text: str) -> Record:
    """Parse `to_json`'s format; raises `RecordError` saying what is wrong for anything else."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise RecordError(json_error(error)) from error
    return from_document(data)


def from_document(data: Any) -> Record:
    """A record from `to_json`'s document, already parsed; raises `RecordError` saying what is wrong."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RecordError(f"not an {FORMAT} v{VERSION} document")
    if data.get("version") != VERSION:
        raise RecordError(f"an {FORMAT} of version {data.get('version')!r}; this ios-core reads version {VERSION}")
    if data.get("status") not in STATUSES:
        raise RecordError(f"an {FORMAT} of unknown status {data.get('status')!r}; known: {', '.join(STATUSES)}")
    try:
        metrics = {
            name: [Point(v, s, t) for v, s, t in zip(m["values"], m["steps"], m["timestamps"], strict=True)]
            for name, m in data["metrics"].items()
        }
        return Record(data["name"], data["kind"], dict(data["params"]), dict(data["tags"]), metrics,
                      list(data["artifacts"]), data["start_time"], data["end_time"], data["status"], data["id"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:  # a field missing or of the wrong shape
        raise RecordError(f"a malformed {FORMAT} ({type(error).__name__}: {error})") from error


def write(record: Record, path: str | os.PathLike) -> Path:
    """Write ``record`` atomically: a reader sees the old file or the whole new one."""
    return write_atomic(path, to_json(record))


def read(path: str | os.PathLike) -> Record:
    """The record in file ``path``; `RecordError` naming the file if it holds none (`OSError` if it cannot be read)."""
    try:
        return from_json(Path(path).read_text())
    except UnicodeDecodeError as error:
        raise RecordError(f"{path}: not a text file ({error.reason})") from error
    except RecordError as error:
        raise RecordError(f"{path}: {error}") from error


def failed_path(out: str | os.PathLike, record: Record) -> Path:
    """Where a failed run's record goes: beside ``out``, never ``out`` itself (a workflow deletes that)."""
    out = Path(out)
    return out.with_name(f"{out.stem}.{record.start_time}.failed.json")


def stringify(params: Mapping[str, Any]) -> dict[str, str]:
    """Params and tags as MLflow stores them: strings, with None as the empty string."""
    return {str(k): "" if v is None else str(v) for k, v in params.items()}


class Stopped(BaseException):
    """The process was told to stop (SIGTERM) while a record was open.

    A `BaseException`, like `KeyboardInterrupt`: code that turns any `Exception` into a result of its
    own (a baseline recording a framework as failed, a compiler wrapping its workers' errors) must
    not take being stopped for a failure of what it measures.
    """


@contextmanager
def recording(name: str, kind: str, params: Mapping[str, Any], tags: Mapping[str, Any],
              out: str | os.PathLike | None = None) -> Iterator[Record]:
    """Open a record, yield it, and write it on the way out: FINISHED to ``out``, FAILED beside it.

    A SIGTERM while the body runs (a workflow stopping its jobs) raises `Stopped` in the body, so
    the record is still closed as FAILED with every measurement made so far. The record is
    written only when ``out`` is given; the caller logs it to MLflow if it wants to.
    """
    record = Record(name, kind, stringify(params), stringify(tags))
    restore = _on_sigterm()
    try:
        yield record
    except BaseException:
        _close(record, "FAILED")
        if out is not None:
            write(record, failed_path(out, record))
        raise
    finally:
        restore()
    _close(record, "FINISHED")
    if out is not None:
        write(record, out)


def _close(record: Record, status: str) -> None:
    record.status, record.end_time = status, now_ms()


def _on_sigterm() -> Callable[[], None]:
    """Turn SIGTERM into `Stopped` until the returned function is called (main thread only)."""

    def stop(signum, frame):
        raise Stopped(f"stopped by signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: signals can be caught nowhere else
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
