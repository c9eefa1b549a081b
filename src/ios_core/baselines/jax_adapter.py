"""The XLA baseline (``xla``): `jax_module` of the same graph and weights, ``jax.jit``-compiled by XLA.

The batch and the weights are put on the GPU once (NHWC in the precision's type: float32, ``jnp.float16``
for ``fp16``, ``jnp.bfloat16`` for ``bf16``; weights as the jitted function's arguments, not constants); each
call runs the whole compiled network. The convolutions' ``lax.Precision`` is ``DEFAULT`` wherever the
precision allows tensor cores (TF32 for ``fp32``, as cuDNN does under PyTorch's default; the 16-bit types'
own), ``HIGHEST`` at ``fp32-strict`` (no TF32).

JAX has no CUDA event API: each sample is the wall time of ``number`` calls dispatched back to back,
stopped when the last output is ready (``block_until_ready``), recorded as ``wall-clock``. Option
``allow_cpu: true`` runs on JAX's CPU backend (for testing); by default a JAX with no CUDA plugin is
unavailable. JAX is imported when the framework runs or is checked, never at import.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ios_core.baselines.core import Framework, Run, module_available, versions
from ios_core.baselines.jax_module import jax_forward, jax_params
from ios_core.baselines.timing import time_wall_clock
from ios_core.onnx_io import Network
from ios_core.precision import PRECISIONS, spec_of
from ios_core.timing import Timing

CUDA_PLUGINS = ("jax-cuda13-plugin", "jax-cuda12-plugin")
"""The distributions that give JAX its CUDA backend (``pip install 'jax[cuda13]'`` or ``'jax[cuda12]'``)."""

CONV_PRECISION = {name: "DEFAULT" if spec_of(name).tensor_cores else "HIGHEST" for name in PRECISIONS}
"""The ``jax.lax.Precision`` of every convolution, by `ios_core.precision.PRECISIONS`."""


def available() -> tuple[bool, str]:
    """jax with a CUDA plugin installed; the backend itself is not started (it would claim GPU memory)."""
    ok, reason = module_available("jax", "pip install 'jax[cuda13]'")
    if not ok:
        return ok, reason
    found = versions("jax", *CUDA_PLUGINS)
    if not any(plugin in found for plugin in CUDA_PLUGINS):
        return False, (f"jax {found.get('jax', '')} has no CUDA backend here (cpu only): "
                       "no jax-cuda13-plugin or jax-cuda12-plugin; pip install 'jax[cuda13]'")
    return True, ""


def run(network: Network, x: np.ndarray, timing: Timing, precision: str, options: Mapping[str, Any]) -> Run:
    # JAX takes 75% of the GPU's memory when its backend starts unless told not to; the baselines share
    # one process (and the GPU) with other frameworks, so it allocates as it goes. Read once, at that start.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    started = time.perf_counter()
    device = jax.devices("cpu" if options.get("allow_cpu", False) else "gpu")[0]
    dtype = jax.numpy.dtype(spec_of(precision).dtype)
    forward = jax.jit(jax_forward(network.graph, jax.lax.Precision[CONV_PRECISION[precision]]))
    params = jax.device_put(jax_params(network.weights, dtype), device)
    batch = jax.device_put(np.ascontiguousarray(x.transpose(0, 2, 3, 1)).astype(dtype), device)
    output = np.asarray(forward(params, batch), dtype=np.float32).transpose(0, 3, 1, 2)  # traces and compiles
    details = {"setup_s": round(time.perf_counter() - started, 3), "conv_precision": CONV_PRECISION[precision],
               "sync": "block_until_ready"}
    samples = time_wall_clock(lambda: forward(params, batch), timing, jax.block_until_ready)
    return Run(samples, device.device_kind, versions("jax", "jaxlib", *CUDA_PLUGINS), "wall-clock", output, details)


FRAMEWORK = Framework("xla", "JAX jax.jit (XLA) of the graph, NHWC, weights as arguments", "cuda", available, run,
                      precisions=PRECISIONS)
