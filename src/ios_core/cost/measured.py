"""The ``measured`` cost: each stage's latency timed on the GPU by the engine, alone, in a CUDA graph.

`MeasuredCost` keeps one stage profiler per (graph, batch) -- made on the first stage that is not
cached, so a search whose stages are all in the disk cache never touches the GPU -- and asks it
for each stage (`ios_core.engine.gpu_profiler`). The engine is imported only then: the optimizer never
imports the engine, and this module imports it lazily.

Its numbers are valid for one GPU, driver, CUDA and cuDNN version (`ios_core.gpu.ENVIRONMENT_KEYS`),
precision, layout, engine choice and timing (`ios_core.timing.Timing`), so its ``space`` (the namespace of
its entries in a `CachedCost` disk cache) is a digest of them all and of `PROFILE_REVISION`
(`measured_space`); the batch size is part of every stage key.
Where the autotuning cache is kept (``tune_cache``) is no input: the winners it holds are keyed by the
same environment (`ios_core.engine.tunecache`). One JSON-lines cache file can therefore be shipped
with a schedule and serve a later search on the same machine without profiling anything.

Precision: ``fp32`` runs float32 tensors with TF32
tensor cores allowed in convolutions, as PyTorch does by default; ``fp32-strict`` forbids them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ios_core.cost.key import content_space
from ios_core.gpu import environment_inputs
from ios_core.ir import Graph
from ios_core.precision import check_precision
from ios_core.schedule import Schedule, Stage
from ios_core.timing import Timing
from ios_core.weights import Params

PROFILE_REVISION = 8
"""Bumped whenever what a stage measurement covers changes, so older profiles are never mixed in:
2 -- a merge copies home the members a concatenation hosts; number runs chained as child graphs; fast NHWC
depthwise kernels; 3 -- fast NHWC pooling kernels; 4 -- a global pool over many pixels in two passes; 5 -- a block of
threads per wide pooling window (a global pool), a global pool in two passes by bands of rows; 6 -- a sum that alone
reads a convolution's output in its group is added by the convolution (`ios_core.engine.PlanOptions.fold_sums`);
cuDNN applies hardsigmoid and hardswish in the convolution's graph; 7 -- a squeeze-and-excitation's pool and two 1 x 1
convolutions in one group are one kernel (`ios_core.engine.PlanOptions.fold_excitations`); 8 -- a sum folds into
its convolution only where its other term is a whole value (a slice as cuDNN's addend was summed wrongly);
pointwise tasks in a row on a stream share launches (`ios_core.engine.PlanOptions.combine_pointwise`)."""


class Profiler(Protocol):
    """Times one stage of the graph it was made for (`ios_core.engine.profile.StageProfiler`)."""

    def latency(self, stage: Stage) -> float: ...

    def latencies(self, stages: Sequence[Stage]) -> list[float]: ...


ProfilerFactory = Callable[[Graph, int], Profiler]


@dataclass(frozen=True)
class MeasureSettings:
    """How stages are measured: the engine precision, timing (IOS: 2 warm-up, 6 x 6), autotuning and its cache."""

    precision: str = "fp32"
    timing: Timing = Timing()
    autotune: bool = True
    tune_cache: str | None = None
    layout: str = "nhwc"

    def __post_init__(self) -> None:
        check_precision(self.precision)


def measured_space(settings: MeasureSettings, environment: Mapping[str, Any], revision: int = PROFILE_REVISION) -> str:
    """The cache namespace: ``measured/<GPU>/<precision>/r<revision>/<digest>``, the digest of the environment
    (`ios_core.gpu.ENVIRONMENT_KEYS`), every setting but where the tune cache is, and the profile revision (the
    current one, `PROFILE_REVISION`, unless an older profile's is asked for)."""
    # The timing's fields sit beside the other settings, as before settings held a `Timing`: the shipped
    # profiles (results/profiles/) are keyed by this digest.
    flat = {k: v for k, v in asdict(settings).items() if k not in ("tune_cache", "timing")} | asdict(settings.timing)
    inputs = {"environment": environment_inputs(environment), "settings": flat, "revision": revision}
    return content_space(inputs, "measured", str(environment["name"]), settings.precision, f"r{revision}")


class MeasuredCost:
    """Stage latencies measured by the engine; see the module docstring.

    Parameters
    ----------
    settings
        Precision, timing and autotuning.
    factory
        Makes the profiler of a (graph, batch); the GPU engine's by default, a fake in tests.
    environment
        GPU name, driver, CUDA and cuDNN versions (`ios_core.gpu.ENVIRONMENT_KEYS`; `ios_core.engine.environment`
        by default).
    weights
        What the stages of the graph costed run with, by node name: a network's own (read from a file); None for
        `ios_core.weights.make_weights` of the graph. No part of the ``space``: latencies do not depend on values
        (`ios_core.cost.factory.NOT_INPUTS`).
    """

    kind = "measured"
    end_to_end = True

    def __init__(self, settings: MeasureSettings, factory: ProfilerFactory | None = None,
                 environment: Mapping[str, Any] | None = None, weights: Mapping[str, Params] | None = None) -> None:
        self.settings, self.weights = settings, weights
        self.factory = factory or self._gpu_profiler
        if environment is None:
            from ios_core import engine

            environment = engine.environment()
        self.environment = dict(environment)
        self.space = measured_space(settings, self.environment)
        self._profilers: dict[tuple[int, int], tuple[Graph, Profiler]] = {}

    def stage_latency(self, graph: Graph, stage: Stage, batch: int) -> float:
        return self.profiler(graph, batch).latency(stage)

    def stage_latencies(self, graph: Graph, stages: Sequence[Stage], batch: int) -> list[float]:
        return self.profiler(graph, batch).latencies(stages)

    def end_to_end_latency(self, graph: Graph, schedule: Schedule, batch: int) -> float:
        """``schedule`` as it runs: one plan of the whole network, its CUDA-graph replays timed as a stage's are."""
        from ios_core import engine

        s = self.settings
        options = engine.PlanOptions(layout=s.layout, autotune=s.autotune, tune_cache=s.tune_cache)
        return engine.end_to_end_latency(graph, schedule, batch, s.precision, self.weights, options, s.timing)

    def profiler(self, graph: Graph, batch: int) -> Profiler:
        """The profiler of ``graph`` at ``batch``, made the first time it is needed."""
        held = self._profilers.get((id(graph), batch))
        if held is None or held[0] is not graph:  # held with its graph, so an id is never reused while cached
            held = self._profilers[(id(graph), batch)] = (graph, self.factory(graph, batch))
        return held[1]

    @property
    def profilers(self) -> list[Profiler]:
        return [profiler for _, profiler in self._profilers.values()]

    def _gpu_profiler(self, graph: Graph, batch: int) -> Profiler:
        from ios_core import engine

        s = self.settings
        options = engine.PlanOptions(layout=s.layout, autotune=s.autotune, tune_cache=s.tune_cache)
        return engine.gpu_profiler(graph, batch, s.precision, self.weights, options, s.timing)
