"""The hidet baseline (``hidet``): ``torch.compile(backend="hidet")`` on `torch_module` of the same graph.

hidet registers its TorchDynamo backend by its package's entry point; its defaults are kept. What the
hidet 0.6.1 wheel (py3-none-any) declares and does, as read from it: it requires ``torch>=2.3.0``,
``cuda-python>=11.6.1`` (it imports ``cuda.bindings``) and ``hip-python-fork``, and compiles its
kernels at run time with ``nvcc``, looked up on PATH, then in /usr/local/cuda/bin and /usr/bin --
so a machine with the CUDA runtime but no toolkit cannot run it. The check looks for each of these.

hidet 0.6.1 takes a machine where ``ctypes.util.find_library("amdhip64")`` finds a library for one with an AMD GPU
(``hidet.hip.available``), and then every compiled graph fails before its first kernel
(``CompiledGraph._prepare_workspace`` reads ``required_hip_workspace``, which it sets only for dynamic shapes). It
did so on the lent H100 (2026-12-07): a run here is on CUDA, so hidet is told there is no HIP while it runs. NASNet
still fails there, with ``RecursionError`` while hidet translates the graph, also with Python's recursion limit
raised to 20,000 (so the limit hit is not that one): its row keeps that reason.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np

from ios_core.baselines.core import Framework, Run, module_available
from ios_core.baselines.torch_adapters import compiled_runner, torch_cuda_available
from ios_core.onnx_io import Network
from ios_core.timing import Timing

NVCC_DIRS = ("/usr/local/cuda/bin", "/usr/bin")
"""Where hidet looks for nvcc when it is not on PATH (``hidet.backend.build``)."""


def nvcc() -> str | None:
    """The nvcc hidet would use, or None."""
    candidates = (os.path.join(directory, "nvcc") for directory in NVCC_DIRS)
    return shutil.which("nvcc") or next((path for path in candidates if os.path.exists(path)), None)


def available() -> tuple[bool, str]:
    ok, reason = module_available("hidet", "pip install hidet: needs torch>=2.3, cuda-python and hip-python-fork")
    if not ok:
        return ok, reason
    ok, reason = torch_cuda_available()
    if not ok:
        return ok, reason
    if nvcc() is None:
        return False, ("hidet compiles its kernels with nvcc at run time; none on PATH, in /usr/local/cuda/bin or "
                       "/usr/bin (install the CUDA toolkit)")
    return True, ""


@contextmanager
def cuda_only_hidet() -> Iterator[None]:
    """hidet with its HIP check answering "no", restored afterwards (see the module's doc)."""
    import hidet.hip

    found = hidet.hip.available
    hidet.hip.available = lambda: False
    try:
        yield
    finally:
        hidet.hip.available = found


COMPILED_WITH_HIDET: Callable[[Network, np.ndarray, Timing, str, Mapping[str, Any]], Run] = compiled_runner(
    None, freezing=False, backend="hidet")


def run_hidet(network: Network, x: np.ndarray, timing: Timing, precision: str, options: Mapping[str, Any]) -> Run:
    """``torch.compile(backend="hidet")`` compiled, warmed up and timed inside `cuda_only_hidet`."""
    with cuda_only_hidet():
        return COMPILED_WITH_HIDET(network, x, timing, precision, options)


FRAMEWORK = Framework("hidet", "torch.compile(backend='hidet'), hidet's default options", "cuda", available,
                      run_hidet)
