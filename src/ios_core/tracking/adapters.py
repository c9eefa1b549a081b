"""Records made from files other entry points write: a searched schedule and its stage-cost log.

``python -m ios_core.optimize`` writes a schedule JSON whose ``meta`` holds the search (options, cost
kind, predicted latency, time, DP states, stages costed). `from_schedule` turns it into an
``optimize`` record so the search is tracked like any measurement; when the stage costs of that
search were logged beside it (``<schedule>.stages.jsonl``, the cost's JSON-lines disk cache, see
`ios_core.cost.cache`), every stage the optimizer costed becomes one point of the series
``stage_latency_ms`` and the file an artifact.

An adapted record's id is a digest of the schedule file's contents, never its path: ingesting the same
file twice, or a copy of it elsewhere, logs it once, and a schedule searched again (new contents) is a new run.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ios_core.schedule import ScheduleError, from_json
from ios_core.tracking.record import Point, Record, RecordError, stringify

STAGE_LOG_SUFFIX = ".stages.jsonl"
# The one table from a schedule's meta (the search behind it) to metric names, for every record that tells of a
# search: ``optimize`` records here, ``measure`` records of the schedule (``ios_core.measure``). Where two keys name
# one metric (older schedules wrote ``states`` and ``stages``), the first present wins.
META_METRICS = {"search_seconds": "search_time_s", "dp_states": "dp_states", "states": "dp_states",
                "distinct_stages": "stages_costed", "stages": "stages_costed", "transitions": "transitions",
                "parts": "parts", "latency_ms": "predicted_latency_ms", "cost_seconds": "cost_time_s",
                "cost_evaluations": "cost_evaluations", "cost_cache_hits": "cost_cache_hits",
                "critical_path_ms": "critical_path_ms", "stage_sum_ms": "stage_sum_ms"}
META_PARAMS = ("model", "batch", "device", "precision", "opt", "r", "s", "max_part_size", "cost")


def search_metrics(meta: Mapping[str, Any]) -> dict[str, float]:
    """The statistics of the search a schedule's ``meta`` tells of, by metric name (see `META_METRICS`)."""
    found: dict[str, float] = {}
    for key, metric in META_METRICS.items():
        value = meta.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and metric not in found:
            found[metric] = float(value)
    return found


def stage_log(schedule_path: str | os.PathLike) -> Path:
    """Where the stage costs of the search that made a schedule are logged."""
    path = Path(schedule_path)
    return path.with_name(path.stem + STAGE_LOG_SUFFIX)


def from_schedule(path: str | os.PathLike) -> Record:
    """An ``optimize`` record for a schedule file; `RecordError` naming the file if it is not a schedule this
    version of ios-core reads (`ios_core.schedule.from_json` decides)."""
    path = Path(path)
    text = path.read_text()
    try:
        schedule = from_json(text)
    except ScheduleError as error:
        raise RecordError(f"schedule {path}: {error}") from error
    meta = schedule.meta
    end = int(path.stat().st_mtime * 1000)
    start = end - int(1000 * float(meta.get("search_seconds", 0.0)))
    kind = str(meta.get("cost", ""))
    params = stringify({k: meta.get(k) for k in META_PARAMS} | {"schedule": str(path), "stages": len(schedule.stages)})
    tags = {"source": "simulated" if kind in ("simulated", "table") else "measured", "cost_kind": kind,
            "available": "true", "adapted_from": "schedule"}
    name = f"optimize/{meta.get('model', schedule.graph)}/b{meta.get('batch', '?')}/{meta.get('opt', '?')}"
    digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    record = Record(name, "optimize", params, tags, start_time=start, end_time=end, status="FINISHED", id=digest)
    for metric, value in search_metrics(meta).items():
        record.metrics[metric] = [Point(value, 0, end)]
    record.artifacts.append(str(path))
    _add_stage_log(record, stage_log(path), end)
    return record


def _add_stage_log(record: Record, path: Path, stamp: int) -> None:
    """Each stage costed during the search, in the order it was costed (torn or foreign lines skipped)."""
    if not path.exists():
        return
    values = []
    with path.open() as lines:
        for line in lines:
            try:
                values.append(float(json.loads(line)["ms"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                continue
    record.metrics["stage_latency_ms"] = [Point(v, i, stamp) for i, v in enumerate(values)]
    record.artifacts.append(str(path))
