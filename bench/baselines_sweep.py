"""Experiment 6: every baseline framework at batch 1, 16, 32, 64, 128, on one model, same graph and weights.

Frameworks not installed here are recorded as unavailable with their reason (never dropped).
Writes one JSON document -- the frameworks table and every `Measurement` -- and prints a table.

Usage (on the GPU machine)::

    python3 bench/baselines_sweep.py --model inception_v3 --out results/baselines_sweep_h100.json
    python3 bench/baselines_sweep.py --frameworks torch_eager tensorrt --batches 1 16 --precision fp32
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ios_core.baseline import summary
from ios_core.baselines import frameworks_table, sweep_frameworks
from ios_core.baselines.sweep import BATCHES, sweep, table
from ios_core.timing import Timing


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="inception_v3", help="a registry model or an .onnx file")
    parser.add_argument("--frameworks", nargs="+", default=sweep_frameworks(), help="default: every GPU baseline")
    parser.add_argument("--batches", nargs="+", type=int, default=list(BATCHES))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--number", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=6)
    parser.add_argument("--precision", choices=("fp32", "fp32-strict"), default="fp32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with the float64 reference")
    parser.add_argument("--options", type=json.loads, default={}, help='JSON, e.g. {"tensorrt": {"aux_streams": 4}}')
    parser.add_argument("--out", type=Path, default=Path("results/baselines_sweep.json"))
    args = parser.parse_args(argv)
    timing = Timing(warmup=args.warmup, number=args.number, repeat=args.repeat)
    measurements = sweep(args.model, args.frameworks, args.batches, timing, precision=args.precision, seed=args.seed,
                         check=not args.no_check, options=args.options,
                         progress=lambda m: print(summary(m), flush=True))
    document = {"model": args.model, "batches": args.batches, "timing": vars(args) | {"out": str(args.out)},
                "frameworks": frameworks_table(), "measurements": [m.to_dict() for m in measurements]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1, default=str) + "\n")
    print(table(measurements))
    print(f"wrote {args.out}", file=sys.stderr)
    return document


if __name__ == "__main__":
    main()
