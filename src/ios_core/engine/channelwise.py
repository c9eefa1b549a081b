"""How our kernels run the zoo's data-movement and per-pixel operators, and with what launch: plain Python.

- A pad (or crop) is ``pad_f32`` of ``cuda/pad.cu``: one thread per output element writes the fill or the copy.
- A LayerNorm or softmax over channels is ``norm_f32`` of ``cuda/norm.cu``: a warp per pixel where channels are
  contiguous (NHWC, or a 1 x 1 image: a classifier's), else a thread per pixel (NCHW, where neighbouring threads
  then read neighbouring pixels).
- A run of pointwise tasks in a row on one stream, none reading or writing what another writes (`pointwise_runs`),
  is one launch of ``pointwise_batch_f32``: each task a part (its `pointwise_args`, a row of the table that is the
  launch's one parameter, `pointwise_batch`), ``blockIdx.y`` picking the part. NASNet's cells add their branches
  so, side by side.
- A channel shuffle is our pointwise copy over views re-read as (n, i, j, pixel) (`shuffle_views`): a permutation
  of channels by strides alone, one launch. The pointwise kernel's arguments (`pointwise_args`) broadcast an
  operand of size 1 where the output is larger by a stride of 0: a C x 1 x 1 scale multiplies in one launch.

Kernels are named as their float32 instances (`ios_core.engine.elements.Element.kernel` names the others). As for
`ios_core.engine.depthwise` and `ios_core.engine.pooling`, the launch is chosen on the host once per task
when the plan is built, apart from `ios_core.engine.gpu.launch`, so that it is tested without a GPU.
"""

from __future__ import annotations

from math import inf, prod

import numpy as np

from ios_core.engine.depthwise import INT32_MAX, Launch, Operand
from ios_core.engine.program import ACTIVATIONS, POINTWISE_OPS, PointwiseTask, Task, overlaps
from ios_core.ir import LayerNorm, Pads, Softmax

PAD = "pad_f32"
PAD_SIGNATURE = "i" * 8 + "f" + "i" + "Pqqqq" * 2
NORM = "norm_f32"
NORM_SIGNATURE = "iiIiii" + "f" + "Pqqqq" + "PP" + "Pqqqq"
NORM_KINDS = {LayerNorm: 0, Softmax: 1}  # enum NormKind of cuda/norm.cu
POINTWISE_BATCH = "pointwise_batch_f32"
POINTWISE_PART = np.dtype(  # struct PointwisePart of cuda/pointwise.cu: pointwise_args in their order
    [(name, "<i4") for name in ("op", "act")] + [(name, "<f4") for name in ("low", "high")]
    + [(name, "<u4") for name in ("total", "d1", "d2", "d3")]
    + [(f"{view}{field}", "<u8" if field == "" else "<i8") for view in "yab" for field in ("", "0", "1", "2", "3")])
BATCH_PARTS = 16  # POINTWISE_BATCH of cuda/pointwise.cu: the parts a launch's 4 KB of parameters hold
POINTWISE_BATCH_SIGNATURE = f"{BATCH_PARTS * POINTWISE_PART.itemsize}s"  # struct PointwiseBatch, by value
BLOCK = 256  # a multiple of the warp: a pixel's lanes never straddle two blocks
BLOCKS_PER_SM = 16  # the grid-stride loops cover the rest
WARP = 32


def broadcast(operand: Operand, dims: tuple[int, int, int, int]) -> Operand:
    """``operand`` read over ``dims``: a dimension of size 1 where ``dims`` is larger gets stride 0."""
    strides = tuple(0 if d == 1 and full > 1 else s for d, full, s in zip(operand.dims, dims, operand.strides,
                                                                          strict=True))
    return Operand(operand.address, dims, strides)


def pointwise_args(y: Operand, a: Operand, b: Operand | None, op: str, act: str,
                   bounds: tuple[float, float] = (-inf, inf)) -> tuple:
    """The arguments of ``pointwise_f32`` for ``y = clip(act(a op b), *bounds)``: the four dimensions ordered by
    y's strides, fastest last, and the operands broadcast to y's dims."""
    a = broadcast(a, y.dims)
    b = a if b is None else broadcast(b, y.dims)
    order = sorted(range(4), key=lambda d: -y.strides[d])
    total = prod(y.dims)
    if total >= 2**32:
        raise ValueError(f"{total} outputs overflow pointwise_f32's 32-bit index")
    return (POINTWISE_OPS[op], ACTIVATIONS[act], *map(float, bounds), total, *(y.dims[d] for d in order[1:]),
            *(v for view in (y, a, b) for v in (view.address, *(view.strides[d] for d in order))))


def pointwise_runs(tasks: tuple[Task, ...] | list[Task]) -> list[list[Task]]:
    """One stream's ``tasks`` in their order, cut into runs that can each be one launch: up to `BATCH_PARTS`
    pointwise tasks in a row, none of which reads or writes what another of the run writes (its parts run in any
    order, concurrently), and every other task alone."""
    runs: list[list[Task]] = []
    for task in tasks:
        run = runs[-1] if runs else []
        if (isinstance(task, PointwiseTask) and run and isinstance(run[0], PointwiseTask) and len(run) < BATCH_PARTS
                and not any(_conflict(task, other) for other in run)):
            run.append(task)
        else:
            runs.append([task])
    return runs


def _conflict(one: PointwiseTask, other: PointwiseTask) -> bool:
    return any(overlaps(w, v) for w, t in ((one.y, other), (other.y, one)) for v in (*t.reads(), t.y))


def pointwise_batch(args: list[tuple]) -> bytes:
    """The parameter of ``pointwise_batch_f32`` (struct PointwiseBatch) for the parts ``args``, each its task's
    `pointwise_args`; the rows after the last part are zeros that no block reads."""
    if not 1 <= len(args) <= BATCH_PARTS:
        raise ValueError(f"a batch holds 1 to {BATCH_PARTS} parts, not {len(args)}")
    table = np.zeros(BATCH_PARTS, POINTWISE_PART)
    table[:len(args)] = [tuple(part) for part in args]
    return table.tobytes()


def _grid(threads: int, sms: int) -> tuple[int, int]:
    return min(-(-threads // BLOCK), sms * BLOCKS_PER_SM), 1


def _outputs(y: Operand, kernel: str) -> int:
    total = y.dims[0] * y.dims[1] * y.dims[2] * y.dims[3]
    if total > INT32_MAX:
        raise ValueError(f"{total} outputs overflow {kernel}'s 32-bit index")
    return total


def pad_launch(x: Operand, y: Operand, pads: Pads, value: float, sms: int) -> Launch:
    """``pad_f32`` writing every element of ``y``: x shifted by the top and left pads, ``value`` elsewhere."""
    (n, c, h, w), (_, _, oh, ow) = x.dims, y.dims
    total = _outputs(y, PAD)
    c_inner = int(y.strides[1] == 1)  # threads walk channels fastest: coalesced in NHWC
    args = (n, c, oh, ow, pads[0], pads[1], h, w, float(value), c_inner, x.address, *x.strides, y.address,
            *y.strides)
    return Launch(PAD, _grid(total, sms), (BLOCK, 1, 1), args)


def norm_lanes(x: Operand, y: Operand) -> int:
    """Threads per pixel: a warp where both views hold each pixel's channels contiguously, else one."""
    return WARP if x.strides[1] == 1 and y.strides[1] == 1 else 1


def norm_launch(x: Operand, y: Operand, op: LayerNorm | Softmax, weights: tuple[int, int], sms: int) -> Launch:
    """``norm_f32`` for ``op`` over each pixel's channels; ``weights`` are the LayerNorm's weight and bias addresses
    (zeros for a softmax, which reads none)."""
    n, c, h, w = x.dims
    pixels, lanes = n * h * w, norm_lanes(x, y)
    _outputs(y, NORM)
    eps = float(op.eps) if isinstance(op, LayerNorm) else 0.0
    args = (NORM_KINDS[type(op)], lanes, pixels, c, h, w, eps, x.address, *x.strides, *weights, y.address,
            *y.strides)
    return Launch(NORM, _grid(pixels * lanes, sms), (BLOCK, 1, 1), args)


def shuffle_views(x: Operand, y: Operand, groups: int) -> tuple[Operand, Operand]:
    """``(y, x)`` as 4-D views over (n, i, j, pixel) with ``y[n, i, j, p]`` = channel ``i * groups + j`` of y and
    ``x[n, i, j, p]`` = channel ``j * (C / groups) + i`` of x: a copy between them is the shuffle.

    H and W merge into one pixel index because every view's row stride is its width times its column stride
    (a channel slice of a dense NHWC or NCHW buffer).
    """
    n, c, h, w = x.dims
    per_group = c // groups
    for view in (x, y):
        if view.strides[2] != w * view.strides[3]:
            raise ValueError(f"rows of {view} are not contiguous runs of pixels")
    dims = (n, per_group, groups, h * w)
    y_view = Operand(y.address, dims, (y.strides[0], groups * y.strides[1], y.strides[1], y.strides[3]))
    x_view = Operand(x.address, dims, (x.strides[0], x.strides[1], per_group * x.strides[1], x.strides[3]))
    return y_view, x_view
