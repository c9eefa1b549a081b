"""SqueezeNet with complex bypass at 3x224x224, as IOS builds it: 50 operators in 12 blocks.

IOS's network is SqueezeNet 1.0's layout (a 7x7 stride-2 stem of 96 channels, max pools after
fire 4 and fire 8) with the paper's complex bypass on every fire module: the module's input is
added to its output, through a 1x1 convolution (with ReLU, as in IOS) where the channels differ.
Each fire module, each lone max pool, the stem and the head are one block; the head is a 1x1
convolution to 1000 channels and a global average pool.
"""

from __future__ import annotations

from ios_core.ir import Graph, GraphBuilder, Value, concat

# (squeeze, expand) channels of fire modules 2-9; a max pool follows fire 4 and fire 8.
FIRES = ((16, 64), (16, 64), (32, 128), (32, 128), (48, 192), (48, 192), (64, 256), (64, 256))
POOL_AFTER = (2, 6)


def fire(b: GraphBuilder, x: Value, squeeze: int, expand: int) -> Value:
    """A fire module with bypass, as one block; outputs ``2 * expand`` channels."""
    squeezed = b.conv(x, squeeze, 1)
    # IOS materializes the expand concatenation before adding the bypass, because its operands are
    # concatenations of sums. Ours are sums of concatenations and would not need this identity;
    # keeping it keeps IOS's graph, and its operator count.
    expanded = b.identity(concat([b.conv(squeezed, expand, 3, padding=1), b.conv(squeezed, expand, 1)]))
    bypass = x if x.channels == 2 * expand else b.conv(x, 2 * expand, 1)
    return b.end_block(expanded + bypass)


def squeezenet() -> Graph:
    """SqueezeNet with complex bypass, 3x224x224: 50 operators in 12 blocks, output 1000x1x1."""
    b = GraphBuilder("squeezenet", channels=3, height=224, width=224)
    x = b.conv(b.input, 96, 7, stride=2, padding=3)
    x = b.end_block(b.pool(x, "max", 3, 2))
    for i, (squeeze, expand) in enumerate(FIRES):
        x = fire(b, x, squeeze, expand)
        if i in POOL_AFTER:
            x = b.end_block(b.pool(x, "max", 3, 2))
    x = b.conv(x, 1000, 1)
    b.end_block(b.pool(x, "global_avg"))
    return b.build()
