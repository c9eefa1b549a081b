"""How every latency is timed, in one vocabulary: the engine's schedules and stages, and every baseline.

After ``warmup`` untimed runs, each of ``repeat`` samples is the mean of ``number`` runs back to back
between two CUDA events; the latency reported is the median sample. A *run* is one execution of what
is timed: a schedule's CUDA graph replayed once, a stage once (its ``number`` runs captured back to
back in one graph, replayed between the events), or one call of a framework. IOS's setting, the
default: 2 warm-up, 6 samples of 6.
"""

from __future__ import annotations

from dataclasses import dataclass

from ios_core.errors import UserError


class TimingError(UserError, ValueError):
    """Timing settings that cannot be used; the message names them."""


@dataclass(frozen=True)
class Timing:
    """``warmup`` untimed runs, then ``repeat`` samples, each the mean of ``number`` runs (see the module)."""

    warmup: int = 2
    number: int = 6
    repeat: int = 6

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.number < 1 or self.repeat < 1:
            raise TimingError(f"timing needs warmup >= 0, number >= 1 and repeat >= 1; got warmup={self.warmup}, "
                              f"number={self.number}, repeat={self.repeat}")
