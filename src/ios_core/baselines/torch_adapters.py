"""PyTorch baselines: eager, one CUDA graph, and ``torch.compile`` -- on `torch_module` of the same graph and weights.

Every variant runs the module channels-last in the precision's type (float32, ``.half()`` for ``fp16``,
``.to(torch.bfloat16)`` for ``bf16``: weights and input converted alike, outputs compared as float64) with
``cudnn.benchmark`` on, under ``torch.inference_mode``, and is timed with CUDA events on PyTorch's current
stream:

- ``torch_eager``: the module called op by op;
- ``torch_cudagraph``: the module captured once into a ``torch.cuda.CUDAGraph`` and replayed;
- ``torch_compile``: ``torch.compile(mode="reduce-overhead")`` (Inductor, with its CUDA graphs);
- ``torch_compile_freeze``: the same with Inductor freezing (weights folded as constants);
- ``torch_compile_max_autotune``: ``mode="max-autotune"`` with freezing -- minutes of autotuning (torchvision's
  Inception V3 at batch 1 did not finish in 10 on the H200's 16 cores), so not in the default sweep.

The compiled variants take option ``inductor_cache_dir``: Inductor's cache (``TORCHINDUCTOR_CACHE_DIR``: its
compiled graphs, Triton kernels and autotuning results), set before the process's first compilation, so that a
later process -- or a call that resumes one killed mid-compile -- reuses what an earlier one built.

PyTorch is imported when a variant runs, never at import.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ios_core.baselines.core import Framework, Run, module_available, versions
from ios_core.baselines.timing import time_cuda_events
from ios_core.onnx_io import Network
from ios_core.precision import PRECISIONS, spec_of
from ios_core.timing import Timing


def torch_cuda_available() -> tuple[bool, str]:
    """PyTorch with a CUDA device and `ios_core.baselines.torch_module`."""
    ok, reason = module_available("torch", "pip install torch")
    if not ok:
        return ok, reason
    import torch

    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} sees no CUDA device here"
    return module_available("ios_core.baselines.torch_module", "pip install ios-core[baselines]")


def set_precision(torch: Any, precision: str) -> Any:
    """TF32 on or off for cuDNN convolutions and cuBLAS matmuls as ``precision`` says; its ``torch.dtype``."""
    spec = spec_of(precision)
    allow = spec.dtype == "float32" and spec.tensor_cores
    torch.backends.cudnn.allow_tf32 = allow
    torch.backends.cuda.matmul.allow_tf32 = allow
    return getattr(torch, spec.dtype)


def torch_environment(torch: Any) -> tuple[str, dict[str, str]]:
    """The device name and the versions that matter for a PyTorch number."""
    found = versions("torch", "triton")
    found["cuda"] = str(torch.version.cuda)
    found["cudnn"] = str(torch.backends.cudnn.version())
    return torch.cuda.get_device_name(), found


def prepared(network: Network, x: np.ndarray, precision: str) -> tuple[Any, Any, Any]:
    """``(torch, module, input)``: the network's module and the batch on the GPU, channels-last, in ``precision``'s
    type (the float64 weights rounded once to it), TF32 as it says."""
    import torch

    from ios_core.baselines.torch_module import torch_module

    dtype = set_precision(torch, precision)
    torch.backends.cudnn.benchmark = True
    module = torch_module(network.graph, network.weights, dtype).cuda().to(memory_format=torch.channels_last)
    batch = torch.from_numpy(x).to(dtype).cuda().contiguous(memory_format=torch.channels_last)
    return torch, module, batch


def _finish(torch: Any, call: Callable[[], Any], timing: Timing, started: float, details: dict[str, Any]) -> Run:
    """Time ``call`` (already warmed up and built), keep its output for the check."""
    with torch.inference_mode():
        output = call().float().cpu().numpy()
        details["setup_s"] = round(time.perf_counter() - started, 3)
        samples = time_cuda_events(call, timing, torch)
    device, found = torch_environment(torch)
    return Run(samples, device, found, "cuda-events", output, details)


def run_eager(network: Network, x: np.ndarray, timing: Timing, precision: str, options: Mapping[str, Any]) -> Run:
    started = time.perf_counter()
    torch, module, batch = prepared(network, x, precision)
    return _finish(torch, lambda: module(batch), timing, started, {})


def run_cudagraph(network: Network, x: np.ndarray, timing: Timing, precision: str,
                  options: Mapping[str, Any]) -> Run:
    started = time.perf_counter()
    torch, module, batch = prepared(network, x, precision)
    with torch.inference_mode():
        replay = cuda_graph_replay(torch, module, batch)
    return _finish(torch, replay, timing, started, {})


def cuda_graph_replay(torch: Any, module: Any, batch: Any) -> Callable[[], Any]:
    """``module(batch)`` captured once in a CUDA graph; the function returned replays it and gives the output."""
    side = torch.cuda.Stream()  # warm up (cuDNN benchmark, lazy init) off the capture stream, as PyTorch asks
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            module(batch)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = module(batch)

    def replay() -> Any:
        graph.replay()
        return static_out

    return replay


def compiled_runner(mode: str | None, freezing: bool, backend: str = "inductor") -> Callable[
        [Network, np.ndarray, Timing, str, Mapping[str, Any]], Run]:
    """A runner of ``torch.compile(module, mode=mode, backend=backend)``, with Inductor freezing on or off.

    Another ``backend`` (``hidet``) is a name registered with TorchDynamo by its package; ``mode`` is
    Inductor's and stays None for it.
    """

    def run(network: Network, x: np.ndarray, timing: Timing, precision: str, options: Mapping[str, Any]) -> Run:
        started = time.perf_counter()
        torch, module, batch = prepared(network, x, precision)
        how = Compile(mode, freezing, backend, int(options.get("compile_calls", 3)), options.get("inductor_cache_dir"))
        call = compiled_call(torch, module, batch, how)
        return _finish(torch, call, timing, started, {"backend": backend, "mode": mode, "freezing": freezing})

    return run


@dataclass(frozen=True)
class Compile:
    """How ``torch.compile`` builds a module: Inductor's ``mode``, freezing, the backend, and the calls that compile
    it and record its CUDA graphs before it is timed."""

    mode: str | None = "reduce-overhead"
    freezing: bool = True
    backend: str = "inductor"
    calls: int = 3
    cache_dir: str | None = None  # Inductor's cache directory; its default (a folder under /tmp) when None


def compiled_call(torch: Any, module: Any, batch: Any, how: Compile) -> Callable[[], Any]:
    """``module(batch)`` under ``torch.compile`` as ``how`` says, compiled and warm; the function returned calls it.

    Any module: `torch_module` of a graph, or a library's own network (torchvision's, timm's).
    """
    import torch._inductor.config as inductor

    if how.cache_dir:  # read when Inductor first needs it, and by its compile workers when they start
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(how.cache_dir)
    torch._dynamo.reset()
    previous = inductor.freezing
    inductor.freezing = how.freezing  # read at compile time, which happens on the first calls below
    try:
        compiled = torch.compile(module, mode=how.mode, backend=how.backend, dynamic=False)
        with torch.inference_mode():
            for _ in range(how.calls):
                compiled(batch)
    finally:
        inductor.freezing = previous
    return lambda: compiled(batch)


FRAMEWORKS = (
    Framework("torch_eager", "PyTorch eager, channels-last, cudnn.benchmark", "cuda", torch_cuda_available,
              run_eager, precisions=PRECISIONS),
    Framework("torch_cudagraph", "PyTorch module captured once in a CUDA graph, replayed", "cuda",
              torch_cuda_available, run_cudagraph, precisions=PRECISIONS),
    Framework("torch_compile", "torch.compile mode=reduce-overhead (Inductor + CUDA graphs)", "cuda",
              torch_cuda_available, compiled_runner("reduce-overhead", freezing=False), precisions=PRECISIONS),
    Framework("torch_compile_freeze", "torch.compile mode=reduce-overhead with Inductor freezing", "cuda",
              torch_cuda_available, compiled_runner("reduce-overhead", freezing=True), precisions=PRECISIONS),
    Framework("torch_compile_max_autotune", "torch.compile mode=max-autotune with freezing (slow to build)",
              "cuda", torch_cuda_available, compiled_runner("max-autotune", freezing=True), sweep=False,
              precisions=PRECISIONS),
)
