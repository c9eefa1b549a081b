"""The element types the engine stores tensors in, one per precision: the one table the engine picks them from.

An `Element` says how a precision's tensors lie in memory (bytes, the numpy type of a host copy, the bits of a
NaN), which of our kernels run on them (the suffix of their ``extern "C"`` names, ``cuda/element.cuh``) and what
cuDNN calls the type. Every precision computes in float32: only storage differs. Activations, convolution weights
and biases, and LayerNorm weights are all stored in the element type; a plan's input and output at its API stay
float32 (`ios_core.engine.gpu.plan`).

numpy has no bfloat16: a bfloat16 host copy is a uint16 array of its bits (`to_storage` rounds float32 to the
nearest even, as ``__float2bfloat16_rn`` does; `to_float32` widens it back exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ios_core.precision import PRECISIONS, spec_of


@dataclass(frozen=True)
class Element:
    """How one precision's tensors are stored (see the module)."""

    name: str  # the storage type's name, as `ios_core.precision.PrecisionSpec.dtype` spells it
    suffix: str  # of our kernels' names: ``pointwise_<suffix>``
    host: str  # the numpy dtype of a host copy (bfloat16: its bits, uint16)
    cudnn: str  # the member of ``cudnn.data_type``
    nan: int  # the bits of a quiet NaN, what an arena is poisoned with
    only: int  # ``-DELEMENT_ONLY=<only>`` compiles this type's kernels alone (cuda/element.cuh)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.host).itemsize

    def kernel(self, name: str) -> str:
        """The instance for this type of our kernel ``name`` (float32's: ``pointwise_f32``, ``pool_nhwc_max_v4``)."""
        base = name.removesuffix("_f32")
        if base != name:
            return f"{base}_{self.suffix}"
        return name if self.name == "float32" else f"{name}_{self.suffix}"

    def to_storage(self, array: np.ndarray) -> np.ndarray:
        """``array`` rounded to this type (to nearest even), as a host copy of dtype ``host``."""
        values = np.asarray(array, np.float32)
        if self.name != "bfloat16":
            return values.astype(self.host)
        bits = values.view(np.uint32).astype(np.uint64)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round half to even on the 16 dropped bits
        nan = np.isnan(values)
        return np.where(nan, (bits >> 16) | 0x40, rounded).astype(np.uint16)  # a NaN stays a (quiet) NaN

    def to_float32(self, host: np.ndarray) -> np.ndarray:
        """A host copy of this type (dtype ``host``) as float32, exactly."""
        if self.name != "bfloat16":
            return np.asarray(host).astype(np.float32)
        return (np.asarray(host, np.uint16).astype(np.uint32) << 16).view(np.float32)


ELEMENTS = {
    e.name: e
    for e in (
        Element("float32", "f32", "float32", "FLOAT", 0x7FC00000, 0),
        Element("float16", "f16", "float16", "HALF", 0x7E00, 1),
        Element("bfloat16", "bf16", "uint16", "BFLOAT16", 0x7FC0, 2),
    )
}
"""The storage types the engine implements, by name."""

ENGINE_PRECISIONS = tuple(p for p in PRECISIONS if spec_of(p).dtype in ELEMENTS)
"""The precisions a plan can be built in."""


def element_of(precision: str) -> Element:
    """The storage type of ``precision``; a `ValueError` naming it if the engine does not implement it."""
    spec = spec_of(precision)
    if spec.dtype not in ELEMENTS:
        raise ValueError(f"the engine does not implement precision {precision!r} yet ({spec.dtype} storage); "
                         f"it runs {ENGINE_PRECISIONS}")
    return ELEMENTS[spec.dtype]
