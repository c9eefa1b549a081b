"""Every schedule type end to end, side by side on one GPU (issue 18, "Done when"): is IOS-Both the fastest, and is
the optimizer's prediction its end-to-end latency?

For each model (``--models``; SqueezeNet, Inception V3, NasNet, RandWire) at batch 1 in fp32 (TF32), with ONE
measured cost shared by every search of the call (`ios_core.cost.factory.build_cost`, on disk in ``--cost-cache``:
a call stopped midway resumes the profiling, and the narrower searches reuse the stages the wider one measured):

- ``sequential``, ``greedy``: built and costed; ``merge``, ``parallel``: the plain DP (`ios_core.optimizer.search`).
  Their ``predicted_ms`` is the sum of their stages' costs, each timed alone (``stage_sum_ms`` too);
- ``both``: `ios_core.optimizer.search_end_to_end` with ``--candidates`` (8): the DP's k best and the best of each
  narrower space, timed end to end, the fastest kept. ``predicted_ms`` is its end-to-end latency during the search
  (its meta's ``latency_ms``), ``stage_sum_ms`` its stage sum, ``chosen`` and ``rerank`` the contenders;
- ``--from-schedules DIR`` (for a model whose search does not fit a call) reads the five schedule files
  ``DIR/<model>_b1_<type>_<device>_fp32_measured.json`` instead (``searched: false``); their predictions are their
  stage sums under the shared cost, and ``both`` is the rerank's rule applied to the files of IOS-Both's space and
  the narrower ones (`ios_core.optimizer.NARROWER`): each timed end to end by the cost, the fastest kept.

The five are then built as plans of this GPU, checked against Sequential's output and timed in ``--rounds``
rotating rounds (``bench/side_by_side.py``); ``ms`` is the median of the rounds' medians, each round
`ios_core.engine.latency` (``--warmup``, ``--number``, ``--repeat``) with NVML's clocks before and after. The rows
``{model, batch, precision, schedule, predicted_ms, ms, stage_sum_ms, rel_error_vs_sequential, searched, source}``
and each call's GPU, driver, CUDA, cuDNN and clocks go to ``--out`` (``results/h200/schedules_e2e.json``),
rewritten atomically and read first: a model whose five rows are there is skipped (delete them to measure it
again, say searched after a call that read its files), and ``--budget-s`` starts no model, nor another part of a
search, once the call has lasted that long (leave room for one model's side-by-side timing before the call's limit).
A row's ``search_s`` is the search's time in this call: with a cost cache filled by an earlier call it is no fresh
search's time.

``--table`` prints, per model, the ms of each type, IOS-Both's predicted-vs-measured gap ((predicted - ms) / ms) and
whether IOS-Both is the fastest within `NOISE` (1%: IOS-Both at most 1.01 times the fastest other type counts as
the fastest; a smaller difference between two schedules timed side by side is not read as one beating the other).
``--dry-run`` needs no GPU: the simulated cost, no side by side, ``ms`` the simulated stage sum (``source:
simulated``).

Usage (device, one call of at most 10 minutes; carry ``stage_costs.jsonl`` and ``schedules_e2e.json`` back into
``$OUT`` and repeat it until every model is there)::

    cd .snap && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu-wheels/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src:$PWD/bench
    python3 bench/schedules_e2e.py --device h200 --out $OUT/schedules_e2e.json \\
        --cost-cache $OUT/stage_costs.jsonl --budget-s 450

and for a model whose search does not fit, its committed schedules: ``--models nasnet,randwire --from-schedules
schedules``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from records import Call, RowFile, call_arguments, call_of, machine, one_line, tolerance_error
from side_by_side import side_by_side

from ios_core import models
from ios_core.config import device_profile
from ios_core.cost.factory import CostSpec, build_cost
from ios_core.cost.protocol import StageCost, stage_latencies
from ios_core.ir import Graph
from ios_core.optimizer import NARROWER, OptimizerOptions, choose, search, search_end_to_end
from ios_core.schedule import Schedule, load

MODELS = ("squeezenet", "inception_v3", "nasnet", "randwire")  # the quick searches first
TYPES = ("sequential", "greedy", "merge", "parallel", "both")  # sequential first: the others are checked against it
BATCH, PRECISION = 1, "fp32"
NOISE = 0.01
SCHEDULE_FILE = "{model}_b{batch}_{opt}_{device}_{precision}_measured.json"
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Bench:
    """One call's settings: what every benchmark's call holds (`records.Call`), and the searches'; ``options``'
    ``opt`` is replaced per schedule type."""

    call: Call
    options: OptimizerOptions
    rounds: int = 5
    cost_cache: str | None = None
    tune_cache: str | None = None
    from_schedules: Path | None = None


@dataclass(frozen=True)
class Predicted:
    """A schedule type's schedule, what the optimizer predicts for it and its stage sum; ``details``: more for its
    row (the search's seconds, IOS-Both's contenders)."""

    schedule: Schedule
    predicted_ms: float
    stage_sum_ms: float
    details: dict[str, Any] = field(default_factory=dict)


class OutOfBudget(Exception):
    """The call's ``--budget-s`` was spent during a search; the stage costs measured so far are in the cache."""


def budget_check(bench: Bench) -> Callable[[int, int], None]:
    """A search's progress callback that stops it, between two parts, once the budget is spent."""
    def check(placed: int, total: int) -> None:
        if bench.call.over_budget():
            raise OutOfBudget(f"{placed} of {total} operators placed")
    return check


def by_search(graph: Graph, cost: StageCost, bench: Bench) -> dict[str, Predicted]:
    """Each type's schedule searched with ``cost``: IOS-Both first (the widest space: the others' stages are mostly
    in the cache after it), then the plain searches."""
    both = search_end_to_end(graph, cost, BATCH, replace(bench.options, opt="both"), budget_check(bench))
    meta = both.schedule.meta
    found = {"both": Predicted(both.schedule, both.latency_ms, meta.get("stage_sum_ms", both.latency_ms),
                               {"search_s": meta["search_seconds"], "chosen": meta.get("chosen", "both#1"),
                                "rerank": meta.get("rerank", [])})}
    for opt in TYPES[:-1]:
        result = search(graph, cost, BATCH, replace(bench.options, opt=opt, candidates=1))
        found[opt] = Predicted(result.schedule, result.latency_ms, result.latency_ms,
                               {"search_s": result.stats.seconds})
    return {opt: found[opt] for opt in TYPES}


def from_files(graph: Graph, cost: StageCost, bench: Bench) -> dict[str, Predicted]:
    """Each type's schedule read from ``bench.from_schedules``, costed with ``cost``; IOS-Both's the fastest end to
    end of the files of its space and the narrower ones, its merged stages split where that runs faster, and
    Sequential where it is within the noise (`ios_core.optimizer.choose`, as `search_end_to_end` chooses)."""
    paths = {opt: bench.from_schedules / SCHEDULE_FILE.format(model=graph.name, batch=BATCH, opt=opt,
                                                              device=bench.call.device, precision=PRECISION)
             for opt in TYPES}
    loaded = {opt: load(path, graph) for opt, path in paths.items()}
    sums = {opt: sum(stage_latencies(cost, graph, schedule.stages, BATCH)) for opt, schedule in loaded.items()}
    found = {opt: Predicted(loaded[opt], sums[opt], sums[opt], {"schedule_file": str(paths[opt])})
             for opt in TYPES[:-1]}
    # The DP's own answer first: ties keep it, as the rerank's do.
    labelled = [(label, loaded[label], sums[label]) for label in ("both", *NARROWER["both"])]
    best, timed = choose(graph, cost, BATCH, labelled, bench.options.s)
    schedule = replace(best.schedule, meta={**best.schedule.meta, "opt": "both", "chosen": best.label})
    found["both"] = Predicted(schedule, best.end_to_end_ms, best.stage_sum_ms,
                              {"schedule_file": str(paths[best.label.split("/")[0]]), "chosen": best.label,
                               "rerank": [c.as_dict() for c in timed]})
    return {opt: found[opt] for opt in TYPES}


def measured(graph: Graph, found: dict[str, Predicted], bench: Bench) -> dict[str, dict[str, Any]]:
    """Each type's ``ms`` and more: timed side by side on this GPU, or (dry run) its simulated stage sum."""
    if bench.call.dry_run:
        return {opt: {"ms": p.stage_sum_ms, "rel_error_vs_sequential": None} for opt, p in found.items()}
    from ios_core.engine import PlanOptions

    timed = side_by_side(graph, {opt: p.schedule for opt, p in found.items()}, BATCH, bench.call.timing, bench.rounds,
                         PlanOptions(tune_cache=bench.tune_cache))
    result = {}
    for opt, one in timed.items():
        rounds_ms = [m.ms for m in one.rounds]
        error = one.plan["rel_error_vs_sequential"]
        result[opt] = {"ms": statistics.median(rounds_ms), "rounds_ms": rounds_ms, "rel_error_vs_sequential": error,
                       "error": tolerance_error(error, PRECISION, "Sequential's"),
                       "streams": one.plan["streams"], "build_s": one.plan["build_s"],
                       "clocks_before": one.rounds[0].clocks_before, "clocks_after": one.rounds[-1].clocks_after}
    return result


def model_rows(model: str, cost: StageCost, bench: Bench) -> list[dict[str, Any]]:
    """The five rows of one model."""
    graph = models.get(model)
    found = (from_files if bench.from_schedules else by_search)(graph, cost, bench)
    times = measured(graph, found, bench)
    return [{"model": model, "batch": BATCH, "precision": PRECISION, "schedule": opt, "predicted_ms": p.predicted_ms,
             "stage_sum_ms": p.stage_sum_ms, "searched": bench.from_schedules is None, "source": bench.call.source,
             "error": None, "stages": len(p.schedule.stages), **p.details, **times[opt]}
            for opt, p in found.items()]


def key(row: dict[str, Any]) -> tuple:
    return row["model"], row["batch"], row["precision"], row["schedule"]


def done(rows: RowFile, model: str, call: Call) -> bool:
    """Whether the model's five rows are there with a number (a dry run's do not count for a real run)."""
    have = {row["schedule"] for row in rows.rows if row["model"] == model and row["batch"] == BATCH
            and row["precision"] == PRECISION and row["ms"] is not None
            and (row["source"] == call.source or call.dry_run)}
    return have >= set(TYPES)


def run(bench: Bench, wanted: list[str]) -> RowFile:
    """Every wanted model not yet in the output, until the budget is spent."""
    call = bench.call
    settings = {"options": asdict(bench.options), "timing": asdict(call.timing), "rounds": bench.rounds,
                "device": call.device, "cost_cache": bench.cost_cache, "tune_cache": bench.tune_cache,
                "from_schedules": None if bench.from_schedules is None else str(bench.from_schedules),
                "noise": NOISE}
    rows = RowFile(call.out, "schedules_e2e", machine(call, with_torch=False), settings, key)
    spec = CostSpec(kind=call.source, precision=PRECISION, cache=bench.cost_cache, tune_cache=bench.tune_cache)
    with build_cost(spec, device_profile(call.device)) as cost:
        for model in wanted:
            if done(rows, model, call):
                continue
            if call.stopped():
                break
            try:
                found = model_rows(model, cost, bench)
            except OutOfBudget as stopped:
                print(f"stopped by --budget-s {call.budget_s} in {model}'s search ({stopped}); its stage costs are "
                      f"in --cost-cache {bench.cost_cache}: rerun to resume", flush=True)
                break
            except Exception as error:  # noqa: BLE001 -- one failing model must not lose the others
                found = [{"model": model, "batch": BATCH, "precision": PRECISION, "schedule": opt, "ms": None,
                          "source": call.source, "error": one_line(error)} for opt in TYPES]
            for row in found:
                rows.add(row)
                ms = "-" if row["ms"] is None else f"{row['ms']:.4f}"
                predicted = "-" if row.get("predicted_ms") is None else f"{row['predicted_ms']:.4f}"
                print(f"{model:13s} {row['schedule']:10s} {ms:>8s} ms  predicted {predicted:>8s}  "
                      f"{row['error'] or ''}", flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Per model: the ms of each type, IOS-Both's prediction, its gap to the measurement, and whether it is the
    fastest within `NOISE`."""
    cells: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row["batch"] == BATCH and row["precision"] == PRECISION:
            cells.setdefault(row["model"], {})[row["schedule"]] = row
    order = sorted(cells, key=lambda m: (MODELS.index(m) if m in MODELS else len(MODELS), m))
    lines = ["| model | searched | " + " | ".join(TYPES) + f" | both predicted | gap | both fastest (±{NOISE:.0%}) |",
             "|---|---|" + "---|" * (len(TYPES) + 3)]
    for model in order:
        found = cells[model]
        ms = {opt: found[opt]["ms"] for opt in TYPES if opt in found and found[opt]["ms"] is not None}
        shown = [f"{ms[opt]:.4f}" if opt in ms else "-" for opt in TYPES]
        both = found.get("both", {})
        predicted, searched = both.get("predicted_ms"), both.get("searched")
        gap, fastest = "-", "-"
        if "both" in ms and predicted is not None:
            gap = f"{(predicted - ms['both']) / ms['both']:+.1%}"
        others = {opt: t for opt, t in ms.items() if opt != "both"}
        if "both" in ms and others:
            best = min(others, key=others.get)
            fastest = "yes" if ms["both"] <= others[best] * (1 + NOISE) else f"no ({best} {others[best]:.4f})"
        lines.append(f"| {model} | {'-' if searched is None else 'yes' if searched else 'no'} | "
                     + " | ".join(shown) + f" | {'-' if predicted is None else f'{predicted:.4f}'} | {gap} | "
                     f"{fastest} |")
    sources = sorted({row["source"] for row in rows})
    lines += ["", f"ms: {', '.join(sources) or 'none'}; gap: (predicted - ms) / ms of IOS-Both; fastest: IOS-Both's "
              f"ms at most {1 + NOISE:g} x the fastest other type's"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=lambda s: s.split(","), default=list(MODELS))
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "h200" / "schedules_e2e.json")
    parser.add_argument("--cost-cache", default=None, help="the shared stage-cost cache (JSON lines)")
    parser.add_argument("--tune-cache", default=None)
    parser.add_argument("--from-schedules", type=Path, default=None,
                        help="read the schedule files of this folder instead of searching")
    parser.add_argument("--r", type=int, default=3)
    parser.add_argument("--s", type=int, default=8)
    parser.add_argument("--max-part-size", type=int, default=40)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    call_arguments(parser, "start no model nor search part after this", "no GPU: the simulated cost, no side by side",
                   retry_failed=False)
    parser.add_argument("--table", action="store_true", help="print the table of --out and stop")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(args.out.read_text())["rows"]))
        return 0
    unknown = sorted(set(args.models) - set(models.names()))
    if unknown:
        parser.error(f"unknown models {unknown}; known: {', '.join(models.names())}")
    options = OptimizerOptions("both", args.r, args.s, args.max_part_size, args.candidates)
    bench = Bench(call_of(args), options, args.rounds, args.cost_cache, args.tune_cache, args.from_schedules)
    print(table(run(bench, args.models).rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
