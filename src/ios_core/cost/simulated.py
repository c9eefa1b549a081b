"""The ``simulated`` cost: an analytical latency model of a stage on a `DeviceProfile`, for machines without a GPU.

Every number it produces is a model, labelled ``simulated`` (its ``kind``); none is a measurement.

Kernels. Each operator is one kernel (a `Sequential` is one kernel per inner operator; a merged
group is the one wider convolution `ios_core.schedule.merged_conv` makes of it). A kernel has

* ``F`` FLOPs: the operator table's FLOPs per sample times the batch size;
* ``B`` bytes: the precision's bytes per element (4 in float32, 2 in fp16 and bf16) for every element
  read (every summed term of every operand) and written, plus the weights, each once;
* ``n = ceil(outputs / block_outputs)`` thread blocks, ``outputs`` being the elements it writes.

Alone on the device, its ``n`` blocks fill the ``S`` streaming multiprocessors in
``w = ceil(n / S)`` waves, so it keeps a fraction ``u = n / (w S)`` of them busy. With ``P`` the
peak FLOP/s (`DeviceProfile.peak_tflops`: the tensor cores' for ``groups=1`` convolutions -- TF32 at
``fp32``, FP16 at ``fp16``, BF16 at ``bf16`` -- and FP32 for the rest and at ``fp32-strict``) times
``compute_efficiency``, and ``W`` the memory bandwidth times ``memory_efficiency``::

    t_alone = max(F / (P u), B / (W min(1, u / memory_saturation)))   # a roofline at utilization u
    t_full  = max(F / P, B / W)                                      # the same work, whole device

(memory bandwidth saturates once ``memory_saturation`` of the SMs are loading). A group runs its
kernels one after another on its stream, each paying a launch: ``T_g = sum (launch_us + t_alone)``.
Groups of a stage share the SMs, so the stage takes the longer of its longest group and all its
work packed onto the whole device, plus one event wait per extra stream to join them::

    stage = max(max_g T_g, launch_us + sum_all_kernels t_full) + sync_us (G - 1)

So a stage of small operators costs about the longest of them plus overhead, and a stage of large
ones about their sum. Launches are charged on each stream's critical path only, as when the
schedule is replayed from a CUDA graph (where a launch costs a few microseconds).
"""

from __future__ import annotations

import math
from typing import NamedTuple

from ios_core.cost.device import DeviceProfile
from ios_core.cost.key import GroupKey, KeysByGraph, OpKey, content_space, group_key
from ios_core.ir import Conv, Graph, Op, Sequential, Shape, rules_of
from ios_core.precision import spec_of
from ios_core.schedule import Stage, merged_conv

MODEL_REVISION = 2
"""Bumped whenever the model above changes (a formula, the bytes of an element), so that a disk cache of the old
model's numbers is never read as the new one's: the revision is part of every cache `space`. 2: half
precisions."""


class Kernel(NamedTuple):
    """One kernel launch: its FLOPs, bytes moved, elements written and whether tensor cores may run it."""

    flops: float
    bytes: float
    outputs: int
    tensor: bool


def op_kernels(op: Op, operands: tuple[tuple[Shape, int], ...], batch: int,
               element_bytes: int = 4) -> tuple[Kernel, ...]:
    """The kernels of one operator, given each operand's shape and number of summed terms, with tensors of
    ``element_bytes`` per element."""
    if isinstance(op, Sequential):
        kernels, operand = [], operands
        for inner in op.ops:
            kernel, out = _kernel(inner, operand, batch, element_bytes)
            kernels.append(kernel)
            operand = ((out, 1),)
        return tuple(kernels)
    return (_kernel(op, operands, batch, element_bytes)[0],)


def _kernel(op: Op, operands: tuple[tuple[Shape, int], ...], batch: int, element_bytes: int) -> tuple[Kernel, Shape]:
    rules = rules_of(op)
    shapes = tuple(shape for shape, _ in operands)
    out = rules.shape(op, shapes)
    weights = sum(math.prod(s) for s in rules.weights(op, shapes).values())
    read = sum(shape.size * terms for shape, terms in operands) * batch
    flops = rules.flops(op, shapes, out) * batch
    tensor = isinstance(op, Conv) and op.groups == 1
    return Kernel(flops, element_bytes * (read + weights + out.size * batch), out.size * batch, tensor), out


class SimulatedCost:
    """The analytical model of this module's docstring on one device, in one of `ios_core.precision.PRECISIONS`."""

    kind = "simulated"

    def __init__(self, device: DeviceProfile, precision: str = "fp32") -> None:
        self.device, self.precision, self.spec = device, precision, spec_of(precision)
        self._keys = KeysByGraph()
        self._group_times: dict[tuple[str, int], tuple[float, float]] = {}
        # The cache namespace covers every number the model reads, not just the device's name.
        inputs = {"device": device.as_dict(), "precision": precision, "revision": MODEL_REVISION}
        self.space = content_space(inputs, self.kind, device.name, precision)

    def stage_latency(self, graph: Graph, stage: Stage, batch: int) -> float:
        """The stage's simulated latency in milliseconds."""
        keys = self._keys(graph)
        longest, total_full = 0.0, 0.0
        for group in stage.groups:
            memo = (keys.group_text(group), batch)  # groups that compute the same thing cost the same
            times = self._group_times.get(memo)
            if times is None:
                times = self._group_times[memo] = self.group_times(group_key(graph, group), batch)
            longest, total_full = max(longest, times[0]), total_full + times[1]
        d = self.device
        microseconds = max(longest, d.launch_us + total_full) + d.sync_us * (len(stage.groups) - 1)
        return microseconds / 1000.0

    def group_times(self, group: GroupKey, batch: int) -> tuple[float, float]:
        """``(T_g, sum of t_full)`` of one group, in microseconds (see the module docstring)."""
        size = self.spec.element_bytes
        kernels = merged_kernels(group.ops, batch, size) if group.merge else [
            k for op in group.ops for k in op_key_kernels(op, batch, size)
        ]
        alone, full = 0.0, 0.0
        for kernel in kernels:
            a, f = self.kernel_times(kernel)
            alone, full = alone + self.device.launch_us + a, full + f
        return alone, full

    def kernel_times(self, kernel: Kernel) -> tuple[float, float]:
        """``(t_alone, t_full)`` of one kernel in microseconds (see the module docstring)."""
        d = self.device
        flop_rate = d.peak_tflops(self.precision, kernel.tensor) * 1e6 * d.compute_efficiency  # FLOP per microsecond
        byte_rate = d.memory_gbps * 1e3 * d.memory_efficiency  # bytes per microsecond
        blocks = max(1, math.ceil(kernel.outputs / d.block_outputs))
        waves = math.ceil(blocks / d.sm_count)
        busy = blocks / (waves * d.sm_count)
        streaming = min(1.0, busy / d.memory_saturation)
        alone = max(kernel.flops / (flop_rate * busy), kernel.bytes / (byte_rate * streaming))
        full = max(kernel.flops / flop_rate, kernel.bytes / byte_rate)
        return alone, full


def op_key_kernels(op: OpKey, batch: int, element_bytes: int = 4) -> tuple[Kernel, ...]:
    """The kernels of one operator from its key."""
    operands = tuple((Shape(*o.shape), len(o.terms)) for o in op.operands)
    return op_kernels(op.op, operands, batch, element_bytes)


def merged_kernels(ops: tuple[OpKey, ...], batch: int, element_bytes: int = 4) -> tuple[Kernel, ...]:
    """A merge runs as the one wider convolution; every member reads the same operand."""
    wide = merged_conv([o.op for o in ops])
    first = ops[0].operands[0]
    return op_kernels(wide, ((Shape(*first.shape), len(first.terms)),), batch, element_bytes)
