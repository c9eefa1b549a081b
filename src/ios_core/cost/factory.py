"""Costs built from config, by kind.

`COSTS` maps a kind to a builder ``(CostSpec, DeviceProfile) -> StageCost``: ``simulated``, ``table``
and ``measured`` (`ios_core.cost.measured`, stages timed on the GPU by the engine), which is imported
only when asked for, and only where a GPU and the engine's libraries are: elsewhere asking for it is
a clear error, never a stack trace. Every cost here knows its own cache namespace (its ``space``: a
digest of all it depends on, `ios_core.cost.key.content_space`); one that does not gets a digest of
the whole device profile and spec (`fallback_space`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

from ios_core.cost.cache import CachedCost
from ios_core.cost.device import DeviceProfile
from ios_core.cost.key import content_space
from ios_core.cost.protocol import StageCost
from ios_core.cost.simulated import SimulatedCost
from ios_core.cost.spread import SpreadCost
from ios_core.cost.table import TableCost
from ios_core.errors import UserError
from ios_core.timing import Timing
from ios_core.weights import Params


class CostUnavailableError(UserError, RuntimeError):
    """The cost asked for cannot be built here; the message says why and what to use instead."""


@dataclass(frozen=True)
class CostSpec:
    """Which cost to build: its ``kind``, the ``precision``, an optional disk ``cache`` and a ``table`` file;
    for ``measured``, how each stage is timed (``timing``), whether convolution engines are autotuned
    (``autotune``, remembered in ``tune_cache``) and the ``weights`` the stages run with: the network's own, by node
    name (a file's, `ios_core.models.load`), or None for `ios_core.weights.make_weights` of the graph costed;
    ``gpus``: the GPUs (``CUDA_VISIBLE_DEVICES`` entries) one search's new stages are spread over, one worker process
    each (`ios_core.cost.spread`), or none for this process's own."""

    kind: str = "simulated"
    precision: str = "fp32"
    cache: str | None = None
    table: str | None = None
    timing: Timing = Timing()
    autotune: bool = True
    tune_cache: str | None = None
    weights: Mapping[str, Params] | None = None
    gpus: tuple[str, ...] = ()


PATHS = ("cache", "table", "tune_cache")
"""The fields of a `CostSpec` that say where files are, not what the numbers are: no part of a cache space (a table
is in it by content, `TableCost.space`)."""
NOT_INPUTS = (*PATHS, "weights", "gpus")
"""The fields no cache space holds. Nor do the weights: a stage's latency does not depend on the values it computes
with (cuDNN's convolutions and our kernels take no data-dependent path, and a stage timed alone reads random inputs
anyway), so a network read from a file and its twin on synthetic weights share their measurements. What does depend
on the weights -- an output checked against a reference -- is never cached. Nor which GPUs measured: a spread is
refused unless every GPU's cost has the same space (`ios_core.cost.spread`)."""

CostBuilder = Callable[[CostSpec, DeviceProfile], StageCost]


def _simulated(spec: CostSpec, device: DeviceProfile) -> StageCost:
    return SimulatedCost(device, spec.precision)


def _table(spec: CostSpec, device: DeviceProfile) -> StageCost:
    if not spec.table:
        raise CostUnavailableError("cost=table needs a table file: cost.table=<path to an ios-core/stage-costs JSON>")
    if not Path(spec.table).is_file():
        raise CostUnavailableError(f"cost=table: no table file at {spec.table!r}")
    return TableCost.load(spec.table)


def gpu_present() -> bool:
    """Whether an NVIDIA driver is loaded, judged from /dev and /proc only (no GPU is touched)."""
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


def _measured(spec: CostSpec, device: DeviceProfile) -> StageCost:
    if not device.real:
        raise CostUnavailableError(f"cost=measured needs a real GPU; device={device.name} is a simulated profile")
    if not gpu_present():
        raise CostUnavailableError(
            f"cost=measured needs an NVIDIA GPU ({device.name}) and none was found on this machine; "
            "use cost=simulated to optimize without a GPU"
        )
    try:
        from ios_core.cost.measured import MeasuredCost, MeasureSettings

        settings = MeasureSettings(precision=spec.precision, timing=spec.timing, autotune=spec.autotune,
                                   tune_cache=spec.tune_cache)
        cost = MeasuredCost(settings, weights=spec.weights)
    except ImportError as error:
        raise CostUnavailableError(
            f"cost=measured needs the GPU engine's libraries (PyCUDA, the cuDNN frontend), which are missing "
            f"here ({error}); use cost=simulated"
        ) from None
    unread = [key for key, value in cost.environment.items() if value == "unknown"]
    if spec.cache and unread:  # a cache keyed without them could mix this GPU's numbers with another's
        raise CostUnavailableError(
            f"cost.cache={spec.cache}: this GPU's {', '.join(unread)} cannot be read (is nvidia-ml-py installed?), "
            "so its measurements cannot be keyed; run without cost.cache"
        )
    return cost


COSTS: dict[str, CostBuilder] = {"simulated": _simulated, "table": _table, "measured": _measured}


def fallback_space(kind: str, spec: CostSpec, device: DeviceProfile) -> str:
    """The space of a cost that names none: everything it was built from but where its files are and the weights."""
    fields = asdict(replace(spec, weights=None, gpus=()))  # never deep-copy the arrays just to leave them out
    inputs = {"device": device.as_dict(), "spec": {k: v for k, v in fields.items() if k not in NOT_INPUTS}}
    return content_space(inputs, kind, device.name, spec.precision)


def build_cost(spec: CostSpec, device: DeviceProfile) -> CachedCost:
    """The cost ``spec`` asks for on ``device``, wrapped in a `CachedCost` (on disk when ``spec.cache``).

    Raises
    ------
    CostUnavailableError
        If the kind is unknown or cannot be built on this machine.
    """
    try:
        builder = COSTS[spec.kind]
    except KeyError:
        known = ", ".join(sorted(COSTS))
        raise CostUnavailableError(f"unknown cost kind {spec.kind!r}; known kinds: {known}") from None
    if spec.gpus:
        inner = SpreadCost(partial(builder, replace(spec, gpus=()), device), [str(gpu) for gpu in spec.gpus])
    else:
        inner = builder(spec, device)
    space = getattr(inner, "space", None) or fallback_space(inner.kind, spec, device)
    return CachedCost(inner, space, spec.cache)
