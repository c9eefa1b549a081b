"""``python -m ios_core.optimize model=<name> batch=<n> opt=both r=3 s=8 cost=simulated device=h100``.

Builds the model, the cost and the optimizer options from the Hydra config (``conf/``, schema in
`ios_core.config`), searches, writes the schedule JSON (``output``, by default under
``schedules/``) and prints a two-line summary. A network read from a file (``model=onnx``) is costed
with its own weights wherever the cost runs it (``cost=measured``). `main` is the thin Hydra wrapper;
`run` does the work and is what tests call. A config error, an unknown model or a cost this machine
cannot provide ends the command with a one-line message and exit status 2, not a stack trace.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ios_core.config import ConfigError, build_model, check_batch, hydra_command, network_name
from ios_core.cost import CostSpec, DeviceProfile, build_cost
from ios_core.cost.bound import critical_path
from ios_core.errors import run_command
from ios_core.optimizer import OptimizerOptions, SearchResult, search_end_to_end
from ios_core.schedule import Schedule, save
from ios_core.timing import Timing
from ios_core.tracking import TrackingConfig, log_record, open_store
from ios_core.tracking.adapters import from_schedule


@dataclass(frozen=True)
class Outcome:
    """What `run` did: the schedule written, where, and the search result behind it."""

    schedule: Schedule
    path: Path
    result: SearchResult


def run(cfg: DictConfig) -> Outcome:
    """Search a schedule as ``cfg`` says, write it to ``cfg.output`` and print a summary. The stages of a network read
    from a file run with its own weights where the cost runs them (`ios_core.models.load`).

    Raises
    ------
    UserError
        For a bad, unknown or missing key or value in the config, an unknown model or a cost that cannot be built
        here (`ios_core.errors`).
    """
    try:
        options = OptimizerOptions(str(cfg.opt), cfg.r, cfg.s, cfg.max_part_size, cfg.candidates)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    check_batch(cfg.batch)
    graph, weights = build_model(cfg.model)
    device = DeviceProfile.from_mapping(OmegaConf.to_container(cfg.device))
    c = cfg.cost
    spec = CostSpec(kind=c.kind, precision=str(cfg.precision), cache=c.cache, table=c.table,
                    timing=Timing(**OmegaConf.to_container(c.timing)), autotune=c.autotune, tune_cache=c.tune_cache,
                    weights=weights, gpus=tuple(str(gpu) for gpu in c.gpus))
    with build_cost(spec, device) as cost, _progress_bar(cfg.progress, len(graph.operators)) as bar:
        progress = lambda done, total: bar.update(done - bar.n)  # noqa: E731
        result = search_end_to_end(graph, cost, cfg.batch, options, progress=progress)
        evaluations, hits = cost.stats.misses, cost.stats.hits
        # Every operator alone is an ending the search costed, so the bound costs no new stage.
        bound = critical_path(graph, cost, cfg.batch)
    meta = {
        "model": network_name(cfg.model),
        "device": device.name,
        "precision": spec.precision,
        **result.schedule.meta,
        "latency_label": cost.kind if "rerank" not in result.schedule.meta else f"{cost.kind}, end to end",
        "cost_evaluations": evaluations,
        "cost_cache_hits": hits,
        "critical_path_ms": bound.ms,
    }
    schedule = replace(result.schedule, meta=meta)
    path = save(schedule, cfg.output)
    print(_summary(schedule, result, path))
    _track(path, cfg.tracking)
    return Outcome(schedule, path, result)


def _track(path: Path, tracking: DictConfig) -> None:
    """Log the search into MLflow as the workflow's ingest would, so both make the same, idempotent record."""
    config = TrackingConfig(**OmegaConf.to_container(tracking))
    if config.mlflow:
        log_record(open_store(config.uri, config.experiment), from_schedule(path))


def _progress_bar(enabled: bool, total: int) -> tqdm:
    # disable=None: shown on a terminal only, so logs and tests stay clean.
    return tqdm(total=total, unit="op", desc="search", leave=False, disable=None if enabled else True)


def _summary(schedule: Schedule, result: SearchResult, path: Path) -> str:
    m, stats = schedule.meta, result.stats
    return (
        f"{m['model']} batch {m['batch']} on {m['device']} ({m['precision']}), opt={m['opt']} r={m['r']} s={m['s']}: "
        f"{len(schedule.stages)} stages, predicted {result.latency_ms:.4f} ms ({m['latency_label']}; critical-path "
        f"bound {m['critical_path_ms']:.4f} ms)\n"
        f"searched {stats.states} states, {stats.stages} distinct stages in {stats.seconds:.1f} s "
        f"({stats.cost_seconds:.1f} s in the cost) -> {path}"
    )


main = hydra_command(run, "optimize")


if __name__ == "__main__":
    run_command(main)
