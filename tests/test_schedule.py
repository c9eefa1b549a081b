"""Schedules: the built-in schedules, JSON, and every rule of `validate` broken once."""

import pytest
from hypothesis import given, settings
from random_graphs import random_graphs

from ios_core import schedule as S
from ios_core.ir import GraphBuilder
from ios_core.models.demo import demo
from ios_core.schedule import Group, Schedule, ScheduleError, Stage


def chains(*stages):
    """A schedule from stages written as lists of op tuples (a 'merge' prefix marks a merge)."""
    return Schedule(
        "demo",
        tuple(
            Stage(tuple(Group(g[1:], True) if g and g[0] == "merge" else Group(g) for g in stage)) for stage in stages
        ),
    )


PREFIX = [[("conv1",)], [("pool1",)]]
REST = [[("conv4",)], [("seq1",)], [("sigmoid1",)], [("add1",)], [("mul1",)], [("pool2",)], [("identity1",)]]


def test_greedy_runs_every_ready_operator_per_block():
    assert str(S.greedy(demo())) == (
        "schedule demo: 11 operators in 7 stages\n"
        "  0.0 chain conv1\n  1.0 chain pool1\n"
        "  2.0 chain conv2\n  2.1 chain conv3\n  2.2 chain conv4\n"
        "  3.0 chain seq1\n  3.1 chain sigmoid1\n  3.2 chain add1\n"
        "  4.0 chain mul1\n  5.0 chain pool2\n  6.0 chain identity1"
    )


def test_sequential_is_one_operator_per_stage_in_topological_order():
    g = demo()
    s = S.sequential(g)
    assert s.ops == tuple(n.name for n in g.operators)
    assert all(len(stage.groups) == 1 for stage in s.stages)


def test_a_schedule_with_merges_and_chains_is_valid():
    S.validate(demo(), chains(*PREFIX, [("merge", "conv2", "conv3"), ("conv4", "sigmoid1", "seq1")], *REST[3:]))


@pytest.mark.parametrize(
    ("stages", "message"),
    [
        ([*PREFIX, [("conv2",), ("conv3",)], *REST, [("ghost",)]], r"'ghost' is not an operator of 'demo'"),
        ([*PREFIX, [("conv2",), ("conv3",)], *REST, [("conv2",)]], r"'conv2' is scheduled twice \(stages 2 and 10\)"),
        ([*PREFIX, [("conv2",)], *REST], r"operators never scheduled: conv3"),
        (
            [*PREFIX, [("conv2",), ("conv3",)], [("seq1",)], [("conv4",)], *REST[2:]],
            r"'seq1' \(stage 3\) runs before 'conv4', which it reads",
        ),
        (
            [*PREFIX, [("conv2",), ("conv3",)], [("seq1", "conv4")], *REST[2:]],
            r"'seq1' \(stage 3\) runs before 'conv4'",
        ),
        (
            [*PREFIX, [("conv2",), ("conv3",)], [("conv4",), ("seq1",)], *REST[2:]],
            r"stage 3: 'seq1' in group 1 reads 'conv4' of group 0; groups of a stage are independent",
        ),
        (
            [*PREFIX, [("merge", "conv2", "conv4")], [("conv3",)], *REST[1:]],
            r"illegal merge: 'conv4' and 'conv2' differ in act",
        ),
        ([*PREFIX, [("merge", "conv2")], [("conv3",)], *REST], r"illegal merge: a merge needs at least two"),
        (
            [*PREFIX, [("conv2",), ("conv3",)], *REST[:5], [("merge", "pool2", "identity1")]],
            r"illegal merge: 'pool2' is not a convolution",
        ),
        ([*PREFIX, [], [("conv2",), ("conv3",)], *REST], r"stage 2 has no groups"),
        ([*PREFIX, [(), ("conv2",), ("conv3",)], *REST], r"stage 2 group 0 is empty"),
    ],
)
def test_every_rule_has_a_clear_error(stages, message):
    with pytest.raises(ScheduleError, match=message):
        S.validate(demo(), chains(*stages))


def test_merge_rules_beyond_the_demo():
    b = GraphBuilder("m", 4, 8, 8)
    x = b.input
    one, three = b.conv(x, 4, 1), b.conv(x, 4, 3, padding=1)
    wide, tall = b.conv(x, 4, (1, 7), padding=(0, 3)), b.conv(x, 4, (7, 1), padding=(3, 0))
    strided, unpadded = b.conv(x, 4, 1, stride=2), b.conv(x, 4, 3)
    grouped, other_input = b.conv(x, 4, 1, groups=2), b.conv(one, 4, 1)
    b.end_block(one + three + wide + tall + other_input)
    b.end_block(strided + b.pool(unpadded, "max", 2, 2, 1) + b.pool(grouped, "max", 2, 2))
    g = b.build()
    assert S.merge_error(g, ("conv1", "conv2", "conv3", "conv4")) is None
    assert S.merged_conv([g[n].op for n in ("conv3", "conv4")]).padding == (3, 3)
    assert "differ in stride" in S.merge_error(g, ("conv1", "conv5"))
    assert "different output shapes" in S.merge_error(g, ("conv1", "conv6"))
    assert "groups=2" in S.merge_error(g, ("conv1", "conv7"))
    assert "not the same operand" in S.merge_error(g, ("conv1", "conv8"))


def test_wrong_graph_is_rejected():
    with pytest.raises(ScheduleError, match="schedule is for graph 'other', not 'demo'"):
        S.validate(demo(), Schedule("other", ()))


def test_json_round_trip_keeps_everything_and_reads_line_by_group(tmp_path):
    g = demo()
    s = Schedule("demo", S.greedy(g).stages, {"opt": "greedy", "batch": 1})
    path = S.save(s, tmp_path / "sub" / "s.json")
    text = path.read_text()
    assert '    [{"ops": ["conv2"], "merge": false},\n     {"ops": ["conv3"], "merge": false}' in text
    back = S.load(path, g)
    assert back == s and back.meta == s.meta
    assert [p.name for p in path.parent.iterdir()] == ["s.json"]  # no temporary file left behind


def test_json_of_another_format_is_rejected():
    with pytest.raises(ScheduleError, match="not an ios-core/schedule v1 file"):
        S.from_json('{"format": "ios-core/schedule", "version": 99, "stages": []}')


@settings(max_examples=60, deadline=None)
@given(random_graphs())
def test_built_in_schedules_are_valid_and_survive_json(graph):
    for schedule in (S.sequential(graph), S.greedy(graph)):
        S.validate(graph, schedule)
        assert S.from_json(S.to_json(schedule)) == schedule
