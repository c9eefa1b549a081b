"""What a benchmark measures, as the records ``python -m ios_core.measure`` and ``python -m ios_core.baseline`` write.

A benchmark that times schedules on the engine, or a framework, outside those commands (side by side in one
process, in rotating rounds) writes the same `ios_core.tracking` record, built from the same seams -- the params of
an engine measurement and of a schedule (`ios_core.measure.engine_params`, `schedule_params`), a baseline's tags
(`ios_core.baseline.tags_of`), the search behind a schedule (`ios_core.tracking.adapters.search_metrics`) -- so that
figures and ``python -m ios_core.tracking ingest`` take it as any other. What only a benchmark knows (a plan's
arena, an output's error against a reference, the rounds) is a param or metric more.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ios_core.baseline import tags_of
from ios_core.baselines import Measurement
from ios_core.engine import PlanOptions
from ios_core.files import write_atomic
from ios_core.measure import engine_params, schedule_params
from ios_core.schedule import Schedule
from ios_core.timing import Timing
from ios_core.tracking import Record, stringify
from ios_core.tracking.adapters import search_metrics
from ios_core.tracking.record import now_ms


@dataclass(frozen=True)
class Run:
    """What every record of one benchmark run shares: the model, batch, device profile and precision, and tags
    (``{"benchmark": "cross_device"}``: where it was measured)."""

    model: str
    batch: int
    device: str
    precision: str = "fp32"
    tags: Mapping[str, str] = field(default_factory=dict)


def measure_record(run: Run, schedule: Schedule, path: str | None, rounds: Sequence[Any], options: PlanOptions,
                   metrics: Mapping[str, float] | None = None) -> Record:
    """The ``measure`` record of ``schedule`` (read from ``path``; None: made here) timed on the engine in
    ``rounds`` (`ios_core.engine.latency` measurements, one per round) with plan ``options``.

    ``latency_ms`` holds every sample of every round and ``median_ms`` is the median of the rounds' medians; the
    clocks are the first round's before and the last round's after.
    """
    first, last = rounds[0], rounds[-1]
    params = {"model": run.model, "batch": run.batch, "device": run.device, "precision": run.precision,
              **schedule_params(schedule), "schedule": path, "variant": "autotune" if options.autotune else "",
              "mode": "measured", **engine_params(replace(first, clocks_after=last.clocks_after)),
              "concat_in_place": options.concat_in_place, "own_depthwise": options.own_depthwise,
              "rounds": len(rounds)}
    tags = {**run.tags, "source": "measured", "available": "true", "reason": ""}
    name = f"measure/{run.model}/b{run.batch}/{params['opt'] or '-'}{'+autotune' if options.autotune else ''}"
    record = Record(name, "measure", stringify(params), stringify(tags))
    for metric, value in search_metrics(schedule.meta).items():
        record.log_metric(metric, value)
    record.log_series("latency_ms", [sample for m in rounds for sample in m.samples])
    record.log_metric("median_ms", statistics.median(m.ms for m in rounds))
    for metric, value in (metrics or {}).items():
        record.log_metric(metric, value)
    return finished(record)


def baseline_record(run: Run, measurement: Measurement, timing: Timing,
                    metrics: Mapping[str, float] | None = None) -> Record:
    """The ``baseline`` record of a framework timed here, as ``python -m ios_core.baseline`` records one."""
    m = measurement
    params = {"framework": m.framework, "model": run.model, "batch": run.batch, "precision": run.precision,
              "warmup": timing.warmup, "number": timing.number, "repeat": timing.repeat, "seed": 0,
              "device_profile": run.device, "options": {}}
    tags = {**run.tags, **tags_of(m), "framework": m.framework}
    record = Record(f"baseline/{m.framework}/{run.model}/b{run.batch}", "baseline", stringify(params),
                    stringify(tags))
    if m.status == "measured":
        record.log_series("latency_ms", m.latencies_ms)
        record.log_metric("median_ms", m.median_ms)
        if m.rel_error is not None:
            record.log_metric("rel_error", m.rel_error)
    for metric, value in (metrics or {}).items():
        record.log_metric(metric, value)
    return finished(record)


def finished(record: Record) -> Record:
    record.status, record.end_time = "FINISHED", now_ms()
    return record


def file_name(record: Record, suffix: str = "") -> str:
    """A record's file name from its name: ``measure/inception_v3/b1/both+autotune`` ->
    ``inception_v3_b1_both<suffix>.json`` (a baseline's: ``torch_compile_inception_v3_b1<suffix>.json``)."""
    return "_".join(record.name.split("/")[1:]).removesuffix("+autotune").replace("+", "_") + f"{suffix}.json"


class RowFile:
    """A benchmark's rows in one JSON document at ``path``, read at the start and written again (atomically) after
    every new row, which replaces the row with the same ``key``: a run stopped midway resumes where it stopped."""

    def __init__(self, path: Path, benchmark: str, environment: dict[str, Any], settings: dict[str, Any],
                 key: Callable[[dict[str, Any]], tuple]) -> None:
        self.path, self.benchmark, self.settings, self.key = path, benchmark, settings, key
        old = json.loads(path.read_text()) if path.exists() else {}
        self.rows: list[dict[str, Any]] = old.get("rows", [])
        # One machine per call (a resumed run may get another): each row names its call by index.
        self.environments: list[dict[str, Any]] = [*old.get("environments", []), environment]

    def add(self, row: dict[str, Any]) -> None:
        # NaN is no JSON: a non-finite number is null, and the row's error says what it was
        row = {**{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()},
               "call": len(self.environments) - 1}
        self.rows = [r for r in self.rows if self.key(r) != self.key(row)] + [row]
        document = {"benchmark": self.benchmark, "environments": self.environments, "settings": self.settings,
                    "rows": self.rows}
        write_atomic(self.path, json.dumps(document, indent=1, default=str) + "\n")
