"""Run a `Program` with numpy on a float64 arena: the engine's memory plan, checked without a GPU.

Every view is an ``as_strided`` window of one flat arena laid out exactly as on the GPU, and the
arena starts as NaN, so a task that reads memory nothing wrote, or a buffer reused too early,
shows up as a wrong or NaN output when compared with `ios_core.reference`. Streams of a stage run
one after another, in either order (``reverse``), since on the GPU nothing orders them; or the groups run
in any ``order`` that keeps their `ios_core.engine.dependencies`, as exact barriers let the GPU run them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ios_core.engine.dependencies import Group
from ios_core.engine.lower import conv_params
from ios_core.engine.program import ConvTask, PointwiseTask, PoolTask, Program, Task, View
from ios_core.ir import Graph
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


def _run_task(arena: _Arena, task: Task, graph: Graph, weights: dict[str, Params]) -> None:
    if isinstance(task, ConvTask):
        x = ACTIVATION_FUNCTIONS[task.pre_act](arena[task.x].copy())
        arena[task.y][...] = conv2d(task.conv, [x], conv_params(graph, weights, task.weights))
    elif isinstance(task, PoolTask):
        arena[task.y][...] = pool2d(task.pool, [arena[task.x].copy()], {})
    elif isinstance(task, PointwiseTask):
        a = arena[task.a].copy()
        if task.b is not None:
            a = _COMBINE[task.op](a, arena[task.b])
        arena[task.y][...] = ACTIVATION_FUNCTIONS[task.act](a)
    else:
        raise TypeError(f"unknown task {task!r}")


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
