"""Experiment 3 as the paper draws it, on the lent GPU: active warps per kernel of Sequential and IOS-Both.

Runs ``python -m ios_core.profiling.warps profile`` (Nsight Compute, ``--clock-control none``) once per schedule,
each writing its ``warps`` record (with the raw ncu CSV and the laid-out kernels beside it) into ``--out``, then draws
the active-warps figure there (``warps.png``, ``.pdf``, ``.csv``) -- beside the FLOP-rate panel when ``--flops``
gives the schedules' measure records (``python -m ios_core.figures utilization`` draws the same from the files).

Usage (device)::

    python3 bench/warps.py --out $OUT/warps --tune-cache .tunecache/tune_h200.json \\
        --schedule sequential=schedules/inception_v3_b1_sequential_h200_fp32_measured.json \\
        --schedule both=schedules/inception_v3_b1_both_h200_fp32_measured.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ios_core.figures import make
from ios_core.figures.common import themed
from ios_core.figures.warps import active_warps
from ios_core.profiling.warps import main as warps
from ios_core.tracking import read


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="inception_v3")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--schedule", action="append", default=[], help="LABEL=PATH of a schedule JSON")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tune-cache", default=None)
    parser.add_argument("--device", default="h200")
    parser.add_argument("--flops", nargs="*", default=[], help="measure records for the FLOP-rate panel beside")
    parser.add_argument("--out", type=Path, required=True, help="a folder for the records and the figure")
    args = parser.parse_args(argv)
    paths = []
    for item in args.schedule or ["sequential=sequential"]:
        label, _, schedule = item.partition("=")
        path = args.out / f"{args.model}_b{args.batch}_{label}.json"
        warps(["profile", "--model", args.model, "--batch", str(args.batch), "--schedule", schedule, "--runs",
               str(args.runs), "--device", args.device, "--out", str(path),
               *(["--tune-cache", args.tune_cache] if args.tune_cache else [])])
        paths.append(path)
    if args.flops:
        print(*make("utilization", [*args.flops, *paths], args.out / "utilization"), sep="\n")
    with themed():
        print(*active_warps([read(p) for p in paths], args.out / "warps"), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
