"""Experiment 4's device panel, measured: schedules optimized on several GPUs run side by side on this one.

Each ``--schedule`` is a schedule file searched on some GPU (``schedules/*_measured.json``, or the workflow's); its
meta names that GPU. They and Sequential are built as plans of this GPU, checked against Sequential's output and
timed in rotating rounds (`side_by_side`). Each is written to ``--out`` as the ``measure`` record
``python -m ios_core.measure`` writes, its ``schedule_device`` the GPU it was optimized on and ``device`` this one
(``--device``): ``<model>_b<batch>_<opt>_<schedule device>_on_<device>.json``, Sequential's
``<model>_b<batch>_sequential.json``. The figure: ``python -m ios_core.figures specialization`` of the ``*_on_*``
records of every GPU.

Usage (device)::

    python3 bench/cross_device.py --device h100 --model inception_v3 --out $OUT/h100 \\
        --schedule schedules/inception_v3_b1_both_h100_fp32_measured.json \\
        --schedule schedules/inception_v3_b1_both_h200_fp32_measured.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from records import Run, file_name, measure_record
from side_by_side import side_by_side

from ios_core import models
from ios_core.config import device_profile
from ios_core.engine import PlanOptions
from ios_core.measure import gpu_mismatch
from ios_core.schedule import load, sequential
from ios_core.timing import Timing
from ios_core.tracking import write


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", required=True, help="this GPU's device profile (h100, h200, ...)")
    parser.add_argument("--model", default="inception_v3")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--schedule", action="append", required=True, help="a schedule file (repeat for each)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the records")
    parser.add_argument("--tune-cache", default=None)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--number", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    mismatch = gpu_mismatch(device_profile(args.device))
    if mismatch:
        raise SystemExit(mismatch)
    graph = models.get(args.model)
    schedules, paths = {"sequential": sequential(graph)}, {"sequential": None}
    for path in args.schedule:
        schedule = load(path, graph)
        label = f"{schedule.meta['opt']}_{schedule.meta['device']}_on_{args.device}"
        schedules[label], paths[label] = schedule, path
    options = PlanOptions(tune_cache=args.tune_cache)
    timing = Timing(warmup=args.warmup, number=args.number, repeat=args.repeat)
    timed = side_by_side(graph, schedules, args.batch, timing, args.rounds, options)
    run = Run(args.model, args.batch, args.device, tags={"benchmark": "cross_device", "experiment": "specialization"})
    print(f"on {args.device}, ms:")
    for label, one in timed.items():
        record = measure_record(run, one.schedule, paths[label], one.rounds, options, one.plan)
        suffix = "" if label == "sequential" else f"_{label.split('_', 1)[1]}"
        print(f"  {label:20s} {record.latest('median_ms'):.4f}  rel. error vs Sequential "
              f"{one.plan['rel_error_vs_sequential']:.1e}  {write(record, args.out / file_name(record, suffix))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
