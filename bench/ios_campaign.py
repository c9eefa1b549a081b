"""Experiment 1 of IOS on our engine, measured: five schedule types per model, searched and run on one GPU.

For each model (in order, while the wall budget lasts) at one batch size, TF32 allowed (``fp32``):

1. search IOS-Both (r=3, s=8) with the ``measured`` cost on a cold stage cache -- every candidate
   stage built alone and timed in a CUDA graph -- then IOS-Parallel, IOS-Merge, Sequential and
   Greedy on the same cache (they profile only the stages Both did not ask for). Per search: DP
   states and transitions, distinct stages, stages profiled, profiling seconds, DP seconds;
2. build each schedule as one plan and time all five side by side (rounds in rotating order, each
   `latency` = median of ``repeat`` means of ``number`` CUDA-graph replays; the median of the
   rounds), check each output against Sequential's, and set each end-to-end latency against its
   predicted one (the sum of its measured stage latencies);
3. the critical-path bound: the longest dependency chain with every operator at its latency alone;
4. with ``--frameworks``, the PyTorch baselines (`ios_core.baselines`) on the same network, weights and
   input, in the same process right after, timed the same way (``--e2e-*``): the ratio of the best of
   them to IOS-Both is a side-by-side number.

Then, once, the entry point a user runs -- ``python -m ios_core.optimize model=<first> cost=measured``
-- on the warm cache: it must profile nothing and write the same IOS-Both schedule.

Writes under ``--out``: ``ios_<device>.json`` (everything above, with GPU, driver, cuDNN and clocks),
``schedules_<device>.json`` (every schedule), ``stage_costs.jsonl`` (the stage cache, reusable with
``cost.cache=``) and ``tune.json`` (the convolution autotuning cache); prints a table last.
``--simulate`` runs the same code without a GPU: a fake stage backend, numpy-simulated outputs.

Usage (device): ``python3 bench/ios_campaign.py --out $OUT --tune-cache .tunecache/tune_h100.json``

A search longer than one device call (RandWire: 161k stages) resumes from its stage cache: end the
campaign with ``timeout`` inside the call, bring ``stage_costs.jsonl`` back compressed (files over
16 MiB do not come back), and pass it to the next call as ``--cache stage_costs.jsonl.gz``::

    timeout 540 python3 bench/ios_campaign.py --out /tmp/c --models randwire ...
    gzip -c /tmp/c/stage_costs.jsonl > $OUT/stage_costs.jsonl.gz
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from ios_core import models
from ios_core.baselines import get as get_framework
from ios_core.baselines import measure as measure_framework
from ios_core.cost import CachedCost, CostSpec, DeviceProfile, build_cost, schedule_latency
from ios_core.cost.bound import critical_path
from ios_core.cost.measured import MeasuredCost, MeasureSettings
from ios_core.engine import PlanOptions
from ios_core.engine.profile import SerialBackend, StageProfiler
from ios_core.files import write_atomic
from ios_core.gpu import environment_inputs
from ios_core.onnx_io import Network
from ios_core.optimizer import OptimizerOptions, search
from ios_core.reference import relative_error
from ios_core.schedule import Schedule, to_json
from ios_core.timing import Timing
from ios_core.weights import make_input, make_weights

ROOT = Path(__file__).resolve().parents[1]
SEARCH_ORDER = ("both", "parallel", "merge", "sequential", "greedy")  # Both first: it alone meets a cold cache
TABLE_ORDER = ("sequential", "greedy", "merge", "parallel", "both")
LABELS = {"sequential": "Sequential", "greedy": "Greedy", "merge": "IOS-Merge", "parallel": "IOS-Parallel",
          "both": "IOS-Both"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- the two harnesses: the GPU, and a dry run without one ----------------------------------------------------------


class GpuHarness:
    """The measured cost and end-to-end timing on the GPU through the engine."""

    simulated = False

    def __init__(self, args: argparse.Namespace) -> None:
        from ios_core.engine import environment

        self.args = args
        self.environment = environment_inputs(environment())  # what the schedules' meta names
        name = self.environment["name"]
        self.device = "h200" if "H200" in name else "h100"

    def cost(self, cache: Path) -> CachedCost:
        spec = CostSpec(kind="measured", precision="fp32", cache=str(cache), timing=profile_timing(self.args),
                        autotune=True, tune_cache=self.args.tune_cache)
        return build_cost(spec, DeviceProfile(name=self.device, real=True))

    def describe(self) -> dict:
        from ios_core import gpu
        from ios_core.engine import environment

        return {**environment(), "clocks": gpu.clocks()}

    def end_to_end(self, graph, schedules: dict[str, Schedule], batch: int) -> dict[str, dict]:
        """Every schedule as one plan; outputs against Sequential's; latencies side by side in rotating rounds."""
        from ios_core.engine import build_plan, latency

        a, weights, x = self.args, make_weights(graph), make_input(graph, batch)
        plans, rows = {}, {}
        for opt, schedule in schedules.items():
            started = time.perf_counter()
            plans[opt] = build_plan(graph, schedule, batch, "fp32", weights, PlanOptions(tune_cache=a.tune_cache))
            rows[opt] = {"output": plans[opt](x), "build_s": time.perf_counter() - started,
                         "streams": plans[opt].program.streams, "arena_bytes": plans[opt].program.arena_bytes,
                         "graph_nodes": plans[opt].captured.node_count, "rounds": []}
        order = list(schedules)
        for r in range(a.rounds):
            for opt in order[r % len(order):] + order[:r % len(order)]:
                m = latency(plans[opt], end_to_end_timing(a))
                rows[opt]["rounds"].append({"ms": m.ms, "samples": list(m.samples), "clocks_before": m.clocks_before,
                                            "clocks_after": m.clocks_after})
        for plan in plans.values():
            plan.close()
        return finish_rows(rows)


class SimBackend(SerialBackend):
    """A stand-in for the GPU: 3 us per task on the longest stream plus 1 us per extra stream."""

    def time(self, program, timing: Timing | None) -> float:
        return sum(max((3e-3 * len(s) for s in stage), default=0.0) + 1e-3 * max(len(stage) - 1, 0)
                   for stage in program.stages)


class SimHarness:
    """The same campaign without a GPU: every stage is still lowered alone, only its timing is made up."""

    simulated = True
    device = "sim"

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.environment = {"name": "simulated", "driver": "none", "cuda": "none", "cudnn": "none"}

    def cost(self, cache: Path) -> CachedCost:
        timing = profile_timing(self.args)
        inner = MeasuredCost(MeasureSettings(), lambda g, b: StageProfiler(g, b, SimBackend(), timing),
                             self.environment)
        return CachedCost(inner, inner.space, cache)

    def describe(self) -> dict:
        return dict(self.environment)

    def end_to_end(self, graph, schedules: dict[str, Schedule], batch: int) -> dict[str, dict]:
        from ios_core.engine import lower, simulate

        weights, x = make_weights(graph), make_input(graph, batch)
        rows = {}
        for opt, schedule in schedules.items():
            program = lower(graph, schedule, batch)
            small = len(graph.operators) <= 40
            out = simulate(program, graph, weights, {graph.input.name: x})[graph.output] if small else None
            ms = 0.9 * sum(SimBackend().time(lower(graph, [s], batch), None) for s in schedule.stages)
            rows[opt] = {"output": out, "build_s": 0.0, "streams": program.streams, "arena_bytes": program.arena_bytes,
                         "graph_nodes": None, "rounds": [{"ms": ms, "samples": [ms]}]}
        return finish_rows(rows)


def profile_timing(args: argparse.Namespace) -> Timing:
    """How each stage is profiled (``--warmup``, ``--number``, ``--repeat``)."""
    return Timing(warmup=args.warmup, number=args.number, repeat=args.repeat)


def end_to_end_timing(args: argparse.Namespace) -> Timing:
    """How each schedule and framework is timed end to end (``--e2e-*``)."""
    return Timing(warmup=args.e2e_warmup, number=args.e2e_number, repeat=args.e2e_repeat)


def finish_rows(rows: dict[str, dict]) -> dict[str, dict]:
    """Median of the rounds; each output's relative error against Sequential's (then the outputs are dropped)."""
    reference = rows.get("sequential", {}).get("output")
    for row in rows.values():
        row["ms"] = statistics.median(r["ms"] for r in row["rounds"])
        out = row.pop("output")
        row["rel_error_vs_sequential"] = None if out is None or reference is None else relative_error(out, reference)
    return rows


def add_frameworks(row: dict, args: argparse.Namespace, save: Callable[[], None]) -> None:
    """The baselines of ``args.frameworks`` into a model's row, on the campaign's network and weights (seed 0),
    timed like the schedules (or why one cannot run); saved after each, as a compile may outlast the call."""
    graph, both = models.get(row["model"]), row["summary"]["both"]["ms"]
    network, timing = Network.of(graph), end_to_end_timing(args)
    row["frameworks"] = {}
    for name in args.frameworks:
        m = measure_framework(get_framework(name), network, args.batch, timing, precision="fp32")
        row["frameworks"][name] = m.to_dict()
        log(f"{graph.name} {name}: {m.status} {'' if m.median_ms is None else f'{m.median_ms:.4f} ms'} {m.reason}")
        measured = {n: r["median_ms"] for n, r in row["frameworks"].items() if r["status"] == "measured"}
        if measured:
            best = min(measured, key=measured.get)
            row["best_framework"] = {"name": best, "ms": measured[best], "both_speedup": measured[best] / both}
        save()


# ---- one model ----------------------------------------------------------------------------------------------------


def profiler_stats(cost: CachedCost) -> dict:
    """The stage profilers' statistics, summed over the graphs and batches profiled so far."""
    total: dict = {}
    for profiler in getattr(cost.inner, "profilers", []):
        for key, value in profiler.stats.as_dict().items():
            total[key] = total.get(key, [] if isinstance(value, list) else 0) + value
    return total


def search_all(graph, cost: CachedCost, harness, args: argparse.Namespace) -> tuple[dict, dict]:
    """Each schedule type searched on the shared cost, in `SEARCH_ORDER`; the schedules and their statistics."""
    schedules, stats = {}, {}
    for opt in SEARCH_ORDER:
        misses, spent, started = cost.stats.misses, cost.stats.cost_seconds, time.perf_counter()

        def progress(done: int, total: int, misses: int = misses, started: float = started, opt: str = opt) -> None:
            log(f"  {opt}: {done}/{total} operators placed, {cost.stats.misses - misses} stages profiled, "
                f"{time.perf_counter() - started:.1f} s")

        result = search(graph, cost, args.batch, OptimizerOptions(opt, args.r, args.s, args.max_part_size),
                        progress=progress if opt == "both" else None)
        cost.flush()
        s = result.stats
        row = {"dp_states": s.states, "transitions": s.transitions, "distinct_stages": s.stages,
               "stages_profiled": cost.stats.misses - misses, "profiling_s": cost.stats.cost_seconds - spent,
               "search_s": s.seconds, "cost_s": s.cost_seconds, "dp_s": s.seconds - s.cost_seconds,
               "predicted_ms": result.latency_ms, "stages": len(result.schedule.stages)}
        stats[opt] = row
        meta = {"model": graph.name, "device": harness.device, "precision": "fp32", **result.schedule.meta,
                "latency_label": cost.kind, "cost_evaluations": row["stages_profiled"], "gpu": harness.environment}
        schedules[opt] = Schedule(graph.name, result.schedule.stages, meta)
        log(f"{graph.name} {opt:10s} {len(result.schedule.stages):3d} stages  predicted {result.latency_ms:.4f} ms  "
            f"states {s.states}  stages {s.stages}  profiled {row['stages_profiled']} in {row['profiling_s']:.1f} s  "
            f"DP {row['dp_s']:.1f} s")
    return schedules, stats


def run_model(name: str, harness, args: argparse.Namespace, cache: Path) -> tuple[dict, dict]:
    graph = models.get(name)
    started = time.perf_counter()
    with harness.cost(cache) as cost:
        schedules, stats = search_all(graph, cost, harness, args)
        profiled = profiler_stats(cost)
        bound = critical_path(graph, cost, args.batch)
        predicted = {opt: schedule_latency(cost, graph, schedules[opt], args.batch) for opt in schedules}
        space = cost.space
    log(f"{name}: searches done in {time.perf_counter() - started:.1f} s; running the five schedules")
    e2e = harness.end_to_end(graph, {opt: schedules[opt] for opt in TABLE_ORDER}, args.batch)
    seq = e2e["sequential"]["ms"]
    row = {
        "model": name, "operators": len(graph.operators), "batch": args.batch, "cost_space": space,
        "search": stats, "profiler": profiled, "end_to_end": e2e,
        "summary": {opt: {"ms": e2e[opt]["ms"], "speedup_vs_sequential": seq / e2e[opt]["ms"],
                          "predicted_ms": predicted[opt],
                          "prediction_error": (predicted[opt] - e2e[opt]["ms"]) / e2e[opt]["ms"],
                          "rel_error_vs_sequential": e2e[opt]["rel_error_vs_sequential"]} for opt in TABLE_ORDER},
        "critical_path": {"ms": bound.ms, "chain": list(bound.chain),
                          "both_over_bound": e2e["both"]["ms"] / bound.ms if bound.ms else None,
                          "sequential_over_bound": seq / bound.ms if bound.ms else None},
        "both_slower_than_sequential": e2e["both"]["ms"] > seq,
        "seconds": time.perf_counter() - started,
    }
    return row, schedules


# ---- the entry point a user runs, on the warm cache --------------------------------------------------------------


def cli_check(name: str, harness, args: argparse.Namespace, cache: Path, expected: Schedule, work: Path) -> dict:
    """``python -m ios_core.optimize`` on the warm cache: it must profile nothing and find the same schedule."""
    out = work / f"cli_{name}.json"
    cost = ["cost=simulated", "device=sim"] if harness.simulated else [
        "cost=measured", f"device={harness.device}", f"cost.tune_cache={args.tune_cache}"]
    command = [sys.executable, "-m", "ios_core.optimize", f"model={name}", f"batch={args.batch}", "opt=both",
               f"r={args.r}", f"s={args.s}", *cost, f"cost.cache={cache}", f"output={out}", "progress=false"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.cli_timeout_s, cwd=ROOT)
    row = {"command": " ".join(command[1:]), "returncode": done.returncode, "seconds": time.perf_counter() - started,
           "stdout": done.stdout[-2000:], "stderr": done.stderr[-2000:]}
    if done.returncode == 0:
        written = json.loads(out.read_text())
        row["cost_evaluations"] = written["meta"].get("cost_evaluations")
        row["same_schedule_as_campaign"] = written["stages"] == json.loads(to_json(expected))["stages"]
    log(f"CLI check: rc {done.returncode}, {row.get('cost_evaluations')} stages profiled, "
        f"same schedule {row.get('same_schedule_as_campaign')}, {row['seconds']:.1f} s")
    return row


# ---- output -------------------------------------------------------------------------------------------------------


def table(results: dict) -> str:
    lines = ["| model | " + " | ".join(LABELS[o] for o in TABLE_ORDER) + " | Both speedup | bound | Both/bound |"
             " states | profiled | profiling s | DP s | best framework | Both over it |", "|---" * 16 + "|"]
    for row in results["models"].values():
        s, both = row["summary"], row["search"]["both"]
        cells = [f"{s[o]['ms']:.3f} ({s[o]['predicted_ms']:.3f})" for o in TABLE_ORDER]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + f" | {s['both']['speedup_vs_sequential']:.2f}x | "
                     f"{row['critical_path']['ms']:.3f} | {row['critical_path']['both_over_bound']:.2f} | "
                     f"{both['dp_states']} | {both['stages_profiled']} | {both['profiling_s']:.1f} | "
                     f"{both['dp_s']:.1f} | " + _best_cells(row.get("best_framework")) + " |")
    return "ms end-to-end (predicted: sum of measured stages)\n" + "\n".join(lines)


def _best_cells(best: dict | None) -> str:
    return "n/a | n/a" if best is None else f"{best['name']} {best['ms']:.3f} | {best['both_speedup']:.2f}x"


def save(results: dict, schedules: dict, out: Path, device: str) -> None:
    write_atomic(out / f"ios_{device}.json", json.dumps(results, indent=1, default=str))
    bundle = {f"{model}_b{results['args']['batch']}_{opt}_{device}_measured": json.loads(to_json(schedule))
              for model, by_opt in schedules.items() for opt, schedule in by_opt.items()}
    write_atomic(out / f"schedules_{device}.json", json.dumps(bundle, indent=1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", type=lambda s: s.split(","), default=["inception_v3", "squeezenet"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--r", type=int, default=3)
    parser.add_argument("--s", type=int, default=8)
    parser.add_argument("--max-part-size", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=2, help="stage profiling (IOS: 2, 6, 6)")
    parser.add_argument("--number", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--e2e-warmup", type=int, default=10)
    parser.add_argument("--e2e-number", type=int, default=20)
    parser.add_argument("--e2e-repeat", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="end-to-end rounds over the five schedules")
    parser.add_argument("--tune-cache", default=None, help="the engine's autotuning cache (copied, then updated)")
    parser.add_argument("--cache", type=Path, default=None, help="a stage cache to start from (copied; .gz too)")
    parser.add_argument("--budget-s", type=float, default=380.0, help="start no new model after this many seconds")
    parser.add_argument("--cli-timeout-s", type=float, default=90.0)
    parser.add_argument("--no-cli-check", action="store_true")
    parser.add_argument("--simulate", action="store_true", help="dry run without a GPU")
    parser.add_argument("--frameworks", type=lambda s: [f for f in s.split(",") if f], default=[],
                        help="baselines timed beside the schedules, e.g. torch_cudagraph,torch_compile_freeze")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"ios_campaign_{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    if args.tune_cache:
        tune = work / "tune.json"
        if Path(args.tune_cache).exists():
            shutil.copy(args.tune_cache, tune)
        args.tune_cache = str(tune)
    cache = args.out / "stage_costs.jsonl"
    if args.cache is not None and Path(args.cache).exists():
        with (gzip.open if args.cache.suffix == ".gz" else open)(args.cache, "rb") as source, cache.open("wb") as copy:
            shutil.copyfileobj(source, copy)
    harness = SimHarness(args) if args.simulate else GpuHarness(args)
    log(f"environment: {json.dumps(harness.describe(), default=str)}")
    results = {"environment": harness.describe(), "args": {k: str(v) for k, v in vars(args).items()},
               "simulated": harness.simulated, "profile_timing": asdict(profile_timing(args)),
               "models": {}, "skipped": {}}
    results["args"]["batch"] = args.batch
    schedules: dict[str, dict[str, Schedule]] = {}
    for name in args.models:
        elapsed = time.perf_counter() - started
        if elapsed > args.budget_s:
            results["skipped"][name] = f"not started: {elapsed:.0f} s elapsed > --budget-s {args.budget_s:.0f}"
            log(f"skip {name}: {results['skipped'][name]}")
            continue
        try:
            results["models"][name], schedules[name] = run_model(name, harness, args, cache)
        except Exception as error:  # noqa: BLE001 -- one failing model must not lose the others
            results["skipped"][name] = f"failed: {type(error).__name__}: {error}"
            log(f"{name} FAILED: {type(error).__name__}: {error}")
        save(results, schedules, args.out, harness.device)
        if name in results["models"]:
            add_frameworks(results["models"][name], args, lambda: save(results, schedules, args.out, harness.device))
        if not args.no_cli_check and "cli_check" not in results and name in schedules:
            try:
                results["cli_check"] = cli_check(name, harness, args, cache, schedules[name]["both"], work)
            except Exception as error:  # noqa: BLE001
                results["cli_check"] = {"error": f"{type(error).__name__}: {error}"}
            save(results, schedules, args.out, harness.device)
    results["environment_after"] = harness.describe()
    results["seconds"] = time.perf_counter() - started
    save(results, schedules, args.out, harness.device)
    if args.tune_cache and Path(args.tune_cache).exists():
        shutil.copy(args.tune_cache, args.out / "tune.json")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
