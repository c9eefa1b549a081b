"""Export the 16 zoo CNNs with both PyTorch ONNX exporters into small committed files (issue #16).

Run with the zoo venv, which has torch, torchvision and timm (the test suite never needs them), and hydra-core for
the table `ios_core.models.zoo`::

    PYTHONPATH=src /work/zoo-venv/bin/python tests/zoo/make_zoo.py [model ...]

Each network of `ios_core.models.zoo.ZOO` is built by its `build_module` (seed 0, BatchNorm running statistics
randomized, eval mode) and exported at batch 1 and its ``small`` resolution, the smallest its layers accept, by
TorchScript (opset 17) and by dynamo (opset 18). Value infos and per-node metadata are dropped, and every float
initializer over 1 KB is moved to external data whose file is not kept, so a committed ``<model>.<exporter>.onnx``
holds the graph, the shape constants and the small tensors only; ``tests/zoo_models.py`` fills the stripped
tensors again, deterministically. Failures go to ``failures.txt``.
"""

from __future__ import annotations

import sys
import tempfile
import traceback
from pathlib import Path

import onnx
import torch
from onnx.external_data_helper import convert_model_to_external_data

from ios_core.models.zoo import EXPORTERS, ZOO, build_module, export

HERE = Path(__file__).parent
STRIP_BYTES = 1024


def strip(source: Path, target: Path) -> None:
    """Write ``source`` to ``target`` with every float initializer over `STRIP_BYTES` as external data, dropped."""
    model = onnx.load(str(source))
    model.graph.ClearField("value_info")  # shape inference makes it again; stack traces and names stay out
    for node in model.graph.node:
        node.ClearField("metadata_props")
        node.doc_string = ""
    for tensor in model.graph.initializer:
        if tensor.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
            tensor.ClearField("data_location")  # shape and index constants stay inline whatever their size
    convert_model_to_external_data(
        model, all_tensors_to_one_file=True, location=f"{target.stem}.data", size_threshold=STRIP_BYTES
    )
    for tensor in model.graph.initializer:  # int tensors were marked too: load them back inline
        if tensor.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(model, str(Path(tmp) / target.name))  # the weights land in tmp and are dropped with it
        target.write_bytes((Path(tmp) / target.name).read_bytes())


def main(names: list[str]) -> None:
    failures = []
    for name in names:
        size = ZOO[name].small
        model, x = build_module(name), torch.randn(1, 3, size, size)
        for exporter in EXPORTERS:
            target = HERE / f"{name}.{exporter}.onnx"
            try:
                with tempfile.TemporaryDirectory() as tmp:
                    full = Path(tmp) / "full.onnx"
                    export(model, x, exporter, full)
                    strip(full, target)
                print(f"{target.name}: {target.stat().st_size / 1e3:.0f} KB", flush=True)
            except Exception as error:  # noqa: BLE001 -- recorded, the other exports go on
                traceback.print_exc()
                failures.append(f"{name} {exporter}: {type(error).__name__}: {str(error).splitlines()[0]}")
    if failures:
        (HERE / "failures.txt").write_text("\n".join(failures) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:] or list(ZOO))
