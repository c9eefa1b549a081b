"""Our engine's *sequential* schedule against PyTorch on the same network and weights, in one process.

For each model and batch size (TF32 allowed everywhere, as PyTorch does by default for cuDNN):

- ``engine``: `ios_core.engine`, sequential schedule, NHWC, autotuned cuDNN engines, CUDA-graph replay;
- ``engine_nchw``, ``engine_copy_concat``, ``engine_heuristic``, ``engine_cudnn_depthwise``: the
  same in NCHW, with every concatenation copied instead of written in place, with cuDNN's
  heuristic engine choice, and with depthwise convolutions on cuDNN instead of our kernel;
- ``engine_greedy``: the engine on IOS's greedy schedule (for reference);
- ``engine_ios``: the engine on an optimized schedule per model and batch, read from ``--ios-schedule``
  (a path with ``{model}`` and ``{batch}``, e.g. the workflow's IOS-Both schedules);
- ``engine_ios_exact``: the same with exact dependencies between groups instead of stage barriers
  (``PlanOptions(barrier="exact")``), to time beside ``engine_ios``;
- ``torch_eager``: the `torch_module` of the same graph, channels-last, ``cudnn.benchmark`` on;
- ``torch_graph``: that module captured once into a ``torch.cuda.CUDAGraph`` and replayed;
- ``torch_compile``: ``torch.compile(mode="reduce-overhead")``;
- ``torch_compile_freeze``: the same with ``torch._inductor.config.freezing = True``.

Each latency is the median over ``repeat`` of the mean of ``number`` calls, timed with CUDA
events, with the GPU, driver, cuDNN version and NVML clocks before and after. Every mode is written
to ``--out`` as the record the workflow writes (`records`): an engine mode as a ``measure`` record
of its schedule, with the plan's options and numbers (arena, build time, error against PyTorch eager),
``<model>_b<batch>_<mode>.json``; a PyTorch mode as a ``baseline`` record of its framework. A mode
that fails is a FAILED record beside it; one skipped by the compile budget, a record "not available"
with the reason. ``--profile`` adds the per-kernel GPU time (CUPTI, through ``torch.profiler``) of the
engine and of ``torch_graph``, a CSV artifact of the record. Prints a table last.

Usage (device): ``python3 bench/engine_vs_torch.py --device h100 --out $OUT/engine_vs_torch``
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from records import Run, baseline_record, finished, measure_record

from ios_core import gpu, models
from ios_core import schedule as S
from ios_core.baselines import Measurement
from ios_core.baselines.timing import time_cuda_events
from ios_core.baselines.torch_adapters import cuda_graph_replay
from ios_core.baselines.torch_module import torch_module
from ios_core.config import device_profile
from ios_core.engine import PlanOptions, build_plan, environment, latency
from ios_core.files import write_atomic
from ios_core.measure import gpu_mismatch
from ios_core.reference import relative_error
from ios_core.timing import Timing
from ios_core.tracking import Record, failed_path, stringify, write
from ios_core.weights import make_input, make_weights

ENGINE_MODES = {  # mode: (schedule, PlanOptions fields)
    "engine": ("sequential", {}),
    "engine_nchw": ("sequential", {"layout": "nchw"}),
    "engine_copy_concat": ("sequential", {"concat_in_place": False}),
    "engine_heuristic": ("sequential", {"autotune": False}),
    "engine_cudnn_depthwise": ("sequential", {"own_depthwise": False}),
    "engine_greedy": ("greedy", {}),
    "engine_ios": ("ios", {}),
    "engine_ios_exact": ("ios", {"barrier": "exact"}),
}
# The PyTorch modes as the baseline frameworks they are (`ios_core.baselines`).
TORCH_FRAMEWORKS = {"torch_eager": "torch_eager", "torch_graph": "torch_cudagraph", "torch_compile": "torch_compile",
                    "torch_compile_freeze": "torch_compile_freeze"}
TORCH_MODES = tuple(TORCH_FRAMEWORKS)
MODES = (*ENGINE_MODES, *TORCH_MODES)
# A plan's numbers kept as metrics of its record.
PLAN_METRICS = ("build_s", "arena_bytes", "weight_bytes", "graph_nodes", "streams", "tuned_conv_ms",
                "heuristic_conv_ms", "setup_s", "error_vs_torch_eager")


@dataclass
class Mode:
    """One mode at one model and batch: what it ran, how long each part took, and what it gave."""

    row: dict  # the numbers of the table and of the record's metrics
    out: np.ndarray
    measured: object  # an engine Measurement, or the PyTorch call that was timed
    schedule: S.Schedule | None = None
    path: str | None = None
    options: PlanOptions | None = None


def time_calls(call, timing: Timing) -> dict:
    """Median over ``repeat`` of the mean of ``number`` calls (ms), timed with CUDA events, with clocks."""
    for _ in range(timing.warmup):  # here, so that the clocks are read after it
        call()
    torch.cuda.synchronize()
    before = gpu.clocks()
    samples = time_cuda_events(call, replace(timing, warmup=0), torch)
    return {"ms": statistics.median(samples), "samples": samples, "clocks_before": before, "clocks_after": gpu.clocks()}


def timing_of(args) -> Timing:
    """How every mode is timed (``--warmup``, ``--number``, ``--repeat``)."""
    return Timing(warmup=args.warmup, number=args.number, repeat=args.repeat)


def kernel_profile(run, steps: int = 5) -> list[dict]:
    """GPU time per kernel name over ``steps`` runs (CUPTI sees every kernel of the process, ours too)."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            run()
        torch.cuda.synchronize()
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            totals[event.name][0] += event.time_range.elapsed_us()
            totals[event.name][1] += 1
    rows = [{"kernel": name[:120], "us_per_run": t / steps, "count_per_run": c / steps}
            for name, (t, c) in totals.items()]
    return sorted(rows, key=lambda r: -r["us_per_run"])[:40]


def bench_engine(graph, weights, x, mode: str, batch: int, args) -> tuple[Mode, object]:
    """One engine mode: its measurement and plan numbers, its output, and the plan (to profile, then close)."""
    schedule_name, fields = ENGINE_MODES[mode]
    path = None
    if schedule_name == "ios":
        if not args.ios_schedule:
            raise ValueError("engine_ios needs --ios-schedule PATH (with {model} and {batch})")
        path = args.ios_schedule.format(model=graph.name, batch=batch)
        schedule = S.load(path, graph)
    else:
        schedule = S.sequential(graph) if schedule_name == "sequential" else S.greedy(graph)
    options = PlanOptions(**{"tune_cache": args.tune_cache, **fields})
    started = time.perf_counter()
    plan = build_plan(graph, schedule, batch, "fp32", weights, options)
    out = plan(x)
    measurement = latency(plan, timing_of(args))
    stats = plan.stats
    row = {"ms": measurement.ms, "build_s": time.perf_counter() - started, "arena_bytes": stats.arena_bytes,
           "weight_bytes": stats.weight_bytes, "tuned_conv_ms": stats.tuned_conv_ms,
           "heuristic_conv_ms": stats.heuristic_conv_ms, "graph_nodes": plan.captured.node_count,
           "streams": plan.program.streams}
    return Mode(row, out, measurement, schedule, path, options), plan


def bench_torch(module, x, mode: str, args) -> tuple[Mode, object]:
    """One PyTorch mode: its latency, its output, and the call that was timed."""
    started = time.perf_counter()
    static = torch.from_numpy(x).float().cuda().contiguous(memory_format=torch.channels_last)
    if mode == "torch_eager":
        call = lambda: module(static)  # noqa: E731
    elif mode == "torch_graph":
        call = cuda_graph_replay(torch, module, static)
    else:
        torch._dynamo.reset()
        torch._inductor.config.freezing = mode == "torch_compile_freeze"
        compiled = torch.compile(module, mode="reduce-overhead", dynamic=False)
        for _ in range(3):
            compiled(static)
        call = lambda: compiled(static)  # noqa: E731
    out = call().float().cpu().numpy()
    compile_s = time.perf_counter() - started
    timed = time_calls(call, timing_of(args))
    return Mode({"ms": timed["ms"], "setup_s": compile_s}, out, timed), call


def run(args) -> list[dict]:
    """Every mode of ``args.modes`` on every model and batch, each written as a record; the torch.compile modes
    last, within a budget. Returns the table's rows."""
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    print(json.dumps(environment()), flush=True)
    rows, started = [], time.perf_counter()
    compiled = [m for m in args.modes if m.startswith("torch_compile")]
    for modes in ([m for m in args.modes if m not in compiled], compiled):
        for name in args.models:
            graph = models.get(name)
            weights = make_weights(graph)
            module = torch_module(graph, weights).cuda().to(memory_format=torch.channels_last)
            for batch in args.batches:
                x = make_input(graph, batch)
                with torch.inference_mode():
                    expected = module(torch.from_numpy(x).float().cuda()).double().cpu().numpy()
                run_ = Run(name, batch, args.device, tags={"benchmark": "engine_vs_torch"})
                for mode in modes:
                    row = bench_mode(graph, weights, module, x, expected, (run_, mode), args, started)
                    rows.append({"model": name, "batch": batch, "mode": mode, **row})
                    print(f"{name:14s} b{batch:<3d} {mode:24s} {row.get('ms', float('nan')):8.3f} ms  "
                          f"err {row.get('error_vs_torch_eager', float('nan')):.1e}  {row.get('error', '')}",
                          flush=True)
            del module
            torch.cuda.empty_cache()
    return rows


def bench_mode(graph, weights, module, x, expected, what: tuple[Run, str], args, started: float) -> dict:
    """One mode, written as its record: its table row (its latency and error against PyTorch eager, or why it has
    none)."""
    run_, mode = what
    path = args.out / f"{run_.model}_b{run_.batch}_{mode}.json"
    if mode.startswith("torch_compile") and time.perf_counter() - started > args.compile_budget_s:
        reason = f"skipped: the run passed --compile-budget-s {args.compile_budget_s}"
        write(not_available(run_, mode, reason, args), path)
        return {"error": reason}
    try:
        if mode in ENGINE_MODES:
            result, plan = bench_engine(graph, weights, x, mode, run_.batch, args)
            profile = kernel_profile(plan.replay) if args.profile and mode == "engine" else None
            plan.close()
        else:
            with torch.inference_mode():
                result, call = bench_torch(module, x, mode, args)
                profile = kernel_profile(call) if args.profile and mode == "torch_graph" else None
        result.row["error_vs_torch_eager"] = relative_error(result.out, expected)
    except Exception as error:  # noqa: BLE001 -- one failing mode must not lose the others
        failed = not_available(run_, mode, f"{type(error).__name__}: {error}", args)
        failed.status = "FAILED"  # as a workflow job's record of a run that raised, beside where it would be
        write(failed, failed_path(path, failed))
        return {"error": f"{type(error).__name__}: {error}"}
    record = record_of(run_, mode, result, args)
    if profile is not None:
        record.artifacts.append(str(write_atomic(path.with_suffix(".kernels.csv"), profile_csv(profile))))
    write(record, path)
    return result.row


def record_of(run_: Run, mode: str, result: Mode, args) -> Record:
    """A mode's record: ``measure`` for the engine, ``baseline`` for PyTorch, with the plan's numbers as metrics."""
    metrics = {k: float(v) for k, v in result.row.items() if k in PLAN_METRICS}
    if mode in ENGINE_MODES:
        record = measure_record(run_, result.schedule, result.path, [result.measured], result.options, metrics)
        record.params.update(stringify({"barrier": result.options.barrier}))
        return record
    timed = result.measured
    measurement = Measurement(TORCH_FRAMEWORKS[mode], run_.model, run_.batch, "measured", True,
                              device=environment()["name"], latencies_ms=list(timed["samples"]),
                              median_ms=timed["ms"], precision=run_.precision, clock="cuda-events",
                              timing=asdict(timing_of(args)), versions={"torch": torch.__version__})
    record = baseline_record(run_, measurement, timing_of(args), metrics)
    record.params.update(stringify({"sm_mhz_before": timed["clocks_before"].get("sm_mhz"),
                                    "sm_mhz_after": timed["clocks_after"].get("sm_mhz")}))
    return record


def not_available(run_: Run, mode: str, reason: str, args) -> Record:
    """The record of a mode that gave no number, with why (its kind and name as if it had)."""
    kind = "measure" if mode in ENGINE_MODES else "baseline"
    name = f"measure/{run_.model}/b{run_.batch}/{mode}" if kind == "measure" else \
        f"baseline/{TORCH_FRAMEWORKS[mode]}/{run_.model}/b{run_.batch}"
    params = {"model": run_.model, "batch": run_.batch, "device": run_.device, "precision": run_.precision,
              "warmup": args.warmup, "number": args.number, "repeat": args.repeat}
    opt = {"ios": "both"}.get(ENGINE_MODES[mode][0], ENGINE_MODES[mode][0]) if kind == "measure" else None
    params |= {"opt": opt} if kind == "measure" else {"framework": TORCH_FRAMEWORKS[mode]}
    tags = {**run_.tags, "source": "measured", "available": "false", "reason": reason}
    return finished(Record(name, kind, stringify(params), stringify(tags)))


def profile_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, ["kernel", "us_per_run", "count_per_run"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def table(rows: list[dict]) -> str:
    """A markdown table: one line per model and batch, one column per mode (ms)."""
    by_key: dict[tuple, dict] = defaultdict(dict)
    for row in rows:
        by_key[(row["model"], row["batch"])][row["mode"]] = row.get("ms")
    modes = [m for m in MODES if any(m in v for v in by_key.values())]
    lines = ["| model | batch | " + " | ".join(modes) + " |", "|---|---|" + "---|" * len(modes)]
    for (name, batch), times in by_key.items():
        cells = [f"{times[m]:.3f}" if times.get(m) is not None else "-" for m in modes]
        lines.append(f"| {name} | {batch} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=lambda s: s.split(","), default=["inception_v3", "nasnet", "randwire",
                                                                           "squeezenet"])
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 16])
    parser.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    parser.add_argument("--tune-cache", default=None)
    parser.add_argument("--ios-schedule", default=None, help="engine_ios's schedule: a path with {model}, {batch}")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--number", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--compile-budget-s", type=float, default=1e9,
                        help="skip the torch.compile modes once the run has lasted this long")
    parser.add_argument("--device", required=True, help="this GPU's device profile (h100, h200, ...)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the records")
    args = parser.parse_args(argv)
    mismatch = gpu_mismatch(device_profile(args.device))
    if mismatch:
        raise SystemExit(mismatch)
    print(table(run(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
