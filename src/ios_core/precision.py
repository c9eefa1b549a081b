"""The arithmetic every number is taken in: one vocabulary for the engine, the costs, the baselines and the records."""

from __future__ import annotations

PRECISIONS = ("fp32", "fp32-strict")
"""``fp32``: float32 tensors, TF32 tensor cores allowed in convolutions (PyTorch's default for cuDNN);
``fp32-strict``: no TF32 (cuDNN engines with the tensor-core numerical note are deselected)."""


def check_precision(precision: str) -> str:
    """``precision`` if it is one of `PRECISIONS`, else a `ValueError` naming it."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
    return precision
