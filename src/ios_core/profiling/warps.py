"""``python -m ios_core.profiling.warps``: active warps per kernel of a schedule, read by Nsight Compute.

Two commands, one inside the other:

* ``target`` (on a GPU, run by ncu): builds the engine's plan of a schedule and runs it eagerly ``--runs`` times
  between cuProfilerStart and Stop, every group's launches inside the NVTX range `ios_core.profiling.ncu.label`
  ``ios/r<run>/s<stage>/g<group>``, after one run unprofiled (cuDNN's and our kernels' first-launch work);
* ``profile`` runs ``ncu --clock-control none`` on ``target`` in a subprocess (`ios_core.profiling.ncu.command`),
  reads the raw CSV back, takes each kernel's median over the runs, lays the kernels out on the schedule's timeline
  and writes one ``warps`` record (`ios_core.tracking`): per kernel its stage, group, order, duration and active
  warps, with the GPU, driver, cuDNN and ncu versions; the raw CSV and a table of the kernels by name go beside it.
  With ``--unavailable REASON``, or without ncu on the PATH, it writes the record of a profile that cannot be
  taken here, with the reason, and touches nothing else: absence is a result.

The eager run launches exactly what the captured CUDA graph replays (`ios_core.engine.gpu.launch`); ncu replays
each kernel alone anyway, so a graph would change nothing it reports.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from ios_core import models
from ios_core.errors import UserError, run_command
from ios_core.files import write_atomic
from ios_core.measure import schedule_params
from ios_core.profiling import ncu
from ios_core.schedule import Schedule, load, sequential
from ios_core.tracking import Record, recording


class ProfileError(UserError):
    """ncu could not profile the target, or found none of its labelled kernels; the message says which."""


def schedule_of(graph: Any, path: str) -> Schedule:
    """The schedule in file ``path``; ``sequential`` names the graph's sequential schedule."""
    return sequential(graph) if path == "sequential" else load(path, graph)


def nvtx_ranges() -> tuple[Callable[[str], Any], Callable[[], Any]]:
    """NVTX push and pop: the ``nvtx`` package's, else PyTorch's, else libnvToolsExt's (all no-ops unless a tool
    such as ncu injects itself)."""
    try:
        import nvtx

        return nvtx.push_range, nvtx.pop_range
    except ImportError:
        pass
    try:
        from torch.cuda import nvtx as torch_nvtx

        return torch_nvtx.range_push, torch_nvtx.range_pop
    except ImportError:
        pass
    for name in ("libnvToolsExt.so.1", "libnvToolsExt.so"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.nvtxRangePushA.argtypes = [ctypes.c_char_p]
        return (lambda message, push=lib.nvtxRangePushA: push(message.encode())), lib.nvtxRangePop
    raise ProfileError("no NVTX library here (pip install nvtx, or torch): ncu could not tell the groups apart")


def labelled(stages: Sequence[Sequence[Sequence[Callable[[], None]]]], run: int,
             ranges: tuple[Callable[[str], Any], Callable[[], Any]]) -> tuple:
    """A plan's bound launches (by stage, stream, task) with each group's launches made one call inside its NVTX
    range; an empty group stays empty."""
    push, pop = ranges

    def group(calls: Sequence[Callable[[], None]], s: int, k: int) -> Callable[[], None]:
        def run_group() -> None:
            push(ncu.label(run, s, k))
            for call in calls:
                call()
            pop()

        return run_group

    return tuple(tuple((group(calls, s, k),) if calls else () for k, calls in enumerate(stage))
                 for s, stage in enumerate(stages))


def target(args: argparse.Namespace) -> int:
    """Run the plan as the module says (on a GPU, under ncu)."""
    from ios_core import engine
    from ios_core.engine.gpu.device import profiled

    graph, weights = models.load(args.model)
    schedule = schedule_of(graph, args.schedule)
    options = engine.PlanOptions(tune_cache=args.tune_cache, barrier=args.barrier)
    plan = engine.build_plan(graph, schedule, args.batch, args.precision, weights, options)
    ranges = nvtx_ranges()
    try:
        plan.enqueue()  # unprofiled: first launches
        plan.synchronize()
        runs = [replace(plan.launches, stages=labelled(plan.launches.stages, run, ranges)) for run in range(args.runs)]
        with profiled():
            for launches in runs:
                launches.enqueue()
                plan.synchronize()
    finally:
        plan.close()
    return 0


def find_ncu(name: str) -> str | None:
    """``name`` on the PATH, else the CUDA toolkit's or the newest standalone Nsight Compute's ncu; None if none."""
    found = shutil.which(name)
    if found or os.sep in name:
        return found
    installed = [Path("/usr/local/cuda/bin/ncu"), *sorted(Path("/opt/nvidia/nsight-compute").glob("*/ncu"))[::-1]]
    return next((str(path) for path in installed if path.exists()), None)


def ncu_version(binary: str) -> str:
    """The last line of ``ncu --version`` (``Version 2025.3.0.0 (build ...)``)."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    return done.stdout.strip().splitlines()[-1]


def take(args: argparse.Namespace, binary: str, report: Path) -> str:
    """Profile ``target`` with the ncu at ``binary`` into ``report``; returns the raw CSV's text."""
    inner = [sys.executable, "-m", "ios_core.profiling.warps", "target", "--model", args.model, "--batch",
             str(args.batch), "--schedule", args.schedule, "--precision", args.precision, "--runs", str(args.runs),
             "--barrier", args.barrier, *(["--tune-cache", args.tune_cache] if args.tune_cache else [])]
    done = subprocess.run(ncu.command(binary, report, inner), capture_output=True, text=True)
    if done.returncode != 0 or not report.exists():
        raise ProfileError(f"ncu exited {done.returncode}: {(done.stderr or done.stdout)[-2000:]}")
    return subprocess.run(ncu.export_command(binary, report), capture_output=True, text=True, check=True).stdout


def profile(args: argparse.Namespace) -> Record:
    """Profile as the module says and write the record to ``args.out``; returns it."""
    graph = models.get(args.model)
    schedule = schedule_of(graph, args.schedule) if args.schedule == "sequential" or Path(args.schedule).exists() \
        else None
    meta = schedule_params(schedule)
    opt = meta["opt"] or ("sequential" if args.schedule == "sequential" else args.opt)
    params = {"model": args.model, "batch": args.batch, "precision": args.precision, **meta, "opt": opt,
              "schedule": args.schedule, "runs": args.runs, "barrier": args.barrier, "clock_control": "none",
              "metric": ncu.WARPS_ELAPSED, "metrics": ",".join(ncu.METRICS), "device": args.device}
    binary = None if args.unavailable else find_ncu(args.ncu)
    reason = args.unavailable or ("" if binary else f"Nsight Compute ({args.ncu}) is not on this machine")
    tags = {"source": "measured", "available": str(not reason).lower(), "reason": reason, "experiment": "utilization"}
    out = Path(args.out)
    with recording(f"warps/{args.model}/b{args.batch}/{opt}", "warps", params, tags, out) as record:
        if reason:
            print(f"{args.model} b{args.batch} {opt}: active warps not available -- {reason}", flush=True)
            return record
        from ios_core.engine import environment

        env = environment()
        record.params.update({"device_name": env["name"], "gpu_name": env["name"], "driver": str(env["driver"]),
                              "cudnn": str(env["cudnn"]), "ncu": ncu_version(binary)})
        with tempfile.TemporaryDirectory() as folder:
            text = take(args, binary, Path(folder) / "warps.ncu-rep")
        raw = ncu.read_csv(io.StringIO(text))
        if raw.empty:
            raise ProfileError("ncu profiled none of the target's labelled kernels (no ios/... NVTX range found)")
        kernels = ncu.per_kernel(raw)
        ncu.fill(record, kernels)
        csv_path, table_path = out.with_suffix(".ncu.csv"), out.with_suffix(".kernels.csv")
        write_atomic(csv_path, text)
        write_atomic(table_path, ncu.timeline(kernels).to_csv(index=False))
        record.artifacts += [str(csv_path), str(table_path)]
    print(f"{args.model} b{args.batch} {opt}: {len(kernels)} kernels, {record.latest('timeline_us'):.1f} us laid out, "
          f"active warps {record.latest('warps_mean_pct'):.1f}% of peak (time-weighted)", flush=True)
    return record


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m ios_core.profiling.warps", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)
    for name in ("target", "profile"):
        sub = commands.add_parser(name)
        sub.add_argument("--model", default="inception_v3")
        sub.add_argument("--batch", type=int, default=1)
        sub.add_argument("--schedule", required=True, help="a schedule JSON, or 'sequential'")
        sub.add_argument("--precision", default="fp32")
        sub.add_argument("--runs", type=int, default=3, help="profiled runs (each kernel's median is kept)")
        sub.add_argument("--barrier", default="exact", choices=("exact", "stage"))
        sub.add_argument("--tune-cache", default=None, help="autotuning winners (results/profiles/tune_<gpu>.json)")
    profiling = commands.choices["profile"]
    profiling.add_argument("--out", required=True, help="the record to write (JSON)")
    profiling.add_argument("--ncu", default=os.environ.get("NCU", "ncu"), help="the ncu binary ($NCU, else ncu)")
    profiling.add_argument("--device", default="", help="the device profile the run stands for (h100, h200, sim)")
    profiling.add_argument("--opt", default="", help="the schedule's kind, when --unavailable and it has no file")
    profiling.add_argument("--unavailable", default="", metavar="REASON", help="write a not-available record only")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "target":
        return target(args)
    profile(args)
    return 0


if __name__ == "__main__":
    run_command(main)
