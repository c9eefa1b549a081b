"""TASO: its graph-substitution search on the exported network (fixed batch, body only), timed by TASO.

TASO (Jia et al., SOSP 2019) is built from source against CUDA/cuDNN and exposes ``import taso``;
its last release targets CUDA 10 and Python 3.7, so there is no build for Python 3.12 / CUDA 13
(the lent GPU machine). Where it is installed: ``taso.load_onnx``, ``taso.optimize(alpha, budget)``
(options ``alpha`` 1.05, ``budget`` 1000, TASO's defaults), then ``graph.run_time()`` -- TASO's own
timer (the mean of its cuDNN runs), recorded as such: one sample per repeat.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ios_core.baselines.core import Framework, Run, module_available, versions
from ios_core.onnx_io import Network, save_onnx
from ios_core.timing import Timing


def available() -> tuple[bool, str]:
    ok, reason = module_available("taso", "TASO builds from source only")
    if not ok:
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        return False, f"{reason}; TASO has no build for Python {python} / CUDA 12+ (its last targets CUDA 10)"
    return True, ""


def run(network: Network, x: np.ndarray, timing: Timing, precision: str, options: Mapping[str, Any]) -> Run:
    import taso

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = save_onnx(network, Path(tmp) / f"{network.name}.onnx", batch=len(x), opset=11)
        graph = taso.load_onnx(str(path))
    optimized = taso.optimize(graph, alpha=float(options.get("alpha", 1.05)), budget=int(options.get("budget", 1000)))
    for _ in range(timing.warmup):
        optimized.run_time()
    samples = [float(optimized.run_time()) for _ in range(timing.repeat)]
    details = {"setup_s": round(time.perf_counter() - started, 3), "alpha": options.get("alpha", 1.05),
               "budget": options.get("budget", 1000), "unoptimized_ms": float(graph.run_time())}
    return Run(samples, "cuda (TASO)", versions("taso"), "taso run_time()", None, details)


FRAMEWORK = Framework("taso", "TASO graph substitutions on the exported ONNX, TASO's cuDNN runtime", "cuda",
                      available, run)
