"""How our kernels run the zoo's data-movement and per-pixel operators, and with what launch: plain Python.

- A pad (or crop) is ``pad_f32`` of ``cuda/pad.cu``: one thread per output element writes the fill or the copy.
- A LayerNorm or softmax over channels is ``norm_f32`` of ``cuda/norm.cu``: a warp per pixel where channels are
  contiguous (NHWC, or a 1 x 1 image: a classifier's), else a thread per pixel (NCHW, where neighbouring threads
  then read neighbouring pixels).
- Pointwise tasks in a row on one stream share a launch where they can (`pointwise_launches`). A run of them none of
  which reads or writes what another writes is one launch of ``pointwise_batch_f32``: each task a part (its
  `pointwise_args`, a row of the table that is the launch's one parameter, `pointwise_batch`), ``blockIdx.y``
  picking the part; NASNet's cells add their branches so, side by side. A chain of additions into one output, in
  place, is one pass of ``pointwise_sum_f32`` over all its terms (`pointwise_sum`); RandWire sums each node's
  inputs so.
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
from ios_core.engine.program import ACTIVATIONS, POINTWISE_OPS, PointwiseTask, Task, View, overlaps
from ios_core.ir import LayerNorm, Pads, Softmax

PAD = "pad_f32"
PAD_SIGNATURE = "i" * 8 + "f" + "i" + "Pqqqq" * 2
NORM = "norm_f32"
NORM_SIGNATURE = "iiIiii" + "f" + "Pqqqq" + "PP" + "Pqqqq"
NORM_KINDS = {LayerNorm: 0, Softmax: 1}  # enum NormKind of cuda/norm.cu


def _launch_record(scalars: tuple[str, ...], views: tuple[str, ...]) -> np.dtype:
    """A struct of cuda/pointwise.cu passed by value: 32 bytes of 4-byte ``scalars``, then each of ``views`` as an
    address and four strides in the output's iteration order."""
    types = {"op": "<i4", "act": "<i4", "terms": "<i4", "low": "<f4", "high": "<f4"}
    return np.dtype([(name, types.get(name, "<u4")) for name in scalars]
                    + [(f"{view}{field}", "<u8" if field == "" else "<i8") for view in views
                       for field in ("", "0", "1", "2", "3")])


POINTWISE_BATCH = "pointwise_batch_f32"
POINTWISE_PART = _launch_record(("op", "act", "low", "high", "total", "d1", "d2", "d3"), ("y", "a", "b"))
"""struct PointwisePart: a pointwise task's `pointwise_args`, in their order."""
BATCH_PARTS = 16  # POINTWISE_BATCH of cuda/pointwise.cu: the parts a launch's 4 KB of parameters hold
POINTWISE_BATCH_SIGNATURE = f"{BATCH_PARTS * POINTWISE_PART.itemsize}s"  # struct PointwiseBatch, by value
POINTWISE_SUM = "pointwise_sum_f32"
SUM_TERMS = 8  # POINTWISE_TERMS of cuda/pointwise.cu
POINTWISE_SUM_RECORD = _launch_record(("act", "terms", "low", "high", "total", "d1", "d2", "d3"),
                                      ("y", *(f"x{k}_" for k in range(SUM_TERMS))))
"""struct PointwiseSum: a sum's output, then its terms."""
POINTWISE_SUM_SIGNATURE = f"{POINTWISE_SUM_RECORD.itemsize}s"  # by value
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
    total, dims, views = _in_order(y, (a, a if b is None else b))
    return (POINTWISE_OPS[op], ACTIVATIONS[act], *map(float, bounds), total, *dims, *views)


def pointwise_sum(y: Operand, terms: list[Operand], act: str, bounds: tuple[float, float] = (-inf, inf)) -> bytes:
    """The parameter of ``pointwise_sum_f32`` (struct PointwiseSum) for ``y = clip(act(sum of terms), *bounds)``:
    as for `pointwise_args`, each term broadcast to y's dims; the views after the last term are zeros."""
    if not 2 <= len(terms) <= SUM_TERMS:
        raise ValueError(f"a sum's launch adds 2 to {SUM_TERMS} terms, not {len(terms)}")
    total, dims, views = _in_order(y, terms)
    record = np.zeros((), POINTWISE_SUM_RECORD)
    record[()] = (ACTIVATIONS[act], len(terms), *map(float, bounds), total, *dims, *views,
                  *(0,) * (5 * (SUM_TERMS - len(terms))))
    return record.tobytes()


def _in_order(y: Operand, operands: tuple[Operand, ...] | list[Operand]) -> tuple[int, tuple[int, ...], tuple]:
    """``(total, dims, views)`` of a pointwise launch writing ``y``: the four dimensions ordered by y's strides,
    fastest last (dims: all but the slowest), and the address and strides in that order of y, then of each operand
    broadcast to y's dims."""
    total = prod(y.dims)
    if total >= 2**32:
        raise ValueError(f"{total} outputs overflow the pointwise kernels' 32-bit index")
    order = sorted(range(4), key=lambda d: -y.strides[d])
    views = (y, *(broadcast(x, y.dims) for x in operands))
    return total, tuple(y.dims[d] for d in order[1:]), tuple(
        v for view in views for v in (view.address, *(view.strides[d] for d in order)))


def pointwise_launches(tasks: tuple[Task, ...] | list[Task]) -> list[tuple[str, list[Task]]]:
    """One stream's ``tasks`` in their order, grouped by the launch each group is: ``("sum", chain)``, a chain of
    additions into one output in place (`SUM_TERMS` terms at most) as one pass of ``pointwise_sum_f32``;
    ``("batch", run)``, up to `BATCH_PARTS` pointwise tasks in a row, none of which reads or writes what another of
    the run writes (its parts run in any order, concurrently), as one launch of ``pointwise_batch_f32``; and
    ``("task", [task])``, every other task alone."""
    chains: list[list[Task]] = []
    for task in tasks:
        if chains and _continues(chains[-1], task):
            chains[-1].append(task)
        else:
            chains.append([task])
    launches: list[tuple[str, list[Task]]] = []
    for chain in chains:
        if len(chain) > 1:
            launches.append(("sum", chain))
        elif launches and _joins(*launches[-1], chain[0]):
            launches[-1] = ("batch", [*launches[-1][1], chain[0]])
        else:
            launches.append(("task", chain))
    return launches


def sum_terms(chain: list[PointwiseTask]) -> list[View]:
    """The terms a chain of additions (`pointwise_launches`) sums, in the order the chain adds them."""
    first = chain[0]
    return [first.a, *([] if first.b is None else [first.b]), *(task.b for task in chain[1:])]


def _continues(chain: list[Task], task: Task) -> bool:
    """Whether ``task`` adds one more term into the output of ``chain`` (pointwise tasks, so far one sum), in place:
    the last wrote that output with no activation or bound, and the new term is not the output itself."""
    last = chain[-1]
    return (isinstance(task, PointwiseTask) and isinstance(last, PointwiseTask) and last.op in ("add", "none")
            and task.op == "add" and task.b is not None and task.a == last.y == task.y and last.act == "none"
            and (last.low, last.high) == (-inf, inf) and not overlaps(task.b, task.y)
            and len(sum_terms([*chain, task])) <= SUM_TERMS)


def _joins(kind: str, run: list[Task], task: Task) -> bool:
    """Whether ``task`` can run in one launch beside ``run`` (of a launch of ``kind``): pointwise tasks, not a sum,
    room for one more part, and nothing ``task`` reads or writes written by the run, nor the other way round."""
    return (kind != "sum" and isinstance(task, PointwiseTask) and isinstance(run[0], PointwiseTask)
            and len(run) < BATCH_PARTS and not any(_conflict(task, other) for other in run))


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
