"""ONNX export: our models through ONNX Runtime equal the reference; export then import changes nothing."""

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from onnx_random import run_ort
from random_graphs import every_op_graph, random_graphs

from ios_core import models
from ios_core.ir import ACTIVATIONS, GraphBuilder, LayerNorm, Softmax
from ios_core.onnx_io import Network, load_onnx, run_network, save_onnx, to_onnx
from ios_core.reference import relative_error
from ios_core.weights import make_input

TOLERANCE = 1e-5  # relative L2: ONNX Runtime computes in float32, the reference in float64


def check_export(network: Network, batch: int = 2) -> onnx.ModelProto:
    model = to_onnx(network)
    x = make_input(network.graph, batch)
    assert relative_error(run_ort(model, x)[0], run_network(network, x)) < TOLERANCE
    return model


def test_demo_exports_with_every_operator_kind():
    model = check_export(Network.of(models.get("demo")))
    assert model.opset_import[0].version == 17
    ops = {node.op_type for node in model.graph.node}
    assert {"Conv", "Relu", "MaxPool", "AveragePool", "Sigmoid", "Add", "Mul", "Concat", "Slice"} <= ops
    assert [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == ["N", 3, 16, 16]
    pools = [n for n in model.graph.node if n.op_type == "AveragePool"]
    assert all(a.i == 0 for n in pools for a in n.attribute if a.name == "count_include_pad")


def test_squeezenet_exports():
    check_export(Network.of(models.get("squeezenet")), batch=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["inception_v3", "randwire", "nasnet"])
def test_paper_models_export(name):
    check_export(Network.of(models.get(name)), batch=1)


def in_float32(network: Network) -> Network:
    """The network with its weights rounded to float32, as the exported file holds them."""
    rounded = {
        name: {k: v.astype(np.float32).astype(np.float64) for k, v in params.items()}
        for name, params in network.weights.items()
    }
    return Network(network.graph, rounded)


@given(random_graphs(max_ops=12, blocks=3))
@settings(max_examples=20, deadline=None)
def test_random_graphs_export_and_import_back(graph):
    network = Network.of(graph, seed=3)
    model = check_export(network)
    x = make_input(graph, 2, seed=5)
    assert relative_error(run_network(load_onnx(model), x), run_network(in_float32(network), x)) < 1e-12


def test_demo_round_trip_keeps_the_operators():
    network = Network.of(models.get("demo"))
    back = load_onnx(to_onnx(network))
    x = make_input(network.graph, 2)
    assert relative_error(run_network(back, x), run_network(network, x)) < 1e-6  # weights went through float32
    assert back.graph.shapes[back.graph.output] == network.graph.shapes[network.graph.output]


def test_every_operator_exports():
    model = check_export(Network.of(every_op_graph()))
    ops = {node.op_type for node in model.graph.node}
    expected = {"Pad", "Clip", "HardSwish", "HardSigmoid", "Erf", "Tanh", "LayerNormalization", "Softmax", "Transpose"}
    assert expected <= ops
    pools = {n.op_type: {a.name: a.i for a in n.attribute} for n in model.graph.node if "Pool" in n.op_type}
    assert pools["MaxPool"]["ceil_mode"] == 1 and pools["AveragePool"]["count_include_pad"] == 1


@given(random_graphs(max_ops=12, blocks=2, zoo=True))
@settings(max_examples=15, deadline=None)
def test_random_graphs_of_zoo_operators_export(graph):
    check_export(Network.of(graph, seed=4))


def test_an_output_shape_ends_the_model_with_a_reshape():
    graph = every_op_graph()
    network = Network.of(graph)
    flat = Network(graph, network.weights, output_shape=(5,))
    model = to_onnx(flat, batch=3)
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [3, 5]
    x = make_input(graph, 3)
    got = run_ort(model, x)[0]
    assert got.shape == (3, 5)
    assert relative_error(got, run_network(flat, x)) < TOLERANCE
    assert relative_error(got, run_network(network, x).reshape(3, 5)) < TOLERANCE


@pytest.mark.parametrize("opset", [11, 13])
def test_older_opsets_export_every_activation(opset):
    b = GraphBuilder("acts", 4, 5, 5)
    b.end_block(b.add(*(b.activation(b.input, act) for act in ACTIVATIONS[1:])))
    network = Network.of(b.build())
    model = to_onnx(network, opset=opset)
    x = make_input(network.graph, 2)
    assert relative_error(run_ort(model, x)[0], run_network(network, x)) < TOLERANCE


@pytest.mark.parametrize(("opset", "op"), [(12, Softmax()), (16, LayerNorm())])
def test_an_operator_newer_than_the_opset_is_refused_by_name(opset, op):
    b = GraphBuilder("new", 4, 3, 3)
    b.end_block(b.node(op, b.input, name="late"))
    with pytest.raises(ValueError, match=f"{type(op).__name__} node 'late' needs opset"):
        to_onnx(Network.of(b.build()), opset=opset)


def test_fixed_batch_and_file(tmp_path):
    network = Network.of(models.get("demo"))
    path = save_onnx(network, tmp_path / "sub" / "demo.onnx", batch=4)
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 4
    assert load_onnx(path).graph.name == "demo"
