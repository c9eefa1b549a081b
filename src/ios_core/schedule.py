"""Schedules: the contract between the optimizer and the engines, as plain serializable data.

A `Schedule` is a sequence of `Stage`s run one after another. The `Group`s of a stage run
concurrently, one stream each. A group is either a *chain* -- operators run in the listed order
on its stream -- or a *merge* -- two or more convolutions that read the same operand, run as one
wider convolution whose output channels are the convolutions' outputs side by side.

Rules (`validate` checks each and names the operator and the rule broken):
1. every operator of the graph appears exactly once, and nothing else does;
2. an operator runs after everything it reads: in an earlier stage, or earlier in its own chain;
3. the groups of a stage are independent: no operator reads the output of another group of its stage;
4. a merge is legal (`merge_error`): at least two convolutions, the same operand, stride and
   dilation, ``groups=1``, the same activation, and equal pads (top, left, bottom, right) once every
   kernel is zero-padded, centered, to the largest (`merged_pads`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ios_core.errors import UserError, json_error
from ios_core.files import write_atomic
from ios_core.ir import Conv, Graph, Pads

FORMAT = "ios-core/schedule"
VERSION = 1


class ScheduleError(UserError, ValueError):
    """A schedule breaks one of the rules in this module's docstring, or its file is not a schedule."""


@dataclass(frozen=True)
class Group:
    """Operators on one stream: a chain in order, or (``merge=True``) convolutions run as one."""

    ops: tuple[str, ...]
    merge: bool = False

    def __str__(self) -> str:
        return ("merge " + " + ".join(self.ops)) if self.merge else ("chain " + " > ".join(self.ops))


@dataclass(frozen=True)
class Stage:
    """Groups that run concurrently, each on its own stream."""

    groups: tuple[Group, ...]

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(op for g in self.groups for op in g.ops)


@dataclass(frozen=True)
class Schedule:
    """Stages in order for graph ``graph``; ``meta`` records how it was made (not part of equality)."""

    graph: str
    stages: tuple[Stage, ...]
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(op for s in self.stages for op in s.ops)

    def __str__(self) -> str:
        lines = [f"schedule {self.graph}: {len(self.ops)} operators in {len(self.stages)} stages"]
        for i, stage in enumerate(self.stages):
            lines += [f"  {i}.{j} {group}" for j, group in enumerate(stage.groups)]
        return "\n".join(lines)


def merged_pads(conv: Conv, kernel: tuple[int, int]) -> Pads:
    """The pads (top, left, bottom, right) that keep ``conv``'s output when its kernel is zero-padded to ``kernel``.

    The kernel gains ``(k_big - k) // 2`` zero rows (columns) on top (left) and the rest at the bottom (right),
    so the input needs that many more dilated cells of padding on each side.
    """
    grow = [d * (k_big - k) for d, k, k_big in zip(conv.dilation, conv.kernel, kernel, strict=True)]
    before = [d * ((k_big - k) // 2) for d, k, k_big in zip(conv.dilation, conv.kernel, kernel, strict=True)]
    top, left, bottom, right = conv.pads
    return (top + before[0], left + before[1], bottom + grow[0] - before[0], right + grow[1] - before[1])


def merged_conv(convs: Iterable[Conv]) -> Conv:
    """The one convolution a legal merge runs: all outputs side by side, the largest kernel."""
    convs = list(convs)
    kernel = (max(c.kernel[0] for c in convs), max(c.kernel[1] for c in convs))
    first = convs[0]
    top, left, bottom, right = merged_pads(first, kernel)
    return Conv(
        sum(c.out_channels for c in convs),
        kernel,
        first.stride,
        (top, left),
        first.dilation,
        1,
        first.act,
        None if (top, left) == (bottom, right) else (bottom, right),
    )


def merge_error(graph: Graph, ops: tuple[str, ...]) -> str | None:
    """Why ``ops`` cannot run as one merged convolution, or None when they can."""
    if len(ops) < 2:
        return "a merge needs at least two convolutions"
    nodes = [graph[name] for name in ops]
    for node in nodes:
        if not isinstance(node.op, Conv):
            return f"{node.name!r} is not a convolution"
        if node.op.groups != 1:
            return f"{node.name!r} has groups={node.op.groups}; only groups=1 convolutions merge"
    first = nodes[0]
    kernel = merged_conv([n.op for n in nodes]).kernel
    for node in nodes[1:]:
        if node.inputs != first.inputs:
            return f"{node.name!r} reads ({node.inputs[0]}), not the same operand as {first.name!r}"
        for attribute in ("stride", "dilation", "act"):
            if getattr(node.op, attribute) != getattr(first.op, attribute):
                return f"{node.name!r} and {first.name!r} differ in {attribute}"
        if merged_pads(node.op, kernel) != merged_pads(first.op, kernel):
            padded = f"once padded to kernel {kernel}"
            return f"{node.name!r} and {first.name!r} give different output shapes or windows {padded}"
    return None


def validate(graph: Graph, schedule: Schedule) -> None:
    """Raise `ScheduleError` at the first broken rule (see the module docstring)."""
    if schedule.graph != graph.name:
        raise ScheduleError(f"schedule is for graph {schedule.graph!r}, not {graph.name!r}")
    operators = {n.name for n in graph.operators}
    seen: dict[str, tuple[int, int]] = {}
    for s, stage in enumerate(schedule.stages):
        if not stage.groups:
            raise ScheduleError(f"stage {s} has no groups")
        for g, group in enumerate(stage.groups):
            if not group.ops:
                raise ScheduleError(f"stage {s} group {g} is empty")
            for name in group.ops:
                if name not in operators:
                    raise ScheduleError(f"stage {s} group {g}: {name!r} is not an operator of {graph.name!r}")
                if name in seen:
                    raise ScheduleError(f"{name!r} is scheduled twice (stages {seen[name][0]} and {s})")
                seen[name] = (s, g)
    missing = [n.name for n in graph.operators if n.name not in seen]
    if missing:
        raise ScheduleError(
            f"operators never scheduled: {', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''}"
        )
    for s, stage in enumerate(schedule.stages):
        for g, group in enumerate(stage.groups):
            _check_group(graph, group, s, g, seen)


def _check_group(graph: Graph, group: Group, s: int, g: int, seen: dict[str, tuple[int, int]]) -> None:
    if group.merge and (reason := merge_error(graph, group.ops)):
        raise ScheduleError(f"stage {s} group {g}: illegal merge: {reason}")
    position = {name: i for i, name in enumerate(group.ops)}
    for name in group.ops:
        for producer in graph[name].producers:
            if producer not in seen:
                continue  # the placeholder input, always ready
            ps, pg = seen[producer]
            if ps > s or (ps == s and pg == g and (group.merge or position[producer] > position[name])):
                raise ScheduleError(f"{name!r} (stage {s}) runs before {producer!r}, which it reads")
            if ps == s and pg != g:
                raise ScheduleError(
                    f"stage {s}: {name!r} in group {g} reads {producer!r} of group {pg}; "
                    "groups of a stage are independent"
                )


def sequential(graph: Graph) -> Schedule:
    """One operator per stage, in the graph's topological order."""
    stages = tuple(Stage((Group((n.name,)),)) for n in graph.operators)
    return Schedule(graph.name, stages, {"opt": "sequential"})


def greedy(graph: Graph) -> Schedule:
    """Per block, as in IOS: each stage runs every operator whose inputs are ready, one group each."""
    stages: list[Stage] = []
    done = {graph.input.name}  # grows block by block: a block's enter and everything before it is done
    for block in graph.blocks:
        left = list(block.nodes)
        while left:
            ready = [n for n in left if all(p in done for p in graph[n].producers)]
            stages.append(Stage(tuple(Group((n,)) for n in ready)))
            done.update(ready)
            left = [n for n in left if n not in done]
    return Schedule(graph.name, tuple(stages), {"opt": "greedy"})


def to_json(schedule: Schedule) -> str:
    """Versioned, human-readable JSON with a stable key order: one line per group."""
    stages = [[{"ops": list(g.ops), "merge": g.merge} for g in stage.groups] for stage in schedule.stages]
    head = {"format": FORMAT, "version": VERSION, "graph": schedule.graph, "meta": dict(schedule.meta)}
    text = json.dumps(head, indent=2)[:-2]
    body = ",\n".join("    [" + ",\n     ".join(json.dumps(g) for g in stage) + "]" for stage in stages)
    return f'{text},\n  "stages": [\n{body}\n  ]\n}}\n'


def from_json(text: str) -> Schedule:
    """Parse `to_json`'s format; raises `ScheduleError` naming what is wrong for anything else."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ScheduleError(json_error(error)) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("version") != VERSION:
        found = (data.get("format"), data.get("version")) if isinstance(data, dict) else (type(data).__name__, None)
        raise ScheduleError(f"not an {FORMAT} v{VERSION} file (format={found[0]!r}, version={found[1]!r})")
    if not isinstance(data.get("graph"), str):
        raise ScheduleError("'graph' must be the name of the graph the schedule is for")
    if not isinstance(data.get("stages"), list):
        raise ScheduleError("'stages' must be a list of stages, each a list of groups")
    if not isinstance(data.get("meta", {}), dict):
        raise ScheduleError("'meta' must be an object")
    stages = tuple(_stage_from_json(stage, s) for s, stage in enumerate(data["stages"]))
    return Schedule(data["graph"], stages, data.get("meta", {}))


def _stage_from_json(stage: Any, s: int) -> Stage:
    if not isinstance(stage, list) or not stage:
        raise ScheduleError(f"stage {s}: must be a non-empty list of groups")
    return Stage(tuple(_group_from_json(group, s, g) for g, group in enumerate(stage)))


def _group_from_json(group: Any, s: int, g: int) -> Group:
    ops = group.get("ops") if isinstance(group, dict) else None
    if not isinstance(ops, list) or not ops or not all(isinstance(op, str) for op in ops):
        raise ScheduleError(f"stage {s}, group {g}: 'ops' must be a non-empty list of operator names")
    merge = group.get("merge", False)
    if not isinstance(merge, bool):  # "false" is truthy: a string here would silently merge
        raise ScheduleError(f"stage {s}, group {g}: 'merge' must be true or false, not {merge!r}")
    return Group(tuple(ops), merge)


def save(schedule: Schedule, path: str | os.PathLike) -> Path:
    return write_atomic(path, to_json(schedule))


def load(path: str | os.PathLike, graph: Graph | None = None) -> Schedule:
    """Read a schedule; when ``graph`` is given, validate it against the graph.

    Raises
    ------
    ScheduleError
        If the file cannot be read, is not a schedule, or breaks a rule; the message names the file.
    """
    try:
        schedule = from_json(Path(path).read_text(encoding="utf-8"))
        if graph is not None:
            validate(graph, schedule)
    except OSError as error:
        raise ScheduleError(f"schedule {path}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ScheduleError(f"schedule {path}: not a text file (invalid UTF-8)") from None
    except ScheduleError as error:
        raise ScheduleError(f"schedule {path}: {error}") from None
    return schedule
