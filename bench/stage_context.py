"""Why a schedule runs slower end to end than the sum of its stages timed alone: a warm or a cold L2.

The measured cost times a stage by replaying it back to back, so from the second run on its weights and
inputs sit in the GPU's L2 (50 MB on an H100, more than Inception V3's largest stage needs). Inside a
schedule, a stage's weights were last touched one whole network ago. This script times every stage of
some schedules both ways -- back to back (``warm``, as the profiler does) and after writing a buffer
larger than the L2 (``cold``: events around the stage only, not the write) -- and each whole schedule
end to end, side by side on one GPU (`side_by_side`), then prints how far each sum is from the end-to-end
latency. A diagnostic of the measured cost, not an experiment: it writes one JSON document of its own.

``--prefixes`` also times, the way the profiler times one stage (warm, ``number`` runs chained in one
graph), every prefix of each schedule -- its first k stages as one program -- so that the difference of
two consecutive prefixes is what stage k costs *in context*, after the stages before it; set beside its
cost alone, it shows which stages a schedule's end-to-end latency loses on.

Usage (device)::

    python3 bench/stage_context.py --out $OUT/stage_context.json --tune-cache .tunecache/tune_h100.json \\
        --schedule both=results/h100/fp32/schedules/h100/inception_v3/b1/both_r3_s8.json \\
        --schedule parallel=results/h100/fp32/schedules/h100/inception_v3/b1/parallel_r3_s8.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from ios_core import models
from ios_core.files import write_atomic
from ios_core.schedule import load, sequential

FLUSH_BYTES = 256 << 20  # five times an H100's or H200's L2


def time_stage(plan, repeat: int, flush=None) -> float:
    """Median milliseconds of one run of a captured one-copy stage, after ``flush`` (enqueued untimed) if given."""
    import pycuda.driver as drv

    stream, launch = plan.streams[0], plan.captured.launch
    for _ in range(3):
        launch()
    pairs = [(drv.Event(), drv.Event()) for _ in range(repeat)]
    for start, end in pairs:
        if flush is not None:
            flush(stream)
        start.record(stream)
        launch()
        end.record(stream)
    pairs[-1][1].synchronize()
    return statistics.median(start.time_till(end) for start, end in pairs)


def stage_times(profiler, schedule, repeat: int) -> list[dict]:
    """Each stage of ``schedule`` alone, lowered as ``profiler`` lowers it: warm and cold milliseconds."""
    import pycuda.driver as drv

    from ios_core.engine.gpu.stageplan import StagePlan

    backend, scratch = profiler.backend, drv.mem_alloc(FLUSH_BYTES)

    def flush(stream) -> None:
        drv.memset_d32_async(int(scratch), 0, FLUSH_BYTES // 4, stream)

    rows = []
    for stage in schedule.stages:
        program = profiler.program(stage)
        if not program.tasks:
            rows.append({"warm_ms": 0.0, "cold_ms": 0.0, "groups": len(stage.groups)})
            continue
        plan = StagePlan(program, "fp32", backend.store, profiler.options, backend.pool)
        try:
            plan.capture_runs(1)
            warm, cold = time_stage(plan, repeat), time_stage(plan, repeat, flush)
        finally:
            plan.close()
        rows.append({"warm_ms": warm, "cold_ms": cold, "groups": len(stage.groups)})
    scratch.free()
    return rows


def prefix_times(profiler, schedule) -> tuple[list[float], list[float]]:
    """Milliseconds per run of the first k stages of ``schedule`` as one program, for k = 1 .. all, and of each
    stage alone: ``(prefixes, alone)``, both timed as ``profiler`` (the measured cost) times a stage."""
    from ios_core.engine.lower import lower_planned

    stages = schedule.stages  # lowered as the profiler lowers a stage: its options, its element's size
    prefixes = (lower_planned(profiler.graph, stages[:k], profiler.batch, profiler.options, profiler.itemsize,
                              schedule) for k in range(1, len(stages) + 1))
    answers = list(profiler.backend.time_all(prefixes, profiler.timing))
    failed = [answer for answer in answers if isinstance(answer, Exception)]
    if failed:
        raise RuntimeError(f"{len(failed)} prefixes failed, the first: {failed[0]!r}")
    return answers, profiler.latencies(stages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="inception_v3")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--schedule", action="append", default=[], help="LABEL=PATH of a schedule JSON")
    parser.add_argument("--repeat", type=int, default=50, help="timed runs per stage and way")
    parser.add_argument("--tune-cache", default=None)
    parser.add_argument("--prefixes", action="store_true", help="also each stage's cost in context (see above)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    from side_by_side import side_by_side

    from ios_core.engine import PlanOptions, environment
    from ios_core.engine.gpu.stageplan import GpuBackend
    from ios_core.engine.profile import StageProfiler
    from ios_core.timing import Timing

    graph = models.get(args.model)
    schedules = {"sequential": sequential(graph)}
    for item in args.schedule:
        label, _, path = item.partition("=")
        schedules[label] = load(path, graph)
    options = PlanOptions(tune_cache=args.tune_cache)
    timed = side_by_side(graph, schedules, args.batch, Timing(warmup=10, number=20, repeat=7), 3, options)
    end_to_end = {label: {"ms": statistics.median(m.ms for m in one.rounds), **one.plan}
                  for label, one in timed.items()}
    profiler = StageProfiler(graph, args.batch, GpuBackend(graph, "fp32", None, options), Timing(), options)
    result = {"environment": environment(), "model": args.model, "batch": args.batch, "repeat": args.repeat,
              "flush_bytes": FLUSH_BYTES, "schedules": {}}
    print(f"{args.model} batch {args.batch} on {result['environment']['name']}, ms")
    print(f"{'schedule':12s} {'stages':>6s} {'end to end':>10s} {'warm sum':>9s} {'cold sum':>9s} "
          f"{'e2e/warm':>8s} {'e2e/cold':>8s}")
    for label, schedule in schedules.items():
        stages = stage_times(profiler, schedule, args.repeat)
        warm, cold = sum(s["warm_ms"] for s in stages), sum(s["cold_ms"] for s in stages)
        e2e = end_to_end[label]["ms"]
        result["schedules"][label] = {"end_to_end_ms": e2e, "warm_sum_ms": warm, "cold_sum_ms": cold,
                                      "end_to_end": end_to_end[label], "stages": stages}
        print(f"{label:12s} {len(stages):6d} {e2e:10.4f} {warm:9.4f} {cold:9.4f} {e2e / warm:8.3f} {e2e / cold:8.3f}")
        if args.prefixes:
            prefixes, alone = prefix_times(profiler, schedule)
            in_context = [b - a for a, b in zip([0.0, *prefixes], prefixes, strict=False)]
            result["schedules"][label].update(prefix_ms=prefixes, alone_ms=alone, in_context_ms=in_context)
            worst = sorted(range(len(alone)), key=lambda k: alone[k] - in_context[k])[:5]
            print(f"{'':12s} all stages as one program {prefixes[-1]:.4f} ms, alone {sum(alone):.4f}; costliest in "
                  "context: " + ", ".join(f"#{k} +{1e3 * (in_context[k] - alone[k]):.1f} us" for k in worst))
    write_atomic(args.out, json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
