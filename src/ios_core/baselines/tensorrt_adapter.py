"""TensorRT baseline: the exported network (fixed batch, body only) built into an engine and enqueued.

For users who have TensorRT 10 (``pip install tensorrt``) next to PyTorch (device buffers, stream
and CUDA events come from PyTorch). The engine is built with auxiliary streams on, so TensorRT
runs independent branches concurrently as IOS does: ``options.aux_streams`` (default 7) sets
``IBuilderConfig.max_aux_streams``; -1 leaves it to TensorRT's heuristic. ``precision``
``fp32`` clears the TF32 builder flag. Each call is one ``execute_async_v3`` on PyTorch's current
stream, timed with CUDA events on that stream.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ios_core.baselines.core import Framework, Run, module_available, versions
from ios_core.baselines.timing import time_cuda_events
from ios_core.onnx_io import Network, to_onnx
from ios_core.timing import Timing


def available() -> tuple[bool, str]:
    for module, install in (("tensorrt", "pip install tensorrt"), ("torch", "pip install torch")):
        ok, reason = module_available(module, install)
        if not ok:
            return ok, reason
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA device here"
    return True, ""


def build_engine(trt: Any, onnx_bytes: bytes, precision: str, aux_streams: int, workspace_gib: float) -> Any:
    """A deserialized TensorRT engine for an ONNX model; a parse or build failure names TensorRT's errors."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(trt.__version__.split(".")[0])
    explicit = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if major < 10 else 0  # implicit in 10
    network = builder.create_network(explicit)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if aux_streams >= 0:
        config.max_aux_streams = aux_streams
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    return trt.Runtime(logger).deserialize_cuda_engine(serialized)


def run(network: Network, x: np.ndarray, timing: Timing, precision: str, options: Mapping[str, Any]) -> Run:
    import tensorrt as trt
    import torch

    started = time.perf_counter()
    aux_streams = int(options.get("aux_streams", 7))
    model = to_onnx(network, batch=len(x))
    engine = build_engine(trt, model.SerializeToString(), precision, aux_streams,
                          float(options.get("workspace_gib", 4)))
    context = engine.create_execution_context()
    buffers = {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        buffers[name] = torch.empty(tuple(engine.get_tensor_shape(name)), dtype=torch.float32, device="cuda")
        context.set_tensor_address(name, buffers[name].data_ptr())
    input_name = model.graph.input[0].name
    buffers[input_name].copy_(torch.from_numpy(x).float())
    stream = torch.cuda.current_stream()

    def call() -> None:
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    call()
    torch.cuda.synchronize()
    output = buffers[model.graph.output[0].name].cpu().numpy()
    details = {"setup_s": round(time.perf_counter() - started, 3), "aux_streams": aux_streams}
    samples = time_cuda_events(call, timing, torch, stream)
    found = versions("tensorrt", "torch")
    found["tensorrt_runtime"] = trt.__version__
    return Run(samples, torch.cuda.get_device_name(), found, "cuda-events", output, details)


FRAMEWORK = Framework("tensorrt", "TensorRT engine from the exported ONNX, auxiliary streams on", "cuda",
                      available, run)
