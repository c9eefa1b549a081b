"""The element types the engine stores tensors in, one per precision: the one table the engine picks them from.

An `Element` says how a precision's tensors lie in memory (bytes, the numpy type of a host copy), which of our
kernels run on them (the suffix of their ``extern "C"`` names) and what cuDNN calls the type. Every precision
computes in float32: only storage differs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ios_core.precision import PRECISIONS, spec_of


@dataclass(frozen=True)
class Element:
    """How one precision's tensors are stored (see the module)."""

    name: str  # the storage type's name, as `ios_core.precision.PrecisionSpec.dtype` spells it
    suffix: str  # of our kernels' names: ``pointwise_<suffix>``

    @property
    def itemsize(self) -> int:
        return 4 if self.name == "float32" else 2


ELEMENTS = {"float32": Element("float32", "f32")}
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
