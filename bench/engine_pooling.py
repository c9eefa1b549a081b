"""Our pooling kernels on a model's pools: the generic kernel beside the NHWC fast path, on one GPU.

For each distinct pool operator of the model (Inception V3 by default: its 3x3 max pools at stride
2, 3x3 average pools at stride 1 and the final global average) at each batch size, on the same
NHWC buffers (x filled with pseudo-random values on the GPU), every kernel of ``cuda/pool.cu`` that
can run it: ``pool2d_f32``, ``pool_nhwc_<kind>_v<V>`` and for a wide window (a global pool)
``pool_nhwc_wide_<kind>_v<V>`` at each channel vector the alignment allows, the one the engine picks
marked ``*`` (a block sums in another order than a thread: ``identical_to_generic`` is false for a
wide average). Each is timed with CUDA events, the median over
``repeat`` of the mean of ``number`` launches after ``warmup``, with NVML clocks before and after;
GB/s counts one read of x and one write of y. At the ``--check-batches`` every kernel's output,
written over NaN, is compared with the float64 numpy reference and with the generic kernel's.
Writes ``<out>/engine_pooling.json`` (with the GPU, driver and cuDNN versions) and prints a table.

Usage (device): ``PYTHONPATH=src python3 bench/engine_pooling.py --out $OUT/pooling``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ios_core import gpu, models
from ios_core.engine import pooling
from ios_core.engine.depthwise import Launch, Operand
from ios_core.files import write_atomic
from ios_core.ir import Graph, Pool
from ios_core.ir.ops import Shape, rules_of
from ios_core.reference import pool2d
from ios_core.timing import Timing

try:  # the GPU half: without PyCUDA and the cuDNN frontend only ``--help`` works
    import pycuda.driver as drv

    from ios_core.engine.gpu import device
    from ios_core.engine.gpu.environment import environment
    from ios_core.engine.gpu.timing import time_replays
except ImportError as error:
    GPU_MISSING: ImportError | None = error
else:
    GPU_MISSING = None

NAN_BITS = 0x7FC00000
FILL_BLOCK, FILL_BLOCKS_PER_SM = 256, 16  # fill_random_f32 loops over the rest


def distinct_pools(graph: Graph) -> list[tuple[Pool, Shape]]:
    """Each pool operator of ``graph`` with its input shape, once, in graph order."""
    found = {(node.op, graph.operand_shapes(node)[0]): None for node in graph.operators if isinstance(node.op, Pool)}
    return list(found)


def describe_pool(pool: Pool, shape: Shape) -> str:
    """E.g. ``max 3x3/2 p0 64x147x147``."""
    kind, (kh, kw), (sh, _), (ph, _) = pool.kind, pool.kernel, pool.stride, pool.padding
    window = "global" if kind.startswith("global") else f"{kh}x{kw}/{sh} p{ph}"
    return f"{kind.removeprefix('global_')} {window} {shape.channels}x{shape.height}x{shape.width}"


def nhwc_operand(address: int, dims: tuple[int, int, int, int]) -> Operand:
    n, c, h, w = dims
    return Operand(address, dims, (h * w * c, 1, w * c, c))


def candidates(call: pooling.PoolCall, sms: int) -> dict[str, Launch]:
    """Every kernel that can run ``call``, by label: ``generic``, and the fast one (``v<V>``) and for a wide window
    the wide one (``wide_v<V>``) at each vector width allowed."""
    found = {"generic": pooling.generic_launch(call, sms)}
    if pooling.fast_path_refusal(call) is None:
        vectors = pooling.FAST_VECTORS if pooling.vectorizable(call) else pooling.FAST_VECTORS[-1:]
        found |= {f"v{v}": pooling.fast_launch(call, v) for v in vectors}
        if pooling.is_wide(call):
            found |= {f"wide_v{v}": pooling.wide_launch(call, v) for v in vectors}
    return found


def peak_error(out: np.ndarray, ref: np.ndarray) -> float:
    """Largest absolute error over the reference's largest magnitude (an element-wise bound, unlike the
    relative L2 error of `ios_core.reference.relative_error`)."""
    return float(np.abs(out.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1.0))


@dataclass(frozen=True)
class Bench:
    """What every measurement uses: the compiled kernels, one stream, the SM count and the timing settings."""

    kernels: device.Kernels
    stream: drv.Stream
    sms: int
    timing: Timing

    def enqueue(self, launch: Launch) -> None:
        self.kernels.pool[launch.kernel].prepared_async_call(launch.grid, launch.block, self.stream, *launch.args)


def time_kernel(bench: Bench, launch: Launch) -> dict:
    """``launch``'s median time (ms) and its samples, with the clocks before and after."""
    before = gpu.clocks()
    samples = time_replays(lambda: bench.enqueue(launch), bench.stream, bench.timing)
    ms = statistics.median(samples)
    return {
        "kernel": launch.kernel,
        "ms": ms,
        "samples": samples,
        "clocks_before": before,
        "clocks_after": gpu.clocks(),
    }


@dataclass(frozen=True)
class Case:
    """One pool at one batch: NHWC buffers x (filled) and y on the GPU, dims in N, C, H, W order."""

    pool: Pool
    x: drv.DeviceAllocation
    y: drv.DeviceAllocation
    x_dims: tuple[int, int, int, int]
    y_dims: tuple[int, int, int, int]

    @property
    def bytes(self) -> int:
        """One read of x and one write of y."""
        return 4 * (int(np.prod(self.x_dims)) + int(np.prod(self.y_dims)))

    def call(self) -> pooling.PoolCall:
        return pooling.PoolCall(
            nhwc_operand(int(self.x), self.x_dims), nhwc_operand(int(self.y), self.y_dims), self.pool
        )


def download(buffer: drv.DeviceAllocation, dims: tuple[int, int, int, int]) -> np.ndarray:
    """An NHWC buffer of ``dims`` as NCHW."""
    n, c, h, w = dims
    out = np.empty((n, h, w, c), np.float32)
    drv.memcpy_dtoh(out, buffer)
    return out.transpose(0, 3, 1, 2)


def output_of(bench: Bench, case: Case, launch: Launch) -> np.ndarray:
    """What ``launch`` writes over a NaN-filled y."""
    drv.memset_d32(case.y, NAN_BITS, int(np.prod(case.y_dims)))
    drv.Context.synchronize()  # the memset runs on the legacy stream, which our non-blocking stream does not wait for
    bench.enqueue(launch)
    bench.stream.synchronize()
    return download(case.y, case.y_dims)


def check(bench: Bench, case: Case, launches: dict[str, Launch]) -> dict[str, dict]:
    """By label: the output's error against the float64 reference, and whether it equals the generic kernel's."""
    ref = pool2d(case.pool, [download(case.x, case.x_dims).astype(np.float64)], {})
    outputs = {label: output_of(bench, case, launch) for label, launch in launches.items()}
    return {
        label: {
            "error_vs_reference": peak_error(out, ref),
            "identical_to_generic": bool(np.array_equal(out, outputs["generic"])),
        }
        for label, out in outputs.items()
    }


def measure(bench: Bench, pool: Pool, shape: Shape, batch: int, checked: bool) -> dict:
    """Every candidate kernel on one pool at one batch, on the same buffers; checked when ``checked``."""
    x_dims, y_dims = (batch, *shape), (batch, *rules_of(pool).shape(pool, (shape,)))
    x, y = drv.mem_alloc(4 * int(np.prod(x_dims))), drv.mem_alloc(4 * int(np.prod(y_dims)))
    try:
        case = Case(pool, x, y, x_dims, y_dims)
        grid = (bench.sms * FILL_BLOCKS_PER_SM, 1)
        bench.kernels.fill.prepared_call(grid, (FILL_BLOCK, 1, 1), x, int(np.prod(x_dims)), 1)
        drv.Context.synchronize()  # as the memset in output_of: the fill is not on our stream
        call = case.call()
        chosen = pooling.launch(call, bench.sms).kernel
        launches = candidates(call, bench.sms)
        kernels = {label: time_kernel(bench, launch) for label, launch in launches.items()}
        for label, results in (check(bench, case, launches) if checked else {}).items():
            kernels[label] |= results
        for entry in kernels.values():
            entry["gb_per_s"] = case.bytes / entry["ms"] / 1e6
        chosen_ms = next(entry["ms"] for entry in kernels.values() if entry["kernel"] == chosen)
        return {
            "pool": describe_pool(pool, shape),
            "op": repr(pool),
            "batch": batch,
            "input": list(x_dims),
            "output": list(y_dims),
            "bytes": case.bytes,
            "chosen": chosen,
            "kernels": kernels,
            "speedup": kernels["generic"]["ms"] / chosen_ms,
        }
    finally:
        x.free()
        y.free()


def run(args: argparse.Namespace) -> dict:
    """Every distinct pool of ``args.model`` at every batch: the JSON document."""
    if GPU_MISSING is not None:
        raise SystemExit(f"this benchmark needs a GPU with PyCUDA and the cuDNN frontend: {GPU_MISSING}")
    context = device.device_context()
    timing = Timing(warmup=args.warmup, number=args.number, repeat=args.repeat)
    bench = Bench(device.kernels(), device.new_stream(), context.multiprocessors, timing)
    rows = []
    for pool, shape in distinct_pools(models.get(args.model)):
        for batch in args.batches:
            rows.append(measure(bench, pool, shape, batch, batch in args.check_batches))
            print_row(rows[-1])
    return {"environment": environment(), "model": args.model, "batches": args.batches, "timing": asdict(timing),
            "rows": rows}


def print_row(row: dict) -> None:
    """One line: each kernel's time and GB/s (* marks the engine's pick), the speedup, the worst check error."""
    cells = []
    for label in ("generic", "v4", "v1", "wide_v4", "wide_v1"):
        entry = row["kernels"].get(label)
        mark = "*" if entry and entry["kernel"] == row["chosen"] else " "
        if entry or not label.startswith("wide"):  # only wide windows have wide kernels
            cells.append(f"{label}{mark} {entry['ms'] * 1e3:8.1f} us {entry['gb_per_s']:6.0f} GB/s" if entry
                         else " " * 28)
    errors = [e["error_vs_reference"] for e in row["kernels"].values() if "error_vs_reference" in e]
    checked = f"  err {max(errors):.1e}" if errors else ""
    print(f"{row['pool']:24s} b{row['batch']:<4d} {'  '.join(cells)}  {row['speedup']:5.2f}x{checked}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for engine_pooling.json")
    parser.add_argument("--model", default="inception_v3")
    parser.add_argument("--batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 16, 128])
    parser.add_argument("--check-batches", type=lambda s: [int(b) for b in s.split(",")], default=[1, 16])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--number", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    result = run(args)
    path = write_atomic(args.out / "engine_pooling.json", json.dumps(result, indent=1, default=str))
    print(f"on {result['environment'].get('name')}: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
