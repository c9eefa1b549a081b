"""``python -m ios_core.measure model=<m> batch=<b> device=<d> schedule=<schedule.json>``: end-to-end latency.

How the number is obtained depends on the device (``mode=auto``):

* a simulated device (``device.real=false``) or ``mode=simulated``: the sum of the stage latencies of
  the analytical model (`ios_core.cost.SimulatedCost`) on that device profile, one deterministic
  value, labelled ``source=simulated``; per stage, also the latency and the achieved FLOP rate;
* a real device: the GPU engine (`ios_core.engine`, imported only then) times CUDA-graph replays,
  ``timing.repeat`` samples of ``timing.number`` replays after ``timing.warmup``, labelled
  ``source=measured`` with the GPU's name, driver, cuDNN version and clocks; per stage, the latency
  of the stage timed alone (the ``measured`` stage cost) and the FLOP rate it achieves so. The engine
  runs the network's own weights (a file's for ``model=onnx``, `ios_core.models.load`), and with
  ``check=true`` its output is checked first against the float64 reference on the same weights and input:
  the relative L2 error is the metric ``rel_error``, and one above the precision's tolerance
  (`ios_core.precision.TOLERANCE`) fails the run.

Either way one `ios_core.tracking` record is written to ``out`` and logged to MLflow (unless
``tracking.mlflow=false``). A measurement that cannot be made here -- autotuning without a GPU, a
schedule meant for another GPU than this one, or ``unavailable=<reason>`` -- is recorded as not
available, with the reason; the command still succeeds, since absence is a result.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ios_core.config import ConfigError, Mode, build_model, check_batch, hydra_command, network_name
from ios_core.cost import CostSpec, DeviceProfile, build_cost, stage_latencies
from ios_core.errors import UserError, run_command
from ios_core.ir import Graph
from ios_core.models import Weights
from ios_core.precision import TOLERANCE
from ios_core.reference import relative_error, run_graph
from ios_core.schedule import Schedule, load
from ios_core.timing import Timing
from ios_core.tracking import Record, TrackingConfig, stringify, tracked
from ios_core.tracking.adapters import search_metrics
from ios_core.weights import make_input, make_weights

UTILIZATION_METRIC = "achieved FLOP/s (% of the device's peak)"
MEASURED_UTILIZATION_METRIC = "FLOP/s, each stage timed alone (% of peak)"


class MeasureError(ConfigError):
    """A config value measure cannot use; the message names the key."""


class OutputError(UserError):
    """The engine computed something else than the network: the message gives the error and the tolerance."""


@dataclass(frozen=True)
class Measured:
    """What one measurement gave: per-repeat latencies, per-stage numbers where known, the conditions."""

    samples_ms: list[float]
    params: dict[str, Any]
    stage_ms: list[float] = field(default_factory=list)
    stage_utilization_pct: list[float] = field(default_factory=list)
    rel_error: float | None = None  # the output's against the float64 reference, where it was checked


def simulated(graph: Graph, schedule: Schedule, batch: int, device: DeviceProfile, precision: str) -> Measured:
    """The analytical model's latency of every stage; the schedule's is their sum (stages run in turn)."""
    cost = build_cost(CostSpec(kind="simulated", precision=precision), device)
    stage_ms = stage_latencies(cost, graph, schedule.stages, batch)
    params = {"device_name": device.name.upper(), "utilization_metric": UTILIZATION_METRIC}
    return Measured([sum(stage_ms)], params, stage_ms, stage_utilization(graph, schedule, batch, stage_ms, device,
                                                                          precision))


def stage_utilization(graph: Graph, schedule: Schedule, batch: int, stage_ms: list[float], device: DeviceProfile,
                      precision: str) -> list[float]:
    """Each stage's FLOP rate at its latency, in % of the device's tensor-core peak in ``precision`` (TF32's for
    ``fp32``, FP32's for ``fp32-strict``)."""
    peak = device.peak_tflops(precision, tensor=True) * 1e12
    flops = [batch * sum(graph.flops(op) for op in stage.ops) for stage in schedule.stages]
    return [100.0 * f / (ms / 1e3) / peak if ms > 0 else 0.0 for f, ms in zip(flops, stage_ms, strict=True)]


def gpu_mismatch(device: DeviceProfile) -> str | None:
    """Why this machine's GPU cannot stand for ``device`` (None when it can), from NVML only."""
    from ios_core import gpu

    info = gpu.device_info()
    if not info.get("available"):
        raise MeasureError(f"device={device.name} is a real GPU, but none is usable here ({info.get('reason')}); "
                           "use a simulated device or mode=simulated")
    if device.name.lower() not in info["name"].lower():
        return f"needs a GPU matching device={device.name}; this machine has {info['name']}"
    return None


def on_engine(graph: Graph, weights: Weights | None, schedule: Schedule, batch: int, cfg: DictConfig,
              device: DeviceProfile) -> Measured:
    """Time the schedule on this machine's GPU with the engine (CUDA-graph replays, CUDA events), the network
    run with ``weights`` (None: `make_weights`), its output checked first if ``cfg.check``; then each of its stages
    alone, as the optimizer's measured cost does, for the stage timeline of experiment 3."""
    from ios_core import engine

    timing, precision = Timing(**OmegaConf.to_container(cfg.timing)), str(cfg.precision)
    weights = weights if weights is not None else make_weights(graph)
    plan = engine.build_plan(graph, schedule, batch, precision, weights,
                             options=engine.PlanOptions(autotune=cfg.autotune, barrier=str(cfg.barrier)))
    try:
        error = output_error(plan, graph, weights, batch) if cfg.check else None
        m = engine.latency(plan, timing)
    finally:
        plan.close()
    check_output(error, precision)  # before timing the stages: a wrong network's timeline is not worth having
    params = {**engine_params(m), "barrier": cfg.barrier, "utilization_metric": MEASURED_UTILIZATION_METRIC}
    alone = build_cost(CostSpec(kind="measured", precision=precision, timing=timing, autotune=cfg.autotune,
                                weights=weights), device)
    stage_ms = stage_latencies(alone, graph, schedule.stages, batch)
    return Measured(list(m.samples), params, stage_ms, stage_utilization(graph, schedule, batch, stage_ms, device,
                                                                          precision), error)


def output_error(run: Any, graph: Graph, weights: Weights, batch: int) -> float:
    """The relative L2 error of ``run``'s output (a plan's: input batch -> output batch) on `make_input` against the
    float64 reference's, on the first sample: samples are independent, so one checks them all, at a batch's
    fraction of the reference's time."""
    x = make_input(graph, batch)
    return relative_error(run(x)[:1], run_graph(graph, x[:1], weights))


def check_output(error: float | None, precision: str) -> None:
    """`OutputError` if ``error`` is above the precision's `TOLERANCE` (None: not checked)."""
    if error is not None and not error <= TOLERANCE[precision]:  # NaN fails too
        raise OutputError(f"the engine's output differs from the float64 reference: relative L2 error {error:.2e} > "
                          f"{TOLERANCE[precision]:.0e} ({precision})")


def engine_params(m: Any) -> dict[str, Any]:
    """The params a record keeps of an engine measurement (`ios_core.engine.latency`'s): the GPU, its driver,
    cuDNN and clocks, the plan's layout, and the timing."""
    before, after = m.clocks_before, m.clocks_after
    return {"device_name": m.device.get("name"), "gpu_name": m.device.get("name"), "driver": m.device.get("driver"),
            "cudnn": m.device.get("cudnn"), "layout": m.layout, "sm_mhz_before": before.get("sm_mhz"),
            "sm_mhz_after": after.get("sm_mhz"), "mem_mhz": before.get("mem_mhz"),
            "throttle": ",".join(after.get("throttle", [])), "warmup": m.timing.warmup,
            "number": m.timing.number, "repeat": m.timing.repeat}


def schedule_params(schedule: Schedule | None) -> dict[str, Any]:
    """The params a record keeps of the schedule it timed: its kind, pruning and cost, and the batch and device it
    was searched for."""
    meta = dict(schedule.meta) if schedule else {}
    return {"opt": meta.get("opt"), "r": meta.get("r"), "s": meta.get("s"), "cost": meta.get("cost"),
            "schedule_batch": meta.get("batch"), "schedule_device": meta.get("device")}


def _params(cfg: DictConfig, schedule: Schedule | None, source: str) -> dict[str, Any]:
    return {"model": network_name(cfg.model), "batch": cfg.batch, "device": cfg.device.name,
            "precision": str(cfg.precision), **schedule_params(schedule), "schedule": cfg.schedule,
            "variant": "autotune" if cfg.autotune else "", "mode": source}


def _search_metrics(record: Record, schedule: Schedule) -> None:
    """The search behind the schedule, so that one run holds the whole story of its number."""
    for metric, value in search_metrics(schedule.meta).items():
        record.log_metric(metric, value)


def _why_not(cfg: DictConfig, device: DeviceProfile, source: str) -> str | None:
    if cfg.unavailable:
        return cfg.unavailable
    if cfg.autotune and source == "simulated":
        return "cuDNN engine autotuning needs a GPU: the analytical model has no per-convolution engine choice"
    return gpu_mismatch(device) if source == "measured" else None


def run(cfg: DictConfig) -> Record:
    """Measure ``cfg.schedule`` as ``cfg`` says; write and log the record; print one line."""
    device = DeviceProfile.from_mapping(OmegaConf.to_container(cfg.device))
    if cfg.mode == Mode.engine and not device.real:
        raise MeasureError(f"mode=engine runs the schedule on a GPU; device={device.name} is a simulated profile "
                           "(use a real device such as device=h100, or mode=simulated)")
    use_engine = cfg.mode == Mode.engine or (cfg.mode == Mode.auto and device.real)
    source = "measured" if use_engine else "simulated"
    check_batch(cfg.batch)
    reason = _why_not(cfg, device, source)
    graph, weights = build_model(cfg.model)
    if reason is None and not cfg.schedule:
        raise MeasureError("schedule=<path of a schedule JSON> is required (python -m ios_core.optimize writes one)")
    schedule = None
    if cfg.schedule and (reason is None or Path(cfg.schedule).exists()):
        schedule = load(cfg.schedule, graph)
    params = {**_params(cfg, schedule, source), **({} if schedule else cfg.schedule_params)}
    tags = {**cfg.tags, "source": source, "available": str(reason is None).lower(), "reason": reason or ""}
    name = f"measure/{network_name(cfg.model)}/b{cfg.batch}/{params['opt'] or '-'}{'+autotune' if cfg.autotune else ''}"
    tracking = TrackingConfig(**OmegaConf.to_container(cfg.tracking))
    with tracked(name, "measure", params, tags, cfg.out, tracking) as record:
        if schedule is not None:
            _search_metrics(record, schedule)
            if cfg.schedule:
                record.artifacts.append(str(cfg.schedule))
        if reason is None:
            measured = (on_engine(graph, weights, schedule, cfg.batch, cfg, device) if use_engine else
                        simulated(graph, schedule, cfg.batch, device, str(cfg.precision)))
            if measured.rel_error is not None:
                record.log_metric("rel_error", measured.rel_error)
            record.params.update(stringify(measured.params))
            record.log_series("latency_ms", measured.samples_ms)
            record.log_metric("median_ms", statistics.median(measured.samples_ms))
            record.log_series("stage_latency_ms", measured.stage_ms)
            record.log_series("stage_utilization_pct", measured.stage_utilization_pct)
    print(summary(record), flush=True)
    return record


def summary(record: Record) -> str:
    p = record.params
    head = f"{p['model']} batch {p['batch']} {p['opt'] or ''}{'+autotune' if p['variant'] else ''} on {p['device']}"
    if not record.available:
        return f"{head}: not available -- {record.tags['reason']}"
    samples = record.values("latency_ms")
    return f"{head}: {record.latest('median_ms'):.4f} ms ({record.tags['source']}, median of {len(samples)})"


main = hydra_command(run, "measure")


if __name__ == "__main__":
    run_command(main)
