"""Graphs shared by the property and translation tests: random multi-branch graphs, and one with every operator."""

from functools import reduce
from operator import add

from hypothesis import strategies as st

from ios_core.ir import (
    ACTIVATIONS,
    Activation,
    ChannelShuffle,
    Clip,
    Conv,
    Graph,
    GraphBuilder,
    LayerNorm,
    Pad,
    Pool,
    Softmax,
    concat,
)

# The model zoo's operators on a 4x6x6 value, each keeping that shape so it can go anywhere in a random graph.
ZOO_KINDS = ["asymmetric", "ceil_pool", "pad_crop", "clip", "shuffle", "layer_norm", "softmax", "activation", "scale"]


@st.composite
def random_graphs(draw, max_ops: int = 10, blocks: int = 2, zoo: bool = False) -> Graph:
    """Random DAGs of convolutions, pools and element-wise adds in ``blocks`` blocks.

    Every value has 4 channels at 6x6 so any earlier value can feed any later node; operands are
    read whole, summed, or concatenated from two halves, so all operand forms appear. A block
    exits at the sum of its unread values, materialized by an identity. With ``zoo`` the model
    zoo's operators (`ZOO_KINDS`) are drawn too.
    """
    b = GraphBuilder("random", channels=4, height=6, width=6)
    enter = b.input
    kinds = ["conv1", "conv3", "pool", "add"] + (ZOO_KINDS if zoo else [])
    for _ in range(blocks):
        values, read = [enter], set()

        def operand(values=values, read=read):
            v = draw(st.sampled_from(values))
            read.add(v)
            return v

        for _ in range(draw(st.integers(1, max(1, max_ops // blocks)))):
            form = draw(st.sampled_from(["whole", "sum", "concat"]))
            x = {
                "whole": operand,
                "sum": lambda: operand() + operand(),
                "concat": lambda: concat([operand()[0:2], operand()[2:4]]),
            }[form]()
            kind = draw(st.sampled_from(kinds))
            if kind == "conv1":
                values.append(b.conv(x, 4, 1, act=draw(st.sampled_from(["relu", "none"]))))
            elif kind == "conv3":
                values.append(b.conv(x, 4, 3, padding=1))
            elif kind == "pool":
                values.append(b.pool(x, draw(st.sampled_from(["max", "avg"])), 3, 1, 1))
            elif kind == "add":
                values.append(b.add(x, operand()))
            else:
                values.append(_zoo_node(b, draw, kind, x))
        unread = [v for v in values[1:] if v not in read]
        enter = b.end_block(reduce(add, unread))
    return b.build()


def _zoo_node(b: GraphBuilder, draw, kind: str, x):
    """One zoo operator on 4x6x6 value ``x`` giving 4x6x6 (a 2x2 "same" convolution, a pad undone by a crop...)."""
    if kind == "asymmetric":  # TensorFlow's "same" padding of an even kernel: one more row below than above
        act = draw(st.sampled_from(["none", "hardswish", "relu6"]))
        return b.node(Conv(4, (2, 2), padding=(0, 0), act=act, padding_end=(1, 1)), x)
    if kind == "ceil_pool":  # 6 + 1 - 3 = 4 is even: stride 2 with ceil_mode keeps a partial window, 3x3 out
        pooled = b.node(Pool("avg", (3, 3), (2, 2), (1, 1), (0, 0), True, draw(st.booleans())), x)
        return b.node(Pad((2, 1, 1, 2)), pooled)  # back to 6x6
    if kind == "pad_crop":
        return b.node(Pad((-1, 1, 1, -1), draw(st.sampled_from([0.0, -0.5]))), x)
    if kind == "clip":
        return b.node(Clip(-0.3, 0.8), x)
    if kind == "shuffle":
        return b.node(ChannelShuffle(2), x)
    if kind == "layer_norm":
        return b.node(LayerNorm(), x)
    if kind == "softmax":
        return b.node(Softmax(), x)
    if kind == "activation":
        return b.activation(x, draw(st.sampled_from(ACTIVATIONS[1:])))
    # a squeeze-and-excitation: a global pool, a squeeze and an excitation of the pooled pixel, the scale multiplied in
    pooled = b.pool(x, draw(st.sampled_from(["global_avg", "global_max"])))
    return b.mul(x, b.conv(b.conv(pooled, 2, 1, act="relu"), 4, 1, act="sigmoid"))


def every_op_graph() -> Graph:
    """A small network using every operator and field of the IR at least once, with a classifier end.

    Asymmetric convolution and pooling pads, ``ceil_mode`` and ``count_include_pad``, a pad and a crop, every
    activation both fused and alone, a per-channel scale, a sequential of zoo forms, channel shuffle, LayerNorm,
    then global pooling, a 1x1 classifier convolution and Softmax.
    """
    b = GraphBuilder("every_op", channels=3, height=11, width=10)
    x = b.node(Conv(8, (3, 3), (2, 2), (0, 0), act="hardswish", padding_end=(1, 1)), b.input)  # 6x5
    x = b.node(Pool("max", (3, 3), (2, 2), (1, 0), (1, 1), True), x)  # 4x3
    x = b.node(Pad((1, 2, 0, 1)), x)  # 5x6
    x = b.node(Pool("avg", (2, 2), (2, 2), (0, 0), (1, 1), True, True), x)  # 3x4
    x = b.node(Pad((2, 1, 1, 0), -0.25), x)  # 6x5
    x = b.node(Pad((-1, 0, 0, -1)), x)  # 5x4, cropped
    x = b.end_block(x)
    left = b.conv(x, 8, 1, act="gelu")
    right = b.node(Conv(8, (3, 3), padding=(1, 1), act="silu"), x)
    scale = b.conv(b.pool(x, "global_avg"), 8, 1, act="hardsigmoid")
    chain = b.sequential(
        x,
        Conv(8, (2, 2), act="relu6", padding_end=(1, 1)),
        Pool("avg", (3, 3), (1, 1), (1, 1), None, True, True),
        Activation("silu"),
    )
    x = b.end_block(b.add(left, b.mul(right, scale), chain))
    x = b.add(*(b.activation(x, act) for act in ACTIVATIONS[1:]))  # each on the same signed input
    x = b.node(Clip(-1.0, 4.5), x)
    x = b.node(ChannelShuffle(4), x)
    x = b.node(LayerNorm(1e-6), x)
    x = b.end_block(b.node(Conv(8, (1, 1), act="relu6"), x) + b.node(Softmax(), x))
    x = b.pool(x, "global_max")
    x = b.node(Softmax(), b.conv(x, 5, 1, act="gelu_tanh"))
    b.end_block(x)
    return b.build()
