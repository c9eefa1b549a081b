"""The registry of baselines: `FRAMEWORKS`, by name, and the table of what is available here and why not.

Every framework of the IOS comparison is registered whether or not it is installed: one that
cannot run here says why (`frameworks_table`), and a measurement of it is recorded as
``unavailable`` with that reason, so figures show it as such instead of leaving it out.
"""

from __future__ import annotations

from typing import Any

from ios_core.baselines import (
    hidet_adapter,
    jax_adapter,
    onnxruntime_adapter,
    taso_adapter,
    tensorflow_adapter,
    tensorrt_adapter,
    torch_adapters,
    tvm_adapter,
)
from ios_core.baselines.core import Framework
from ios_core.errors import UserError

FRAMEWORKS: dict[str, Framework] = {
    f.name: f
    for f in (
        *torch_adapters.FRAMEWORKS,
        *onnxruntime_adapter.FRAMEWORKS,
        tensorrt_adapter.FRAMEWORK,
        tvm_adapter.FRAMEWORK,
        taso_adapter.FRAMEWORK,
        *tensorflow_adapter.FRAMEWORKS,
        jax_adapter.FRAMEWORK,
        hidet_adapter.FRAMEWORK,
    )
}

ALIASES = {"pytorch_eager": "torch_eager", "cuda_graph": "torch_cudagraph", "onnxruntime": "onnxruntime_cuda"}
"""Other names the workflow's configuration uses for the same baselines."""


class UnknownFrameworkError(UserError, LookupError):
    """No framework has this name; the message lists those there are."""

    def __str__(self) -> str:
        return str(self.args[0])


def get(name: str) -> Framework:
    """The framework ``name`` (or one of its `ALIASES`)."""
    try:
        return FRAMEWORKS[ALIASES.get(name, name)]
    except KeyError:
        raise UnknownFrameworkError(f"unknown framework {name!r}; known: {', '.join(FRAMEWORKS)}") from None


def sweep_frameworks() -> list[str]:
    """The frameworks of the default batch sweep: every GPU baseline but the slow options."""
    return [name for name, f in FRAMEWORKS.items() if f.sweep]


def frameworks_table() -> list[dict[str, Any]]:
    """Every framework with the precisions it runs, ``available`` and, where it is not, the ``reason``; checks import
    nothing on the GPU."""
    rows = []
    for name, framework in FRAMEWORKS.items():
        ok, reason = framework.available()
        rows.append({"framework": name, "description": framework.description, "device": framework.device,
                     "in_sweep": framework.sweep, "precisions": list(framework.precisions), "available": ok,
                     "reason": reason})
    return rows
