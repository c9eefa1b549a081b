"""How every baseline is timed: as our engine is (`ios_core.timing.Timing`), so the numbers compare.

After ``warmup`` calls, each of ``repeat`` samples is the mean of ``number`` calls between two
CUDA events recorded on the stream the framework runs on; the latency is the median sample.
Frameworks without a stream we can record on (a CPU build, TensorFlow, JAX) are timed by the wall
clock around synchronous calls, or until the last output is ready for an asynchronous one (JAX),
and say so in ``clock``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from ios_core.timing import Timing


def time_cuda_events(call: Callable[[], Any], timing: Timing, torch: Any, stream: Any = None) -> list[float]:
    """Milliseconds per ``call()``, one sample per repeat, from `torch.cuda.Event`s on ``stream``.

    ``stream`` defaults to PyTorch's current stream; a framework timed this way must run its work
    on that stream (ONNX Runtime and TensorRT are given its handle).
    """
    stream = stream or torch.cuda.current_stream()
    for _ in range(timing.warmup):
        call()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    samples = []
    for _ in range(timing.repeat):
        start.record(stream)
        for _ in range(timing.number):
            call()
        end.record(stream)
        end.synchronize()
        samples.append(start.elapsed_time(end) / timing.number)
    return samples


def time_wall_clock(call: Callable[[], Any], timing: Timing, wait: Callable[[Any], Any] | None = None) -> list[float]:
    """Milliseconds per ``call()`` by `time.perf_counter`, for synchronous calls (CPU frameworks).

    An asynchronous framework passes ``wait``, which blocks until the output it is given is computed
    (JAX's ``block_until_ready``): a sample's ``number`` calls are then dispatched back to back and
    the clock stops once the last output is ready, as the CUDA events of `time_cuda_events` would.
    """
    wait = wait or (lambda out: out)
    for _ in range(timing.warmup):
        wait(call())
    samples = []
    for _ in range(timing.repeat):
        start = time.perf_counter()
        for _ in range(timing.number):
            out = call()
        wait(out)
        samples.append((time.perf_counter() - start) * 1000 / timing.number)
    return samples


def median(samples: list[float]) -> float:
    return statistics.median(samples)
