"""A tiny two-block network with every operator kind, for fast tests."""

from ios_core.ir import Conv, Graph, GraphBuilder, Pool, concat


def demo() -> Graph:
    """Two blocks, 11 operators: parallel branches, a mergeable pair of convolutions, split, sum, multiply."""
    b = GraphBuilder("demo", channels=3, height=16, width=16)
    x = b.conv(b.input, 8, 3, padding=1)
    x = b.end_block(b.pool(x, "max", 2, 2))
    left = b.conv(x, 8, 1)
    right = b.conv(x, 8, 3, padding=1)  # same input, stride and activation as `left`: mergeable
    wide = b.conv(x, 16, 1, act="none")
    tower = b.sequential(wide[8:16], Conv(8, (3, 3), padding=(1, 1), act="relu"), Pool("avg", (3, 3), (1, 1), (1, 1)))
    gate = b.activation(wide[0:8], "sigmoid")
    summed = b.add(left, right)
    gated = b.mul(tower, gate)
    pooled = b.pool(concat([summed, gated]) + concat([left, tower]), "avg", 3, 1, 1)  # a sum of concatenations
    b.end_block(concat([pooled, left]))
    return b.build()
