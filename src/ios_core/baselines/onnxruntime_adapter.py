"""ONNX Runtime baselines on the exported network (`ios_core.onnx_io.to_onnx`, fixed batch, body only).

- ``onnxruntime_cuda``: the CUDA execution provider (package ``onnxruntime-gpu``), cuDNN algorithm
  search ``EXHAUSTIVE``, TF32 as ``precision`` says; inputs and outputs bound on the GPU
  (I/O binding), the work put on PyTorch's current stream so CUDA events time it as they time
  everything else. Option ``cuda_graph: true`` lets ORT capture the run into a CUDA graph.
- ``onnxruntime_cpu``: the CPU provider, wall-clock timed: the path that is tested where no GPU is;
  not a GPU baseline, so not in the default sweep.

A session that silently falls back to the CPU (ORT does that when CUDA libraries are missing)
is refused, not timed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ios_core.baselines.core import Framework, Run, module_available, versions
from ios_core.baselines.timing import time_cuda_events, time_wall_clock
from ios_core.onnx_io import Network, to_onnx
from ios_core.timing import Timing


def cuda_available() -> tuple[bool, str]:
    ok, reason = module_available("onnxruntime", "pip install onnxruntime-gpu")
    if not ok:
        return ok, reason
    import onnxruntime as ort

    providers = ort.get_available_providers()
    if "CUDAExecutionProvider" not in providers:
        return False, (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (has {', '.join(providers)}); "
                       "install onnxruntime-gpu")
    return module_available("torch", "pip install torch")  # for the stream and the CUDA events


def cpu_available() -> tuple[bool, str]:
    return module_available("onnxruntime", "pip install onnxruntime")


def _session(network: Network, batch: int, providers: list[Any], threads: int | None = None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    model = to_onnx(network, batch=batch)
    return ort.InferenceSession(model.SerializeToString(), options, providers=providers)


def run_cuda(network: Network, x: np.ndarray, timing: Timing, precision: str, options: Mapping[str, Any]) -> Run:
    import onnxruntime as ort
    import torch

    started = time.perf_counter()
    stream = torch.cuda.current_stream()
    provider = {
        "device_id": torch.cuda.current_device(),
        "cudnn_conv_algo_search": str(options.get("conv_algo_search", "EXHAUSTIVE")),
        "use_tf32": int(precision == "fp32"),
        "user_compute_stream": str(stream.cuda_stream),
        "enable_cuda_graph": int(bool(options.get("cuda_graph", False))),
    }
    session = _session(network, len(x), [("CUDAExecutionProvider", provider)])
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise RuntimeError(f"onnxruntime fell back to {session.get_providers()}: the CUDA provider did not load")
    inputs = torch.from_numpy(x).float().cuda().contiguous()
    out_meta = session.get_outputs()[0]
    outputs = torch.empty([len(x), *out_meta.shape[1:]], dtype=torch.float32, device="cuda")
    binding = session.io_binding()
    binding.bind_input(session.get_inputs()[0].name, "cuda", torch.cuda.current_device(), np.float32,
                       list(inputs.shape), inputs.data_ptr())
    binding.bind_output(out_meta.name, "cuda", torch.cuda.current_device(), np.float32, list(outputs.shape),
                        outputs.data_ptr())
    run_options = ort.RunOptions()

    def call() -> None:
        session.run_with_iobinding(binding, run_options)

    call()
    torch.cuda.synchronize()
    output = outputs.cpu().numpy()
    details = {"setup_s": round(time.perf_counter() - started, 3), "provider_options": provider}
    samples = time_cuda_events(call, timing, torch, stream)
    found = versions("onnxruntime-gpu", "onnxruntime", "torch")
    return Run(samples, torch.cuda.get_device_name(), found, "cuda-events", output, details)


def run_cpu(network: Network, x: np.ndarray, timing: Timing, precision: str, options: Mapping[str, Any]) -> Run:
    started = time.perf_counter()
    threads = int(options.get("threads", 0)) or None
    session = _session(network, len(x), ["CPUExecutionProvider"], threads)
    feed = {session.get_inputs()[0].name: x.astype(np.float32)}
    output = session.run(None, feed)[0]
    details = {"setup_s": round(time.perf_counter() - started, 3), "threads": threads or os.cpu_count()}
    samples = time_wall_clock(lambda: session.run(None, feed), timing)
    return Run(samples, f"cpu ({os.cpu_count()} cores)", versions("onnxruntime"), "wall-clock", output, details)


FRAMEWORKS = (
    Framework("onnxruntime_cuda", "ONNX Runtime, CUDA execution provider, I/O binding, exhaustive cuDNN search",
              "cuda", cuda_available, run_cuda),
    Framework("onnxruntime_cpu", "ONNX Runtime, CPU execution provider (for testing; not a GPU baseline)", "cpu",
              cpu_available, run_cpu, sweep=False),
)
