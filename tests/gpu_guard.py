"""Skip a GPU test module cleanly, with the reason, where PyCUDA, the cuDNN frontend or a GPU is missing."""

import pytest


def require_gpu():
    """The `pycuda.driver` module, initialized, once a GPU is known to be there; else skip the module."""
    drv = pytest.importorskip("pycuda.driver", reason="PyCUDA is not installed: the engine's GPU tests need it")
    pytest.importorskip("cudnn", reason="the cuDNN frontend (nvidia-cudnn-frontend) is not installed")
    try:
        drv.init()
        why = "" if drv.Device.count() > 0 else "the CUDA driver sees no GPU"
    except drv.Error as error:
        why = f"no usable CUDA driver ({error})"
    if why:
        pytest.skip(why, allow_module_level=True)
    return drv
