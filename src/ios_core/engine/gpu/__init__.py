"""The engine's GPU half: PyCUDA, the cuDNN frontend and cuda.bindings, imported by these modules only.

- `device`: the primary context, streams, events, CUDA-graph capture, our compiled kernels;
- `environment`: the GPU, driver, CUDA and cuDNN versions every measurement carries and is keyed by;
- `convs`: cuDNN convolution graphs by geometry, autotuned once per process;
- `launch`: the launch layer -- a `LaunchContext` and one launcher per task type, each returning its launch
  and what preparing it found;
- `plan`: `Plan`, a whole program on memory of its own, and `build_plan`;
- `stageplan`: `StagePlan`, one stage on memory lent by the process, and the stage-profiling backend;
- `timing`: CUDA-event timing (`ios_core.timing.Timing`) and `latency`.

Nothing here is imported by ``import ios_core.engine``: its `build_plan`, `latency`, `gpu_profiler` and
`environment` import these modules when called.
"""
