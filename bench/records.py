"""What a benchmark measures, as the records ``python -m ios_core.measure`` and ``python -m ios_core.baseline`` write.

A benchmark that times schedules on the engine, or a framework, outside those commands (side by side in one
process, in rotating rounds) writes the same `ios_core.tracking` record, built from the same seams -- the params of
an engine measurement and of a schedule (`ios_core.measure.engine_params`, `schedule_params`), a baseline's tags
(`ios_core.baseline.tags_of`), the search behind a schedule (`ios_core.tracking.adapters.search_metrics`) -- so that
figures and ``python -m ios_core.tracking ingest`` take it as any other. What only a benchmark knows (a plan's
arena, an output's error against a reference, the rounds) is a param or metric more.

It also holds what the benchmarks share: `Call` (where a call's rows go, how it times, when it stops), which each
script's own settings hold as a field, with its options (`call_arguments`, `call_of`); `done`, `tolerance_error`,
`missing_rows` (each row within the call's ``row_timeout_s``: `RowTimeout`), `one_line`, `machine` (where a call
ran), `network`, `BothSchedules` (where a row's IOS-Both schedule comes from, searched at the row's batch and
precision where asked), `RecordPack` and `names_of`.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import platform
import signal
import statistics
import tarfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from ios_core import models
from ios_core.baseline import tags_of
from ios_core.baselines import Measurement
from ios_core.config import device_profile
from ios_core.cost import CostSpec, build_cost
from ios_core.engine import PlanOptions
from ios_core.files import write_atomic
from ios_core.ir import Graph
from ios_core.measure import engine_params, gpu_mismatch, schedule_params
from ios_core.onnx_io import Network
from ios_core.optimizer import OptimizerOptions, search_end_to_end
from ios_core.precision import TOLERANCE
from ios_core.schedule import Schedule, save
from ios_core.timing import Timing
from ios_core.tracking import Record, stringify
from ios_core.tracking.adapters import search_metrics
from ios_core.tracking.record import now_ms, to_json


@dataclass(frozen=True)
class Run:
    """What every record of one benchmark run shares: the model, batch, device profile and precision, and tags
    (``{"benchmark": "cross_device"}``: where it was measured)."""

    model: str
    batch: int
    device: str
    precision: str = "fp32"
    tags: Mapping[str, str] = field(default_factory=dict)


def measure_record(run: Run, schedule: Schedule, path: str | None, rounds: Sequence[Any], options: PlanOptions,
                   metrics: Mapping[str, float] | None = None) -> Record:
    """The ``measure`` record of ``schedule`` (read from ``path``; None: made here) timed on the engine in
    ``rounds`` (`ios_core.engine.latency` measurements, one per round) with plan ``options``.

    ``latency_ms`` holds every sample of every round and ``median_ms`` is the median of the rounds' medians; the
    clocks are the first round's before and the last round's after.
    """
    first, last = rounds[0], rounds[-1]
    params = {"model": run.model, "batch": run.batch, "device": run.device, "precision": run.precision,
              **schedule_params(schedule), "schedule": path, "variant": "autotune" if options.autotune else "",
              "mode": "measured", **engine_params(replace(first, clocks_after=last.clocks_after)),
              "concat_in_place": options.concat_in_place, "own_depthwise": options.own_depthwise,
              "rounds": len(rounds)}
    tags = {**run.tags, "source": "measured", "available": "true", "reason": ""}
    name = f"measure/{run.model}/b{run.batch}/{params['opt'] or '-'}{'+autotune' if options.autotune else ''}"
    record = Record(name, "measure", stringify(params), stringify(tags))
    for metric, value in search_metrics(schedule.meta).items():
        record.log_metric(metric, value)
    record.log_series("latency_ms", [sample for m in rounds for sample in m.samples])
    record.log_metric("median_ms", statistics.median(m.ms for m in rounds))
    for metric, value in (metrics or {}).items():
        record.log_metric(metric, value)
    return finished(record)


def baseline_record(run: Run, measurement: Measurement, timing: Timing,
                    metrics: Mapping[str, float] | None = None) -> Record:
    """The ``baseline`` record of a framework timed here, as ``python -m ios_core.baseline`` records one."""
    m = measurement
    params = {"framework": m.framework, "model": run.model, "batch": run.batch, "precision": run.precision,
              "warmup": timing.warmup, "number": timing.number, "repeat": timing.repeat, "seed": 0,
              "device_profile": run.device, "options": {}}
    tags = {**run.tags, **tags_of(m), "framework": m.framework}
    record = Record(f"baseline/{m.framework}/{run.model}/b{run.batch}", "baseline", stringify(params),
                    stringify(tags))
    if m.status == "measured":
        record.log_series("latency_ms", m.latencies_ms)
        record.log_metric("median_ms", m.median_ms)
        if m.rel_error is not None:
            record.log_metric("rel_error", m.rel_error)
    for metric, value in (metrics or {}).items():
        record.log_metric(metric, value)
    return finished(record)


def finished(record: Record) -> Record:
    record.status, record.end_time = "FINISHED", now_ms()
    return record


def file_name(record: Record, suffix: str = "") -> str:
    """A record's file name from its name: ``measure/inception_v3/b1/both+autotune`` ->
    ``inception_v3_b1_both<suffix>.json`` (a baseline's: ``torch_compile_inception_v3_b1<suffix>.json``)."""
    return "_".join(record.name.split("/")[1:]).removesuffix("+autotune").replace("+", "_") + f"{suffix}.json"


class RowFile:
    """A benchmark's rows in one JSON document at ``path``, read at the start and written again (atomically) after
    every new row, which replaces the row with the same ``key``: a run stopped midway resumes where it stopped."""

    def __init__(self, path: Path, benchmark: str, environment: dict[str, Any], settings: dict[str, Any],
                 key: Callable[[dict[str, Any]], tuple]) -> None:
        self.path, self.benchmark, self.settings, self.key = path, benchmark, settings, key
        old = json.loads(path.read_text()) if path.exists() else {}
        self.rows: list[dict[str, Any]] = old.get("rows", [])
        # One machine per call (a resumed run may get another): each row names its call by index.
        self.environments: list[dict[str, Any]] = [*old.get("environments", []), environment]

    def add(self, row: dict[str, Any]) -> None:
        # NaN is no JSON: a non-finite number is null, and the row's error says what it was
        row = {**{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()},
               "call": len(self.environments) - 1}
        self.rows = [r for r in self.rows if self.key(r) != self.key(row)] + [row]
        document = {"benchmark": self.benchmark, "environments": self.environments, "settings": self.settings,
                    "rows": self.rows}
        write_atomic(self.path, json.dumps(document, indent=1, default=str) + "\n")


@dataclass
class Call:
    """What every benchmark's call holds: where its rows go (``out``), the device profile, how it times, whether it
    only simulates (``dry_run``), when it starts nothing more (``budget_s`` after ``started``), whether the rows
    without a number are run again (``retry_failed``), which rows of earlier calls are run again in this one
    (``again``: those whose key holds one of these names, e.g. a framework or a mode) and how long one row may last
    (``row_timeout_s``: a torch.compile max-autotune row compiles for many minutes; stopped, it is a failed row
    with its reason instead of a call killed by its time limit with the rows after it)."""

    out: Path
    device: str
    timing: Timing = field(default_factory=Timing)
    dry_run: bool = False
    budget_s: float | None = None
    retry_failed: bool = False
    started: float = field(default_factory=time.perf_counter)
    again: tuple[str, ...] = ()
    row_timeout_s: float | None = None

    @property
    def source(self) -> str:
        """A row's ``source``: ``simulated`` in a dry run, else ``measured``."""
        return "simulated" if self.dry_run else "measured"

    def over_budget(self) -> bool:
        return self.budget_s is not None and time.perf_counter() - self.started > self.budget_s

    def stopped(self) -> bool:
        """Whether the budget is spent, and if so, the line that says so and how to resume."""
        if self.over_budget():
            print(f"stopped by --budget-s {self.budget_s}: rerun to resume", flush=True)
            return True
        return False


def call_arguments(parser: argparse.ArgumentParser, budget: str, dry_run: str, retry_failed: bool = True,
                   row_timeout: bool = False) -> None:
    """The options of a `Call` but ``--out``: ``--device``, the timing, ``--budget-s`` (``budget``: what it stops),
    ``--retry-failed`` and ``--row-timeout-s`` where the benchmark has them (its rows are `missing_rows`), and
    ``--dry-run`` (``dry_run``: what it does instead)."""
    parser.add_argument("--device", default="h200", help="this GPU's device profile")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--number", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--budget-s", type=float, default=None, help=budget)
    if retry_failed:
        parser.add_argument("--retry-failed", action="store_true", help="run again the rows without a number")
    parser.add_argument("--again", type=lambda text: tuple(text.split(",")), default=(),
                        help="run again, once, the rows of earlier calls whose key holds one of these names (a comma "
                        "list: frameworks, modes, models), e.g. after a new schedule")
    if row_timeout:
        parser.add_argument("--row-timeout-s", type=float, default=None, help="stop a row that lasts longer (e.g. "
                            "compiling): it is failed with the reason, and --retry-failed runs it again")
    parser.add_argument("--dry-run", action="store_true", help=dry_run)


def call_of(args: argparse.Namespace) -> Call:
    """The call that ``--out`` and the options of `call_arguments` ask for, once this GPU is the device profile's
    (else `SystemExit`, the reason; a dry run needs no GPU)."""
    call = Call(args.out, args.device, Timing(warmup=args.warmup, number=args.number, repeat=args.repeat),
                args.dry_run, args.budget_s, getattr(args, "retry_failed", False), again=args.again,
                row_timeout_s=getattr(args, "row_timeout_s", None))
    if not call.dry_run and (mismatch := gpu_mismatch(device_profile(call.device))):
        raise SystemExit(mismatch)
    return call


def done(rows: RowFile, wanted: tuple, call: Call, fresh: Callable[[dict[str, Any]], bool] = lambda row: True) -> bool:
    """Whether the row with key ``wanted`` is there: measured (a dry run's does not count for a real run), with a
    number unless ``call.retry_failed`` asks for those again, in this call if ``call.again`` names it, and
    ``fresh`` (e.g. not measured with an older engine)."""
    this_call = len(rows.environments) - 1
    again = any(name in call.again for name in wanted if isinstance(name, str))
    return any(rows.key(row) == wanted and (row["source"] == call.source or call.dry_run)
               and (row["ms"] is not None or not call.retry_failed)
               and (not again or row.get("call") == this_call) and fresh(row) for row in rows.rows)


def missing_rows(rows: RowFile, call: Call, wanted: Iterable[tuple],
                 measure: Callable[[tuple], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The row of each key of ``wanted`` not `done` yet, made by ``measure`` and added to ``rows`` before it is
    yielded, until the call's budget is spent (`Call.stopped`). ``measure`` runs within ``call.row_timeout_s``: past
    it, `RowTimeout` is raised inside it, for ``measure`` to turn into its failed row like any other failure."""
    for wanted_key in wanted:
        if done(rows, wanted_key, call):
            continue
        if call.stopped():
            return
        with within(call.row_timeout_s):
            row = measure(wanted_key)
        rows.add(row)
        yield row


class RowTimeout(Exception):
    """A row lasted longer than the call's ``row_timeout_s``."""


@contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Raise `RowTimeout` in the body once it has run ``seconds`` (None: no limit). A real-time timer's signal, so
    that Python code (Inductor's compiling, waiting on its workers) is interrupted where it is; the main thread's
    only, as a benchmark's rows are."""
    if seconds is None:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise RowTimeout(f"did not finish within {seconds:g} s (--row-timeout-s)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def tolerance_error(error: float | None, precision: str, against: str = "the float64 reference") -> str | None:
    """A row's ``error`` where an output's relative L2 ``error`` against ``against`` is above the precision's
    tolerance (NaN included); None where it is within, or was not measured."""
    if error is not None and not error <= TOLERANCE[precision]:
        return f"output differs from {against}: rel L2 {error:.2e} > {TOLERANCE[precision]:.0e}"
    return None


def one_line(error: BaseException) -> str:
    """A row's ``error`` for an exception: its type and the first line of its message."""
    first = str(error).strip().splitlines()
    return f"{type(error).__name__}: {first[0] if first else ''}"[:500]


def machine(call: Call, with_torch: bool) -> dict[str, Any]:
    """Where a call ran: Python's version and the rows' source always; on a GPU its name, driver, CUDA, cuDNN and
    clocks, and PyTorch's device and versions where ``with_torch`` (the call times PyTorch too); in a dry run the
    name says so."""
    found: dict[str, Any] = {"python": platform.python_version(), "source": call.source}
    if call.dry_run:
        return {"name": f"simulated {call.device}", **found}
    from ios_core import gpu
    from ios_core.engine import environment as engine_environment

    found |= {**engine_environment(), "clocks": gpu.clocks()}
    if with_torch:
        import torch

        from ios_core.baselines.torch_adapters import torch_environment

        device, versions = torch_environment(torch)
        found |= {"torch_device": device, "torch": versions}
    return found


@cache
def network(model: str) -> Network:
    """The model with its deterministic weights, one object per model: its float64 reference is computed once."""
    return Network.of(models.get(model))


@dataclass(frozen=True)
class BothSchedules:
    """Where a benchmark's IOS-Both schedules come from: ``template``, a path naming any of ``{model}``, ``{batch}``,
    ``{precision}`` and ``{device}``, filled in with the row's. Where that file is missing, it is first searched
    into at the row's batch and precision when ``cost_cache`` is set (`search`), else batch 1's file stands in
    (the row names the file it ran)."""

    template: str
    cost_cache: str | None = None  # where the searches keep their stage costs; None: no search

    def path(self, graph: Graph, batch: int, precision: str, call: Call, tune_cache: str | None = None) -> Path:
        """The row's schedule file: searched into first where missing and asked for, else batch 1's where missing
        (which may not exist either: the caller says so)."""
        path = self.filled(graph.name, batch, precision, call.device)
        if not path.exists() and self.cost_cache is not None:
            self.search(graph, batch, precision, call, path, tune_cache)
        return path if path.exists() else self.filled(graph.name, 1, precision, call.device)

    def filled(self, model: str, batch: int, precision: str, device: str) -> Path:
        return Path(self.template.format(model=model, batch=batch, precision=precision, device=device))

    def search(self, graph: Graph, batch: int, precision: str, call: Call, path: Path,
               tune_cache: str | None) -> None:
        """IOS-Both searched at ``batch`` and ``precision``, judged end to end (`ios_core.optimizer.rerank`), with
        the measured cost (the simulated one in a dry run), its stage costs kept in ``cost_cache``; saved at
        ``path``."""
        spec = CostSpec(kind=call.source, precision=precision, cache=self.cost_cache, tune_cache=tune_cache)
        with build_cost(spec, device_profile(call.device)) as cost:
            result = search_end_to_end(graph, cost, batch, OptimizerOptions("both", candidates=8))
        meta = {**result.schedule.meta, "model": graph.name, "device": call.device, "precision": precision}
        save(replace(result.schedule, meta=meta), path)
        print(f"searched {path}: {result.latency_ms:.3f} ms ({call.source})", flush=True)


def schedule_arguments(parser: argparse.ArgumentParser, template: str) -> None:
    """``--ios-schedule`` and ``--search``, read back by `schedules_of`."""
    parser.add_argument("--ios-schedule", default=template, help="IOS-Both's schedule of each row: a path naming "
                        "{model}, {batch}, {precision} or {device}; batch 1's file where it is missing")
    parser.add_argument("--search", metavar="COST_CACHE", default=None,
                        help="search IOS-Both where --ios-schedule's file is missing, stage costs kept here")


def schedules_of(args: argparse.Namespace) -> BothSchedules:
    return BothSchedules(args.ios_schedule, args.search)


class RecordPack:
    """Files of a run -- its records, or a whole folder of records, schedules and caches -- as one ``.tar.gz`` (a
    device call returns a few files only), read at the start and rewritten atomically after every change: a call
    killed midway leaves the last whole pack."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @cached_property
    def files(self) -> dict[str, bytes]:
        """The pack's files by name, as it was at the start (read once, when first asked for)."""
        if not self.path.exists():
            return {}
        with tarfile.open(self.path) as tar:
            return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}

    def add(self, name: str, record: Record) -> None:
        """``record`` as the file ``name``."""
        self.files[name] = to_json(record).encode()
        self.write()

    def unpack(self, folder: Path) -> None:
        """Every file into ``folder``, at the start of a call that resumes another."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            with tarfile.open(self.path) as tar:
                tar.extractall(folder, filter="data")

    def pack(self, folder: Path) -> None:
        """The files of ``folder`` instead, named ``./<path in it>``."""
        self.files = {f"./{path.relative_to(folder).as_posix()}": path.read_bytes()
                      for path in sorted(folder.rglob("*")) if path.is_file()}
        self.write()

    def write(self) -> None:
        partial = self.path.with_name(self.path.name + ".partial")
        with tarfile.open(partial, "w:gz") as tar:
            for member, data in sorted(self.files.items()):
                info = tarfile.TarInfo(member)
                info.size, info.mtime = len(data), int(time.time())
                tar.addfile(info, io.BytesIO(data))
        partial.replace(self.path)


def names_of(known: Collection[str]) -> Callable[[str], list[str]]:
    """An argparse ``type``: comma-separated names, each one of ``known``."""
    def parse(text: str) -> list[str]:
        unknown = [name for name in text.split(",") if name not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"{unknown[0]!r} is not one of {', '.join(known)}")
        return text.split(",")
    return parse
