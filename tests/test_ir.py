"""The IR: shape inference by hand, the printed form, and every rule of `lint` broken once."""

import pytest

from ios_core.ir import (
    Block,
    Conv,
    GraphBuilder,
    GraphError,
    Identity,
    Node,
    Placeholder,
    Pool,
    Sequential,
    Shape,
    Slice,
    Value,
    build_graph,
    concat,
)
from ios_core.models.demo import demo

INPUT = Node("input", Placeholder(4, 10, 10))


def whole(name: str, channels: int) -> Value:
    return Value.of(name, channels)


def graph_of(*nodes: Node, blocks=None):
    names = tuple(n.name for n in nodes)
    return build_graph("g", [INPUT, *nodes], blocks or [Block("input", names, names[-1])])


@pytest.mark.parametrize(
    ("op", "expected"),
    [
        (Conv(8, (3, 3)), Shape(8, 8, 8)),
        (Conv(8, (3, 3), padding=(1, 1)), Shape(8, 10, 10)),
        (Conv(6, (3, 3), stride=(2, 2), padding=(1, 1)), Shape(6, 5, 5)),
        (Conv(8, (1, 7), padding=(0, 3)), Shape(8, 10, 10)),
        (Conv(8, (7, 1), padding=(3, 0), stride=(2, 1)), Shape(8, 5, 10)),
        (Conv(8, (3, 3), dilation=(2, 2), padding=(2, 2)), Shape(8, 10, 10)),
        (Conv(4, (3, 3), groups=4, padding=(1, 1)), Shape(4, 10, 10)),
        (Pool("max", (3, 3), (2, 2)), Shape(4, 4, 4)),
        (Pool("avg", (3, 3), (1, 1), (1, 1)), Shape(4, 10, 10)),
        (Pool("global_avg"), Shape(4, 1, 1)),
        (Identity(), Shape(4, 10, 10)),
        (Sequential((Conv(8, (1, 1)), Pool("max", (2, 2), (2, 2)))), Shape(8, 5, 5)),
    ],
)
def test_shape_inference_matches_hand_computed_shapes(op, expected):
    g = graph_of(Node("x", op, (whole("input", 4),)))
    assert g.shapes["x"] == expected


def test_concat_and_split_shapes_and_flops():
    b = GraphBuilder("g", 3, 8, 8)
    a = b.conv(b.input, 8, 3, padding=1)
    c = b.conv(b.input, 4, 1)
    joined = concat([a[2:6], c])
    assert joined.channels == 8
    out = b.conv(joined, 16, 1)
    b.end_block(out)
    g = b.build()
    assert g.shapes["conv3"] == Shape(16, 8, 8)
    assert g.flops("conv1") == 2 * 3 * 9 * 8 * 8 * 8
    assert g.weight_shapes("conv3") == {"weight": (16, 8, 1, 1), "bias": (16,)}
    assert str(g["conv3"]) == "conv3 = conv 16 1x1 relu (conv1[2:6] ++ conv2[0:4])"


def test_demo_prints_one_line_per_node():
    assert str(demo()) == (
        "graph demo: 11 operators in 2 blocks\n"
        "  input = input 3x16x16\n"
        "  block 0 (enter input, exit pool1)\n"
        "    conv1 = conv 8 3x3 p1 relu (input[0:3])  # 8x16x16\n"
        "    pool1 = max_pool 2x2 s2 p0 (conv1[0:8])  # 8x8x8\n"
        "  block 1 (enter pool1, exit identity1)\n"
        "    conv2 = conv 8 1x1 relu (pool1[0:8])  # 8x8x8\n"
        "    conv3 = conv 8 3x3 p1 relu (pool1[0:8])  # 8x8x8\n"
        "    conv4 = conv 16 1x1 (pool1[0:8])  # 16x8x8\n"
        "    seq1 = seq(conv 8 3x3 p1 relu, avg_pool 3x3 s1 p1) (conv4[8:16])  # 8x8x8\n"
        "    sigmoid1 = sigmoid (conv4[0:8])  # 8x8x8\n"
        "    add1 = add (conv2[0:8]), (conv3[0:8])  # 8x8x8\n"
        "    mul1 = mul (seq1[0:8]), (sigmoid1[0:8])  # 8x8x8\n"
        "    pool2 = avg_pool 3x3 s1 p1 (add1[0:8] ++ mul1[0:8] + conv2[0:8] ++ seq1[0:8])  # 16x8x8\n"
        "    identity1 = identity (pool2[0:16] ++ conv2[0:8])  # 24x8x8"
    )


def test_nodes_given_out_of_order_are_sorted():
    a = Node("a", Conv(4, (1, 1)), (whole("input", 4),))
    b = Node("b", Identity(), (whole("a", 4),))
    g = build_graph("g", [b, INPUT, a], [Block("input", ("b", "a"), "b")])
    assert [n.name for n in g.nodes] == ["input", "a", "b"]
    assert g.blocks[0].nodes == ("a", "b")
    assert g.consumers["a"] == ("b",)


def test_value_slicing_walks_concatenations():
    v = concat([whole("a", 4), whole("b", 6)])
    assert v[2:7] == Value(((Slice("a", 2, 4), Slice("b", 0, 3)),))
    with pytest.raises(ValueError, match="out of range"):
        v[5:11]
    with pytest.raises(ValueError, match="single-term"):
        (v + v)[0:1]


def test_builder_adds_an_identity_exit_only_when_needed():
    b = GraphBuilder("g", 3, 8, 8)
    x = b.end_block(b.conv(b.input, 4, 1))
    assert x.nodes == ("conv1",)
    y = b.end_block(concat([b.conv(x, 2, 1), b.conv(x, 2, 1)]))
    assert y.nodes == ("identity1",)


def test_builder_rejects_a_mistake_where_it_is_made():
    b = GraphBuilder("g", 3, 8, 8)
    with pytest.raises(GraphError, match=r"node 'conv1' \(conv\): groups=2 must divide input channels 3"):
        b.conv(b.input, 4, 1, groups=2)


class NotAnOp:
    pass


def _bad_graph(case: str):
    x4 = whole("input", 4)
    match case:
        case "cycle":
            return [INPUT, Node("a", Identity(), (whole("b", 4),)), Node("b", Identity(), (whole("a", 4),))], None
        case "dangling":
            return [INPUT, Node("a", Identity(), (whole("ghost", 4),))], None
        case "duplicate":
            return [INPUT, Node("a", Identity(), (x4,)), Node("a", Identity(), (x4,))], None
        case "unknown op":
            return [INPUT, Node("a", NotAnOp(), (x4,))], None
        case "slice out of range":
            return [INPUT, Node("a", Identity(), (Value(((Slice("input", 2, 6),),)),))], None
        case "terms differ":
            return [INPUT, Node("a", Identity(), (x4 + x4[0:2],))], None
        case "concat spatial":
            half = Node("p", Pool("max", (2, 2), (2, 2)), (x4,))
            return [INPUT, half, Node("a", Identity(), (concat([x4, whole("p", 4)]),))], None
        case "operand count":
            return [INPUT, Node("a", Conv(4, (1, 1)), (x4, x4))], None
        case "shape rule":
            return [INPUT, Node("a", Conv(4, (11, 11)), (x4,))], None
        case "second placeholder":
            return [INPUT, Node("a", Placeholder(4, 10, 10))], [Block("input", ("a",), "a")]
        case "no block":
            a, b = Node("a", Identity(), (x4,)), Node("b", Identity(), (whole("a", 4),))
            return [INPUT, a, b], [Block("input", ("b",), "b")]
        case "exit outside":
            a, b = Node("a", Identity(), (x4,)), Node("b", Identity(), (whole("a", 4),))
            return [INPUT, a, b], [Block("input", ("a", "b"), "input")]
        case "wrong enter":
            a, b = Node("a", Identity(), (x4,)), Node("b", Identity(), (whole("a", 4),))
            return [INPUT, a, b], [Block("input", ("a",), "a"), Block("input", ("b",), "b")]
        case "two blocks":
            a = Node("a", Identity(), (x4,))
            return [INPUT, a], [Block("input", ("a",), "a"), Block("a", ("a",), "a")]
        case "later block":
            a, b, c = (
                Node("a", Identity(), (x4,)),
                Node("b", Identity(), (whole("c", 4),)),
                Node("c", Identity(), (whole("a", 4),)),
            )
            return [INPUT, a, b, c], [Block("input", ("a", "b"), "a"), Block("a", ("c",), "c")]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("cycle", r"cycle detected: (a -> b -> a|b -> a -> b)"),
        ("dangling", r"node 'a' reads 'ghost', which is not in the graph \(dangling input\)"),
        ("duplicate", r"duplicate node name 'a'"),
        ("unknown op", r"node 'a': unknown operator NotAnOp; known operators: placeholder, conv"),
        ("slice out of range", r"node 'a': slice input\[2:6\] out of range, 'input' has 4 channels"),
        ("terms differ", r"node 'a': summed terms differ in shape: 4x10x10, 2x10x10"),
        ("concat spatial", r"node 'a': concatenated slices differ in height x width"),
        ("operand count", r"node 'a': conv takes at least 1 and at most 1 operands, got 2"),
        ("shape rule", r"node 'a' \(conv\): window \(11, 11\) .* does not fit input 4x10x10"),
        ("second placeholder", r"node 'a': a graph has exactly one placeholder, first"),
        ("no block", r"node 'a' is in no block"),
        ("exit outside", r"block 0: its exit 'input' is not one of its nodes"),
        ("wrong enter", r"block 1: enters from 'input', expected the previous exit 'a'"),
        ("two blocks", r"node 'a' is in blocks 0 and 1"),
        ("later block", r"node 'b' in block 0 reads a later block's 'c'"),
    ],
)
def test_every_rule_has_a_clear_error(case, message):
    nodes, blocks = _bad_graph(case)
    names = tuple(n.name for n in nodes[1:])
    with pytest.raises(GraphError, match=message):
        build_graph("g", nodes, blocks or [Block("input", names, names[-1])])
