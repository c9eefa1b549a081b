"""What the engine is tested on: models, schedules, and their float64 numpy references.

Schedules: sequential, greedy, and greedy with merges (>= 3 groups in a stage where the model allows).
``merged_greedy`` stands in for the optimizer's output (which the engine must not import): IOS's
greedy stages, with every set of convolutions of a stage that may merge (same operand, stride,
dilation and activation, ``groups=1``) merged into one group.

References: a reference computed once is kept in ``$IOS_REFERENCE_CACHE`` (default ``.refcache/``
at the repository root, ignored by git) keyed by the graph's text, batch and seeds, so that a
device run can carry them instead of recomputing minutes of float64 convolutions.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from ios_core import models
from ios_core import schedule as S
from ios_core.ir import Conv, Graph
from ios_core.reference import run_graph
from ios_core.schedule import Group, Schedule, Stage, merge_error
from ios_core.weights import Params, make_input, make_weights

MODELS = ("demo", "inception_v3", "nasnet", "randwire", "squeezenet")
ROOT = Path(__file__).resolve().parents[1]


@cache
def network(name: str) -> tuple[Graph, dict[str, Params]]:
    graph = models.get(name)
    return graph, make_weights(graph)


def reference_path(name: str, batch: int) -> Path:
    graph, _ = network(name)
    key = hashlib.sha256(f"{graph}|{batch}|0|0".encode()).hexdigest()[:16]
    return Path(os.environ.get("IOS_REFERENCE_CACHE", ROOT / ".refcache")) / f"{name}-b{batch}-{key}.npy"


@cache
def reference(name: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Input and float64 output of model ``name`` at ``batch`` (weight and input seed 0), cached on disk."""
    graph, weights = network(name)
    x, path = make_input(graph, batch), reference_path(name, batch)
    if path.exists():
        return x, np.load(path)
    out = run_graph(graph, x, weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return x, out


def merged_greedy(graph: Graph) -> Schedule:
    """Greedy stages whose mergeable convolutions are merged, one merge per operand and kind."""
    stages = []
    for stage in S.greedy(graph).stages:
        sets: dict[tuple, list[str]] = {}
        for group in stage.groups:
            (name,) = group.ops
            op = graph[name].op
            mergeable = isinstance(op, Conv) and op.groups == 1
            key = (graph[name].inputs, op.stride, op.dilation, op.act) if mergeable else name
            sets.setdefault(key, []).append(name)
        groups = []
        for names in sets.values():
            if len(names) > 1 and merge_error(graph, tuple(names)) is None:
                groups.append(Group(tuple(names), merge=True))
            else:
                groups += [Group((n,)) for n in names]
        stages.append(Stage(tuple(groups)))
    return Schedule(graph.name, tuple(stages), {"opt": "merged_greedy"})


def one_stream(graph: Graph) -> Schedule:
    """Every operator in one group, in the graph's order: the longest chains, so that every sum of a convolution's
    output that can fold into it (`ios_core.engine.lower`) does."""
    return Schedule(graph.name, (Stage((Group(tuple(n.name for n in graph.operators)),)),), {"opt": "one_stream"})


SCHEDULES = {"sequential": S.sequential, "greedy": S.greedy, "merged_greedy": merged_greedy, "one_stream": one_stream}


@pytest.mark.parametrize("name", MODELS)
def test_merged_greedy_is_valid(name):
    graph = models.get(name)
    schedule = merged_greedy(graph)
    S.validate(graph, schedule)


@pytest.mark.parametrize("name", ["demo", "inception_v3", "nasnet", "randwire"])
def test_merged_greedy_runs_three_groups_at_once(name):
    assert max(len(stage.groups) for stage in merged_greedy(models.get(name)).stages) >= 3


@pytest.mark.parametrize("name", ["demo", "inception_v3", "squeezenet"])
def test_merged_greedy_merges(name):
    assert any(g.merge for stage in merged_greedy(models.get(name)).stages for g in stage.groups)
