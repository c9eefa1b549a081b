"""Experiment 4's device panel, measured: schedules optimized on one GPU run side by side on this one.

Each ``--schedule LABEL=BUNDLE:NAME`` names one schedule in a campaign's ``schedules_<device>.json``
bundle (`bench/ios_campaign.py`). All of them, and Sequential, are built as plans of this GPU and
timed in rotating rounds exactly as the campaign times its five schedules; outputs are checked
against Sequential's. Writes ``--out`` (JSON with the GPU, driver, cuDNN and clocks) and prints a table.

Usage (device)::

    python3 bench/cross_device.py --model inception_v3 --out $OUT/cross.json \\
        --schedule h100=results/h100/campaign/schedules.json:inception_v3_b1_both_h100_measured \\
        --schedule h200=results/h200/campaign/schedules.json:inception_v3_b1_both_h200_measured
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ios_campaign import GpuHarness

from ios_core import models
from ios_core.files import write_atomic
from ios_core.schedule import from_json, sequential


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="inception_v3")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--schedule", action="append", required=True, help="LABEL=BUNDLE:NAME")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tune-cache", default=None)
    parser.add_argument("--e2e-warmup", type=int, default=10)
    parser.add_argument("--e2e-number", type=int, default=20)
    parser.add_argument("--e2e-repeat", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    graph = models.get(args.model)
    schedules = {"sequential": sequential(graph)}
    for item in args.schedule:
        label, _, where = item.partition("=")
        bundle, _, name = where.rpartition(":")
        schedules[label] = from_json(json.dumps(json.loads(Path(bundle).read_text())[name]))
    harness = GpuHarness(args)
    rows = harness.end_to_end(graph, schedules, args.batch)
    result = {"environment": harness.describe(), "model": args.model, "batch": args.batch,
              "schedules": {label: item for label, item in zip(schedules, ["sequential", *args.schedule], strict=True)},
              "timing": {"e2e_warmup": args.e2e_warmup, "e2e_number": args.e2e_number, "e2e_repeat": args.e2e_repeat},
              "end_to_end": rows}
    write_atomic(args.out, json.dumps(result, indent=1, default=str))
    print(f"on {result['environment']['name']}:")
    for label, row in rows.items():
        print(f"  {label:12s} {row['ms']:.4f} ms  rel. error vs Sequential {row['rel_error_vs_sequential']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
