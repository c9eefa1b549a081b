"""ONNX import: random multi-branch networks against ONNX Runtime, fusions, blocks, and errors that name the node."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_random import random_onnx, run_ort

from ios_core.errors import UserError
from ios_core.ir import Activation, Conv, Elementwise, Identity, Pool, Sequential
from ios_core.onnx_io import OnnxImportError, UnsupportedOperatorError, load_onnx, run_network, supported_operators
from ios_core.reference import relative_error

TOLERANCE = 1e-5  # relative L2: ONNX Runtime computes in float32, the reference in float64


@pytest.mark.parametrize("seed", range(24))
def test_random_networks_equal_onnxruntime(seed):
    model = random_onnx(seed, stages=1 + seed % 3, head=seed % 4 == 0)
    x = np.random.default_rng(seed).standard_normal((2, 3, 10, 10))
    network = load_onnx(model)
    assert relative_error(run_network(network, x), run_ort(model, x)[0]) < TOLERANCE


@pytest.mark.parametrize("seed", range(4))
def test_random_networks_at_opset_13(seed):
    model = random_onnx(100 + seed, stages=2, opset=13)
    x = np.random.default_rng(seed).standard_normal((1, 3, 10, 10))
    assert relative_error(run_network(load_onnx(model), x), run_ort(model, x)[0]) < TOLERANCE


class Net:
    """A hand-written ONNX model: nodes named after their single output, float32 initializers."""

    def __init__(self, channels=3, size=8, opset=17):
        self.nodes, self.inits, self.opset = [], [], opset
        self.input = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, size, size])
        self.rng = np.random.default_rng(0)

    def const(self, name, array, dtype=np.float32):
        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=dtype), name))
        return name

    def op(self, op_type, name, inputs, outputs=None, **attrs):
        self.nodes.append(helper.make_node(op_type, inputs, outputs or [name], name=name, **attrs))
        return name

    def conv(self, name, x, cin, cout, k=3, **attrs):
        w = self.const(f"{name}.w", self.rng.normal(0, 0.3, (cout, cin, k, k)))
        b = self.const(f"{name}.b", self.rng.normal(0, 0.1, cout))
        attrs.setdefault("pads", [k // 2] * 4)
        return self.op("Conv", name, [x, w, b], kernel_shape=[k, k], **attrs)

    def bn(self, name, x, c):
        stats = [
            self.rng.uniform(0.5, 1.5, c),
            self.rng.normal(0, 0.1, c),
            self.rng.normal(0, 0.1, c),
            self.rng.uniform(0.5, 1.5, c),
        ]
        return self.op("BatchNormalization", name, [x, *(self.const(f"{name}.{i}", s) for i, s in enumerate(stats))])

    def model(self, output, infer=True):
        """The model; ``infer`` runs ONNX's strict shape inference on it first (which a broken model may fail)."""
        graph = helper.make_graph(
            self.nodes,
            "net",
            [self.input],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        return onnx.shape_inference.infer_shapes(model, strict_mode=True) if infer else model


def check_equal(model, channels=3, size=8):
    x = np.random.default_rng(1).standard_normal((2, channels, size, size))
    network = load_onnx(model)
    assert relative_error(run_network(network, x), run_ort(model, x)[0]) < TOLERANCE
    return network


def test_batch_norm_and_relu_fold_into_the_convolution():
    n = Net()
    n.op("Relu", "relu", [n.bn("bn", n.conv("conv", "x", 3, 4), 4)])
    network = check_equal(n.model("relu"))
    assert str(network.graph) == "\n".join(
        [
            "graph net: 1 operators in 1 blocks",
            "  input = input 3x8x8",
            "  block 0 (enter input, exit conv)",
            "    conv = conv 4 3x3 p1 relu (input[0:3])  # 4x8x8",
        ]
    )


def test_nothing_folds_into_a_convolution_whose_output_has_other_readers():
    n = Net()
    conv = n.conv("conv", "x", 3, 4)
    n.op("Add", "add", [n.bn("bn", conv, 4), n.op("Relu", "relu", [conv])])
    network = check_equal(n.model("add"))
    ops = {node.name: node.op for node in network.graph.operators}
    assert ops["conv"].act == "none"
    assert ops["bn"] == Conv(4, (1, 1), groups=4)  # a lone batch norm: a depthwise 1x1 convolution
    assert ops["relu"] == Activation("relu")


def test_a_relu_folds_into_a_lone_batch_norm_that_only_it_reads():
    # DenseNet's BN-ReLU after each concatenation: one depthwise 1x1 convolution with the ReLU, not two nodes
    n = Net()
    cat = n.op("Concat", "cat", [n.conv("a", "x", 3, 4), n.conv("b", "x", 3, 2)], axis=1)
    n.conv("c", n.op("Relu", "relu", [n.bn("bn", cat, 6)]), 6, 3)
    network = check_equal(n.model("c"))
    ops = {node.name: node.op for node in network.graph.operators}
    assert ops["bn"] == Conv(6, (1, 1), groups=6, act="relu") and not network.graph.count(Activation)


def test_a_residual_sum_and_its_relu_end_one_block_and_make_one_node():
    # ResNet's add and ReLU: the activation reads the sum, so the engine adds and rectifies in one kernel
    n = Net()
    a = n.conv("a", "x", 3, 4)
    out = n.op("Relu", "relu", [n.op("Add", "add", [a, n.conv("b", a, 4, 4)])])
    n.conv("c", out, 4, 2)
    network = check_equal(n.model("c"))
    assert not network.graph.count(Identity)
    assert str(network.graph["relu"]) == "relu = relu (a[0:4] + b[0:4])"
    assert [(b.nodes, b.exit) for b in network.graph.blocks] == [(("a",), "a"), (("b", "relu"), "relu"),
                                                                   (("c",), "c")]


def depthwise(n, name, x, c):
    w = n.const(f"{name}.w", n.rng.normal(0, 0.3, (c, 1, 3, 3)))
    return n.op("Conv", name, [x, w, n.const(f"{name}.b", n.rng.normal(0, 0.1, c))], kernel_shape=[3, 3],
                pads=[1] * 4, group=c)


def test_a_relu_that_only_depthwise_convolutions_read_moves_into_each():
    # NASNet's ReLU before a cell's separable convolutions: applied as each depthwise kernel loads its input
    n = Net()
    a = n.conv("a", "x", 3, 4)
    relu = n.op("Relu", "relu", [a])  # a is read raw too: the ReLU cannot fold into it
    both = n.op("Add", "both", [depthwise(n, "d1", relu, 4), depthwise(n, "d2", relu, 4)])
    n.op("Add", "add", [both, a])
    network = check_equal(n.model("add"))
    assert not any(isinstance(node.op, Activation) for node in network.graph.operators)
    for name in ("d1", "d2"):
        assert network.graph[name].op == Sequential((Activation("relu"), Conv(4, (3, 3), padding=(1, 1), groups=4)))
        assert str(network.graph[name].inputs[0]) == "a[0:4]"


def test_a_relu_that_another_operator_reads_too_stays():
    n = Net()
    a = n.conv("a", "x", 3, 4)
    relu = n.op("Relu", "relu", [a])
    both = n.op("Add", "both", [depthwise(n, "d1", relu, 4), n.conv("c", relu, 4, 4, k=1, pads=[0] * 4)])
    n.op("Add", "add", [both, a])
    network = check_equal(n.model("add"))
    assert network.graph["relu"].op == Activation("relu") and network.graph["d1"].op.groups == 4


def test_a_sum_read_by_one_convolution_is_a_summed_operand():
    n = Net()
    a = n.conv("a", "x", 3, 4)
    n.op("Add", "add", [a, n.conv("b", "x", 3, 4, k=1, pads=[0] * 4)])
    n.op("Concat", "cat", [n.conv("c", "add", 4, 2), n.conv("d", a, 4, 2)], axis=1)
    network = check_equal(n.model("cat"))
    assert not network.graph.count(Elementwise)
    assert str(network.graph["c"]) == "c = conv 2 3x3 p1 (a[0:4] + b[0:4])"


def test_blocks_are_cut_where_a_single_tensor_is_live():
    n = Net()
    a = n.conv("a", "x", 3, 4)
    n.op(
        "Concat",
        "cat",
        [n.conv("b1", a, 4, 2), n.op("MaxPool", "pool", [a], kernel_shape=[3, 3], pads=[1] * 4)],
        axis=1,
    )
    n.conv("c", "cat", 6, 3)
    network = check_equal(n.model("c"))
    assert [(b.nodes, b.exit) for b in network.graph.blocks] == [
        (("a",), "a"),
        (("b1", "pool", "exit"), "exit"),
        (("c",), "c"),
    ]
    assert str(network.graph["exit"]) == "exit = identity (b1[0:2] ++ pool[0:4])"


def nasnet_like(cells):
    """A stem convolution, then ``cells`` cells of 10 nodes, each reading the exits of the two blocks before it (the
    first: the input and the stem), as NASNet's do; then a convolution. Returns the model and each cell's output."""
    n = Net()
    exits = ["x", n.conv("stem", "x", 3, 8)]
    for i in range(cells):
        prev, cur = exits[-2:]
        left = n.conv(f"l{i}", prev, 3 if prev == "x" else 8, 2, k=1, pads=[0] * 4)
        right = n.conv(f"r{i}", cur, 8, 2, k=1, pads=[0] * 4)
        sum1 = n.op("Add", f"sum1_{i}", [n.conv(f"a{i}", left, 2, 2), n.conv(f"b{i}", right, 2, 2)])
        pool = n.op("MaxPool", f"pool{i}", [right], kernel_shape=[3, 3], pads=[1] * 4)
        sum2 = n.op("Add", f"sum2_{i}", [pool, left])
        parts = [sum1, sum2, n.op("Relu", f"relu_r{i}", [right]), n.op("Relu", f"relu_l{i}", [left])]
        exits.append(n.op("Concat", f"cell{i}", parts, axis=1))
    n.conv("head", exits[-1], 8, 4)
    return n.model("head"), exits[2:]


def test_nasnet_cells_are_blocks_that_read_the_exits_of_the_two_blocks_before():
    model, _ = nasnet_like(4)  # 42 nodes, no single live tensor until the last cell
    network = check_equal(model)
    graph = network.graph
    blocks = graph.blocks
    assert [b.exit for b in blocks] == ["stem", "exit", "exit_2", "exit_3", "exit_4", "head"]
    assert [len(b.nodes) for b in blocks] == [1, 10, 10, 10, 10, 1]
    owner = {name: i for i, b in enumerate(blocks) for name in b.nodes}
    for i, block in enumerate(blocks[1:], 1):
        read = {p for name in block.nodes for p in graph[name].producers if owner.get(p, -1) != i}
        assert read <= {blocks[k].exit for k in (i - 2, i - 1) if k >= 0} | {"input"}


def test_two_exit_cuts_are_not_made_in_small_spans():
    model, _ = nasnet_like(2)  # 22 nodes: like an Inception module, the span stays one block
    assert [b.exit for b in check_equal(model).graph.blocks] == ["exit", "head"]


def test_channel_split_and_slice_are_views_not_nodes():
    n = Net(channels=6)
    n.op("Split", "split", ["x", n.const("sizes", [2, 4], np.int64)], ["s0", "s1"], axis=1)
    bounds = [n.const(name, [v], np.int64) for name, v in (("lo", -3), ("hi", 2**40), ("axis", 1))]
    n.op("Slice", "slice", ["s1", *bounds])
    n.op("Concat", "cat", ["slice", "s0"], axis=1)
    n.conv("c", "cat", 5, 2)
    network = check_equal(n.model("c"), channels=6)
    assert str(network.graph["c"]) == "c = conv 2 3x3 p1 (input[3:6] ++ input[0:2])"


def test_average_pool_counting_padding_is_a_pool_that_counts_it():
    n = Net()
    n.op("AveragePool", "avg", ["x"], kernel_shape=[3, 3], pads=[1] * 4, count_include_pad=1)
    network = check_equal(n.model("avg"))
    assert network.graph["avg"].op == Pool("avg", (3, 3), padding=(1, 1), count_include_pad=True)


def test_per_channel_constants_and_same_padding():
    n = Net()
    conv = n.conv("conv", "x", 3, 4, pads=None, auto_pad="SAME_UPPER")
    scaled = n.op("Mul", "mul", [conv, n.const("scale", np.arange(1, 5).reshape(4, 1, 1))])
    n.op("Div", "div", [n.op("Sub", "sub", [scaled, n.const("shift", [0.5])]), n.const("two", [2.0])])
    check_equal(n.model("div"))


def test_dead_branches_are_dropped_and_the_file_names_the_graph(tmp_path):
    n = Net()
    n.conv("unused", "x", 3, 4)
    n.conv("used", "x", 3, 2)
    path = tmp_path / "tiny_net.onnx"
    onnx.save(n.model("used"), str(path))
    network = load_onnx(path)
    assert network.graph.name == "tiny_net"
    assert [node.name for node in network.graph.operators] == ["used"]


def test_opset_11_split_takes_its_sizes_as_an_attribute():
    n = Net(channels=4, opset=11)
    n.op("Split", "split", ["x"], ["s0", "s1"], axis=1, split=[1, 3])
    n.op("Add", "add", [n.conv("a", "s1", 3, 2), n.conv("b", "s0", 1, 2)])
    check_equal(n.model("add"), channels=4)


def test_unsupported_operators_are_all_listed_with_their_nodes():
    n = Net()
    n.op("Elu", "elu1", [n.op("LeakyRelu", "leaky", ["x"])])
    n.op("Add", "add", ["elu1", n.op("Elu", "elu2", ["x"])])
    with pytest.raises(UnsupportedOperatorError) as error:
        load_onnx(n.model("add"))
    assert error.value.operators == {"Elu": ["elu1", "elu2"], "LeakyRelu": ["leaky"]}
    assert "Elu (2: elu1, elu2)" in str(error.value) and "LeakyRelu (1: leaky)" in str(error.value)


def test_an_unsupported_operator_after_the_classifier_is_named_like_one_before_it():
    n = Net()
    flat = n.op("Flatten", "flat", [n.op("GlobalAveragePool", "gap", ["x"])])
    n.op("Elu", "elu", [n.op("Gemm", "fc", [flat, n.const("w", np.ones((3, 5))), n.const("b", np.zeros(5))])])
    with pytest.raises(UnsupportedOperatorError, match=r"^unsupported ONNX operators: Elu \(1: elu\)$"):
        load_onnx(n.model("elu"))


def test_many_nodes_of_an_unsupported_operator_are_the_first_three_and_a_count():
    n = Net()
    x = "x"
    for i in range(5):
        x = n.op("Elu", f"elu{i}", [x])
    with pytest.raises(UnsupportedOperatorError, match=r"Elu \(5: elu0, elu1, elu2, \.\.\.\)$"):
        load_onnx(n.model(x))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda n: n.op("Concat", "cat", ["x", "x"], axis=2), "Concat node 'cat': only the channel axis"),
        (lambda n: n.op("Add", "add", ["x", n.const("c", np.ones((1, 3, 8, 8)))]), "is not per-channel"),
        (lambda n: n.op("Transpose", "t", ["x"], perm=[0, 1, 3, 2]), r"Transpose node 't': Transpose \(0, 1, 3, 2\)"),
        (
            lambda n: n.op(
                "Conv", "conv", [n.op("Transpose", "t", ["x"], perm=[0, 2, 3, 1]), n.const("w", np.ones((3, 3, 1, 1)))]
            ),
            "Conv node 'conv': reads 't', a tensor channels last",
        ),
        (
            lambda n: n.op("LayerNormalization", "ln", ["x", n.const("s", np.ones(8))]),
            "LayerNormalization node 'ln': LayerNormalization of an NCHW tensor",
        ),
        (lambda n: n.op("ReduceMean", "mean", ["x"], axes=[1]), "ReduceMean node 'mean': only a reduction over height"),
        (lambda n: n.op("Erf", "erf", ["x"]), r"unsupported ONNX operators: Erf \(1: erf\)"),
    ],
)
def test_what_the_ir_cannot_say_is_an_error_naming_the_node(build, message):
    n = Net()
    output = build(n)
    with pytest.raises(OnnxImportError, match=message):
        load_onnx(n.model(output))


def test_supported_operators_are_listed():
    listed = supported_operators()
    assert {"Conv", "BatchNormalization", "Concat", "Split", "Slice", "GlobalAveragePool"} <= set(listed["operators"])
    assert {"Flatten", "Gemm", "Softmax", "Transpose", "LayerNormalization", "Pad"} <= set(listed["operators"])
    assert {"Erf", "Sigmoid", "Mul", "Pow"} <= set(listed["in activations"])
    assert not any("::" in op for op in listed["operators"])


# ---- a model ONNX Runtime would refuse is refused at import, in one line naming the node ---------------------------


def conv_with(n, name, x, weight_shape, bias_length=None, **attrs):
    """A Conv whose weight (and bias) shapes are given outright, whatever its input."""
    inputs = [x, n.const(f"{name}.w", n.rng.normal(0, 0.3, weight_shape))]
    if bias_length is not None:
        inputs.append(n.const(f"{name}.b", np.zeros(bias_length)))
    return n.op("Conv", name, inputs, **attrs)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda n: n.conv("conv", "x", 5, 4),
            "Conv node 'conv': weight takes 5 input channels x group=1, its input has 3 channels",
        ),
        (
            lambda n: conv_with(n, "conv", "x", (4, 3, 3, 3), bias_length=5, pads=[1] * 4),
            r"Conv node 'conv': bias has shape \(5,\) for the weight's 4 output channels",
        ),
        (
            lambda n: conv_with(n, "conv", "x", (4, 1, 3, 3), group=3, pads=[1] * 4),
            "Conv node 'conv': weight has 4 output channels, not a multiple of group=3",
        ),
        (
            lambda n: conv_with(n, "conv", "x", (4, 2, 3, 3), group=2, pads=[1] * 4),
            "Conv node 'conv': weight takes 2 input channels x group=2, its input has 3 channels",
        ),
        (
            lambda n: conv_with(n, "conv", "x", (4, 3, 3, 3), kernel_shape=[5, 5], pads=[2] * 4),
            "Conv node 'conv': kernel_shape is 5x5 but the weight's kernel is 3x3",
        ),
        (lambda n: conv_with(n, "conv", "x", (4, 3, 3, 3, 3)), r"Conv node 'conv': only 2-D operators"),
    ],
)
def test_a_conv_whose_weights_do_not_fit_names_the_node_and_both_numbers(build, message):
    n = Net()
    output = build(n)
    with pytest.raises(OnnxImportError, match=message) as error:
        load_onnx(n.model(output, infer=False))
    assert isinstance(error.value, UserError) and "\n" not in str(error.value)


@pytest.mark.parametrize("after_conv", [True, False])
def test_batch_norm_statistics_of_the_wrong_length_name_the_node(after_conv):
    n = Net()
    x = n.conv("conv", "x", 3, 4) if after_conv else "x"
    c = 4 if after_conv else 3
    stats = [np.ones(c), np.zeros(c + 2), np.zeros(c), np.ones(c)]  # B is two too long
    n.op("BatchNormalization", "bn", [x, *(n.const(f"bn.{i}", s) for i, s in enumerate(stats))])
    message = rf"BatchNormalization node 'bn': B has shape \({c + 2},\) for an input of {c} channels"
    with pytest.raises(OnnxImportError, match=message):
        load_onnx(n.model("bn", infer=False))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda n, x: n.op("Gemm", "fc", [x, n.const("w", np.ones((10, 5))), n.const("b", np.zeros(10))], transB=1),
            "Gemm node 'fc': its input has 3 features, its weight takes 5",
        ),
        (
            lambda n, x: n.op("Gemm", "fc", [x, n.const("w", np.ones((3, 10))), n.const("b", np.zeros(7))]),
            r"Gemm node 'fc': constant of shape \(1, 7\) is not per-channel for 10 channels",
        ),
        (
            lambda n, x: n.op("MatMul", "fc", [x, n.const("w", np.ones((4, 10)))]),
            "MatMul node 'fc': its input has 3 features, its weight takes 4",
        ),
    ],
)
def test_a_classifier_whose_weight_does_not_fit_names_the_node(build, message):
    n = Net()
    build(n, n.op("Flatten", "flat", [n.op("GlobalAveragePool", "gap", ["x"])]))
    with pytest.raises(OnnxImportError, match=message):
        load_onnx(n.model("fc", infer=False))


# ---- files and graphs that are not what an ONNX model must be ------------------------------------------------------


def test_a_file_that_is_missing_not_onnx_truncated_or_empty_is_one_line_naming_it(tmp_path):
    n = Net()
    n.conv("conv", "x", 3, 4)
    whole = n.model("conv").SerializeToString()
    files = {"truncated.onnx": whole[: len(whole) // 2], "text.onnx": b"this is not a model\n", "empty.onnx": b""}
    for file, content in files.items():
        (tmp_path / file).write_bytes(content)
    (tmp_path / "directory.onnx").mkdir()
    for file, why in [
        ("truncated.onnx", "is truncated or not an ONNX model"),
        ("text.onnx", "is truncated or not an ONNX model"),
        ("empty.onnx", "is empty or not an ONNX model"),
        ("missing.onnx", "cannot read ONNX file .*: No such file"),
        ("directory.onnx", "cannot read ONNX file .*: Is a directory"),
    ]:
        with pytest.raises(OnnxImportError, match=why) as error:
            load_onnx(tmp_path / file)
        assert str(tmp_path / file) in str(error.value) and "\n" not in str(error.value)


def raw_model(nodes, output="y"):
    """Relu/Add nodes over a 3x4x4 input ``x``, as written: no shape inference, no checks."""
    value = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 3, 4, 4])  # noqa: E731
    graph = helper.make_graph(
        [helper.make_node(op, inputs, [out], name=out) for op, inputs, out in nodes], "g", [value("x")], [value(output)]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_cycle_is_named_by_its_nodes():
    model = raw_model(
        [
            ("Relu", ["x"], "a"),
            ("Add", ["a", "d"], "b"),
            ("Relu", ["b"], "c"),
            ("Relu", ["c"], "d"),
            ("Relu", ["d"], "y"),
        ]
    )
    with pytest.raises(OnnxImportError, match="^the graph has a cycle through 'b' -> 'c' -> 'd' -> 'b'$"):
        load_onnx(model)


def test_an_input_nothing_defines_is_named_with_its_node():
    model = raw_model([("Relu", ["x"], "a"), ("Add", ["a", "ghost"], "y")])
    with pytest.raises(OnnxImportError, match=r"^Add node 'y': undefined input 'ghost' \(no node, initializer"):
        load_onnx(model)


def test_nodes_out_of_order_are_sorted_as_onnxruntime_does():
    model = raw_model([("Relu", ["a"], "y"), ("Sigmoid", ["x"], "a")])
    x = np.random.default_rng(0).standard_normal((1, 3, 4, 4))
    assert relative_error(run_network(load_onnx(model), x), run_ort(model, x)[0]) < TOLERANCE


def test_a_tensor_made_twice_names_both_nodes():
    model = raw_model([("Relu", ["x"], "a"), ("Sigmoid", ["x"], "a"), ("Relu", ["a"], "y")])
    with pytest.raises(OnnxImportError, match="^Sigmoid node 'a': output 'a' is made by Relu node 'a' too$"):
        load_onnx(model)


def test_a_node_onnxs_checker_refuses_is_one_line_naming_it():
    model = raw_model([("Conv", ["x"], "y")])  # a Conv needs a weight
    with pytest.raises(OnnxImportError, match=r"^Conv node 'y': .* input size 1 not in range \[min=2, max=3\]"):
        load_onnx(model)
