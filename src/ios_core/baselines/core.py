"""What a baseline is and what measuring one gives: `Framework`, `Run`, `Measurement`, and `measure`.

A `Framework` says whether it can run here (``available() -> (ok, reason)``, cheap, touching no
GPU) and runs a `Network` on an input batch, timed as `ios_core.timing.Timing` says, in a precision
(``run(network, x, timing, precision, options) -> Run``) among those it lists (``precisions``; float32 only
unless its adapter converts the network).
`measure` wraps that into a `Measurement` that is always recorded: ``measured``, ``unavailable``
(with the reason: not installed, no GPU, a precision it cannot run...) or ``failed`` (with the error) -- never faked,
never dropped. The first sample of every output is checked against the float64 reference.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import platform
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ios_core import models
from ios_core.baselines.timing import median
from ios_core.errors import UserError, one_line
from ios_core.onnx_io import Network, load_onnx
from ios_core.precision import FLOAT32_PRECISIONS, check_precision
from ios_core.reference import relative_error, run_graph
from ios_core.timing import Timing
from ios_core.weights import make_input

STATUSES = ("measured", "unavailable", "failed")


@dataclass
class Run:
    """What an adapter measured: per-repeat latencies (ms) and how they were taken."""

    samples_ms: list[float]
    device: str
    versions: dict[str, str]
    clock: str  # "cuda-events", "wall-clock", or the framework's own timer, named
    output: np.ndarray | None = None  # the framework's output for the batch, for the correctness check
    details: dict[str, Any] = field(default_factory=dict)  # build or compile seconds, options used


@dataclass(frozen=True)
class Framework:
    """A baseline: ``run`` measures a network; ``available`` says why it cannot, without running anything."""

    name: str
    description: str
    device: str  # "cuda" or "cpu": where it runs
    available: Callable[[], tuple[bool, str]]
    run: Callable[[Network, np.ndarray, Timing, str, Mapping[str, Any]], Run]
    sweep: bool = True  # part of the default batch sweep (off for slow options and CPU builds)
    precisions: tuple[str, ...] = FLOAT32_PRECISIONS  # those its adapter runs; the 16-bit ones convert the network


@dataclass
class Measurement:
    """One baseline latency, or why there is none: the JSON document a run of a baseline writes."""

    framework: str
    model: str
    batch: int
    status: str
    available: bool
    reason: str = ""
    device: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    median_ms: float | None = None
    precision: str = ""
    clock: str = ""
    timing: dict[str, int] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    rel_error: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, default=str) + "\n"


def module_available(module: str, hint: str) -> tuple[bool, str]:
    """Whether ``module`` imports; the reason gives ``hint`` (how to install it) or the import error."""
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name and module.startswith(error.name):
            return False, f"{module} not installed ({hint})"
        return False, f"{module} failed to import: {error}"
    except Exception as error:  # noqa: BLE001 -- a broken install is "unavailable", with its reason
        return False, f"{module} failed to import: {type(error).__name__}: {error}"
    return True, ""


def versions(*dists: str) -> dict[str, str]:
    """Installed versions of distributions (by their pip names), and Python's; absent ones are left out."""
    found = {"python": platform.python_version()}
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def load_network(model: str, seed: int = 0, path: str | None = None) -> Network:
    """A registry model with its deterministic weights, or an ONNX file (``x.onnx``, or ``onnx`` and ``path``)."""
    if model == "onnx" or model.endswith(".onnx"):
        file = path if model == "onnx" else model
        if not file:
            raise UserError("model=onnx needs the file: model.path=<net.onnx>")
        return load_onnx(file, name=Path(file).stem)
    return Network.of(models.get(model), seed)


_REFERENCE: dict[tuple[int, int], np.ndarray] = {}


def reference_first(network: Network, x: np.ndarray) -> np.ndarray:
    """The float64 reference output of ``x[:1]``, cached: samples are independent, so one checks them all."""
    key = (id(network), hash(x[:1].tobytes()))
    if key not in _REFERENCE:
        _REFERENCE[key] = run_graph(network.graph, x[:1], network.weights)
    return _REFERENCE[key]


def measure(framework: Framework, network: Network, batch: int, timing: Timing, *, precision: str = "fp32",
            seed: int = 0, check: bool = True, options: Mapping[str, Any] | None = None) -> Measurement:
    """Measure ``framework`` on ``network`` at ``batch``; the result says ``measured``, ``unavailable`` or ``failed``.

    Parameters
    ----------
    framework
        One of `ios_core.baselines.FRAMEWORKS`.
    network
        Graph and weights; the head of an imported model is not timed (our engine does not run it).
    batch
        The batch size; the input is `ios_core.weights.make_input` of that size and ``seed``.
    timing
        Warm-up, number and repeat.
    precision
        ``fp32`` (TF32 tensor cores allowed for float32 convolutions, PyTorch's cuDNN default, as on our engine),
        ``fp32-strict`` (TF32 off wherever the framework lets us say so), or ``fp16`` / ``bf16`` (the network's
        weights and input converted to the 16-bit type); one the framework does not list is ``unavailable``.
    check
        Compare the first output sample with the float64 reference (``rel_error``).
    options
        Framework-specific settings (see each adapter's docstring).
    """
    check_precision(precision)
    common = {"framework": framework.name, "model": network.name, "batch": batch, "precision": precision,
              "timing": asdict(timing)}
    ok, reason = framework.available()
    if ok and precision not in framework.precisions:
        only = ", ".join(framework.precisions)
        ok, reason = False, f"{framework.name} does not run precision {precision} (only {only})"
    if not ok:
        return Measurement(status="unavailable", available=False, reason=reason, **common)
    x = make_input(network.graph, batch, seed)
    try:
        run = framework.run(network, x, timing, precision, dict(options or {}))
    except Exception as error:  # noqa: BLE001 -- recorded as failed with its reason, never dropped
        logging.getLogger(__name__).exception("%s failed on %s at batch %d", framework.name, network.name, batch)
        reason = f"{type(error).__name__}: {one_line(error)}"
        return Measurement(status="failed", available=True, reason=reason, **common)
    error = None
    if check and run.output is not None:
        expected = reference_first(network, x)
        got = np.asarray(run.output[:1], dtype=np.float64).reshape(expected.shape)
        error = relative_error(got, expected)
    return Measurement(status="measured", available=True, device=run.device, latencies_ms=list(run.samples_ms),
                       median_ms=median(run.samples_ms), clock=run.clock, versions=run.versions, rel_error=error,
                       details=run.details, **common)
