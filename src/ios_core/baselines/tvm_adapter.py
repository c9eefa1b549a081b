"""TVM with cuDNN: the exported network (fixed batch, body only) compiled by TVM, convolutions by cuDNN.

For users with a CUDA build of TVM (PyPI's ``apache-tvm`` wheels are CPU-only). Two front ends,
whichever this TVM has:

- Relay (TVM <= 0.19, as in the IOS paper): ``relay.frontend.from_onnx``, target
  ``cuda -libs=cudnn``, the graph executor;
- Relax (TVM >= 0.20, where Relay is gone): ``relax.frontend.onnx.from_onnx``, convolutions
  converted to NHWC and offloaded by ``partition_for_cudnn``, the rest by dlight's default GPU
  schedules, run on the Relax VM.

Timing is TVM's own ``time_evaluator`` (``number`` runs per sample, ``repeat`` samples, after a
warm-up), which records CUDA events on TVM's stream: the same measure as ours, by TVM's clock.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ios_core.baselines.core import Framework, Run, module_available, versions
from ios_core.onnx_io import Network, to_onnx
from ios_core.timing import Timing


def available() -> tuple[bool, str]:
    ok, reason = module_available("tvm", "needs a CUDA build of TVM; PyPI's apache-tvm is CPU-only")
    if not ok:
        return ok, reason
    import tvm

    if not tvm.cuda(0).exist:
        return False, f"tvm {tvm.__version__} has no CUDA device (a CPU-only build, or no GPU here)"
    if tvm.get_global_func("tvm.contrib.cudnn.conv2d.forward", True) is None:
        return False, f"tvm {tvm.__version__} was built without cuDNN (USE_CUDNN=ON)"
    return True, ""


def _relay(tvm: Any, model: Any, shape: tuple[int, ...], device: Any) -> tuple[Any, str]:
    from tvm import relay
    from tvm.contrib import graph_executor

    mod, params = relay.frontend.from_onnx(model, {model.graph.input[0].name: shape}, freeze_params=True)
    with tvm.transform.PassContext(opt_level=3):
        lib = relay.build(mod, target="cuda -libs=cudnn", params=params)
    return graph_executor.GraphModule(lib["default"](device)), "run"


def _relax(tvm: Any, model: Any, shape: tuple[int, ...], device: Any) -> tuple[Any, str]:
    from tvm import dlight, relax
    from tvm.relax.frontend.onnx import from_onnx

    try:
        from tvm.relax.backend.cuda.cudnn import partition_for_cudnn
    except ImportError:
        from tvm.relax.backend.contrib.cudnn import partition_for_cudnn
    mod = from_onnx(model, shape_dict={model.graph.input[0].name: shape}, keep_params_in_input=False)
    mod = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]})(mod)
    mod = relax.transform.RunCodegen()(partition_for_cudnn(mod))
    target = tvm.target.Target("cuda")
    with target:
        mod = relax.get_pipeline("zero")(mod)
        mod = dlight.ApplyDefaultSchedule(dlight.gpu.Matmul(), dlight.gpu.GEMV(), dlight.gpu.Reduction(),
                                          dlight.gpu.GeneralReduction(), dlight.gpu.Fallback())(mod)
    build = getattr(tvm, "compile", None) or relax.build
    return relax.VirtualMachine(build(mod, target=target), device), "main"


def run(network: Network, x: np.ndarray, timing: Timing, precision: str, options: Mapping[str, Any]) -> Run:
    import tvm

    started = time.perf_counter()
    model = to_onnx(network, batch=len(x))
    device = tvm.cuda(0)
    has_relay = module_available("tvm.relay", "TVM < 0.20")[0]
    module, entry = (_relay if has_relay else _relax)(tvm, model, x.shape, device)
    data = tvm.nd.array(x.astype(np.float32), device)
    if has_relay:
        module.set_input(model.graph.input[0].name, data)
        module.run()
        output = module.get_output(0).numpy()
        evaluator = module.module.time_evaluator(entry, device, number=timing.number, repeat=timing.repeat)
        args: tuple[Any, ...] = ()
    else:
        output = module[entry](data).numpy()
        evaluator = module.time_evaluator(entry, device, number=timing.number, repeat=timing.repeat)
        args = (data,)
    for _ in range(timing.warmup):
        module.run() if has_relay else module[entry](data)
    device.sync()
    samples = [s * 1000 for s in evaluator(*args).results]
    details = {"setup_s": round(time.perf_counter() - started, 3), "frontend": "relay" if has_relay else "relax"}
    found = versions("apache-tvm")
    found["tvm"] = tvm.__version__
    return Run(samples, str(device.device_name), found, "tvm time_evaluator (CUDA events)", output, details)


FRAMEWORK = Framework("tvm_cudnn", "TVM from the exported ONNX, convolutions by cuDNN", "cuda", available, run)
