"""``bench/stage_context.py --prefixes`` times what the stage profiler would: its prefixes lowered under the
profiler's options and element size (`ios_core.engine.lower.lower_planned`), folds and all."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from test_engine_cases import one_stream
from test_engine_program import residual_blocks

from ios_core.engine import PlanOptions

ROOT = Path(__file__).resolve().parents[1]


def test_each_prefix_is_lowered_as_the_profiler_lowers_a_stage(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    import stage_context

    graph = residual_blocks().build()
    schedule = one_stream(graph)
    timed = []

    def time_all(programs, timing):
        for program in programs:
            timed.append(program)
            yield 1.0

    profiler = SimpleNamespace(graph=graph, batch=2, options=PlanOptions(), itemsize=2, timing=None,
                               backend=SimpleNamespace(time_all=time_all), latencies=lambda stages: [1.0] * len(stages))
    assert stage_context.prefix_times(profiler, schedule) == ([1.0], [1.0])
    (program,) = timed
    assert program.folded and program.itemsize == 2  # the sums folded, in the profiler's fp16 arena
