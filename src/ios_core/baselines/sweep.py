"""The batch sweep of experiment 6: every baseline at every batch size, each recorded, none dropped.

`sweep` measures frameworks x batches on one network in one process (models and compiled
artifacts are rebuilt per batch, as each framework specializes to its batch); a framework that
is unavailable here yields one ``unavailable`` measurement per batch, with its reason. `table`
prints the result, one row per framework.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ios_core.baselines.core import Measurement, load_network, measure
from ios_core.baselines.frameworks import get
from ios_core.timing import Timing

BATCHES = (1, 16, 32, 64, 128)


def sweep(model: str, frameworks: Iterable[str], batches: Iterable[int] = BATCHES, timing: Timing | None = None,
          *, precision: str = "fp32", seed: int = 0, check: bool = True,
          options: Mapping[str, Mapping[str, Any]] | None = None,
          progress: Callable[[Measurement], None] | None = None) -> list[Measurement]:
    """One `Measurement` per framework and batch, in that order.

    Parameters
    ----------
    model
        A registry model or an ``.onnx`` path (`load_network`).
    frameworks
        Names in `ios_core.baselines.FRAMEWORKS` (e.g. `sweep_frameworks()`).
    batches
        Batch sizes; experiment 6 uses 1, 16, 32, 64, 128.
    timing
        Warm-up, number and repeat (our engine's defaults when None).
    precision
        ``fp32`` or ``fp32-strict`` (`measure`).
    options
        Per-framework options, by framework name.
    progress
        Called with each measurement as it is made (e.g. to print it).
    """
    network, timing, options = load_network(model, seed), timing or Timing(), options or {}
    results = []
    for name in frameworks:
        framework = get(name)
        for batch in batches:
            m = measure(framework, network, batch, timing, precision=precision, seed=seed, check=check,
                        options=options.get(name, {}))
            results.append(m)
            if progress:
                progress(m)
            _release_gpu_memory()
    return results


def _release_gpu_memory() -> None:
    """Drop the last framework's engines and buffers before the next (PyTorch's cache only if it is loaded)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def table(measurements: list[Measurement]) -> str:
    """Median latency (ms) per framework (rows) and batch (columns); ``n/a`` / ``failed`` with the reason below."""
    batches = sorted({m.batch for m in measurements})
    rows = {}
    notes = {}
    for m in measurements:
        cell = f"{m.median_ms:.3f}" if m.status == "measured" else ("n/a" if m.status == "unavailable" else "failed")
        rows.setdefault(m.framework, {})[m.batch] = cell
        if m.status != "measured":
            notes.setdefault(m.framework, m.reason)
    width = max([len(name) for name in rows] + [9])
    lines = [f"{'framework':<{width}}  " + "  ".join(f"{'b' + str(b):>9}" for b in batches)]
    for name, cells in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{cells.get(b, ''):>9}" for b in batches))
    lines += [f"  {name}: {reason}" for name, reason in notes.items()]
    return "\n".join(lines)
