"""Experiment 2 side by side on one GPU, in one process: IOS-Both on our engine against every framework (issue 20).

For each model (inception_v3, nasnet, randwire, squeezenet) and batch (1 and 16), in ``fp32`` (TF32 allowed in
convolutions: PyTorch's cuDNN default and the engine's), on the same deterministic weights and input:

- ``ios_both``: `ios_core.engine.build_plan` of the committed IOS-Both schedule (``--ios-schedule``, by default
  ``schedules/<model>_b<batch>_both_h200_fp32_measured.json``; where that file is missing, searched into it at the
  row's batch with ``--search COST_CACHE`` (the measured cost, judged end to end), else batch 1's: the row names the
  file; `records.BothSchedules`), replayed as one CUDA graph;
- every framework of `ios_core.baselines.FRAMEWORKS` that runs on a GPU, through `ios_core.baselines.measure`: PyTorch
  eager, one CUDA graph, torch.compile (reduce-overhead with and without freezing; max-autotune with freezing), XLA
  through JAX, hidet, ONNX Runtime (CUDA); TensorRT, TVM-cuDNN, TASO and TensorFlow, which are not obtainable on the
  lent machine, get ``ms: null``, ``available: false`` and the framework's own reason (``available()``).

Every latency is the median over ``--repeat`` samples of the mean of ``--number`` calls after ``--warmup``: CUDA
events on the engine and PyTorch's stream, the wall clock until the output is ready for JAX (the row's ``clock``);
NVML's clocks are read before and after. ``error_vs_reference`` is the relative L2 error of the first output sample
against the float64 reference (`ios_core.reference`); above `ios_core.precision.TOLERANCE` the row says so in
``error`` and the table marks it. The fast frameworks run first, then torch.compile's, then the slow ones (hidet,
max-autotune: minutes of compiling a row). torch.compile's rows share Inductor's cache ``--inductor-cache``
(git-ignored, kept on a warm machine), so a call killed while compiling leaves the next call less to do;
``--row-timeout-s`` stops a row that compiles longer and keeps it as a failed row with that reason (the rows after
it still run; ``--retry-failed`` tries it again on the warmer cache).

``--out`` (``results/h200/frameworks.json``) holds the rows ``{model, batch, precision, framework, ms,
error_vs_reference, available, reason, ...}`` and, per call, the GPU, driver, CUDA, cuDNN, torch, jax and hidet
versions and the clocks; it is rewritten atomically after every row and read first, so a call stopped by its time
limit or by ``--budget-s`` resumes where it stopped (``--retry-failed`` runs the rows without a number again). Every
measurement is also a record of the project's schema (`records`: ``measure`` for the engine, ``baseline`` for a
framework, unavailable ones included), packed in ``<out>.records.tar.gz`` beside it.

``--dry-run`` needs no GPU: ``ios_both`` gets the simulated cost's latency of the same schedule (``source:
simulated``), each framework its availability here and no number. ``--table`` prints the README's table from
``--out`` (ms per framework, IOS-Both over the best framework with a correct output); ``--figure <png>`` draws
experiment 2's figure from it (`ios_core.figures.latency.frameworks_of_rows`).

Usage (device): here once ``../shared/gpu/stage-wheels && sh bench/hidet_wheels.sh``, which puts hidet, what the GPU
machine lacks of its dependencies and the wheels of .gpu-wheels this benchmark needs in ``.hidet-wheels`` (.gpu-wheels
and hidet's do not fit the 64 MiB that travel together); then calls of at most 10 minutes carrying ``.hidet-wheels``
alone, each resuming the last (copy both files of $OUT back to results/h200/ after each call)::

    python3 -m pip install -q --no-index --no-deps --upgrade --target /tmp/site .hidet-wheels/*.whl && \\
    export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 && cp results/h200/frameworks.json* $OUT/ 2>/dev/null; \\
    python3 bench/frameworks.py --device h200 --out $OUT/frameworks.json --budget-s 420

    python3 bench/frameworks.py --table --figure results/figures/h200/campaign/frameworks_side_by_side.png
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from records import (
    BothSchedules,
    Call,
    RecordPack,
    RowFile,
    Run,
    baseline_record,
    call_arguments,
    call_of,
    machine,
    measure_record,
    missing_rows,
    names_of,
    network,
    schedule_arguments,
    schedules_of,
    tolerance_error,
)

from ios_core import models
from ios_core import schedule as S
from ios_core.baselines import FRAMEWORKS, get, measure
from ios_core.baselines.core import reference_first, versions
from ios_core.config import device_profile
from ios_core.errors import one_line
from ios_core.measure import simulated
from ios_core.onnx_io import Network
from ios_core.reference import relative_error
from ios_core.weights import make_input

MODELS = ("inception_v3", "nasnet", "randwire", "squeezenet")
PRECISION = "fp32"
IOS = "ios_both"
SLOW = ("hidet", "torch_compile_max_autotune")  # minutes of compiling a row: after everything else
GPU_FRAMEWORKS = tuple(name for name, f in FRAMEWORKS.items() if f.device == "cuda")
COMPILED = tuple(name for name in GPU_FRAMEWORKS if name.startswith("torch_compile") and name not in SLOW)
FAST = (IOS, *(name for name in GPU_FRAMEWORKS if name not in COMPILED + SLOW))
ORDER = (*FAST, *COMPILED, *SLOW)
IOS_SCHEDULE = "schedules/{model}_b{batch}_both_h200_fp32_measured.json"
VERSIONS = ("torch", "triton", "jax", "jaxlib", "jax-cuda13-plugin", "hidet", "onnxruntime", "onnxruntime-gpu")
NOT_RUN = "dry run: not run"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Bench:
    """One call's settings: what every benchmark's call holds (`records.Call`), where IOS-Both's schedules come from
    (`records.BothSchedules`), and the engine's and Inductor's caches."""

    call: Call
    schedules: BothSchedules = BothSchedules(str(ROOT / IOS_SCHEDULE))
    tune_cache: str | None = None
    inductor_cache: str | None = None


def key(row: dict[str, Any]) -> tuple:
    return row["model"], row["batch"], row["precision"], row["framework"]


def engine_row(net: Network, batch: int, bench: Bench, pack: RecordPack | None) -> dict[str, Any]:
    """IOS-Both on the engine (or, in a dry run, its simulated latency)."""
    call = bench.call
    path = bench.schedules.path(net.graph, batch, PRECISION, call, bench.tune_cache)
    if not path.exists():
        return {"available": False, "status": "unavailable", "reason": f"no IOS-Both schedule {path}"}
    schedule = S.load(path, net.graph)
    found = {"schedule": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
             "stages": len(schedule.stages)}
    if call.dry_run:
        ms = simulated(net.graph, schedule, batch, device_profile(call.device), PRECISION).samples_ms[0]
        return {**found, "ms": ms, "status": "simulated", "clock": "simulated"}
    from ios_core.engine import PlanOptions, build_plan, latency

    x, options, started = make_input(net.graph, batch), PlanOptions(tune_cache=bench.tune_cache), time.perf_counter()
    plan = build_plan(net.graph, schedule, batch, PRECISION, net.weights, options)
    try:
        out = plan(x)
        timed = latency(plan, call.timing)
    finally:
        plan.close()
    expected = reference_first(net, x)
    error = relative_error(np.asarray(out[:1], dtype=np.float64).reshape(expected.shape), expected)
    run = Run(net.name, batch, call.device, PRECISION, {"benchmark": "frameworks"})
    pack.add(f"{net.name}_b{batch}_{IOS}.json", measure_record(run, schedule, found["schedule"], [timed], options,
                                                               {"rel_error": error}))
    return {**found, "ms": timed.ms, "status": "measured", "error_vs_reference": error,
            "error": tolerance_error(error, PRECISION), "clock": "cuda-events",
            "setup_s": time.perf_counter() - started, "clocks_before": timed.clocks_before,
            "clocks_after": timed.clocks_after}


def framework_row(net: Network, name: str, batch: int, bench: Bench, pack: RecordPack | None) -> dict[str, Any]:
    """A framework measured by `ios_core.baselines.measure` (in a dry run: only whether it is available here)."""
    framework, call = get(name), bench.call
    if call.dry_run:
        ok, reason = framework.available()
        return {"available": ok, "status": "not run" if ok else "unavailable", "reason": reason or NOT_RUN}
    from ios_core import gpu

    options = {"inductor_cache_dir": bench.inductor_cache} if bench.inductor_cache and "compile" in name else {}
    before = gpu.clocks()
    m = measure(framework, net, batch, call.timing, precision=PRECISION, options=options)
    after = gpu.clocks()
    pack.add(f"{net.name}_b{batch}_{name}.json", baseline_record(Run(net.name, batch, call.device, PRECISION,
                                                                     {"benchmark": "frameworks"}), m, call.timing))
    return {"ms": m.median_ms, "error_vs_reference": m.rel_error, "error": tolerance_error(m.rel_error, PRECISION),
            "available": m.available, "status": m.status, "reason": m.reason, "clock": m.clock, "device": m.device,
            "setup_s": m.details.get("setup_s"), "versions": m.versions, "clocks_before": before,
            "clocks_after": after}


def measure_row(model: str, batch: int, name: str, bench: Bench, pack: RecordPack | None) -> dict[str, Any]:
    """One row: its number, or ``ms: null`` and the one-line reason there is none."""
    row = {"model": model, "batch": batch, "precision": PRECISION, "framework": name, "ms": None,
           "error_vs_reference": None, "error": None, "available": True, "reason": "", "source": bench.call.source}
    try:
        if name == IOS:
            found = engine_row(network(model), batch, bench, pack)
        else:
            found = framework_row(network(model), name, batch, bench, pack)
    except Exception as error:  # noqa: BLE001 -- one failing row must not lose the others
        found = {"reason": one_line(error), "status": "failed"}
    if not bench.call.dry_run:
        release_gpu_memory()
    return {**row, **found}


def release_gpu_memory() -> None:
    """Drop the last row's plans, engines and compiled graphs before the next (PyTorch's cache if it is loaded)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def planned(models_: list[str], batches: list[int], frameworks: list[str]) -> list[tuple[str, int, str]]:
    """Every row of this run, ``(model, batch, framework)``: the fast ones first, then torch.compile's, batch by
    batch; then each slow framework in turn (one whose compiling outlasts the calls holds up only its own rows)."""
    ordered = [(model, batch, name) for group in (FAST, COMPILED) for batch in batches for model in models_
               for name in group]
    ordered += [(model, batch, name) for name in SLOW for batch in batches for model in models_]
    return [wanted for wanted in ordered if wanted[2] in frameworks]


def environment(call: Call) -> dict[str, Any]:
    """Where the call ran (`records.machine`, PyTorch's versions included) and the frameworks' versions."""
    return {**machine(call, with_torch=True), "versions": versions(*VERSIONS)}


def run(bench: Bench, wanted: list[tuple[str, int, str]]) -> RowFile:
    """Every wanted row not yet in the output, until the budget is spent."""
    call = bench.call
    settings = {"timing": asdict(call.timing), "ios_schedule": bench.schedules.template,
                "search": bench.schedules.cost_cache, "device": call.device,
                "precision": PRECISION, "tune_cache": bench.tune_cache, "inductor_cache": bench.inductor_cache}
    rows = RowFile(call.out, "frameworks", environment(call), settings, key)
    pack = None if call.dry_run else RecordPack(call.out.with_name(call.out.name + ".records.tar.gz"))
    keys = [(model, batch, PRECISION, name) for model, batch, name in wanted]
    for row in missing_rows(rows, call, keys, lambda k: measure_row(k[0], k[1], k[3], bench, pack)):
        ms = "-" if row["ms"] is None else f"{row['ms']:.3f}"
        print(f"{row['model']:13s} b{row['batch']:<3d} {row['framework']:27s} {ms:>9s} ms  "
              f"{row['error'] or row['reason']}", flush=True)
    return rows


def table(document: dict[str, Any]) -> str:
    """The README's table: one line per model and batch, ms per framework (``n/a``: not available, ``failed``, ``*``:
    output above tolerance); IOS-Both over the fastest framework with a correct output. Frameworks available nowhere
    are a note below, with their reasons."""
    rows = sorted(document["rows"], key=lambda r: (r["batch"], MODELS.index(r["model"]) if r["model"] in MODELS
                                                   else len(MODELS), r["model"]))
    names = [n for n in ORDER if any(r["framework"] == n for r in rows)]
    nowhere = [n for n in names if n != IOS and not any(r["framework"] == n and r["available"] for r in rows)]
    columns = [n for n in names if n not in nowhere]
    cells: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        cells.setdefault((r["model"], r["batch"]), {})[r["framework"]] = r
    from ios_core.figures.latency import FRAMEWORK_LABELS

    labels = [FRAMEWORK_LABELS.get(n, "IOS-Both") for n in columns]
    lines = ["| model | batch | " + " | ".join(labels) + " | IOS-Both over the best |", "|---|---|" + "---|" *
             (len(columns) + 1)]
    for (model, batch), found in cells.items():
        correct = {n: r["ms"] for n, r in found.items() if r["ms"] is not None and not r["error"]}
        best = min((ms for n, ms in correct.items() if n != IOS), default=None)
        ratio = f"{best / correct[IOS]:.2f}x" if best and correct.get(IOS) else "-"
        lines.append(f"| {model} | {batch} | " + " | ".join(cell(found.get(n)) for n in columns) + f" | {ratio} |")
    reasons = {n: next(r["reason"] for r in rows if r["framework"] == n) for n in nowhere}
    lines += ["", *(f"- {FRAMEWORK_LABELS.get(n, n)}: not available ({reason})" for n, reason in reasons.items())]
    failed = [f"- {r['framework']} {r['model']} b{r['batch']}: {' '.join((r['error'] or r['reason']).split())}"
              for r in rows if r["framework"] in columns and (r["error"] or (r["ms"] is None and r["available"]))]
    return "\n".join(lines + failed).rstrip()


def cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "-"
    if row["ms"] is not None:
        return f"{row['ms']:.3f}" + ("*" if row["error"] else "")
    return "n/a" if not row["available"] else ("-" if row["reason"] == NOT_RUN else "failed")


def caption(document: dict[str, Any]) -> str:
    """Where the numbers of ``document`` were measured: the last call's GPU, driver and versions."""
    env = document["environments"][-1]
    torch = env.get("torch", {}).get("torch") or env["versions"].get("torch", "-")
    return (f"{env.get('name')}, driver {env.get('driver', '-')}, cuDNN {env.get('cudnn', '-')}, torch {torch}, "
            f"jax {env['versions'].get('jax', '-')}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=names_of(models.names()), default=list(MODELS))
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 16])
    parser.add_argument("--frameworks", type=names_of(ORDER), default=list(ORDER), help="default: ios_both and every "
                        "GPU framework of ios_core.baselines")
    schedule_arguments(parser, str(ROOT / IOS_SCHEDULE))
    parser.add_argument("--tune-cache", default=None, help="the engine's cuDNN autotuning cache (JSON)")
    parser.add_argument("--inductor-cache", default=str(ROOT / ".inductor-cache"),
                        help="Inductor's cache directory, reused by a later call")
    call_arguments(parser, "start no row once the call has lasted this",
                   "no GPU: IOS-Both's simulated latency, no framework", row_timeout=True)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "h200" / "frameworks.json")
    parser.add_argument("--table", action="store_true", help="print the README table of --out and stop")
    parser.add_argument("--figure", type=Path, default=None, help="draw experiment 2's figure of --out here and stop")
    args = parser.parse_args(argv)
    if args.table or args.figure:
        return report(args.out, args.table, args.figure)
    bench = Bench(call_of(args), schedules_of(args), args.tune_cache, args.inductor_cache)
    rows = run(bench, planned(args.models, args.batches, args.frameworks))
    print(table({"rows": rows.rows, "environments": rows.environments}))
    return 0


def report(out: Path, show_table: bool, png: Path | None) -> int:
    """The README table and experiment 2's figure from the rows at ``out``."""
    document = json.loads(out.read_text())
    if show_table:
        where = "Measured on" if document["environments"][-1]["source"] == "measured" else "Dry run,"
        print(f"{where} {caption(document)} (ms):\n\n{table(document)}")
    if png:
        from ios_core.figures.common import themed
        from ios_core.figures.latency import frameworks_of_rows

        with themed():
            written = frameworks_of_rows(document["rows"], png.with_suffix(""), document["environments"][-1]["name"])
        print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
