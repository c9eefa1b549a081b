"""The arithmetic every number is taken in: one vocabulary for the engine, the costs, the baselines and the records.

Each precision is one `PrecisionSpec`: the element type tensors are stored in, whether tensor cores may
run its convolutions, the bytes an element takes and how far an output may be from the float64 reference.
Half precisions (``fp16``, ``bf16``) store activations and weights in 16 bits and accumulate in float32,
as cuDNN and PyTorch do; their tolerances are what a few hundred float32-accumulated 16-bit products
reach over a deep network (bf16 keeps 8 mantissa bits to fp16's 11, hence its looser bound).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PrecisionSpec:
    """One precision: how tensors are stored and computed, and the error allowed against the float64 reference.

    Attributes
    ----------
    name
        Its name in configs, paths and records.
    dtype
        The storage element type's name, as numpy, PyTorch and JAX spell it (``float32``, ``float16``,
        ``bfloat16``).
    tensor_cores
        Whether convolutions may run on tensor cores (TF32 for float32; always for 16-bit types).
    tolerance
        The largest relative L2 error of an output against the float64 reference.
    """

    name: str
    dtype: str
    tensor_cores: bool
    tolerance: float

    @property
    def element_bytes(self) -> int:
        """Bytes per stored element."""
        return 4 if self.dtype == "float32" else 2


SPECS: dict[str, PrecisionSpec] = {
    spec.name: spec
    for spec in (
        # TF32 rounds convolution inputs to 10 mantissa bits, as PyTorch's cuDNN default does.
        PrecisionSpec("fp32", "float32", tensor_cores=True, tolerance=1e-2),
        PrecisionSpec("fp32-strict", "float32", tensor_cores=False, tolerance=1e-4),
        PrecisionSpec("fp16", "float16", tensor_cores=True, tolerance=1e-2),
        PrecisionSpec("bf16", "bfloat16", tensor_cores=True, tolerance=3e-2),
    )
}

PRECISIONS = tuple(SPECS)
"""``fp32``: float32 tensors, TF32 tensor cores allowed in convolutions (PyTorch's default for cuDNN);
``fp32-strict``: no TF32 (cuDNN engines with the tensor-core numerical note are deselected);
``fp16``, ``bf16``: 16-bit tensors, float32 accumulation."""

FLOAT32_PRECISIONS = tuple(name for name, spec in SPECS.items() if spec.dtype == "float32")
"""The precisions a float32 network runs as it is; the others need it converted."""

TOLERANCE = {name: spec.tolerance for name, spec in SPECS.items()}
"""The largest relative L2 error of an output against the float64 reference, by precision."""


def check_precision(precision: str) -> str:
    """``precision`` if it is one of `PRECISIONS`, else a `ValueError` naming it."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return precision


def spec_of(precision: str) -> PrecisionSpec:
    """The `PrecisionSpec` of ``precision``; a `ValueError` naming it if it is not one of `PRECISIONS`."""
    return SPECS[check_precision(precision)]
