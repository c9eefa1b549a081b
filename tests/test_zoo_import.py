"""The model zoo (issue #16): 16 torchvision and timm CNNs from both PyTorch exporters import, whole, and compute
what ONNX Runtime computes. The files are made by ``tests/zoo/make_zoo.py``; `zoo_models` refills their weights."""

import numpy as np
import pytest
from onnx_random import run_ort
from zoo_models import load_zoo, zoo_files

from ios_core.models.zoo import EXPORTERS, ZOO
from ios_core.onnx_io import load_onnx, run_network
from ios_core.reference import relative_error

TOLERANCE = 1e-4  # relative L2: ONNX Runtime computes in float32, the reference in float64
SLOW = ("nasnetalarge", "pnasnet5large")  # 500+ operators at 64x64: a minute each on two cores
CELL = 48  # the most operators of a NASNet or PNASNet cell, each one block (39 and 43 today)


def _case(path):
    model_name = path.name.split(".")[0]
    return pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if model_name in SLOW else [])


def test_every_network_of_the_zoo_is_committed_from_both_exporters():
    assert len(ZOO) == 16
    assert [f.name for f in zoo_files()] == sorted(f"{name}.{exporter}.onnx" for name in ZOO for exporter in EXPORTERS)


@pytest.mark.parametrize("path", [_case(f) for f in zoo_files()])
def test_a_zoo_network_imports_whole_and_equals_onnxruntime(path):
    model = load_zoo(path)
    network = load_onnx(model, path.stem)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).standard_normal((1, *dims[1:]))
    expected = run_ort(model, x)[0]
    got = run_network(network, x)
    assert got.shape == expected.shape
    assert relative_error(got, expected) <= TOLERANCE
    if path.name.split(".")[0] in SLOW:  # no single tensor separates two cells: each is cut where it has two exits
        assert max(len(block.nodes) for block in network.graph.blocks) <= CELL
