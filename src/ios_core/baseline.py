"""``python -m ios_core.baseline framework=<name> model=<model> batch=<b>``: time one baseline, print it, log it.

A thin Hydra entry (config ``conf/baseline.yaml``) around `run`, which measures with
`ios_core.baselines.measure` and writes an `ios_core.tracking` record: params (framework, model,
batch, precision, timing), tags (status, available, reason, device, clock, versions) and metrics
(``latency_ms``, one value per repeat; ``median_ms``; ``rel_error`` against the float64 reference).
A framework that cannot run here is recorded as unavailable with its reason, and the command
still succeeds: absence is a result.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ios_core.baselines import Measurement, get, load_network, measure
from ios_core.config import check_batch, hydra_command, network_name
from ios_core.errors import run_command
from ios_core.timing import Timing
from ios_core.tracking import TrackingConfig, stringify, tracked


def summary(m: Measurement) -> str:
    """One line: the latency, or why there is none."""
    head = f"{m.framework} {m.model} batch {m.batch}"
    if m.status != "measured":
        return f"{head}: {m.status} -- {m.reason}"
    error = f", rel. error {m.rel_error:.1e}" if m.rel_error is not None else ""
    return (f"{head}: {m.median_ms:.4f} ms, median of {len(m.latencies_ms)} ({m.precision}, {m.clock}{error}) "
            f"on {m.device}")


def tags_of(m: Measurement) -> dict[str, Any]:
    """The record tags of a measurement: its outcome, where and with what it ran."""
    tags = {"source": "measured", "status": m.status, "available": str(m.status == "measured").lower(),
            "reason": m.reason, "device": m.device, "clock": m.clock, "timestamp": m.timestamp}
    tags.update({f"version.{k}": v for k, v in m.versions.items()})
    return tags


def run(cfg: DictConfig | Mapping[str, Any]) -> Measurement:
    """Measure ``cfg.framework`` on ``cfg.model`` at ``cfg.batch``; write and log the record; print the result.

    Raises
    ------
    UserError
        For an unknown framework or config key, a batch below 1, or a model that cannot be built.
    """
    cfg = OmegaConf.create(cfg) if not isinstance(cfg, DictConfig) else cfg
    check_batch(cfg.batch)
    framework = get(cfg.framework)
    model = cfg.model.get("path") or cfg.model.name
    timing, precision = Timing(**OmegaConf.to_container(cfg.timing)), str(cfg.precision)
    options = OmegaConf.to_container(cfg.options) if cfg.get("options") else {}
    name = network_name(cfg.model)
    params = {"framework": framework.name, "model": name, "batch": cfg.batch, "precision": precision,
              "warmup": timing.warmup, "number": timing.number, "repeat": timing.repeat, "seed": cfg.seed,
              "device_profile": cfg.device.name, "options": options}
    tracking = TrackingConfig(**OmegaConf.to_container(cfg.tracking))
    with tracked(f"baseline/{framework.name}/{name}/b{cfg.batch}", "baseline", params,
                 {"source": "measured", "framework": framework.name}, cfg.get("out"), tracking) as record:
        network = load_network(model, cfg.seed)
        if cfg.device.get("real", True):
            m = measure(framework, network, cfg.batch, timing, precision=precision, seed=cfg.seed, check=cfg.check,
                        options=options)
        else:
            m = Measurement(framework.name, network.name, cfg.batch, "unavailable", False,
                            f"device={cfg.device.name} is simulated: baselines are only measured on a GPU",
                            precision=precision)
        record.tags.update(stringify(tags_of(m)))
        if m.status == "measured":
            record.log_series("latency_ms", m.latencies_ms)
            record.log_metric("median_ms", m.median_ms)
            if m.rel_error is not None:
                record.log_metric("rel_error", m.rel_error)
    print(summary(m), flush=True)
    if cfg.get("json"):
        print(m.to_json(), end="", flush=True)
    return m


main = hydra_command(run, "baseline")


if __name__ == "__main__":
    run_command(main)
