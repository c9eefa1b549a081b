"""The configs of the commands ``optimize``, ``measure`` and ``baseline``: one typed schema each, in one place.

Hydra merges ``conf/<command>.yaml`` (installed with the package) and the chosen group files (``model/``,
``device/``, ``cost/``, ``optimizer/``) into the command's schema (`SCHEMAS`), so a misspelt key or a value of the
wrong type is rejected with the key's name before anything runs. `hydra_command` makes each command;
`register_configs` puts the schemas in Hydra's ConfigStore when a command runs (and `compose` for tests), never at
import.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass, make_dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, get_type_hints

import hydra
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from ios_core import models
from ios_core.cost.device import DeviceProfile
from ios_core.cost.factory import CostSpec
from ios_core.engine.options import BARRIERS
from ios_core.errors import UserError, reported
from ios_core.ir import Graph
from ios_core.precision import PRECISIONS
from ios_core.timing import Timing
from ios_core.tracking import TrackingConfig

CONF_DIR = str(Path(__file__).resolve().parent / "conf")
"""The Hydra config tree of every entry point, installed with the package (``ios_core/conf/``)."""


def device_profile(name: str) -> DeviceProfile:
    """The device profile ``conf/device/<name>.yaml``, outside a Hydra app (benchmarks, records from a GPU)."""
    values = OmegaConf.load(Path(CONF_DIR) / "device" / f"{name}.yaml")
    return DeviceProfile.from_mapping(OmegaConf.to_container(values))


class Opt(StrEnum):
    """The schedule types of the paper (`ios_core.optimizer.OPTS`); a `StrEnum` reads as its plain value,
    also inside interpolations such as ``output``."""

    sequential = "sequential"
    greedy = "greedy"
    parallel = "parallel"
    merge = "merge"
    both = "both"


# Members named by their values ("fp32-strict" is not an identifier, so the functional form): OmegaConf matches a
# command-line value against member names, and the documented spelling must be the one it accepts.
Precision = StrEnum("Precision", {precision: precision for precision in PRECISIONS})
Precision.__doc__ = """The precisions of `ios_core.precision.PRECISIONS`, as a config type."""
Barrier = StrEnum("Barrier", {barrier: barrier for barrier in BARRIERS})
Barrier.__doc__ = """How the groups of consecutive stages wait for each other (`ios_core.engine.options.BARRIERS`)."""


class ConfigError(UserError, ValueError):
    """A config value or key a command cannot use; the message names the key."""


def check_batch(batch: int) -> None:
    """Every command's ``batch`` is a number of samples: `ConfigError` below 1."""
    if batch < 1:
        raise ConfigError(f"batch must be >= 1, got {batch}")


def check_keys(cfg: DictConfig, schema: type) -> None:
    """Reject every key of ``cfg`` that ``schema`` does not have (Hydra lets ``+key=value`` add any key).

    Keys under a ``dict`` field of the schema (``model.kwargs``, ``tags``...) are free-form and not checked here.

    Raises
    ------
    ConfigError
        Naming the first unknown key (its full dotted name) and the closest known one.
    """
    _check_node(cfg, OmegaConf.structured(schema), "")


def _check_node(node: DictConfig, schema: DictConfig, prefix: str) -> None:
    for key in node:
        if key not in schema:
            close = difflib.get_close_matches(str(key), [str(k) for k in schema], n=1)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            raise ConfigError(f"unknown config key {prefix}{key}{hint}")
        value, expected = node._get_node(key), schema._get_node(key)
        # Only nodes typed by a dataclass have a fixed set of keys; a plain dict field takes any.
        if isinstance(value, DictConfig) and isinstance(expected, DictConfig) and is_dataclass(
                OmegaConf.get_type(expected)):
            _check_node(value, expected, f"{prefix}{key}.")


@dataclass
class ModelConfig:
    """A model of the registry `ios_core.models`, with arguments for its function (e.g. ``seed``)."""

    name: str = "demo"
    kwargs: dict[str, Any] = field(default_factory=dict)
    path: str | None = None  # the .onnx file, for name=onnx


def network_name(model: ModelConfig | DictConfig) -> str:
    """What a model config's outputs and records are named by: a file's stem for a network read from a file
    (``model=onnx model.path=nets/resnet50.onnx``: ``resnet50``, as `ios_core.onnx_io.load_onnx` names its graph),
    else the model's name -- so that two files never share a schedule, a record or an MLflow run's ``model``."""
    if isinstance(model, DictConfig) and OmegaConf.is_missing(model, "path"):
        return model.name
    return Path(model.path).stem if model.path else model.name


# ``${network:${model}}`` in the configs' output templates
OmegaConf.register_new_resolver("network", network_name, replace=True)


def build_model(model: ModelConfig) -> tuple[Graph, models.Weights | None]:
    """The graph a model config names and the weights it comes with (`ios_core.models.load`: a file's own for
    ``onnx``, whose ``path`` is the file; None for a built-in model, run on its `make_weights`)."""
    kwargs = dict(OmegaConf.to_container(model.kwargs)) if OmegaConf.is_config(model.kwargs) else dict(model.kwargs)
    if model.path is not None:
        kwargs["path"] = model.path
    return models.load(model.name, **kwargs)


def _mutable_schema(name: str, frozen: type, leave_out: tuple[str, ...] = (),
                    nested: dict[str, type] | None = None) -> type:
    """A frozen dataclass's fields as a mutable dataclass: Hydra must merge into it, and a frozen one is read-only.

    Derived, not copied, so that the schema and the class it configures cannot drift apart. A field holding a
    frozen dataclass itself takes its mutable schema from ``nested`` (by field name), with the same defaults.
    """
    hints, nested = get_type_hints(frozen), nested or {}

    def mutable(f: Any) -> tuple[str, type, Any]:
        if f.name in nested:
            schema = nested[f.name]
            return f.name, schema, field(default_factory=lambda: schema(**asdict(f.default)))
        return f.name, hints[f.name], field(default=f.default)

    return make_dataclass(name, [mutable(f) for f in fields(frozen) if f.default is not MISSING and
                                 f.name not in leave_out])


DeviceConfig = _mutable_schema("DeviceConfig", DeviceProfile)
TimingConfig = _mutable_schema("TimingConfig", Timing)
# Which `ios_core.cost` to build (`CostSpec`); its precision is the run's top-level ``precision``, its weights the
# model's (`build_model`).
CostConfig = _mutable_schema("CostConfig", CostSpec, leave_out=("precision", "weights"),
                             nested={"timing": TimingConfig})


@dataclass
class OptimizeConfig:
    """Everything ``python -m ios_core.optimize`` reads; see ``conf/optimize.yaml`` for the defaults chosen."""

    model: ModelConfig = field(default_factory=ModelConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)  # type: ignore[valid-type]
    cost: CostConfig = field(default_factory=CostConfig)  # type: ignore[valid-type]
    batch: int = 1
    opt: Opt = Opt.both
    r: int = 3
    s: int = 8
    max_part_size: int = 40
    candidates: int = 1
    precision: Precision = Precision["fp32"]
    output: str = "schedules/${network:${model}}_b${batch}_${opt}_${device.name}_${precision}_${cost.kind}.json"
    progress: bool = True
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


class Mode(StrEnum):
    auto = "auto"
    simulated = "simulated"
    engine = "engine"


@dataclass
class MeasureConfig:
    """Everything ``python -m ios_core.measure`` reads; defaults in ``conf/measure.yaml``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)  # type: ignore[valid-type]
    batch: int = 1
    precision: Precision = Precision["fp32"]
    schedule: str | None = None  # a schedule JSON (python -m ios_core.optimize); required unless `unavailable`
    mode: Mode = Mode.auto
    autotune: bool = False  # cuDNN engine autotuning per convolution (intra-operator), GPU only
    barrier: Barrier = Barrier["exact"]  # engine only: "exact" dependencies between groups, or "stage" barriers
    check: bool = True  # engine only: the output against the float64 reference first (metric rel_error)
    timing: TimingConfig = field(default_factory=TimingConfig)
    unavailable: str | None = None  # record "not available" with this reason instead of measuring
    schedule_params: dict[str, str] = field(default_factory=dict)  # opt, r, s, schedule_batch, schedule_device
    # of a schedule that does not exist (with `unavailable`), so the record still says what it stands for
    out: str | None = None  # the record file
    tags: dict[str, str] = field(default_factory=dict)  # extra record tags, e.g. experiment=schedules
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


@dataclass
class BaselineConfig:
    """Everything ``python -m ios_core.baseline`` reads; defaults in ``conf/baseline.yaml``."""

    model: ModelConfig = field(default_factory=ModelConfig)
    device: DeviceConfig = field(default_factory=DeviceConfig)  # type: ignore[valid-type]
    framework: str = "torch_eager"
    batch: int = 1
    seed: int = 0
    precision: Precision = Precision["fp32"]
    timing: TimingConfig = field(default_factory=TimingConfig)
    check: bool = True
    options: dict[str, Any] = field(default_factory=dict)
    out: str | None = None
    json: bool = False
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


SCHEMAS: dict[str, type] = {"optimize": OptimizeConfig, "measure": MeasureConfig, "baseline": BaselineConfig}
"""Each command's config (``conf/<name>.yaml``) and its schema, stored as ``<name>_schema`` (the first entry of the
file's defaults list)."""


def register_configs() -> None:
    """Put every schema in Hydra's ConfigStore (the commands do it before composing; never at import)."""
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=f"{name}_schema", node=schema)


def compose(name: str, overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The config command ``name`` would run with ``overrides`` (its command-line arguments), outside a command."""
    register_configs()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra.compose(name, overrides=list(overrides), return_hydra_config=return_hydra_config)


def hydra_command(run: Callable[[DictConfig], object], name: str) -> Callable[[], None]:
    """The command behind ``python -m ios_core.<name>``: compose ``conf/<name>.yaml`` with the command line, check
    it against its schema, and call ``run(cfg)``, a user error reported in one line (`ios_core.errors`)."""

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=name)
    def task(cfg: DictConfig) -> None:
        with reported():
            check_keys(cfg, SCHEMAS[name])
            run(cfg)

    def command() -> None:
        register_configs()
        task()

    return command
