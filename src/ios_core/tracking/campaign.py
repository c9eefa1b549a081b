"""Records from a GPU campaign file (``bench/ios_campaign.py``): one ``measure`` record per model and schedule,
and one ``baseline`` record per framework the campaign timed beside them (``--frameworks``); and from a
cross-device file (``bench/cross_device.py``): one ``measure`` record per schedule optimized on another GPU
(or this one) and run on this one -- experiment 4's device panel; and from an engine-against-PyTorch file
(``bench/engine_vs_torch.py``): a ``measure`` record per engine schedule and a ``baseline`` record per
PyTorch mode, at each model and batch -- experiment 6 side by side.

The lent GPU machine returns files only, so the campaign writes one JSON of everything it did.
`from_campaign` turns it into the same records ``python -m ios_core.measure`` writes -- the end-to-end
latencies with every repeat, the prediction, the search statistics, the GPU and its clocks -- so
that figures and MLflow treat them like any other measurement. Records keep the campaign's time
and get ids derived from the file's content, so splitting or ingesting twice changes nothing.

Given the campaign's schedules and stage profile too, each schedule's record also gets its stage
timeline -- every stage's latency as profiled alone, and the FLOP rate that is -- as ``measure``
records one on a GPU (experiment 3).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ios_core.tracking.record import Point, Record, RecordError, json_error, stringify

IOS_OPTS = ("merge", "parallel", "both")
SEARCH_METRICS = {
    "search_s": "search_time_s",
    "dp_states": "dp_states",
    "transitions": "transitions",
    "distinct_stages": "stages_costed",
    "stages_profiled": "stages_profiled",
    "profiling_s": "profiling_time_s",
    "dp_s": "dp_time_s",
}


def _document(path: str | os.PathLike) -> tuple[Any, str]:
    """A results file's JSON and its text; `RecordError` naming the file if it is not JSON."""
    text = Path(path).read_text()
    try:
        return json.loads(text), text
    except json.JSONDecodeError as error:
        raise RecordError(f"{path}: {json_error(error)}") from error


def _read(path: str | os.PathLike, what: str, keys: tuple[str, ...]) -> tuple[dict[str, Any], tuple[int, str]]:
    """A results file's JSON, which must hold ``keys``, and its stamp: its time (ms) and a digest of its
    content, from which record ids derive (splitting the same file twice gives the same records)."""
    data, text = _document(path)
    missing = [key for key in keys if key not in data] if isinstance(data, dict) else list(keys)
    if missing:
        raise RecordError(f"{path}: not {what} (no {', '.join(missing)})")
    return data, (int(Path(path).stat().st_mtime * 1000), hashlib.blake2b(text.encode(), digest_size=8).hexdigest())


def records_of(path: str | os.PathLike, schedules: str | os.PathLike | None = None,
               profile: str | os.PathLike | None = None) -> list[Record]:
    """The records of a campaign, cross-device or engine-against-PyTorch file, whichever ``path`` is.

    Raises
    ------
    RecordError
        If the file is not JSON, or is none of the three or breaks its shape (a field missing or of another
        type); the message names the files.
    """
    data, _ = _document(path)
    fields = data if isinstance(data, dict) else {}
    try:
        if "end_to_end" in fields:
            return from_cross_device(path)
        if "rows" in fields:
            return from_engine_vs_torch(path)
        return from_campaign(path, schedules, profile)
    except RecordError:
        raise
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as error:  # the file's shape, not our code's
        files = ", ".join(str(p) for p in (path, schedules, profile) if p is not None)
        raise RecordError(f"{files}: not a campaign, cross-device or engine-against-PyTorch result as written by "
                          f"bench/ ({type(error).__name__}: {error})") from error


# The engine modes of bench/engine_vs_torch.py as schedules and plan variants (what differs from the default plan).
ENGINE_OPTS = {"engine": "sequential", "engine_greedy": "greedy", "engine_ios": "both"}
ENGINE_VARIANTS = {"engine_nchw": "nchw", "engine_copy_concat": "copy_concat", "engine_heuristic": "heuristic",
                   "engine_cudnn_depthwise": "cudnn_depthwise"}
# What a results file says of a plan built and checked, kept as metrics of its record.
PLAN_METRICS = ("build_s", "arena_bytes", "weight_bytes", "graph_nodes", "streams", "tuned_conv_ms",
                "heuristic_conv_ms", "setup_s", "error_vs_torch_eager", "rel_error_vs_sequential")
# Its PyTorch modes as the baseline frameworks they are.
TORCH_FRAMEWORKS = {"torch_eager": "torch_eager", "torch_graph": "torch_cudagraph", "torch_compile": "torch_compile",
                    "torch_compile_freeze": "torch_compile_freeze"}


def from_engine_vs_torch(path: str | os.PathLike) -> list[Record]:
    """A ``measure`` record per engine schedule (Sequential, Greedy, the optimized one) and a ``baseline``
    record per PyTorch mode of an engine-against-PyTorch file, per model and batch; rows that failed or
    are other engine variants are left out."""
    data, (end, content) = _read(path, "an engine_vs_torch result", ("environment", "args", "rows"))
    environment, args, rows = data["environment"], data["args"], data["rows"]
    timing = {"e2e_warmup": args["warmup"], "e2e_number": args["number"], "e2e_repeat": args["repeat"]}
    records = []
    for row in rows:
        mode, model, batch = row["mode"], row["model"], row["batch"]
        if "ms" not in row or not (mode in ENGINE_OPTS or mode in ENGINE_VARIANTS or mode in TORCH_FRAMEWORKS):
            continue
        identity = f"engine-{content}-{model}-b{batch}-{mode}"
        if mode in TORCH_FRAMEWORKS:
            measurement = {"framework": TORCH_FRAMEWORKS[mode], "model": model, "batch": batch, "status": "measured",
                           "available": True, "device": environment["name"], "latencies_ms": row["samples"],
                           "median_ms": row["ms"], "precision": "fp32", "clock": "cuda-events",
                           "versions": {"torch": data["torch"]},  # its error is against PyTorch eager, not float64
                           "timestamp": datetime.fromtimestamp(end / 1000, UTC).isoformat(timespec="seconds")}
            records.append(_baseline(model, measurement, timing, end, identity, "engine_vs_torch"))
            _add_plan(records[-1], row, end)
            continue
        opt, variant = ENGINE_OPTS.get(mode, "sequential"), ENGINE_VARIANTS.get(mode)
        rounds = [{"samples": row["samples"], "clocks_after": row.get("clocks_after") or {}}]
        params = _measured_params(model, batch, opt, environment, rounds, timing)
        if opt == "both":
            schedule = args["ios_schedule"].format(model=model, batch=batch)
            meta = json.loads(Path(schedule).read_text())["meta"]
            params.update(stringify({"r": meta["r"], "s": meta["s"], "schedule_batch": meta["batch"],
                                     "schedule": schedule}))
        if variant:
            params.update(variant=variant, layout=str(row.get("layout", "")))
        record = Record(f"measure/{model}/b{batch}/{opt}{f'+{variant}' if variant else ''}", "measure", params,
                        _measured_tags("engine_vs_torch"), start_time=end, end_time=end, status="FINISHED",
                        id=identity)
        _add_latencies(record, rounds, row["ms"], end)
        _add_plan(record, row, end)
        records.append(record)
    return records


def _add_plan(record: Record, row: dict[str, Any], end: int) -> None:
    """The plan's numbers a results row holds (build time, arena, CUDA-graph nodes, errors), one metric each."""
    for key in PLAN_METRICS:
        if isinstance(row.get(key), int | float) and not isinstance(row.get(key), bool):
            record.metrics[key] = [Point(float(row[key]), 0, end)]


def from_cross_device(path: str | os.PathLike) -> list[Record]:
    """One FINISHED ``measure`` record per IOS schedule of a cross-device file, run on its GPU at its batch; the
    schedule's own device (its label there) is ``schedule_device``. Sequential, optimized nowhere, is left out."""
    data, (end, content) = _read(path, "a cross_device result", ("environment", "model", "batch", "end_to_end"))
    environment, model, batch, runs = data["environment"], data["model"], data["batch"], data["end_to_end"]
    records = []
    for label, run in runs.items():
        if label == "sequential":
            continue
        params = _measured_params(model, batch, "both", environment, run["rounds"], data.get("timing", TIMING))
        params.update(stringify({"schedule_device": label, "schedule_batch": batch,
                                 "schedule": data["schedules"][label]}))
        record = Record(f"measure/{model}/b{batch}/both/{label}_on_{params['device']}", "measure", params,
                        _measured_tags("cross_device"),
                        start_time=end, end_time=end, status="FINISHED", id=f"cross-{content}-{label}")
        _add_latencies(record, run["rounds"], run["ms"], end)
        _add_plan(record, run, end)
        records.append(record)
    return records


def from_campaign(path: str | os.PathLike, schedules: str | os.PathLike | None = None,
                  profile: str | os.PathLike | None = None) -> list[Record]:
    """One FINISHED ``measure`` record per (model, schedule) of a campaign file, one ``baseline`` record per
    framework; with the campaign's ``schedules`` bundle and stage ``profile``, stage timelines too.
    `RecordError` if it is not a campaign file."""
    data, (end, content) = _read(path, "an ios_campaign result", ("models", "environment", "args"))
    models, environment, args = data["models"], data["environment"], data["args"]
    measured = [
        _record(model, opt, result, environment, args, (end, content))
        for model, result in models.items()
        for opt in result["summary"]
    ]
    if schedules is not None and profile is not None:
        bundle = json.loads(Path(schedules).read_text())
        for record in measured:
            _add_timeline(record, bundle, profile, models[record.params["model"]]["cost_space"])
    checked = [_cli_check(data, (end, content))] if "cost_evaluations" in data.get("cli_check", {}) else []
    return measured + [
        _baseline(model, measurement, args, end, f"campaign-{content}-{model}-{measurement['framework']}", "campaign")
        for model, result in models.items()
        for measurement in result.get("frameworks", {}).values()
    ] + checked


def _cli_check(data: dict[str, Any], stamp: tuple[int, str]) -> Record:
    """The campaign's check of ``python -m ios_core.optimize`` on its warm stage cache, as an ``optimize`` record: how
    long the command took, how many stages it profiled, and whether it wrote the campaign's schedule."""
    end, content = stamp
    check, args = data["cli_check"], data["args"]
    words = dict(word.split("=", 1) for word in check["command"].split() if "=" in word)
    model, batch = words["model"], int(words["batch"])
    params = stringify({"model": model, "batch": batch, "device": words["device"], "precision": "fp32",
                        "opt": words["opt"], "r": args["r"], "s": args["s"], "cost": words["cost"],
                        "command": "python " + check["command"]})
    tags = {**_measured_tags("campaign"), "cost_kind": words["cost"], "warm_cache": "true",
            "same_schedule_as_campaign": str(check["same_schedule_as_campaign"]).lower()}
    record = Record(f"optimize/{model}/b{batch}/{words['opt']}/warm_cache", "optimize", params, tags,
                    start_time=end - int(1000 * check["seconds"]), end_time=end,
                    status="FINISHED" if check["returncode"] == 0 else "FAILED", id=f"campaign-{content}-cli-check")
    record.metrics["search_time_s"] = [Point(float(check["seconds"]), 0, end)]
    record.metrics["cost_evaluations"] = [Point(float(check["cost_evaluations"]), 0, end)]
    return record


def _add_timeline(record: Record, bundle: dict[str, Any], profile: str | os.PathLike, space: str) -> None:
    """The stage series of ``measure``: each stage's latency alone (from the profile) and its FLOP rate."""
    from ios_core import models
    from ios_core.config import device_profile
    from ios_core.cost import TableCost, stage_latencies
    from ios_core.measure import MEASURED_UTILIZATION_METRIC, stage_utilization
    from ios_core.schedule import from_json

    p = record.params
    graph, batch = models.get(p["model"]), int(p["batch"])
    schedule = from_json(json.dumps(bundle[f"{p['model']}_b{batch}_{p['opt']}_{p['device']}_measured"]))
    stage_ms = stage_latencies(TableCost.from_cache(profile, space), graph, schedule.stages, batch)
    device = device_profile(p["device"])
    end = record.end_time
    record.metrics["stage_latency_ms"] = [Point(v, i, end) for i, v in enumerate(stage_ms)]
    busy = stage_utilization(graph, schedule, batch, stage_ms, device, p["precision"])
    record.metrics["stage_utilization_pct"] = [Point(v, i, end) for i, v in enumerate(busy)]
    record.params["utilization_metric"] = MEASURED_UTILIZATION_METRIC


def _baseline(model: str, m: dict[str, Any], timing: dict[str, Any], end: int, identity: str, origin: str) -> Record:
    """A framework measured beside our schedules (a baseline ``Measurement`` as a dict), as
    ``python -m ios_core.baseline`` records one; ``origin`` names the results file it was adapted from."""
    from ios_core.baseline import tags_of
    from ios_core.baselines import Measurement

    params = stringify({"framework": m["framework"], "model": model, "batch": m["batch"], "precision": m["precision"],
                        "warmup": timing["e2e_warmup"], "number": timing["e2e_number"], "repeat": timing["e2e_repeat"]})
    tags = stringify({**tags_of(Measurement(**m)), "framework": m["framework"], "adapted_from": origin})
    record = Record(f"baseline/{m['framework']}/{model}/b{m['batch']}", "baseline", params, tags, start_time=end,
                    end_time=end, status="FINISHED", id=identity)
    if m["status"] == "measured":
        record.metrics["latency_ms"] = [Point(v, i, end) for i, v in enumerate(m["latencies_ms"])]
        record.metrics["median_ms"] = [Point(m["median_ms"], 0, end)]
        if m.get("rel_error") is not None:
            record.metrics["rel_error"] = [Point(m["rel_error"], 0, end)]
    return record


def _record(
    model: str,
    opt: str,
    result: dict[str, Any],
    environment: dict[str, Any],
    args: dict[str, Any],
    stamp: tuple[int, str],
) -> Record:
    end, content = stamp
    summary, search = result["summary"][opt], result["search"].get(opt, {})
    rounds = result["end_to_end"][opt]["rounds"]
    ios = opt in IOS_OPTS
    params = _measured_params(model, result["batch"], opt, environment, rounds, args)
    params.update(stringify({"r": args["r"] if ios else None, "s": args["s"] if ios else None}))
    record = Record(
        f"measure/{model}/b{result['batch']}/{opt}",
        "measure",
        params,
        _measured_tags("campaign"),
        start_time=end,
        end_time=end,
        status="FINISHED",
        id=f"campaign-{content}-{model}-{opt}",
    )
    _add_latencies(record, rounds, summary["ms"], end)
    _add_plan(record, result["end_to_end"][opt], end)
    record.metrics["predicted_latency_ms"] = [Point(summary["predicted_ms"], 0, end)]
    record.metrics["critical_path_ms"] = [Point(result["critical_path"]["ms"], 0, end)]
    for key, metric in SEARCH_METRICS.items():
        if isinstance(search.get(key), int | float):
            record.metrics[metric] = [Point(float(search[key]), 0, end)]
    return record


# The end-to-end timing of bench/cross_device.py's defaults, for its files that did not record it yet.
TIMING = {"e2e_warmup": 10, "e2e_number": 20, "e2e_repeat": 7}


def _measured_tags(origin: str) -> dict[str, str]:
    """The tags of a measurement adapted from a results file: measured, available, and where it came from."""
    return {"source": "measured", "available": "true", "reason": "", "adapted_from": origin}


def _measured_params(model: str, batch: int, opt: str, environment: dict[str, Any], rounds: list[dict[str, Any]],
                     timing: dict[str, Any]) -> dict[str, str]:
    """What ``measure`` records of a run: the schedule, the GPU, its driver, cuDNN and clocks, and the timing."""
    clocks = rounds[-1]["clocks_after"]
    return stringify(
        {
            "model": model,
            "batch": batch,
            "device": _device(environment["name"]),
            "precision": "fp32",
            "opt": opt,
            "cost": "measured",
            "device_name": environment["name"],
            "driver": environment["driver"],
            "cudnn": environment["cudnn"],
            "sm_mhz": clocks.get("sm_mhz"),
            "mem_mhz": clocks.get("mem_mhz"),
            "mode": "cuda_graph",
            "timing": f"{timing['e2e_warmup']} warm-up, median of {timing['e2e_repeat']} means of "
            f"{timing['e2e_number']} replays, median over {len(rounds)} rounds",
        }
    )


def _add_latencies(record: Record, rounds: list[dict[str, Any]], median_ms: float, end: int) -> None:
    """Every sample of every round, and the median reported."""
    samples = [sample for one in rounds for sample in one["samples"]]
    record.metrics["latency_ms"] = [Point(v, i, end) for i, v in enumerate(samples)]
    record.metrics["median_ms"] = [Point(median_ms, 0, end)]


def _device(name: str) -> str:
    """The device profile a GPU name belongs to (``NVIDIA H100 80GB HBM3`` -> ``h100``)."""
    for profile in ("h200", "h100", "a100", "v100"):
        if profile in name.lower():
            return profile
    return name
