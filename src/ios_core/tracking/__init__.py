"""Tracking: every latency measured is kept as a JSON record and logged into MLflow.

- `record`: the `Record` of one run, `recording` (closes it FINISHED or FAILED), atomic JSON files;
- `stages`: `StageLog`, a cost wrapper that records every stage the optimizer costs;
- `store`: batched, idempotent logging into MLflow and `ingest` of record files made elsewhere;
- ``python -m ios_core.tracking ingest results/`` logs files into the store (default ``sqlite:///mlflow.db``).

Tags every record carries: ``source`` (``simulated`` or ``measured``), ``available`` (``false`` with
a ``reason`` when the measurement could not be made here), and ``experiment`` where one asked for it.
"""

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ios_core.errors import UserError, one_line
from ios_core.tracking.record import (
    SOURCES,
    Point,
    Record,
    RecordError,
    Stopped,
    failed_path,
    read,
    recording,
    stringify,
    write,
)
from ios_core.tracking.stages import StageLog
from ios_core.tracking.store import DEFAULT_EXPERIMENT, DEFAULT_URI, IngestReport, ingest, log_record, open_store


@dataclass
class TrackingConfig:
    """How an entry point logs: ``mlflow=False`` writes the record file only (a workflow ingests later)."""

    mlflow: bool = True
    uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db
    experiment: str = DEFAULT_EXPERIMENT


def finish(record: Record, cfg: TrackingConfig) -> str | None:
    """Log a closed record into MLflow when ``cfg`` asks for it; returns the run id.

    A store that cannot be opened (an unreachable server, see `open_store`) is a `UserError`; the record's file,
    written before, is kept for ``python -m ios_core.tracking ingest``.
    """
    if not cfg.mlflow:
        return None
    return log_record(open_store(cfg.uri, cfg.experiment), record)


@contextmanager
def tracked(name: str, kind: str, params: Mapping[str, Any], tags: Mapping[str, Any],
            out: str | os.PathLike | None, cfg: TrackingConfig) -> Iterator[Record]:
    """`recording`, then `finish`: the record is written and logged FINISHED, or FAILED if the body raised."""
    record: Record | None = None
    try:
        with recording(name, kind, params, tags, out) as record:
            yield record
    except BaseException:
        if record is not None:
            try:
                finish(record, cfg)
            except Exception as error:  # the body's error matters more than the store's; a bug keeps its traceback
                logging.getLogger(__name__).error("could not log the failed run %s to MLflow: %s", record.name,
                                                  one_line(error), exc_info=not isinstance(error, UserError))
        raise
    finish(record, cfg)


__all__ = [
    "DEFAULT_EXPERIMENT", "DEFAULT_URI", "SOURCES", "IngestReport", "Point", "Record", "RecordError", "StageLog",
    "Stopped", "TrackingConfig", "failed_path", "finish", "ingest", "log_record", "open_store", "read", "recording",
    "stringify", "tracked", "write",
]
