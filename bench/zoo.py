"""The model zoo: 16 PyTorch CNNs through both ONNX exporters onto our engine, against the original PyTorch modules.

For each network of `ZOO` (torchvision and timm, random initialization with randomized BatchNorm statistics, eval
mode, at its full resolution) and each exporter of `EXPORTERS` (TorchScript at opset 17, dynamo at opset 18), in one
process on one GPU:

1. export the module to ONNX (or read ``<onnx-dir>/<model>.<exporter>.onnx`` where one is given) and import it
   (`ios_core.onnx_io.load_onnx`): the whole network is the graph, with the file's weights;
2. the reference output is ONNX Runtime's on the CPU, for one standard-normal input batch (seed 0);
3. search IOS-Both with the measured stage cost (``opt=both r=3 s=8``) by ``python -m ios_core.optimize`` itself,
   the file's weights in every stage, in a process of its own stopped after ``--search-timeout-s``;
4. time ``sequential`` and ``ios_both`` on the engine with the file's weights (CUDA-graph replays);

then, once per network, the original module with the same weights (channels-last, ``cudnn.benchmark``):
``torch_eager``; ``torch_cudagraph`` (captured once in a CUDA graph, replayed); ``torch_compile_freeze``:
``torch.compile`` with Inductor freezing in ``--compile-mode`` (``default``: no autotuning, a network compiles in
a minute at most; max-autotune takes many), its compiled calls captured in one CUDA graph as our engine's are (a
mode with its own CUDA graphs, ``reduce-overhead``, is timed as it is; a capture that fails is timed call by call,
and its row says so in ``cuda_graph``); compile time is left out.

Every latency is the median over ``--repeat`` samples of the mean of ``--number`` calls after ``--warmup``, timed
with CUDA events, in fp32 with TF32 allowed (PyTorch's default for cuDNN, the engine's ``fp32``); every output is
checked against ONNX Runtime's (``rel_l2``; above `ios_core.precision.TOLERANCE` the row names it in ``error``).

``--out`` (``results/h200/zoo.json``) holds the rows ``{model, exporter, batch, precision, mode, ms, error, ...}``
(``exporter`` is null for the PyTorch modes, which export nothing), with the GPU, driver, cuDNN, torch version and
clocks of each call; it is rewritten after every row and read first, so a run killed by its time limit resumes where
it stopped (rows already there are skipped, but for an engine row measured on an older import or engine,
`REVISIONS`; ``--retry-failed`` runs those without a number again). A network that
fails to export, import or run gets rows with ``ms: null`` and ``error``, the one-line reason. Each measurement is
also a record of the project's schema (`records`: ``measure`` for the engine, ``baseline`` for PyTorch) in the folder
``--keep`` (``<out>.records``), with the IOS-Both schedules, the stage-cost and autotuning caches and ONNX Runtime's
outputs; ``--pack`` keeps that folder as one file beside ``--out``, ``<out>.records.tar.gz``, unpacked at the start
and written again after each exporter of each network (a device call returns a few files only).

``--dry-run`` runs on a CPU: the simulated stage cost, the analytical model's latency (``source: simulated``), the
float64 reference of the imported network against ONNX Runtime in ``rel_l2``, no engine and no PyTorch timing; it
exports only where PyTorch is importable, else reads ``--onnx-dir``.

Usage (device, calls of at most 10 minutes, each resuming the last; then copy both files back to results/h200/)::

    cp results/h200/zoo.json results/h200/zoo.json.records.tar.gz $OUT/ 2>/dev/null
    python3 bench/zoo.py --device h200 --out $OUT/zoo.json --keep /tmp/zoo --pack --budget-s 420

``--table`` prints the README's table (IOS-Both against Sequential and torch.compile + freezing) from ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from records import (
    Call,
    RecordPack,
    RowFile,
    Run,
    baseline_record,
    call_arguments,
    call_of,
    done,
    machine,
    measure_record,
    names_of,
    one_line,
    tolerance_error,
)

from ios_core.baselines import Measurement
from ios_core.config import device_profile
from ios_core.cost.measured import PROFILE_REVISION
from ios_core.ir import Graph
from ios_core.measure import simulated
from ios_core.models.zoo import EXPORTERS, ZOO, build_module, export
from ios_core.onnx_io import IMPORT_REVISION, Network, load_onnx
from ios_core.reference import relative_error, run_graph
from ios_core.schedule import Schedule, load, sequential
from ios_core.tracking import write

ENGINE_MODES = ("sequential", "ios_both")
TORCH_MODES = ("torch_eager", "torch_cudagraph", "torch_compile_freeze")
MODES = (*ENGINE_MODES, *TORCH_MODES)
SEARCH = ("opt=both", "r=3", "s=8")
REVISIONS = {"import": IMPORT_REVISION, "profile": PROFILE_REVISION}
"""What an engine row was measured with: a row of an older import or engine is measured again (`pending`)."""
PRECISION = "fp32"  # TF32 allowed in convolutions and matmuls, on the engine and in PyTorch


@dataclass
class Bench:
    """One run's settings: what every benchmark's call holds (`records.Call`: the rows go to its ``out``), and where
    the rest goes (``keep``)."""

    call: Call
    keep: Path
    batch: int
    modes: tuple[str, ...]
    onnx_dir: Path | None = None
    resolution: int | None = None
    compile_mode: str = "default"
    search_timeout_s: float | None = None
    pack: bool = False

    @property
    def packed(self) -> Path:
        """The ``keep`` folder as one file beside the rows (``--pack``)."""
        return self.call.out.with_name(self.call.out.name + ".records.tar.gz")

    def unpack(self) -> None:
        """The packed folder where it is kept, at the start of a call that resumes another."""
        if self.pack:
            RecordPack(self.packed).unpack(self.keep)
        self.keep.mkdir(parents=True, exist_ok=True)

    def save(self) -> None:
        """The folder packed again (atomically: a call killed while packing leaves the last pack whole)."""
        if self.pack:
            RecordPack(self.packed).pack(self.keep)


def _key(row: dict[str, Any]) -> tuple:
    return row["model"], row["exporter"], row["batch"], row["precision"], row["mode"], row.get("source")


def row_file(path: Path, environment: dict[str, Any], settings: dict[str, Any]) -> RowFile:
    """The zoo's rows at ``path`` (`records.RowFile`)."""
    return RowFile(path, "zoo", environment, settings, _key)


def row(bench: Bench, model: str, exporter: str | None, mode: str, ms: float | None = None,
        error: str | None = None, **more: Any) -> dict[str, Any]:
    """A row of the output; ``error`` is the one-line reason there is no number, or that the output is wrong."""
    return {"model": model, "exporter": exporter, "batch": bench.batch, "precision": PRECISION, "mode": mode,
            "ms": ms, "error": error, "source": bench.call.source, **more}


def output_check(got: np.ndarray, expected: np.ndarray) -> tuple[float, str | None]:
    """``(rel_l2, error)``: the relative L2 error against ONNX Runtime's output, and the error it is above the
    precision's tolerance."""
    rel = relative_error(np.asarray(got).reshape(expected.shape), expected)
    return rel, tolerance_error(rel, PRECISION, "ONNX Runtime's")


# ---- the networks: PyTorch (imported only here, so that a dry run needs none), ONNX files, ONNX Runtime ----


def torch_importable() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_runtime(path: Path, x: np.ndarray) -> np.ndarray:
    """The file's output for ``x`` by ONNX Runtime on the CPU: the reference of every mode."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def input_batch(name: str, bench: Bench) -> np.ndarray:
    size = bench.resolution or ZOO[name].resolution
    return np.random.default_rng(0).standard_normal((bench.batch, 3, size, size)).astype(np.float32)


# ---- our engine: the search, then Sequential and IOS-Both ----


class SearchError(RuntimeError):
    """The search gave no schedule: it failed (its last line of error) or did not end in time."""


def search(bench: Bench, name: str, exporter: str, path: Path, graph: Graph) -> Schedule:
    """IOS-Both of the file, searched by ``python -m ios_core.optimize model=onnx`` itself (``SEARCH``, in parts of the
    network's ``max_part_size``, `ios_core.models.zoo.ZOO`): the measured
    stage cost on a GPU (the simulated one in a dry run), the file's weights in every stage. In a process of its own,
    so that a search that does not end within ``bench.search_timeout_s`` (a DP over a block of hundreds of operators)
    costs that much time and no more; the stages it measured are in the cost cache for the next call."""
    cost = ["cost=simulated"] if bench.call.dry_run else [
        "cost=measured", f"cost.cache={bench.keep / 'stage_costs.jsonl'}", f"cost.tune_cache={tune_cache(bench)}"]
    output = bench.keep / "schedules" / f"{name}_{exporter}_b{bench.batch}_both.json"
    command = [sys.executable, "-m", "ios_core.optimize", "model=onnx", f"model.path={path}",
               f"device={bench.call.device}", f"batch={bench.batch}", f"precision={PRECISION}", *SEARCH,
               f"max_part_size={ZOO[name].max_part_size}", *cost, f"output={output}", "progress=false",
               "tracking.mlflow=false"]
    try:
        finished = subprocess.run(command, capture_output=True, text=True, timeout=bench.search_timeout_s)
    except subprocess.TimeoutExpired:
        raise SearchError(f"the search did not end within {bench.search_timeout_s:g} s") from None
    print(finished.stdout, end="", flush=True)
    if finished.returncode != 0:
        lines = finished.stderr.strip().splitlines()
        raise SearchError(f"the search failed: {lines[-1] if lines else f'exit status {finished.returncode}'}")
    return load(output, graph)


def tune_cache(bench: Bench) -> Path:
    return bench.keep / f"tune_{bench.call.device}.json"


def on_engine(bench: Bench, network: Network, schedule: Schedule, x: np.ndarray,
              expected: np.ndarray) -> tuple[dict[str, Any], Any]:
    """The schedule run on the engine with the network's weights: its row's numbers and the engine's measurement."""
    from ios_core.engine import PlanOptions, build_plan, latency

    plan = build_plan(network.graph, schedule, bench.batch, PRECISION, network.weights,
                      PlanOptions(tune_cache=str(tune_cache(bench))))
    try:
        rel, error = output_check(plan(x), expected)
        m = latency(plan, bench.call.timing)
    finally:
        plan.close()
    return {"ms": m.ms, "error": error, "rel_l2": rel, "sm_mhz_before": m.clocks_before.get("sm_mhz"),
            "sm_mhz_after": m.clocks_after.get("sm_mhz")}, m


def simulate(bench: Bench, network: Network, schedule: Schedule, x: np.ndarray,
             expected: np.ndarray) -> dict[str, Any]:
    """A dry run's numbers: the analytical model's latency; the float64 reference's error against ONNX Runtime."""
    profile = device_profile(bench.call.device)
    ms = simulated(network.graph, schedule, bench.batch, profile, PRECISION).samples_ms[0]
    rel, error = output_check(run_graph(network.graph, x.astype(np.float64), network.weights), expected)
    return {"ms": ms, "error": error, "rel_l2": rel}


def engine_rows(bench: Bench, rows: RowFile, name: str, exporter: str, path: Path) -> None:
    """Import, search and run one exported file in every engine mode still to do, against ONNX Runtime."""
    x = input_batch(name, bench)
    expected = reference(bench, name, path, x)
    network = load_onnx(path)  # named as ios_core.optimize names it, for its schedule to load
    todo, ops = pending(bench, rows, name, exporter, ENGINE_MODES), len(network.graph.operators)
    schedules = {"sequential": sequential(network.graph)}
    if "ios_both" in todo:
        try:
            schedules["ios_both"] = search(bench, name, exporter, path, network.graph)
        except SearchError as error:  # a row that says so; --retry-failed resumes it from the cost cache
            rows.add(row(bench, name, exporter, "ios_both", error=one_line(error), ops=ops, revisions=REVISIONS))
    for mode in [m for m in todo if m in schedules]:
        try:
            if bench.call.dry_run:
                numbers = simulate(bench, network, schedules[mode], x, expected)
            else:
                numbers, m = on_engine(bench, network, schedules[mode], x, expected)
                record_engine(bench, (name, exporter, mode), schedules[mode], m, numbers)
        except Exception as error:  # noqa: BLE001 -- one failing mode must not lose the others
            numbers = {"error": one_line(error)}
        rows.add(row(bench, name, exporter, mode, ops=ops, revisions=REVISIONS, **numbers))


def pending(bench: Bench, rows: RowFile, name: str, exporter: str | None, modes: tuple[str, ...]) -> list[str]:
    """The ``modes`` asked for whose rows are still to do: not `done`, or of the engine and measured with other
    `REVISIONS` (an older import or engine)."""
    def fresh(row: dict[str, Any]) -> bool:
        return row["mode"] not in ENGINE_MODES or row.get("revisions") == REVISIONS

    return [m for m in modes if m in bench.modes
            and not done(rows, (name, exporter, bench.batch, PRECISION, m, bench.call.source), bench.call, fresh)]


def reference(bench: Bench, name: str, path: Path | None, x: np.ndarray) -> np.ndarray:
    """ONNX Runtime's output for ``x`` on the file ``path``, kept beside the rows: every mode of the network, of
    either exporter and of a later call, is checked against the same one."""
    kept = bench.keep / f"{name}_b{bench.batch}_{x.shape[-1]}px_onnxruntime.npy"
    if kept.exists():
        return np.load(kept)
    if path is None:
        raise RuntimeError(f"no ONNX Runtime output of {name}: no exporter gave a file")
    expected = onnx_runtime(path, x)
    np.save(kept, expected)
    return expected


def record_engine(bench: Bench, what: tuple[str, str, str], schedule: Schedule, m: Any, numbers: dict) -> None:
    """The ``measure`` record of an engine mode, as ``python -m ios_core.measure`` writes one."""
    from ios_core.engine import PlanOptions

    name, exporter, mode = what
    run = Run(name, bench.batch, bench.call.device, PRECISION, {"benchmark": "zoo", "exporter": exporter, "mode": mode})
    metrics = {"rel_l2_vs_onnxruntime": numbers["rel_l2"]}
    record = measure_record(run, schedule, None, [m], PlanOptions(tune_cache=str(tune_cache(bench))), metrics)
    write(record, bench.keep / "records" / f"{name}_{exporter}_b{bench.batch}_{mode}.json")


# ---- the original PyTorch module ----


def torch_rows(bench: Bench, rows: RowFile, name: str, module: Any, expected: np.ndarray) -> None:
    """The original module in every PyTorch mode still to do, each checked against ONNX Runtime's output."""
    import torch

    from ios_core.baselines.torch_adapters import set_precision

    set_precision(torch, PRECISION)
    torch.backends.cudnn.benchmark = True
    model = module.cuda().to(memory_format=torch.channels_last)
    static = torch.from_numpy(input_batch(name, bench)).cuda().contiguous(memory_format=torch.channels_last)
    for mode in pending(bench, rows, name, None, TORCH_MODES):
        try:
            with torch.inference_mode():
                call, details = torch_call(torch, model, static, mode, bench.compile_mode)
                out = call().float().cpu().numpy()
                numbers = time_torch(bench, call)
            rel, error = output_check(out, expected)
            numbers |= {"rel_l2": rel, "error": error, **details}
            record_torch(bench, name, mode, numbers)
        except Exception as error:  # noqa: BLE001 -- one failing mode must not lose the others
            numbers = {"error": one_line(error)}
        rows.add(row(bench, name, None, mode, **{k: v for k, v in numbers.items() if k != "samples"}))
    del model, static
    torch.cuda.empty_cache()


def torch_call(torch: Any, model: Any, static: Any, mode: str, compile_mode: str) -> tuple[Callable[[], Any], dict]:
    """The call a PyTorch mode times (warmed up, compiled, captured), and the seconds that took (``setup_s``); for
    ``torch_compile_freeze`` also whether its calls replay in our CUDA graph (``cuda_graph``)."""
    from ios_core.baselines.torch_adapters import Compile, compiled_call, cuda_graph_replay

    started, details = time.perf_counter(), {}
    if mode == "torch_eager":
        call = lambda: model(static)  # noqa: E731
    elif mode == "torch_cudagraph":
        call = cuda_graph_replay(torch, model, static)
    else:
        call = compiled_call(torch, model, static,
                             Compile(None if compile_mode == "default" else compile_mode, freezing=True))
        details["cuda_graph"] = compile_mode in ("reduce-overhead", "max-autotune")  # Inductor's own graphs
        if not details["cuda_graph"]:
            try:
                compiled = call  # it calls the compiled module on ``static``
                call, details["cuda_graph"] = cuda_graph_replay(torch, lambda _: compiled(), static), True
            except RuntimeError as error:  # timed call by call then, and the row says so
                details["cuda_graph_error"] = one_line(error)
    return call, {**details, "setup_s": time.perf_counter() - started}


def time_torch(bench: Bench, call: Callable[[], Any]) -> dict[str, Any]:
    """``call`` timed as the engine is, with the clocks around it (`engine_vs_torch.time_calls`)."""
    from engine_vs_torch import time_calls

    timed = time_calls(call, bench.call.timing)
    return {"ms": timed["ms"], "samples": timed["samples"], "sm_mhz_before": timed["clocks_before"].get("sm_mhz"),
            "sm_mhz_after": timed["clocks_after"].get("sm_mhz")}


def record_torch(bench: Bench, name: str, mode: str, numbers: dict[str, Any]) -> None:
    """The ``baseline`` record of a PyTorch mode (tagged ``module: original``: not the module of our IR)."""
    import torch

    from ios_core.baselines.torch_adapters import torch_environment

    device, versions = torch_environment(torch)
    measurement = Measurement(mode, name, bench.batch, "measured", True, device=device,
                              latencies_ms=list(numbers["samples"]), median_ms=numbers["ms"], precision=PRECISION,
                              clock="cuda-events", timing=asdict(bench.call.timing), versions=versions,
                              rel_error=numbers["rel_l2"],
                              details={"compile_mode": bench.compile_mode, "cuda_graph": numbers.get("cuda_graph")})
    run = Run(name, bench.batch, bench.call.device, PRECISION, {"benchmark": "zoo", "module": "original"})
    path = bench.keep / "records" / f"{name}_b{bench.batch}_{mode}.json"
    write(baseline_record(run, measurement, bench.call.timing), path)


# ---- the run ----


def bench_model(bench: Bench, rows: RowFile, name: str, exporters: tuple[str, ...], work: Path) -> None:
    """Every row of one network still missing: each exporter's engine modes, then the PyTorch modes."""
    engine_todo = [e for e in exporters if pending(bench, rows, name, e, ENGINE_MODES)]
    torch_todo = not bench.call.dry_run and pending(bench, rows, name, None, TORCH_MODES)
    if not engine_todo and not torch_todo:
        return
    module, last = None, None
    if torch_todo or any(not given(bench, name, e) for e in engine_todo):
        module = build_module(name) if torch_importable() else None
    for exporter in engine_todo:
        if bench.call.over_budget():
            return
        try:
            path = given(bench, name, exporter)
            if path is None:
                if module is None:
                    raise RuntimeError(f"no {name}.{exporter}.onnx in --onnx-dir and PyTorch is not importable")
                path = export(module, input_batch(name, bench), exporter, work / f"{name}.{exporter}.onnx")
            last = path
            engine_rows(bench, rows, name, exporter, path)
        except Exception as error:  # noqa: BLE001 -- export, ONNX Runtime or import: the file's rows say which
            for mode in pending(bench, rows, name, exporter, ENGINE_MODES):
                rows.add(row(bench, name, exporter, mode, error=one_line(error)))
        bench.save()
    if torch_todo and not bench.call.over_budget():
        x = input_batch(name, bench)
        try:
            # Every exporter's rows there already (an earlier call) and ONNX Runtime's output lost: export once more.
            expected = reference(bench, name, last or export(module, x, EXPORTERS[0], work / "reference.onnx"), x)
        except Exception as error:  # noqa: BLE001 -- without a reference the PyTorch numbers are not checked
            for mode in pending(bench, rows, name, None, TORCH_MODES):
                rows.add(row(bench, name, None, mode, error=one_line(error)))
            return
        torch_rows(bench, rows, name, module, expected)
        bench.save()


def given(bench: Bench, name: str, exporter: str) -> Path | None:
    """The file ``--onnx-dir`` holds for this network and exporter, if any."""
    path = bench.onnx_dir / f"{name}.{exporter}.onnx" if bench.onnx_dir else None
    return path if path is not None and path.is_file() else None


def run(bench: Bench, models: list[str], exporters: tuple[str, ...]) -> RowFile:
    """Every row of ``models`` x ``exporters`` not in ``bench.call.out`` yet, written as it comes; stops starting new
    work once ``bench.call.budget_s`` has passed."""
    settings = {"timing": asdict(bench.call.timing), "search": list(SEARCH), "compile_mode": bench.compile_mode,
                "resolution": bench.resolution}
    timed_torch = bool(set(TORCH_MODES) & set(bench.modes))
    rows = row_file(bench.call.out, machine(bench.call, timed_torch), settings)
    bench.unpack()
    for name in models:
        if bench.call.over_budget():
            print(f"budget of {bench.call.budget_s} s reached before {name}: run again to resume", flush=True)
            break
        with tempfile.TemporaryDirectory() as work:  # exports are large (nasnetalarge: 350 MB): kept one network
            bench_model(bench, rows, name, exporters, Path(work))
        for r in rows.rows:
            if r["model"] == name:
                print(f"{name:20s} {r['exporter'] or '-':12s} {r['mode']:22s} {fmt(r['ms'])} ms  "
                      f"{r.get('error') or ''}", flush=True)
    return rows


def fmt(ms: float | None) -> str:
    return f"{ms:9.3f}" if ms is not None else "        -"


def table(rows: list[dict[str, Any]], exporter: str = "torchscript") -> str:
    """The README's table for one exporter: each network's operators, IOS-Both's latency, and its speedup over our
    Sequential and over torch.compile with freezing; the geometric mean of the last (networks with both only)."""
    ms = {(r["model"], r["exporter"], r["mode"]): r["ms"] for r in rows if r["ms"] is not None and not r["error"]}
    ops = {r["model"]: r["ops"] for r in rows if r.get("ops") and r["exporter"] == exporter}
    lines = [f"| model ({exporter}) | ops | IOS-Both ms | vs Sequential | vs torch.compile + freezing |",
             "|---|---|---|---|---|"]
    speedups = []
    for name in dict.fromkeys(r["model"] for r in rows):
        both, seq = ms.get((name, exporter, "ios_both")), ms.get((name, exporter, "sequential"))
        compiled = ms.get((name, None, "torch_compile_freeze"))
        if compiled and both:
            speedups.append(compiled / both)
        lines.append(f"| {name} | {ops.get(name, '-')} | {f'{both:.3f}' if both else '-'} | "
                     f"{f'{seq / both:.2f}x' if seq and both else '-'} | "
                     f"{f'{compiled / both:.2f}x' if compiled and both else '-'} |")
    if speedups:
        mean = math.exp(sum(math.log(s) for s in speedups) / len(speedups))
        lines.append(f"| geometric mean ({len(speedups)} networks) | | | | {mean:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=names_of(ZOO), default=list(ZOO))
    parser.add_argument("--exporters", type=names_of(EXPORTERS), default=list(EXPORTERS))
    parser.add_argument("--modes", type=names_of(MODES), default=list(MODES))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True, help="the rows' JSON, read first and rewritten per row")
    parser.add_argument("--keep", type=Path, default=None,
                        help="the folder of records, schedules and caches (default: <out>.records)")
    parser.add_argument("--pack", action="store_true", help="keep --keep as <out>.records.tar.gz beside --out")
    parser.add_argument("--compile-mode", default="default",
                        help="torch.compile's mode (always with freezing): default, max-autotune-no-cudagraphs, ...")
    parser.add_argument("--search-timeout-s", type=float, default=300,
                        help="give up an IOS-Both search after this many seconds (its row says so)")
    call_arguments(parser, "start no new network after this many seconds",
                   "CPU: simulated cost, no engine, no PyTorch timing")
    parser.add_argument("--onnx-dir", type=Path, default=None, help="read <model>.<exporter>.onnx here if present")
    parser.add_argument("--resolution", type=int, default=None, help="export at this size instead (a quick dry run)")
    parser.add_argument("--table", action="store_true", help="print the README table of --out and stop")
    args = parser.parse_args(argv)
    if args.table:
        rows = json.loads(args.out.read_text())["rows"]
        measured = [e for e in args.exporters if any(r["exporter"] == e for r in rows)]  # no table for one not run
        print("\n\n".join(table(rows, exporter) for exporter in measured))
        return 0
    keep = args.keep or args.out.with_name(args.out.name + ".records")
    bench = Bench(call_of(args), keep, args.batch, tuple(args.modes), onnx_dir=args.onnx_dir,
                  resolution=args.resolution, compile_mode=args.compile_mode, search_timeout_s=args.search_timeout_s,
                  pack=args.pack)
    rows = run(bench, args.models, tuple(args.exporters))
    print(table(rows.rows, args.exporters[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
