"""Inception V3 at 3x299x299, block for block as IOS builds it (torchvision's layers, batch norm folded).

Thirteen blocks: the stem, InceptionA x3, InceptionB, InceptionC x4, InceptionD, InceptionE x2 and
a global average pool; each Inception block exits at an identity that concatenates its branches.
That gives IOS's 119 operators, 94 of them convolutions, each with bias and ReLU. The auxiliary
classifier and the fully connected layer are left out, as in IOS. Average pools exclude padding
(torchvision's include it); the shapes and costs are the same.
"""

from __future__ import annotations

from ios_core.ir import Conv, Graph, GraphBuilder, Value, concat, pair
from ios_core.ir.builder import IntOrPair


def same(out_channels: int, kernel: IntOrPair) -> Conv:
    """A stride-1 convolution + ReLU padded to keep height and width, e.g. ``same(192, (1, 7))``."""
    kh, kw = pair(kernel)
    return Conv(out_channels, (kh, kw), padding=(kh // 2, kw // 2), act="relu")


def valid(out_channels: int, kernel: IntOrPair, stride: IntOrPair = 1) -> Conv:
    """An unpadded convolution + ReLU."""
    return Conv(out_channels, pair(kernel), pair(stride), act="relu")


def tower(b: GraphBuilder, x: Value, *convs: Conv) -> Value:
    """Apply ``convs`` one after another, each its own operator."""
    for conv in convs:
        x = b.node(conv, x)
    return x


def stem(b: GraphBuilder, x: Value) -> Value:
    """3x299x299 -> 192x35x35."""
    x = tower(b, x, valid(32, 3, stride=2), valid(32, 3), same(64, 3))
    x = tower(b, b.pool(x, "max", 3, 2), valid(80, 1), valid(192, 3))
    return b.end_block(b.pool(x, "max", 3, 2))


def inception_a(b: GraphBuilder, x: Value, pool_features: int) -> Value:
    """35x35 -> 35x35 with 224 + ``pool_features`` channels."""
    branches = [
        tower(b, x, same(64, 1)),
        tower(b, x, same(48, 1), same(64, 5)),
        tower(b, x, same(64, 1), same(96, 3), same(96, 3)),
        tower(b, b.pool(x, "avg", 3, 1, 1), same(pool_features, 1)),
    ]
    return b.end_block(concat(branches))


def inception_b(b: GraphBuilder, x: Value) -> Value:
    """Grid reduction 35x35 -> 17x17, 288 -> 768 channels."""
    branches = [
        tower(b, x, valid(384, 3, stride=2)),
        tower(b, x, same(64, 1), same(96, 3), valid(96, 3, stride=2)),
        b.pool(x, "max", 3, 2),
    ]
    return b.end_block(concat(branches))


def inception_c(b: GraphBuilder, x: Value, channels_7x7: int) -> Value:
    """17x17 -> 17x17, 768 channels; 7x7 convolutions factorized into 1x7 and 7x1."""
    c7 = channels_7x7
    branches = [
        tower(b, x, same(192, 1)),
        tower(b, x, same(c7, 1), same(c7, (1, 7)), same(192, (7, 1))),
        tower(b, x, same(c7, 1), same(c7, (7, 1)), same(c7, (1, 7)), same(c7, (7, 1)), same(192, (1, 7))),
        tower(b, b.pool(x, "avg", 3, 1, 1), same(192, 1)),
    ]
    return b.end_block(concat(branches))


def inception_d(b: GraphBuilder, x: Value) -> Value:
    """Grid reduction 17x17 -> 8x8, 768 -> 1280 channels."""
    branches = [
        tower(b, x, same(192, 1), valid(320, 3, stride=2)),
        tower(b, x, same(192, 1), same(192, (1, 7)), same(192, (7, 1)), valid(192, 3, stride=2)),
        b.pool(x, "max", 3, 2),
    ]
    return b.end_block(concat(branches))


def inception_e(b: GraphBuilder, x: Value) -> Value:
    """8x8 -> 8x8, 2048 channels; two branches fork into parallel 1x3 and 3x1 convolutions."""
    branch_1x1 = tower(b, x, same(320, 1))
    branch_3x3 = _fork_1x3_3x1(b, tower(b, x, same(384, 1)))
    branch_3x3dbl = _fork_1x3_3x1(b, tower(b, x, same(448, 1), same(384, 3)))
    branch_pool = tower(b, b.pool(x, "avg", 3, 1, 1), same(192, 1))
    return b.end_block(concat([branch_1x1, *branch_3x3, *branch_3x3dbl, branch_pool]))


def _fork_1x3_3x1(b: GraphBuilder, x: Value) -> list[Value]:
    return [tower(b, x, same(384, (1, 3))), tower(b, x, same(384, (3, 1)))]


def inception_v3() -> Graph:
    """Inception V3, 3x299x299: 119 operators in 13 blocks; 2048x8x8 before the final pool, 2048x1x1 out."""
    b = GraphBuilder("inception_v3", channels=3, height=299, width=299)
    x = stem(b, b.input)
    for pool_features in (32, 64, 64):
        x = inception_a(b, x, pool_features)
    x = inception_b(b, x)
    for channels_7x7 in (128, 160, 160, 192):
        x = inception_c(b, x, channels_7x7)
    x = inception_d(b, x)
    x = inception_e(b, x)
    x = inception_e(b, x)
    b.end_block(b.pool(x, "global_avg"))
    return b.build()
