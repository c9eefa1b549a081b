"""Run a `Program` with numpy on a float64 arena: the engine's memory plan, checked without a GPU.

Every view is an ``as_strided`` window of one flat arena laid out exactly as on the GPU, and the
arena starts as NaN, so a task that reads memory nothing wrote, or a buffer reused too early,
shows up as a wrong or NaN output when compared with `ios_core.reference`. Streams of a stage run
one after another, in either order (``reverse``), since on the GPU nothing orders them; or the groups run
in any ``order`` that keeps their `ios_core.engine.dependencies`, as exact barriers let the GPU run them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ios_core.engine.dependencies import Group
from ios_core.engine.lower import conv_params
from ios_core.engine.program import (
    ConvTask,
    ExciteTask,
    NormTask,
    PadTask,
    PointwiseTask,
    PoolTask,
    Program,
    ShuffleTask,
    Task,
    View,
)
from ios_core.ir import Graph, LayerNorm
from ios_core.reference import ACTIVATION_FUNCTIONS, conv2d, pool2d
from ios_core.weights import Params

_COMBINE: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {"add": np.add, "mul": np.multiply}


class _Arena:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.memory = np.full(program.arena_bytes // program.itemsize, np.nan)

    def __getitem__(self, view: View) -> np.ndarray:
        offset, dims, strides = self.program.locate(view)
        item = self.memory.itemsize
        return as_strided(self.memory[offset:], dims, tuple(s * item for s in strides), writeable=True)


Runner = Callable[[_Arena, Task, Graph, dict[str, Params]], np.ndarray]


def _conv(arena: _Arena, task: ConvTask, graph: Graph, weights: dict[str, Params]) -> np.ndarray:
    x = ACTIVATION_FUNCTIONS[task.pre_act](arena[task.x].copy())
    params = conv_params(graph, weights, task.weights)
    if task.addend is None:
        return conv2d(task.conv, [x], params)
    total = conv2d(replace(task.conv, act="none"), [x], params) + arena[task.addend]
    return ACTIVATION_FUNCTIONS[task.conv.act](total)


def _pool(arena: _Arena, task: PoolTask, graph: Graph, weights: dict[str, Params]) -> np.ndarray:
    return pool2d(task.pool, [arena[task.x].copy()], {})


def _pointwise(arena: _Arena, task: PointwiseTask, graph: Graph, weights: dict[str, Params]) -> np.ndarray:
    a = arena[task.a].copy()
    if task.b is not None:
        a = _COMBINE[task.op](a, arena[task.b])  # numpy broadcasts a 1 x 1 operand as the kernel's zero strides do
    # maximum and minimum keep NaN, as the kernel does: reads of unwritten memory still show
    return np.minimum(np.maximum(ACTIVATION_FUNCTIONS[task.act](a), task.low), task.high)


def _shuffle(arena: _Arena, task: ShuffleTask, graph: Graph, weights: dict[str, Params]) -> np.ndarray:
    x = arena[task.x]
    n, c, h, w = x.shape
    return x.reshape(n, task.groups, c // task.groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


def _pad(arena: _Arena, task: PadTask, graph: Graph, weights: dict[str, Params]) -> np.ndarray:
    """What the pad kernel writes: ``value`` everywhere, then the part of ``x`` that lands inside ``y``."""
    x, top, left = arena[task.x], task.pads[0], task.pads[1]
    out = np.full(arena[task.y].shape, task.value)
    h0, w0 = max(top, 0), max(left, 0)  # where x's first kept row and column land in y
    i0, j0 = max(-top, 0), max(-left, 0)  # x's first kept row and column
    rows, cols = min(x.shape[2] - i0, out.shape[2] - h0), min(x.shape[3] - j0, out.shape[3] - w0)
    out[:, :, h0:h0 + rows, w0:w0 + cols] = x[:, :, i0:i0 + rows, j0:j0 + cols]
    return out


def _norm(arena: _Arena, task: NormTask, graph: Graph, weights: dict[str, Params]) -> np.ndarray:
    x = arena[task.x].copy()
    if isinstance(task.op, LayerNorm):
        p = conv_params(graph, weights, task.weights)
        centered = x - x.mean(axis=1, keepdims=True)
        scaled = centered / np.sqrt((centered * centered).mean(axis=1, keepdims=True) + task.op.eps)
        return scaled * p["weight"][None, :, None, None] + p["bias"][None, :, None, None]
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _excite(arena: _Arena, task: ExciteTask, graph: Graph, weights: dict[str, Params]) -> np.ndarray:
    pooled = pool2d(task.pool, [arena[task.x].copy()], {})
    hidden = conv2d(task.squeeze, [pooled], conv_params(graph, weights, task.squeeze_weights))
    return conv2d(task.excite, [hidden], conv_params(graph, weights, task.excite_weights))


_RUNNERS: dict[type, Runner] = {
    ConvTask: _conv,
    PoolTask: _pool,
    PointwiseTask: _pointwise,
    ShuffleTask: _shuffle,
    PadTask: _pad,
    NormTask: _norm,
    ExciteTask: _excite,
}
"""What each type of task computes, from the arena as it is before the task runs (every read is a copy or done
before ``y`` is written)."""


def _run_task(arena: _Arena, task: Task, graph: Graph, weights: dict[str, Params]) -> None:
    if type(task) not in _RUNNERS:
        raise TypeError(f"unknown task {task!r}")
    arena[task.y][...] = _RUNNERS[type(task)](arena, task, graph, weights)


def simulate(
    program: Program,
    graph: Graph,
    weights: dict[str, Params],
    inputs: Mapping[str, np.ndarray],
    reverse: bool = False,
    order: Sequence[Group] | None = None,
) -> dict[str, np.ndarray]:
    """The program's outputs (NCHW, float64) for the given values of its inputs.

    Parameters
    ----------
    program
        From `ios_core.engine.lower.lower`.
    graph, weights
        The network and its parameters (`ios_core.weights.make_weights`).
    inputs
        An NCHW array for every name in ``program.inputs``.
    reverse
        Run the streams of each stage last to first.
    order
        Every group ``(stage, stream)`` once, in the order to run them (``reverse`` is then unused).
    """
    arena = _Arena(program)
    for name in program.inputs:
        arena[program.values[name]][...] = inputs[name]
    if order is None:
        order = [(s, k) for s, stage in enumerate(program.stages)
                 for k in (reversed(range(len(stage))) if reverse else range(len(stage)))]
    for s, k in order:
        for task in program.stages[s][k]:
            _run_task(arena, task, graph, weights)
    return {name: arena[program.values[name]].copy() for name in program.outputs}
