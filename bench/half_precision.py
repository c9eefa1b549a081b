"""Half precision side by side on one GPU, in one process: our engine against PyTorch in fp16 (and bf16), issue 17.

For each model (inception_v3, nasnet, randwire, squeezenet), batch (1 and 16; 128 with ``--batch-128``) and
precision (fp16; bf16 too with ``--bf16``), on the same deterministic weights rounded once to the 16-bit type:

- ``sequential``, ``ios_both``: `ios_core.engine.build_plan` at the precision (CUDA-graph replays, autotuned cuDNN
  engines); IOS-Both's schedule is read from ``--ios-schedule`` (by default the committed H200 IOS-Both schedule,
  searched in fp32 at batch 1: the row names it). An engine that refuses the precision -- it raises, or it stores
  the weights in 4 bytes an element, i.e. it has no 16-bit path yet -- gives ``ms: null`` and the one-line reason;
  a number is never taken from a float32 plan;
- ``torch_compile_freeze``, ``torch_cudagraph``: the PyTorch baselines of `ios_core.baselines` at the precision
  (``torch_module`` of the same graph, ``.half()`` / ``.to(torch.bfloat16)``, channels-last);
- ``lib_compile_freeze``: torchvision's Inception V3 and timm's NasNet-A large themselves (the networks a user
  would pick, `ios_core.models.zoo.build_module`: seeded, random weights) under ``torch.compile`` with Inductor
  freezing (``reduce-overhead``), converted and laid out alike; its error is against the same library network
  run in float64.

Every latency is the median over ``--repeat`` of the mean of ``--number`` calls after ``--warmup``, timed with
CUDA events, with NVML's clocks before and after; ``error_vs_reference`` is the relative L2 error of the first
output sample against the float64 reference (`ios_core.reference`; above the precision's
`ios_core.precision.TOLERANCE` the row says so in ``error``). The rows ``{model, batch, precision, mode, ms,
error_vs_reference, ...}`` and each call's GPU, driver, CUDA, cuDNN and torch versions go to ``--out``
(``results/h200/half_precision.json``), rewritten atomically after every row and read first: a call killed by its
time limit, or stopped by ``--budget-s``, resumes where it stopped (rows there are skipped; ``--retry-failed`` runs
those without a number again). The fast modes run first, the ``torch.compile`` ones after.

``--dry-run`` needs no GPU and no PyTorch: the engine modes get the simulated cost's latency of the same schedule
at the precision (``source: simulated``), the PyTorch ones no number; a real run replaces those rows.

Usage (device, one call of at most 10 minutes; repeat it until every row is there)::

    python3 bench/half_precision.py --device h200 --out $OUT/half_precision.json --budget-s 500

With ``--search COST_CACHE`` and an ``--ios-schedule`` template naming the batch and precision, IOS-Both is
searched for each row's batch and precision where the file is missing (judged end to end, stage costs kept in
COST_CACHE so the next call resumes), e.g. the command above with these two options added::

    --ios-schedule '$OUT/{model}_b{batch}_both_{device}_{precision}_measured.json' --search $OUT/stage_costs.jsonl
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from records import (
    BothSchedules,
    Call,
    RowFile,
    call_arguments,
    call_of,
    machine,
    missing_rows,
    network,
    one_line,
    schedule_arguments,
    schedules_of,
    tolerance_error,
)

from ios_core import models
from ios_core import schedule as S
from ios_core.baselines import get, measure
from ios_core.baselines.core import reference_first
from ios_core.config import device_profile
from ios_core.measure import simulated
from ios_core.models.zoo import build_module, calibrate_batch_norm
from ios_core.onnx_io import Network
from ios_core.precision import spec_of
from ios_core.reference import relative_error
from ios_core.weights import make_input

MODELS = ("inception_v3", "nasnet", "randwire", "squeezenet")
ENGINE_MODES = ("sequential", "ios_both")
TORCH_MODES = {"torch_cudagraph": "torch_cudagraph", "torch_compile_freeze": "torch_compile_freeze"}  # mode: framework
LIBRARY = {"inception_v3": "inception_v3", "nasnet": "nasnetalarge"}  # our model: its zoo network
FAST_MODES = ("sequential", "ios_both", "torch_cudagraph")
COMPILED_MODES = ("torch_compile_freeze", "lib_compile_freeze")
MODES = (*FAST_MODES, *COMPILED_MODES)
IOS_SCHEDULE = "schedules/{model}_b1_both_h200_fp32_measured.json"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Bench:
    """One call's settings: what every benchmark's call holds (`records.Call`), where IOS-Both's schedules come from
    (`records.BothSchedules`) and the engine's tuning cache."""

    call: Call
    schedules: BothSchedules = BothSchedules(str(ROOT / IOS_SCHEDULE))
    tune_cache: str | None = None


def key(row: dict[str, Any]) -> tuple:
    return row["model"], row["batch"], row["precision"], row["mode"]


# ---- our engine ----


def engine_schedule(graph, mode: str, batch: int, precision: str, bench: Bench) -> tuple[S.Schedule, str]:
    """The schedule of an engine mode and where it came from: IOS-Both's from `records.BothSchedules` (searched at
    the row's batch and precision where ``--search`` asks)."""
    if mode == "sequential":
        return S.sequential(graph), "sequential"
    path = bench.schedules.path(graph, batch, precision, bench.call, bench.tune_cache)
    return S.load(path, graph), str(path)


def float32_storage(plan: Any, network: Network, precision: str) -> str | None:
    """Why ``plan`` is no plan in a 16-bit ``precision`` (its weights take 4 bytes an element), or None."""
    stored = getattr(plan.stats, "weight_bytes", None)
    elements = sum(array.size for params in network.weights.values() for array in params.values())
    if spec_of(precision).element_bytes < 4 and stored is not None and stored >= 4 * elements:
        return (f"the engine has no {precision} path: its plan stores the weights in float32 ({stored} bytes for "
                f"{elements} weights)")
    return None


def engine_row(network: Network, mode: str, batch: int, precision: str, bench: Bench) -> dict[str, Any]:
    schedule, source = engine_schedule(network.graph, mode, batch, precision, bench)
    if bench.call.dry_run:
        ms = simulated(network.graph, schedule, batch, device_profile(bench.call.device), precision).samples_ms[0]
        return {"ms": ms, "schedule": source, "stages": len(schedule.stages)}
    from ios_core.engine import PlanOptions, build_plan, latency

    x = make_input(network.graph, batch)
    started = time.perf_counter()
    try:
        plan = build_plan(network.graph, schedule, batch, precision, network.weights,
                          PlanOptions(tune_cache=bench.tune_cache))
    except Exception as refused:  # noqa: BLE001 -- the engine's own reason, kept as the row's
        return {"ms": None, "error": f"the engine refuses {precision}: {one_line(refused)}", "schedule": source}
    try:
        reason = float32_storage(plan, network, precision)
        if reason:
            return {"ms": None, "error": reason, "schedule": source}
        out = plan(x)
        timed = latency(plan, bench.call.timing)
        expected = reference_first(network, x)
        error = relative_error(np.asarray(out[:1], dtype=np.float64).reshape(expected.shape), expected)
        return {"ms": timed.ms, "error_vs_reference": error, "error": tolerance_error(error, precision),
                "schedule": source,
                "stages": len(schedule.stages), "build_s": time.perf_counter() - started,
                "weight_bytes": plan.stats.weight_bytes, "arena_bytes": plan.stats.arena_bytes,
                "clocks_before": timed.clocks_before, "clocks_after": timed.clocks_after}
    finally:
        plan.close()


# ---- PyTorch: our graph as a module, and the library's own network ----


def torch_row(network: Network, mode: str, batch: int, precision: str, bench: Bench) -> dict[str, Any]:
    from ios_core import gpu

    before = gpu.clocks()
    m = measure(get(TORCH_MODES[mode]), network, batch, bench.call.timing, precision=precision)
    if m.status != "measured":
        return {"ms": None, "error": m.reason}
    return {"ms": m.median_ms, "error_vs_reference": m.rel_error, "error": tolerance_error(m.rel_error, precision),
            "setup_s": m.details.get("setup_s"), "clocks_before": before, "clocks_after": gpu.clocks()}


def library_row(model: str, batch: int, precision: str, bench: Bench) -> dict[str, Any]:
    """The library's own network under torch.compile with freezing, against itself in float64; its BatchNorm
    statistics measured on a random batch (`calibrate_batch_norm`), as a trained network's normalize its values."""
    import torch
    from engine_vs_torch import time_calls

    from ios_core.baselines.torch_adapters import Compile, compiled_call, set_precision

    x = make_input(models.get(model), batch)
    started = time.perf_counter()
    library = build_module(LIBRARY[model]).cuda()
    calibrate_batch_norm(library, torch.from_numpy(make_input(models.get(model), 8, seed=1)).float().cuda())
    with torch.inference_mode():  # float64 on the GPU: NasNet-A large takes minutes on a CPU
        expected = copy.deepcopy(library).double()(torch.from_numpy(x[:1]).cuda()).cpu().numpy()
    dtype = set_precision(torch, precision)
    torch.backends.cudnn.benchmark = True
    module = library.to(dtype).to(memory_format=torch.channels_last)
    static = torch.from_numpy(x).to(dtype).cuda().contiguous(memory_format=torch.channels_last)
    call = compiled_call(torch, module, static, Compile("reduce-overhead", freezing=True))
    with torch.inference_mode():
        out = call()[:1].double().cpu().numpy()
        timed = time_calls(call, bench.call.timing)
    error = relative_error(out, expected)
    return {"ms": timed["ms"], "error_vs_reference": error, "error": tolerance_error(error, precision),
            "network": LIBRARY[model], "setup_s": time.perf_counter() - started,
            "clocks_before": timed["clocks_before"], "clocks_after": timed["clocks_after"]}


def measure_row(model: str, batch: int, precision: str, mode: str, bench: Bench) -> dict[str, Any]:
    """One row: its number, or ``ms: null`` and the one-line reason there is none."""
    row = {"model": model, "batch": batch, "precision": precision, "mode": mode, "ms": None,
           "error_vs_reference": None, "error": None, "source": bench.call.source}
    if bench.call.dry_run and mode not in ENGINE_MODES:
        return {**row, "error": "dry run: PyTorch is not timed"}
    try:
        if mode in ENGINE_MODES:
            found = engine_row(network(model), mode, batch, precision, bench)
        elif mode in TORCH_MODES:
            found = torch_row(network(model), mode, batch, precision, bench)
        else:
            found = library_row(model, batch, precision, bench)
    except Exception as error:  # noqa: BLE001 -- one failing mode must not lose the others
        found = {"ms": None, "error": one_line(error)}
    return {**row, **found}


def planned(args: argparse.Namespace) -> list[tuple[str, int, str, str]]:
    """Every row of this run, ``(model, batch, precision, mode)``: the fast modes first, then the compiled ones."""
    return [(model, batch, precision, mode)
            for modes in (FAST_MODES, COMPILED_MODES)
            for precision in args.precisions
            for batch in args.batches
            for model in args.models
            for mode in modes
            if mode in args.modes and (mode != "lib_compile_freeze" or model in LIBRARY)]


def run(bench: Bench, args: argparse.Namespace) -> RowFile:
    """Every planned row not yet in the output, until the budget is spent."""
    call = bench.call
    settings = {"timing": vars(call.timing), "ios_schedule": bench.schedules.template,
                "search": bench.schedules.cost_cache, "device": call.device}
    rows = RowFile(call.out, "half_precision", machine(call, with_torch=True), settings, key)
    for row in missing_rows(rows, call, planned(args), lambda wanted: measure_row(*wanted, bench)):
        ms = "-" if row["ms"] is None else f"{row['ms']:.3f}"
        print(f"{row['model']:13s} b{row['batch']:<4d} {row['precision']:5s} {row['mode']:21s} {ms:>9s} ms  "
              f"{row['error'] or ''}", flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table: one line per model, batch and precision, one column per mode (ms), and IOS-Both over
    torch.compile + freezing; then, per batch and precision, that ratio's geometric mean over the models where both
    have a number and no output error (issue 17's summary)."""
    cells: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        good = row["ms"] if not row.get("error") else None
        cells.setdefault((row["model"], row["batch"], row["precision"]), {})[row["mode"]] = good
    lines = ["| model | batch | precision | " + " | ".join(MODES) + " | IOS-Both over torch.compile |",
             "|---|---|---|" + "---|" * (len(MODES) + 1)]
    ratios: dict[tuple[int, str], list[float]] = {}
    for (model, batch, precision), times in cells.items():
        shown = [f"{times[m]:.3f}" if times.get(m) is not None else "-" for m in MODES]
        ours, theirs = times.get("ios_both"), times.get("torch_compile_freeze")
        ratio = theirs / ours if ours and theirs else None
        if ratio is not None:
            ratios.setdefault((batch, precision), []).append(ratio)
        lines.append(f"| {model} | {batch} | {precision} | " + " | ".join(shown) + " | "
                     + (f"{ratio:.2f}x" if ratio is not None else "-") + " |")
    for (batch, precision), found in sorted(ratios.items()):
        lines.append(f"geometric mean, batch {batch} {precision}: {math.prod(found) ** (1 / len(found)):.2f}x "
                     f"over {len(found)} models")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS))
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 16])
    parser.add_argument("--batch-128", action="store_true", help="batch 128 too, after 1 and 16")
    parser.add_argument("--bf16", action="store_true", help="bf16 too, after fp16")
    parser.add_argument("--modes", type=lambda s: s.split(","), default=list(MODES))
    schedule_arguments(parser, str(ROOT / IOS_SCHEDULE))
    parser.add_argument("--tune-cache", default=None)
    call_arguments(parser, "start no row once the call has lasted this", "no GPU: the engine modes' simulated latency",
                   row_timeout=True)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "h200" / "half_precision.json")
    args = parser.parse_args(argv)
    args.batches += [128] if args.batch_128 and 128 not in args.batches else []
    args.precisions = ["fp16", "bf16"] if args.bf16 else ["fp16"]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        parser.error(f"unknown modes {unknown}; known: {', '.join(MODES)}")
    bench = Bench(call_of(args), schedules_of(args), args.tune_cache)
    print(table(run(bench, args).rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
