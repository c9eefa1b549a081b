"""How fast the optimizer searches, and the simulated latency of every schedule type, per model.

For each model at one batch size (default 1) with ``r=3, s=8``, on the simulated cost of one
device profile (default ``conf/device/h100.yaml``):

- the IOS-Both search, run first on a fresh cost cache: DP states, transitions, distinct stages
  costed, cost evaluations (distinct canonical keys), wall time, and the part of it spent in the
  cost, so that the optimizer's own overhead is ``wall - cost``;
- the predicted (``simulated``) latency of Sequential, Greedy, IOS-Merge, IOS-Parallel and IOS-Both.

The paper (V100, measured cost) reports Inception V3 1,206 states / 5,479 stages and NASNet
42,966 / 240,704. Writes one JSON file and prints a Markdown table.

Usage: ``PYTHONPATH=src python3 bench/search_speed.py --out results/search_speed_h100.json``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from ios_core import models
from ios_core.config import device_profile
from ios_core.cost import CachedCost, DeviceProfile, SimulatedCost
from ios_core.files import write_atomic
from ios_core.optimizer import OptimizerOptions, search

ROOT = Path(__file__).resolve().parents[1]
PAPER_MODELS = ["inception_v3", "randwire", "nasnet", "squeezenet"]
OPTS = ["sequential", "greedy", "merge", "parallel", "both"]
LABELS = {"sequential": "Sequential", "greedy": "Greedy", "merge": "IOS-Merge", "parallel": "IOS-Parallel",
          "both": "IOS-Both"}


def measure(name: str, device: DeviceProfile, batch: int, precision: str) -> dict:
    """The search statistics of IOS-Both and the simulated latency of every schedule type for one model."""
    graph = models.get(name)
    inner = SimulatedCost(device, precision)
    cost = CachedCost(inner, inner.space)
    row: dict = {"model": name, "operators": len(graph.operators), "blocks": len(graph.blocks)}
    latency = {}
    for opt in ["both", *OPTS[:-1]]:  # both first, on the fresh cache, so its timing stands alone
        start, misses = time.perf_counter(), cost.stats.misses
        result = search(graph, cost, batch, OptimizerOptions(opt, r=3, s=8))
        latency[opt] = result.latency_ms
        if opt == "both":
            stats = result.stats
            row["search"] = {
                "dp_states": stats.states, "transitions": stats.transitions, "distinct_stages": stats.stages,
                "cost_evaluations": cost.stats.misses - misses, "parts": stats.parts,
                "wall_seconds": time.perf_counter() - start, "cost_seconds": stats.cost_seconds,
                "optimizer_seconds": stats.seconds - stats.cost_seconds, "schedule_stages": len(result.schedule.stages),
            }
        print(f"  {name} {opt}: {result.latency_ms:.4f} ms in {time.perf_counter() - start:.1f} s", flush=True)
    row["latency_ms"] = {LABELS[opt]: latency[opt] for opt in OPTS}
    row["speedup_both_over_sequential"] = latency["sequential"] / latency["both"]
    return row


def table(rows: list[dict], device: str) -> str:
    lines = [
        "| model | DP states | distinct stages | wall s | optimizer s | "
        + " | ".join(f"{LABELS[o]} ms" for o in OPTS) + " | Both speedup |",
        "|---" * (6 + len(OPTS)) + "|",
    ]
    for r in rows:
        s = r["search"]
        latencies = " | ".join(f"{r['latency_ms'][LABELS[o]]:.3f}" for o in OPTS)
        lines.append(f"| {r['model']} | {s['dp_states']:,} | {s['distinct_stages']:,} | {s['wall_seconds']:.1f} | "
                     f"{s['optimizer_seconds']:.1f} | {latencies} | {r['speedup_both_over_sequential']:.2f}x |")
    return "\n".join(lines) + f"\n\nLatencies are simulated ({device}), not measured."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=PAPER_MODELS, choices=models.names())
    parser.add_argument("--device", default="h100")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp32-strict"])
    parser.add_argument("--out", default="results/search_speed.json")
    args = parser.parse_args()
    device = device_profile(args.device)
    rows = [measure(name, device, args.batch, args.precision) for name in args.models]
    report = {
        "what": "IOS-Both search speed (r=3, s=8) and simulated latency of every schedule type",
        "latency_label": "simulated", "device": device.as_dict(), "batch": args.batch, "precision": args.precision,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.processor()},
        "paper_v100_measured": {"inception_v3": {"dp_states": 1206, "stages": 5479},
                                "nasnet": {"dp_states": 42966, "stages": 240704}},
        "models": rows,
    }
    write_atomic(args.out, json.dumps(report, indent=2) + "\n")
    print(table(rows, device.name))
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
