"""The model registry and the four paper networks: counts pinned, shapes checked by hand, RandWire seeded."""

from functools import cache

import numpy as np
import pytest

from ios_core import models
from ios_core.errors import UserError
from ios_core.ir import Conv, Graph, Identity, Shape, lint
from ios_core.models.randwire import watts_strogatz

PAPER_MODELS = ("inception_v3", "nasnet", "randwire", "squeezenet")


@cache
def built(name: str) -> Graph:
    return models.get(name)


def exit_shapes(graph: Graph) -> list[str]:
    return [str(graph.shapes[block.exit]) for block in graph.blocks]


def test_names_lists_the_four_paper_models_and_demo():
    assert models.names() == ["demo", "inception_v3", "nasnet", "randwire", "squeezenet"]


@pytest.mark.parametrize("name", models.names())
def test_every_model_builds_lints_and_puts_each_operator_in_one_block(name):
    graph = built(name)
    lint(graph)
    assert graph.name == name
    in_blocks = [n for block in graph.blocks for n in block.nodes]
    assert sorted(in_blocks) == sorted(node.name for node in graph.operators)


PAPER_OPERATORS = {"inception_v3": 119, "randwire": 120, "nasnet": 374, "squeezenet": 50}
# NASNet: one identity per first cell (3) that our sums of concatenations need; see nasnet.py.
EXTRA_OPERATORS = {"nasnet": 3}

# name: (convolutions, also those inside Sequential operators; blocks; output shape)
GOLDEN = {
    "inception_v3": (94, 13, Shape(2048, 1, 1)),
    "randwire": (226, 6, Shape(1280, 1, 1)),
    "nasnet": (488, 25, Shape(3360, 1, 1)),
    "squeezenet": (30, 12, Shape(1000, 1, 1)),
}


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_operator_counts_are_the_papers_but_where_the_ir_differs(name):
    assert len(built(name).operators) == PAPER_OPERATORS[name] + EXTRA_OPERATORS.get(name, 0)


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_conv_block_and_output_counts_are_pinned(name):
    graph = built(name)
    convs, blocks, output = GOLDEN[name]
    assert graph.count(Conv) == convs
    assert len(graph.blocks) == blocks
    assert graph.shapes[graph.output] == output


def test_inception_v3_block_exits():
    assert exit_shapes(built("inception_v3")) == [
        "192x35x35",  # stem: 299 -> 149 -> 147 -> 147 -> 73 -> 73 -> 71 -> 35
        "256x35x35",
        "288x35x35",
        "288x35x35",  # InceptionA: 64 + 64 + 96 + pool_features
        "768x17x17",  # InceptionB: 384 + 96 + 288
        "768x17x17",
        "768x17x17",
        "768x17x17",
        "768x17x17",  # InceptionC: 4 x 192
        "1280x8x8",  # InceptionD: 320 + 192 + 768
        "2048x8x8",
        "2048x8x8",  # InceptionE: 320 + 2 x 768 + 192
        "2048x1x1",
    ]


def test_squeezenet_block_exits():
    assert exit_shapes(built("squeezenet")) == [
        "96x55x55",  # 224 -> 112 (7x7 s2 p3) -> 55 (max 3 s2)
        "128x55x55",
        "128x55x55",
        "256x55x55",
        "256x27x27",
        "256x27x27",
        "384x27x27",
        "384x27x27",
        "512x27x27",
        "512x13x13",
        "512x13x13",
        "1000x1x1",
    ]


def test_nasnet_block_exits():
    shapes = exit_shapes(built("nasnet"))
    assert shapes[:4] == ["96x165x165", "168x83x83", "336x42x42", "1008x42x42"]  # conv0, stems, first cell
    assert shapes[4:9] == ["840x42x42"] * 5  # normal cells: 5 x 168 (no x_left, as in IOS)
    assert shapes[9:11] == ["1344x21x21", "2016x21x21"]  # reduction 4 x 336; first cell 336 + 5 x 336
    assert shapes[11:16] == ["1680x21x21"] * 5
    assert shapes[16:18] == ["2688x11x11", "4032x11x11"]
    assert shapes[18:] == ["3360x11x11"] * 6 + ["3360x1x1"]


def test_randwire_stage_exits_halve_the_grid_and_double_the_channels():
    assert exit_shapes(built("randwire")) == [
        "77x112x112",
        "154x56x56",
        "308x28x28",
        "616x14x14",
        "1232x7x7",
        "1280x1x1",
    ]


def test_randwire_is_deterministic_in_its_seed():
    assert str(models.get("randwire", seed=7)) == str(models.get("randwire", seed=7))
    assert str(models.get("randwire", seed=7)) != str(models.get("randwire", seed=8))
    assert str(built("randwire")) == str(models.get("randwire", seed=0))


def test_randwire_stage_nodes_are_single_operators_in_one_block():
    graph = built("randwire")
    assert [len(block.nodes) for block in graph.blocks] == [1, 17, 33, 33, 33, 3]
    assert all(isinstance(graph[block.exit].op, Identity) for block in graph.blocks[1:5])


@pytest.mark.parametrize(("nodes", "seed"), [(16, 0), (32, 1), (32, 2)])
def test_watts_strogatz_keeps_the_ring_edge_count_and_every_node_linked(nodes, seed):
    edges = watts_strogatz(nodes, 4, 0.75, np.random.default_rng(seed))
    assert len(edges) == len(set(edges)) == nodes * 2
    assert all(0 <= u < v < nodes for u, v in edges)
    degree = np.bincount(np.array(edges).ravel(), minlength=nodes)
    assert degree.min() >= 2  # each node keeps the edges it rewires: k / 2 of them


def test_watts_strogatz_without_rewiring_is_the_ring_lattice():
    edges = watts_strogatz(6, 2, 0.0, np.random.default_rng(0))
    assert edges == [(0, 1), (0, 5), (1, 2), (2, 3), (3, 4), (4, 5)]


def test_watts_strogatz_rejects_an_odd_neighbourhood():
    with pytest.raises(ValueError, match="even"):
        watts_strogatz(8, 3, 0.5, np.random.default_rng(0))


def test_squeezenet_fire_module_golden_text():
    block = str(built("squeezenet")).splitlines()[5:12]
    assert block == [
        "  block 1 (enter pool1, exit identity2)",
        "    conv2 = conv 16 1x1 relu (pool1[0:96])  # 16x55x55",
        "    conv3 = conv 64 3x3 p1 relu (conv2[0:16])  # 64x55x55",
        "    conv4 = conv 64 1x1 relu (conv2[0:16])  # 64x55x55",
        "    identity1 = identity (conv3[0:64] ++ conv4[0:64])  # 128x55x55",
        "    conv5 = conv 128 1x1 relu (pool1[0:96])  # 128x55x55",
        "    identity2 = identity (identity1[0:128] + conv5[0:128])  # 128x55x55",
    ]


def test_inception_v3_flops_match_the_published_5_7_billion_multiply_adds():
    graph = built("inception_v3")
    multiply_adds = sum(graph.flops(n.name) for n in graph.operators if isinstance(n.op, Conv)) / 2
    assert multiply_adds == pytest.approx(5.71e9, rel=0.01)


def test_unknown_model_names_the_known_ones():
    with pytest.raises(models.UnknownModelError, match="resnet50") as error:
        models.get("resnet50")
    assert str(error.value) == (
        "unknown model 'resnet50'; known models: demo, inception_v3, nasnet, randwire, squeezenet, onnx"
    )
    assert isinstance(error.value, UserError)


def test_an_onnx_file_is_a_model(tmp_path):
    from ios_core.onnx_io import Network, OnnxImportError, save_onnx

    path = tmp_path / "demo.onnx"
    save_onnx(Network.of(models.get("demo"), seed=0), path)
    graph = models.get("onnx", path=str(path))
    assert graph.shapes[graph.output] == models.get("demo").shapes["identity1"]
    with pytest.raises(models.ModelArgumentError, match=r"model=onnx needs the file: model.path="):
        models.get("onnx")
    with pytest.raises(OnnxImportError, match=r"cannot read ONNX file '.*missing.onnx'"):
        models.get("onnx", path=str(tmp_path / "missing.onnx"))


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("randwire", {"bogus": 1}, "model 'randwire' has no argument 'bogus'; it takes: seed"),
        ("demo", {"seed": 1}, "model 'demo' has no argument 'seed'; it takes: none"),
        ("randwire", {"seed": "abc"}, "model 'randwire' argument 'seed' must be int, got 'abc' (str)"),
        ("randwire", {"seed": True}, "model 'randwire' argument 'seed' must be int, got True (bool)"),
        ("onnx", {"path": 3}, "model 'onnx' argument 'path' must be str or None, got 3 (int)"),
    ],
)
def test_an_unknown_or_mistyped_model_argument_is_one_line_naming_model_and_argument(name, kwargs, message):
    with pytest.raises(models.ModelArgumentError) as error:
        models.get(name, **kwargs)
    assert str(error.value) == message
    assert isinstance(error.value, UserError)
