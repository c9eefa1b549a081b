"""Where the time goes, per kind of operator: our engine against torch.compile + freezing on one network.

The per-operator profile issues 16 and 17 ask for where IOS-Both loses (a zoo network, a batch, a precision): what
our kernels spend on each kind of operator, beside what PyTorch's kernels spend on the same network, so that the
difference points at what would close the gap. For one model (built-in, ``--onnx FILE``, or ``--zoo NAME``: a network
of `bench/zoo.py`, exported on the spot), batch and precision,
in one process on one GPU:

- ``ours``: every stage of the Sequential schedule -- one operator each -- timed alone by the measured stage cost
  (`ios_core.cost`, the search's own profiler, with the network's weights; in a dry run the simulated cost), summed
  per `kind` of operator (a convolution's kind says its kernel: 1x1, depthwise, kxk). Their sum beside the
  Sequential schedule's end-to-end latency tells how much the operators' own time explains;
- ``torch``: the same graph as a PyTorch module (`ios_core.baselines.torch_module`, the same weights, channels-last)
  under ``torch.compile`` with Inductor freezing, without CUDA graphs (the same kernels, each launch visible),
  profiled by ``torch.profiler`` over ``--number`` calls after compiling; its GPU time per call summed per
  `kernel_family` of kernel name (convolution, matmul, Triton's fused kernels, layout transposes, copies, other).

``--out`` holds the rows ``{model, batch, precision, system, group, ms, count}`` (``ms`` per call; ``count``: our
operators, PyTorch's distinct kernels) and the GPU, driver, cuDNN and torch versions; the table prints both systems'
groups by time.
``--dry-run`` needs no GPU: the simulated cost's operators, no PyTorch rows.

Usage (device; ``.gpu-wheels`` carried as for the other benchmarks)::

    python3 bench/op_profile.py --device h200 --model randwire --batch 16 --precision fp16 --out $OUT/op_randwire.json
    python3 bench/op_profile.py --device h200 --zoo efficientnet_b0 --out $OUT/op_efficientnet_b0_b1_fp32.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from records import Call, call_arguments, call_of, machine, network

from ios_core import schedule as S
from ios_core.config import device_profile
from ios_core.cost import CostSpec, build_cost
from ios_core.files import write_atomic
from ios_core.ir import Conv, Graph, Identity, Pool
from ios_core.models.zoo import ZOO, build_module, export
from ios_core.onnx_io import Network, load_onnx
from ios_core.precision import PRECISIONS
from ios_core.weights import make_input

FAMILIES = (  # a kernel's family: the first whose markers its name holds (lower case); Triton's names say what
    ("triton", ("triton",)),  # they fuse ("fused_convolution_relu"), so Triton's come first
    ("layout", ("nchwtonhwc", "nhwctonchw", "transpose")),
    ("convolution", ("implicit", "convolve", "conv2d", "cudnn", "fprop", "winograd")),  # implicit GEMMs first
    ("matmul", ("gemm", "gemv")),
    ("copy", ("copy", "memcpy", "memset", "fill")),
)


def kind(graph: Graph, name: str) -> str:
    """An operator's kind: its IR type; a convolution's kernel (``Conv 1x1``, ``Conv depthwise``, ``Conv 3x3``, and
    ``Conv 1x1 of one pixel``: a squeeze-excitation's or a classifier's dense layer), a pooling's kind
    (``Pool max``); an identity's ``Sum`` or ``Concat`` of several operators' outputs."""
    node = graph.by_name[name]
    op = node.op
    if isinstance(op, Conv):
        depthwise = op.groups > 1 and op.groups == op.out_channels
        pixels = graph.shapes[name].height * graph.shapes[name].width
        return ("Conv depthwise" if depthwise else f"Conv {op.kernel[0]}x{op.kernel[1]}"
                + (" of one pixel" if pixels == 1 else ""))
    if isinstance(op, Pool):
        return f"Pool {op.kind}"
    if isinstance(op, Identity):  # its operand, a `Value`: a sum of terms, each a concatenation of slices
        (value,) = node.inputs
        return "Sum" if len(value.terms) > 1 else "Concat" if len(value.terms[0]) > 1 else "Identity"
    return type(op).__name__


def kernel_family(name: str) -> str:
    """A GPU kernel's family from its name (`FAMILIES`); ``other`` when none matches."""
    lower = name.lower()
    return next((family for family, markers in FAMILIES if any(m in lower for m in markers)), "other")


def group_rows(system: str, spent: Iterable[tuple[str, float]], base: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per group of ``spent`` ((group, ms per call) pairs): the group's total and how many it counts."""
    total, count = defaultdict(float), Counter()
    for group, ms in spent:
        total[group] += ms
        count[group] += 1
    return [{**base, "system": system, "group": group, "ms": ms, "count": count[group]}
            for group, ms in sorted(total.items(), key=lambda item: -item[1])]


def ours(net: Network, batch: int, precision: str, call: Call) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Our operators, each timed alone (the Sequential schedule's stages), per kind; and the Sequential schedule's
    stage sum (and, measured, its end-to-end latency)."""
    schedule = S.sequential(net.graph)
    spec = CostSpec(kind=call.source, precision=precision, timing=call.timing, weights=net.weights)
    with build_cost(spec, device_profile(call.device)) as cost:
        latencies = cost.stage_latencies(net.graph, schedule.stages, batch)
        whole = {"sequential_stage_sum_ms": sum(latencies)}
        if not call.dry_run:  # the whole plan, as the re-ranking times it
            whole["sequential_ms"] = cost.end_to_end_latency(net.graph, schedule, batch)
    base = {"model": net.name, "batch": batch, "precision": precision, "source": call.source}
    spent = [(kind(net.graph, stage.ops[0]), ms) for stage, ms in zip(schedule.stages, latencies, strict=True)]
    return group_rows("ours", spent, base), whole


def torch_kernels(net: Network, batch: int, precision: str, number: int) -> list[tuple[str, float]]:
    """PyTorch's GPU kernels under torch.compile + freezing (no CUDA graphs): (name, ms per call) each."""
    from ios_core.baselines.torch_adapters import Compile, compiled_call, prepared

    torch, module, x = prepared(net, make_input(net.graph, batch), precision)
    call = compiled_call(torch, module, x, Compile(mode=None, freezing=True))
    activities = [torch.profiler.ProfilerActivity.CUDA]
    with torch.inference_mode(), torch.profiler.profile(activities=activities) as profile:
        for _ in range(number):
            call()
        torch.cuda.synchronize()
    found = []
    for event in profile.key_averages():
        us = getattr(event, "self_device_time_total", None)
        if us is None:  # the name before torch 2.4
            us = getattr(event, "self_cuda_time_total", 0.0)
        if us > 0:
            found.append((event.key, us / 1000.0 / number))
    return found


def table(document: dict[str, Any]) -> str:
    """Both systems' groups, largest first, ms per call; our operators' sum and the Sequential schedule's time."""
    lines = ["| system | group | ms | count |", "|---|---|---|---|"]
    lines += [f"| {r['system']} | {r['group']} | {r['ms']:.4f} | {r['count']} |" for r in document["rows"]]
    lines += ["", ", ".join(f"{key} {value:.4f}" for key, value in document["ours"].items())]
    return "\n".join(lines)


def zoo_network(name: str) -> Network:
    """The zoo network ``name`` as `bench/zoo.py` builds it (seeded, at its resolution), exported by TorchScript and
    imported with its weights."""
    with tempfile.TemporaryDirectory() as folder:
        size = ZOO[name].resolution
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        return load_onnx(export(build_module(name), x, "torchscript", Path(folder) / f"{name}.onnx"), name=name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="inception_v3", help="a built-in model (ignored with --onnx)")
    parser.add_argument("--onnx", type=Path, default=None, help="a network from this ONNX file, with its weights")
    parser.add_argument("--zoo", choices=sorted(ZOO), default=None,
                        help="a zoo network (bench/zoo.py), exported here by PyTorch's TorchScript exporter")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")
    parser.add_argument("--out", type=Path, required=True)
    call_arguments(parser, "(unused: one network a call)", "no GPU: the simulated cost, no PyTorch rows",
                   retry_failed=False)
    args = parser.parse_args(argv)
    call = call_of(args)
    net = zoo_network(args.zoo) if args.zoo else load_onnx(args.onnx) if args.onnx else network(args.model)
    rows, whole = ours(net, args.batch, args.precision, call)
    if not call.dry_run:
        base = {"model": net.name, "batch": args.batch, "precision": args.precision, "source": "measured"}
        kernels = torch_kernels(net, args.batch, args.precision, call.timing.number)
        rows += group_rows("torch", ((kernel_family(name), ms) for name, ms in kernels), base)
    document = {"benchmark": "op_profile", "environment": machine(call, not call.dry_run), "ours": whole,
                "rows": rows}
    write_atomic(args.out, json.dumps(document, indent=1, default=str) + "\n")
    print(table(document))
    return 0


if __name__ == "__main__":
    sys.exit(main())
