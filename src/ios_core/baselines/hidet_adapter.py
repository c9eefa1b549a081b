"""The hidet baseline (``hidet``): ``torch.compile(backend="hidet")`` on `torch_module` of the same graph.

hidet registers its TorchDynamo backend by its package's entry point; its defaults are kept. What the
hidet 0.6.1 wheel (py3-none-any) declares and does, as read from it: it requires ``torch>=2.3.0``,
``cuda-python>=11.6.1`` (it imports ``cuda.bindings``) and ``hip-python-fork``, and compiles its
kernels at run time with ``nvcc``, looked up on PATH, then in /usr/local/cuda/bin and /usr/bin --
so a machine with the CUDA runtime but no toolkit cannot run it. The check looks for each of these.
"""

from __future__ import annotations

import os
import shutil

from ios_core.baselines.core import Framework, module_available
from ios_core.baselines.torch_adapters import compiled_runner, torch_cuda_available

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


FRAMEWORK = Framework("hidet", "torch.compile(backend='hidet'), hidet's default options", "cuda", available,
                      compiled_runner(None, freezing=False, backend="hidet"))
