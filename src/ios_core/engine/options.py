"""How a plan is built: precision, layout, engine choice and paths -- plain data, importable without a GPU."""

from __future__ import annotations

from dataclasses import dataclass

from ios_core.schedule import Schedule

BARRIERS = ("stage", "exact")


@dataclass(frozen=True)
class PlanOptions:
    """Options of `ios_core.engine.build_plan`.

    Attributes
    ----------
    layout
        ``"nhwc"`` (measured fastest on H100 for every model here, see ``results/``) or ``"nchw"``.
    autotune
        Time every cuDNN candidate plan of each convolution geometry inside a CUDA graph and keep
        the fastest (measured to pay: 5-35% less convolution time than cuDNN's heuristic choice).
    tune_cache
        A JSON file keeping autotuning winners by GPU, cuDNN version and geometry.
    kernel_dir
        Where ``pointwise.cu``, ``pool.cu`` and ``depthwise.cu`` are; ``cuda/`` of this checkout by default.
    schedule
        The whole schedule, when building some of its stages alone, so that memory is laid out
        as in the whole plan.
    concat_in_place
        Producers write straight into their slice of a concatenation (identity) that reads them whole.
    own_depthwise
        Depthwise convolutions on our kernel (with the activation before them folded in), not cuDNN.
    pad_asymmetric
        A convolution cuDNN runs whose end padding differs from its begin padding (TensorFlow's "same") gets only
        the symmetric part from cuDNN, the rest from our pad kernel into a scratch copy of its input (one more
        pass), instead of cuDNN's own pre and post padding: for a cuDNN whose engines refuse unequal padding.
    barrier
        How a plan orders groups of different stages: ``"stage"``, every group after the whole previous stage (a
        fork and a join per stage), or ``"exact"``, each group only after the earlier groups whose memory it
        conflicts with (`ios_core.engine.dependencies`). ``"exact"`` is the default: timed against ``"stage"`` on
        the H100 in both orders (``results/h100/fp32/barrier/``), it is never slower beyond the order's own effect
        (Inception V3 0.539-0.545 ms against 0.540-0.555, NasNet 2.327-2.333 against 2.370-2.376, SqueezeNet equal).
        Stage plans (profiling a stage alone) always use stage barriers: one stage has nothing to relax.
    fold_sums
        A sum whose term is a convolution's output that nothing else reads, in the convolution's own group (a
        residual block's sum, with the activation after it), is computed by the convolution: cuDNN adds the other
        term in its epilogue, and no kernel of ours writes, then reads back, the convolution's output.
    fold_excitations
        A squeeze-and-excitation in one group -- a global pool and two 1 x 1 convolutions of the pooled pixel, each
        read only by the next -- is one kernel of ours (`ios_core.engine.excitation`), not three launches that each
        do almost nothing.
    combine_pointwise
        Pointwise tasks in a row on one stream share launches of ours (`ios_core.engine.channelwise`): a run of
        them none of which reads or writes what another writes (NASNet's cells add their branches so) is one
        launch, a row of blocks per task; a chain of additions into one output (RandWire sums each node's inputs
        so) is one pass over all its terms. The same work, in fewer launches.
    """

    layout: str = "nhwc"
    autotune: bool = True
    tune_cache: str | None = None
    kernel_dir: str | None = None
    schedule: Schedule | None = None
    concat_in_place: bool = True
    own_depthwise: bool = True
    barrier: str = "exact"
    pad_asymmetric: bool = False
    fold_sums: bool = True
    fold_excitations: bool = True
    combine_pointwise: bool = True

    def __post_init__(self) -> None:
        if self.barrier not in BARRIERS:
            raise ValueError(f"unknown barrier {self.barrier!r}; expected one of {BARRIERS}")
