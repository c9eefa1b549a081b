"""Hardware-counter profiles of a schedule's kernels: Nsight Compute (``ncu``) run on the engine.

`ncu` is the CPU half -- the ``ncu`` command line, its raw CSV parsed into one row per kernel, and the kernels laid
out on a timeline; `warps` runs it (``python -m ios_core.profiling.warps``) and writes the record of experiment 3's
active-warps panel. Nothing here imports the GPU half of the engine until a profile is taken.
"""
