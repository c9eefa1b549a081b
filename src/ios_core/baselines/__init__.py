"""Baselines: other frameworks running the same network with the same weights, timed as our engine is.

- `frameworks`: the registry `FRAMEWORKS` (PyTorch eager / CUDA graph / torch.compile, ONNX Runtime,
  TensorRT, TVM with cuDNN, TASO, TensorFlow, XLA through JAX, hidet) and `frameworks_table`
  (available here, or why not);
- `core`: `Framework`, `Measurement` and `measure`, which records every result -- measured,
  unavailable with its reason, or failed with its error;
- `timing`: the CUDA-event and wall-clock timers, following `ios_core.timing.Timing` as the engine does;
- `torch_module`: the IR as a PyTorch module (used by the PyTorch baselines and the engine's checks);
- `jax_module`: the IR as a pure JAX function of a params pytree (the XLA baseline).

``python -m ios_core.baselines`` prints the frameworks table as JSON; ``python -m ios_core.baseline
framework=<name> model=<model> batch=<b>`` measures one.
"""

from ios_core.baselines.core import Framework, Measurement, Run, load_network, measure
from ios_core.baselines.frameworks import ALIASES, FRAMEWORKS, frameworks_table, get, sweep_frameworks

__all__ = [
    "ALIASES", "FRAMEWORKS", "Framework", "Measurement", "Run", "frameworks_table", "get", "load_network",
    "measure", "sweep_frameworks",
]
