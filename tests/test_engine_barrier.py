"""Exact dependencies between groups (`ios_core.engine.dependencies`) and the plan that waits only on them.

Hazards are found here independently of the module: element by element in the arena (every element each group
reads and writes), so that memory reused across stages and channel slices of one buffer are both checked exactly.
Every read-after-write, write-after-read and write-after-write pair of groups must be ordered by the waits, through
a stream's own order and transitively; on the fake GPU, the order is replayed from the recorded launches, events
and waits as CUDA would run them.
"""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from fake_gpu import FakeGpu
from hypothesis import given, settings
from hypothesis import strategies as st
from random_graphs import random_graphs
from test_engine_cases import SCHEDULES, network
from test_engine_launch import launched, normalized

from ios_core import models
from ios_core.engine import PlanOptions, lower, simulate
from ios_core.engine.dependencies import Group, dependencies, groups, waits
from ios_core.engine.program import Program, View
from ios_core.ir import Graph
from ios_core.schedule import Group as ScheduleGroup
from ios_core.schedule import Schedule, Stage, validate
from ios_core.weights import make_input, make_weights


def elements(program: Program, view: View) -> np.ndarray:
    """The arena elements of a view."""
    offset, dims, strides = program.locate(view)
    grids = np.meshgrid(*(np.arange(d) * s for d, s in zip(dims, strides, strict=True)), indexing="ij")
    return offset + sum(grids).ravel()


def hazards(program: Program) -> set[tuple[Group, Group]]:
    """Every pair (earlier group, later group) of different stages where one writes an element the other touches."""
    size = program.arena_bytes // program.itemsize
    masks = {}
    for group in groups(program):
        read, write = np.zeros(size, bool), np.zeros(size, bool)
        for task in program.stages[group[0]][group[1]]:
            for view in task.reads():
                read[elements(program, view)] = True
            write[elements(program, task.y)] = True
        masks[group] = (np.packbits(read), np.packbits(write))
    found = set()
    for h, (r1, w1) in masks.items():
        for g, (r2, w2) in masks.items():
            if h[0] < g[0] and ((w1 & (r2 | w2)).any() or (r1 & w2).any()):
                found.add((h, g))
    return found


def ordered_before(program: Program) -> dict[Group, set[Group]]:
    """For each group, the groups surely ended when it starts: through its stream's order and the waits."""
    plan, last, before = waits(program), {}, {}
    for group in groups(program):
        done = set()
        for h in ([last[group[1]]] if group[1] in last else []) + list(plan.before[group]):
            done |= {h, *before[h]}
        before[group], last[group[1]] = done, group
    return before


def check(program: Program) -> None:
    deps, plan = dependencies(program), waits(program)
    assert set(deps) == set(plan.before) == set(groups(program))
    for group in deps:
        assert all(h[0] < group[0] for h in deps[group])  # never on its own stage or a later one
        assert all(h[0] < group[0] and h[1] != group[1] for h in plan.before[group])
        assert set(plan.before[group]) <= deps[group]
    found = hazards(program)
    assert found <= {(h, g) for g in deps for h in deps[g]}
    before = ordered_before(program)
    assert all(h in before[g] for h, g in found)


@pytest.mark.parametrize(("name", "schedule", "layout"), [
    ("demo", "sequential", "nhwc"), ("demo", "greedy", "nchw"), ("demo", "merged_greedy", "nhwc"),
    ("inception_v3", "merged_greedy", "nhwc"), ("inception_v3", "greedy", "nchw"),
    ("squeezenet", "merged_greedy", "nhwc")])
def test_every_hazard_between_groups_is_a_dependency_and_is_waited_for(name, schedule, layout):
    graph, _ = network(name)
    check(lower(graph, SCHEDULES[schedule](graph), 1, layout))


@st.composite
def random_schedules(draw, graph: Graph) -> Schedule:
    """Any valid schedule: each stage some ready operators, split into groups that may run chains of operators."""
    done, left, stages = {graph.input.name}, [n.name for n in graph.operators], []
    while left:
        ready = [n for n in left if all(p in done for p in graph[n].producers)]
        chosen = draw(st.lists(st.sampled_from(ready), min_size=1, max_size=len(ready), unique=True))
        split = draw(st.integers(1, len(chosen)))
        chains = [list(chosen[i::split]) for i in range(split)]
        for chain in chains:  # grow a chain by operators that read only what is done or earlier in it
            for n in left:
                if n not in chosen and all(p in done or p in chain for p in graph[n].producers) and draw(st.booleans()):
                    chain.append(n)
                    chosen.append(n)
        stages.append(Stage(tuple(ScheduleGroup(tuple(chain)) for chain in chains)))
        done.update(chosen)
        left = [n for n in left if n not in done]
    schedule = Schedule(graph.name, tuple(stages), {"opt": "random"})
    validate(graph, schedule)
    return schedule


@settings(max_examples=40, deadline=None)
@given(st.data(), random_graphs(max_ops=12, blocks=2), st.sampled_from(["nhwc", "nchw"]), st.booleans())
def test_random_schedules_wait_for_every_hazard(data, graph, layout, in_place):
    program = lower(graph, data.draw(random_schedules(graph)), 2, layout, concat_in_place=in_place)
    check(program)


def any_order(program: Program, seed: int) -> list[Group]:
    """A random order of the groups that keeps only their dependencies (not stages, not streams)."""
    deps, left, order, rng = dependencies(program), set(groups(program)), [], random.Random(seed)
    while left:
        group = rng.choice(sorted(g for g in left if deps[g] <= set(order)))
        order.append(group)
        left.remove(group)
    return order


@settings(max_examples=25, deadline=None)
@given(st.data(), random_graphs(max_ops=12, blocks=2), st.sampled_from(["nhwc", "nchw"]), st.integers(0, 99))
def test_any_order_that_keeps_the_dependencies_computes_the_same_outputs(data, graph, layout, seed):
    program = lower(graph, data.draw(random_schedules(graph)), 2, layout)
    weights, x = make_weights(graph), make_input(graph, 2)
    staged = simulate(program, graph, weights, {"input": x})[graph.output]
    relaxed = simulate(program, graph, weights, {"input": x}, order=any_order(program, seed))[graph.output]
    np.testing.assert_array_equal(relaxed, staged)


@pytest.mark.parametrize("seed", range(5))
def test_demo_with_merges_computes_the_same_in_any_dependency_order(seed):
    graph, weights = network("demo")
    program, x = lower(graph, SCHEDULES["merged_greedy"](graph), 2), make_input(graph, 2)
    staged = simulate(program, graph, weights, {"input": x})[graph.output]
    relaxed = simulate(program, graph, weights, {"input": x}, order=any_order(program, seed))[graph.output]
    np.testing.assert_array_equal(relaxed, staged)


def test_the_barrier_option_is_checked():
    with pytest.raises(ValueError, match="barrier"):
        PlanOptions(barrier="none")


# ---- on the fake GPU ----------------------------------------------------------------------------


@pytest.fixture
def gpu():
    fake = FakeGpu()
    yield fake
    fake.close()


def happened_before(calls: list[tuple]) -> tuple[dict[Group, set[Group]], set[Group]]:
    """Replays recorded calls as CUDA orders them: for each ``("group", stream, g)`` marker, the markers surely ended
    before it; and the markers ended when stream 0's last call is (the first stream used is stream 0)."""
    clocks: dict[int, set[Group]] = {}
    events: dict[int, set[Group]] = {}
    before: dict[Group, set[Group]] = {}
    first = next(c[1] if c[0] == "group" else c[2] for c in calls if c[0] in ("group", "record"))
    for call in calls:
        if call[0] == "group":
            clock = clocks.setdefault(call[1], set())
            before[call[2]] = set(clock)
            clock.add(call[2])
        elif call[0] == "record":
            events[call[1]] = set(clocks.get(call[2], set()))
        elif call[0] == "wait":
            clocks.setdefault(call[1], set()).update(events[call[2]])
    return before, clocks[first]


def marked(gpu: FakeGpu, program: Program, streams) -> tuple:
    """A marker launch per group in place of its tasks: each records which group ran on which stream."""
    calls = gpu.recorder.calls
    return tuple(tuple((lambda g=(s, k), stream=streams[k]: calls.append(("group", stream.handle, g)),)
                       for k in range(len(stage))) for s, stage in enumerate(program.stages))


@pytest.mark.parametrize(("name", "schedule"), [("inception_v3", "merged_greedy"), ("nasnet", "greedy"),
                                                ("randwire", "merged_greedy"), ("demo", "sequential")])
def test_an_exact_plan_runs_each_group_after_its_dependencies_and_ends_on_stream_0(gpu, name, schedule):
    graph = models.get(name)
    plan = gpu.engine["plan"].build_plan(graph, SCHEDULES[schedule](graph), 1, "fp32", None,
                                         PlanOptions(autotune=False, barrier="exact"))
    launches = replace(plan.launches, stages=marked(gpu, plan.program, plan.streams))
    start = len(gpu.recorder.calls)
    launches.enqueue()
    before, ended = happened_before(gpu.recorder.calls[start:])
    deps = dependencies(plan.program)
    assert all(deps[g] <= before[g] for g in deps)  # every hazard too, by the test above
    assert ended == set(deps)  # stream 0 ends after every group: the output is complete
    calls = gpu.recorder.calls[start:]
    expected = sum(map(len, launches.waits.before.values())) + len(launches.waits.end) + (plan.program.streams - 1)
    assert sum(c[0] == "wait" for c in calls) == expected  # the dependency waits, a start per side stream, the end


def test_a_stage_plan_waits_for_whole_stages(gpu):
    graph = models.get("inception_v3")
    plan = gpu.engine["plan"].build_plan(graph, SCHEDULES["merged_greedy"](graph), 1, "fp32", None,
                                         PlanOptions(autotune=False, barrier="stage"))
    launches = replace(plan.launches, stages=marked(gpu, plan.program, plan.streams))
    start = len(gpu.recorder.calls)
    launches.enqueue()
    before, _ = happened_before(gpu.recorder.calls[start:])
    assert all(before[g] == {h for h in before if h[0] < g[0]} for g in before)


def test_both_barriers_launch_the_same_work_in_the_same_order(gpu):
    graph = models.get("inception_v3")
    runs = []
    for barrier in ("stage", "exact"):
        plan = gpu.engine["plan"].build_plan(graph, SCHEDULES["merged_greedy"](graph), 1, "fp32", None,
                                             PlanOptions(autotune=False, barrier=barrier))
        start = len(gpu.recorder.calls)
        plan.capture()
        runs.append(normalized(launched(gpu.recorder.calls[start:]), int(plan.arena)))
        plan.close()
    assert runs[0] == runs[1]
