"""Which constant-folding library simplifies the zoo exports best: the table in ``docs/onnx_import.md``.

Run with the zoo venv (it has every candidate)::

    /work/zoo-venv/bin/python tests/zoo/compare_folding.py

Each candidate runs after ONNX's shape inference on every committed export (weights refilled); the table counts
the nodes left, those left of shape arithmetic (`SHAPE_OPS`, which the importer cannot convert), the exports a
candidate failed on, and the time taken.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).parents[1]))
from zoo_models import load_zoo, zoo_files  # noqa: E402 -- the tests folder is no package

SHAPE_OPS = frozenset(
    {
        "Shape",
        "Gather",
        "Cast",
        "ConstantOfShape",
        "Ceil",
        "Floor",
        "Range",
        "Unsqueeze",
        "Squeeze",
        "Expand",
        "Where",
        "Equal",
        "Size",
    }
)


def _onnxscript(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxscript.optimizer

    return onnxscript.optimizer.optimize(model)


def _onnxslim(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


def _onnxslim_importer(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model, skip_fusion_patterns=["FusionGemm"])


def _onnxsim(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim's check failed")
    return simplified


def _onnxoptimizer(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxoptimizer

    return onnxoptimizer.optimize(model, onnxoptimizer.get_fuse_and_elimination_passes())


CANDIDATES: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {
    "none (shape inference only)": lambda model: model,
    "onnxscript.optimizer": _onnxscript,
    "onnxslim": _onnxslim,
    "onnxslim, FusionGemm skipped (the importer's)": _onnxslim_importer,
    "onnxsim": _onnxsim,
    "onnxoptimizer": _onnxoptimizer,
}


def main() -> None:
    files = zoo_files()
    models = {f.name: onnx.shape_inference.infer_shapes(load_zoo(f)) for f in files}
    print("| library | nodes left | shape-arithmetic nodes left | exports with any | failures | seconds |")
    print("|---|---|---|---|---|---|")
    for name, run in CANDIDATES.items():
        nodes, shape_nodes, with_shape, failures, start = 0, Counter(), 0, [], time.perf_counter()
        for file, model in models.items():
            try:
                out = run(model)
            except Exception as error:  # noqa: BLE001 -- a failing candidate is a row of the table
                failures.append(f"{file}: {type(error).__name__}")
                continue
            ops = Counter(node.op_type for node in out.graph.node)
            nodes += sum(ops.values())
            left = {op: n for op, n in ops.items() if op in SHAPE_OPS}
            shape_nodes.update(left)
            with_shape += bool(left)
        seconds = time.perf_counter() - start
        left = ", ".join(f"{op} {n}" for op, n in shape_nodes.most_common()) or "0"
        print(f"| {name} | {nodes} | {left} | {with_shape} | {len(failures)} | {seconds:.1f} |", flush=True)
        for failure in failures:
            print(f"  failed: {failure}", file=sys.stderr)


if __name__ == "__main__":
    main()
