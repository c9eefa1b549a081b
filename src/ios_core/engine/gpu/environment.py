"""What this machine's GPU is and runs: the one environment every engine measurement carries and is keyed by.

Creates no CUDA context, so a search whose stages are all cached never touches the GPU.
"""

from __future__ import annotations

from typing import Any

import cudnn
import pycuda.driver as drv

from ios_core import gpu


def cudnn_version() -> str:
    """The version of the cuDNN library the frontend runs on."""
    if hasattr(cudnn, "backend_version_string"):
        return str(cudnn.backend_version_string())
    return str(cudnn.backend_version())


def environment() -> dict[str, Any]:
    """NVML's description of the GPU (`ios_core.gpu.device_info`), the CUDA driver API's version and cuDNN's.

    The `ios_core.gpu.ENVIRONMENT_KEYS` -- what a stage profile and an autotuning winner are valid for: the
    GPU's ``name``, ``driver``, ``cuda`` (the CUDA version of the driver) and ``cudnn`` -- are always there,
    ``"unknown"`` where NVML cannot say.
    """
    info = gpu.device_info()
    return {**info, "name": info.get("name", "unknown"), "driver": info.get("driver", "unknown"),
            "cuda": info.get("cuda_driver", "unknown"), "cudnn": cudnn_version(),
            "cuda_driver_api": drv.get_driver_version()}
