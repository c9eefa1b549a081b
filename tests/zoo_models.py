"""The committed zoo files (`tests/zoo`, made by ``tests/zoo/make_zoo.py``) with their stripped weights refilled.

A zoo file keeps its graph and small tensors; every float initializer over 1 KB was moved to external data that
is not committed. `load_zoo` fills each such tensor again, deterministically from its name: uniform in
``+-sqrt(3 / fan_in)`` for a weight of rank >= 2 (fan_in: the product of all dimensions but the first), uniform in
``[0.5, 1.5]`` for a vector, so that a BatchNorm variance stays positive and activations stay of order one.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

ZOO = Path(__file__).parent / "zoo"


def zoo_files() -> list[Path]:
    """Every committed zoo export, ``<model>.<exporter>.onnx``."""
    return sorted(ZOO.glob("*.onnx"))


def fill(tensor: onnx.TensorProto) -> np.ndarray:
    """Deterministic values for a stripped initializer, seeded by its name."""
    shape = tuple(tensor.dims)
    rng = np.random.default_rng(zlib.crc32(tensor.name.encode()))
    if len(shape) >= 2:
        bound = np.sqrt(3.0 / max(int(np.prod(shape[1:])), 1))  # unit variance in, unit variance out
        values = rng.uniform(-bound, bound, shape)
    else:
        values = rng.uniform(0.5, 1.5, shape)
    return values.astype(helper.tensor_dtype_to_np_dtype(tensor.data_type))


def load_zoo(path: str | Path) -> onnx.ModelProto:
    """The zoo model at ``path`` with every stripped initializer filled (`fill`) inline."""
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            tensor.CopyFrom(numpy_helper.from_array(fill(tensor), tensor.name))
    return model
