"""Our engine's *sequential* schedule against PyTorch on the same network and weights, in one process.

For each model and batch size (TF32 allowed everywhere, as PyTorch does by default for cuDNN):

- ``engine``: `ios_core.engine`, sequential schedule, NHWC, autotuned cuDNN engines, CUDA-graph replay;
- ``engine_nchw``, ``engine_copy_concat``, ``engine_heuristic``, ``engine_cudnn_depthwise``: the
  same in NCHW, with every concatenation copied instead of written in place, with cuDNN's
  heuristic engine choice, and with depthwise convolutions on cuDNN instead of our kernel;
- ``engine_greedy``: the engine on IOS's greedy schedule (for reference);
- ``engine_ios``: the engine on an optimized schedule per model and batch, read from ``--ios-schedule``
  (a path with ``{model}`` and ``{batch}``, e.g. the workflow's IOS-Both schedules);
- ``torch_eager``: the `torch_module` of the same graph, channels-last, ``cudnn.benchmark`` on;
- ``torch_graph``: that module captured once into a ``torch.cuda.CUDAGraph`` and replayed;
- ``torch_compile``: ``torch.compile(mode="reduce-overhead")``;
- ``torch_compile_freeze``: the same with ``torch._inductor.config.freezing = True``.

Each latency is the median over ``repeat`` of the mean of ``number`` calls, timed with CUDA
events, with the GPU, driver, cuDNN version and NVML clocks before and after. ``--profile``
adds the per-kernel GPU time (CUPTI, through ``torch.profiler``) of the engine and of
``torch_graph``. Writes one JSON file and prints a table.

Usage: ``python3 bench/engine_vs_torch.py --out results/engine_vs_torch_h100.json``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ios_core import gpu, models
from ios_core import schedule as S
from ios_core.baselines.timing import time_cuda_events
from ios_core.baselines.torch_adapters import cuda_graph_replay
from ios_core.baselines.torch_module import torch_module
from ios_core.engine import PlanOptions, build_plan, environment, latency
from ios_core.reference import relative_error
from ios_core.timing import Timing
from ios_core.weights import make_input, make_weights

ENGINE_MODES = {  # mode: (schedule, PlanOptions fields)
    "engine": ("sequential", {}),
    "engine_nchw": ("sequential", {"layout": "nchw"}),
    "engine_copy_concat": ("sequential", {"concat_in_place": False}),
    "engine_heuristic": ("sequential", {"autotune": False}),
    "engine_cudnn_depthwise": ("sequential", {"own_depthwise": False}),
    "engine_greedy": ("greedy", {}),
    "engine_ios": ("ios", {}),
}
TORCH_MODES = ("torch_eager", "torch_graph", "torch_compile", "torch_compile_freeze")
MODES = (*ENGINE_MODES, *TORCH_MODES)


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


def bench_engine(graph, weights, x, mode: str, batch: int, args) -> tuple[dict, np.ndarray, object]:
    schedule_name, fields = ENGINE_MODES[mode]
    if schedule_name == "ios":
        if not args.ios_schedule:
            raise ValueError("engine_ios needs --ios-schedule PATH (with {model} and {batch})")
        schedule = S.load(args.ios_schedule.format(model=graph.name, batch=batch), graph)
    else:
        schedule = S.sequential(graph) if schedule_name == "sequential" else S.greedy(graph)
    options = PlanOptions(**{"tune_cache": args.tune_cache, **fields})
    started = time.perf_counter()
    plan = build_plan(graph, schedule, batch, "fp32", weights, options)
    out = plan(x)
    measurement = latency(plan, timing_of(args))
    stats = plan.stats
    row = {"ms": measurement.ms, "samples": list(measurement.samples), "clocks_before": measurement.clocks_before,
           "clocks_after": measurement.clocks_after, "build_s": time.perf_counter() - started,
           "arena_bytes": stats.arena_bytes, "weight_bytes": stats.weight_bytes, "convs": stats.convs,
           "unfused_convs": stats.unfused_convs, "geometries": stats.geometries, "kernels": stats.kernels,
           "tuned_conv_ms": stats.tuned_conv_ms, "heuristic_conv_ms": stats.heuristic_conv_ms,
           "graph_nodes": plan.captured.node_count, "streams": plan.program.streams, "layout": options.layout}
    return row, out, plan


def bench_torch(module, x, mode: str, args) -> tuple[dict, np.ndarray, object]:
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
    row = time_calls(call, timing_of(args))
    row["setup_s"] = compile_s
    return row, out, call


def run(args) -> dict:
    """Every mode of ``args.modes`` on every model and batch; the torch.compile modes last, within a budget."""
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    results = {"environment": environment(), "torch": torch.__version__, "args": vars(args), "rows": []}
    print(json.dumps(results["environment"]), flush=True)
    started = time.perf_counter()
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
                for mode in modes:
                    row = bench_mode(graph, weights, module, x, expected, mode, batch, args, started)
                    row.update(model=name, batch=batch, mode=mode)
                    results["rows"].append(row)
                    print(f"{name:14s} b{batch:<3d} {mode:24s} {row.get('ms', float('nan')):8.3f} ms  "
                          f"err {row.get('error_vs_torch_eager', float('nan')):.1e}  {row.get('error', '')}",
                          flush=True)
                if args.out:
                    Path(args.out).write_text(json.dumps(results, indent=1, default=str))
            del module
            torch.cuda.empty_cache()
    return results


def bench_mode(graph, weights, module, x, expected, mode: str, batch: int, args, started: float) -> dict:
    """One row: a mode's latency and error against PyTorch eager, or why it has none."""
    if mode.startswith("torch_compile") and time.perf_counter() - started > args.compile_budget_s:
        return {"error": f"skipped: the run passed --compile-budget-s {args.compile_budget_s}"}
    try:
        if mode in ENGINE_MODES:
            row, out, plan = bench_engine(graph, weights, x, mode, batch, args)
            if args.profile and mode == "engine":
                row["profile"] = kernel_profile(plan.replay)
            plan.close()
        else:
            with torch.inference_mode():
                row, out, call = bench_torch(module, x, mode, args)
                if args.profile and mode == "torch_graph":
                    row["profile"] = kernel_profile(call)
        row["error_vs_torch_eager"] = relative_error(out, expected)
        return row
    except Exception as error:  # noqa: BLE001 -- one failing mode must not lose the others
        return {"error": f"{type(error).__name__}: {error}"}


def table(results: dict) -> str:
    """A markdown table: one line per model and batch, one column per mode (ms)."""
    by_key: dict[tuple, dict] = defaultdict(dict)
    for row in results["rows"]:
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
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    results = run(args)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
