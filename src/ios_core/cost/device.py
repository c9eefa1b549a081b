"""Device profiles: the few numbers of a GPU that the simulated cost model reads.

A profile is plain data, loaded from ``conf/device/<name>.yaml``. Peak rates are the vendor's
dense figures (FP32, and the tensor cores' TF32, FP16 and BF16, each with float32 accumulation); the
achievable fractions (``compute_efficiency``, ``memory_efficiency``) turn them into what a good library
kernel reaches. ``real`` says whether the profile is a GPU that exists
(and could be measured) or the toy ``sim`` device used by tests.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ios_core.errors import UserError
from ios_core.precision import spec_of


class DeviceError(UserError, ValueError):
    """A device profile has a missing or impossible value."""


@dataclass(frozen=True)
class DeviceProfile:
    """One GPU as the simulated cost model sees it; all rates per second, all overheads in microseconds."""

    name: str = "sim"
    real: bool = False
    sm_count: int = 16
    fp32_tflops: float = 10.0
    tf32_tflops: float = 10.0
    fp16_tflops: float = 20.0
    bf16_tflops: float = 20.0
    memory_gbps: float = 1000.0
    compute_efficiency: float = 0.75
    memory_efficiency: float = 0.8
    memory_saturation: float = 0.5
    block_outputs: int = 4096
    launch_us: float = 2.5
    sync_us: float = 1.5

    def __post_init__(self) -> None:
        positive = ("sm_count", "fp32_tflops", "tf32_tflops", "fp16_tflops", "bf16_tflops", "memory_gbps",
                    "block_outputs")
        for name in positive:
            if not getattr(self, name) > 0:
                raise DeviceError(f"device {self.name!r}: {name} must be > 0, got {getattr(self, name)!r}")
        for name in ("compute_efficiency", "memory_efficiency", "memory_saturation"):
            if not 0 < getattr(self, name) <= 1:
                raise DeviceError(f"device {self.name!r}: {name} must be in (0, 1], got {getattr(self, name)!r}")
        for name in ("launch_us", "sync_us"):
            if getattr(self, name) < 0:
                raise DeviceError(f"device {self.name!r}: {name} must be >= 0, got {getattr(self, name)!r}")

    @staticmethod
    def from_mapping(values: dict[str, Any]) -> DeviceProfile:
        """A profile from a config mapping; unknown keys are an error that names them."""
        known = {f.name for f in fields(DeviceProfile)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DeviceError(f"unknown device keys {unknown}; known keys: {sorted(known)}")
        return DeviceProfile(**values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def peak_tflops(self, precision: str, tensor: bool) -> float:
        """The dense peak of a kernel in ``precision``: the tensor-core peak of its element type where ``tensor``
        (a convolution tensor cores may run) and the precision allows them, else the FP32 peak (our own kernels
        compute in float32 whatever they store)."""
        spec = spec_of(precision)
        if not (tensor and spec.tensor_cores):
            return self.fp32_tflops
        return {"float32": self.tf32_tflops, "float16": self.fp16_tflops, "bfloat16": self.bf16_tflops}[spec.dtype]
