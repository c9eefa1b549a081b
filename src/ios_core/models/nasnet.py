"""NASNet-A large at 3x331x331, as IOS builds it (``nasnet_large``, after Cadene's PyTorch NASNet).

Operators are IOS's: each separable branch is two `Sequential` operators (ReLU, depthwise,
pointwise), each 1x1 "ReLU-conv" is one, batch norm is folded, and the stride-2 paths of the
factorized reductions are plain 1x1 stride-2 convolutions (NASNet's one-pixel shift dropped).

Blocks: IOS makes the whole network one block and splits it into 25 "parts" for its optimizer.
Our IR has no parts, so each part is a block: the stem convolution, the two stems, the 18 normal
and first cells and 2 reduction cells, the final ReLU and the global pool. A cell reads the exits
of the two blocks before it (a first cell after a reduction reads past the reduction), which
lint allows: a node may read any earlier block.

Where this differs from the published NASNet-A: like IOS, normal cells leave ``x_left`` out of
their output concatenation, so they are 5 (not 6) x filters wide and the network ends at 3360
channels, not 4032; and the second stem sums its two stride-2 1x1 paths where NASNet concatenates
them. Unlike IOS, the first stem's third combination adds comb 1 (as NASNet and IOS's own second
stem and reduction cells do) rather than comb 0: IOS's form would leave comb 1's identity
concatenated beside sums, which our operands cannot express (see below); the count is the same.

Operator count: 377, IOS's 374 plus one identity per first cell (3 cells). IOS operands are
concatenations of sums; ours are sums of concatenations. A first cell outputs
``concat(x_left, c0l + c0r, ..., c4l + x_right)``, where ``x_left`` has no summand to pair with,
so its five sums are materialized by one identity before the exit concatenates it with
``x_left``. Every other exit is written as a sum of two concatenations at no cost.
"""

from __future__ import annotations

from ios_core.ir import Activation, Conv, Graph, GraphBuilder, Value, concat
from ios_core.models.common import relu_sep_conv

STEM_FILTERS = 96
FILTERS = 168
NORMAL_CELLS = 5  # per stage, after the stage's first cell


def relu_conv(b: GraphBuilder, x: Value, out_channels: int, stride: int = 1) -> Value:
    """ReLU then a 1x1 convolution: one `Sequential` operator, NASNet's "ReLU-conv-BN" with BN folded."""
    return b.sequential(x, Activation("relu"), Conv(out_channels, (1, 1), (stride, stride)))


def branch_separable(
    b: GraphBuilder, x: Value, out_channels: int, kernel: int, stride: int = 1, stem: bool = False
) -> Value:
    """Two separable convolutions, the first with the stride; two operators.

    The first keeps ``x``'s channels, or goes straight to ``out_channels`` in the first stem
    (``stem=True``, NASNet's ``BranchSeparablesStem``), whose input is the 96-channel stem convolution.
    """
    middle = out_channels if stem else x.channels
    x = relu_sep_conv(b, x, middle, kernel, stride, kernel // 2)
    return relu_sep_conv(b, x, out_channels, kernel, 1, kernel // 2)


def reduction_combinations(b: GraphBuilder, x: Value, y: Value, filters: int, stem: bool = False) -> Value:
    """The reduction pattern of both stems and both reduction cells; halves height and width.

    ``x`` feeds the pools and the first 5x5 branch, ``y`` the 7x7, 7x7 and 5x5 branches (``stem``
    as in `branch_separable`). Returns the cell output, ``4 * filters`` channels, unmaterialized:
    ``concat(c1, c2, c3, c4)`` with c1 = c1l + c1r, c2 = c2l + c2r, c3 = c3r + c1, c4 = c4l + c4r.
    """
    c0 = b.identity(branch_separable(b, x, filters, 5, 2) + branch_separable(b, y, filters, 7, 2, stem))
    c1l = b.pool(x, "max", 3, 2, 1)
    c1r = branch_separable(b, y, filters, 7, 2, stem)
    c1 = b.identity(c1l + c1r)
    c2l = b.pool(x, "avg", 3, 2, 1)
    c2r = branch_separable(b, y, filters, 5, 2, stem)
    c3r = b.pool(c0, "avg", 3, 1, 1)
    c4l = branch_separable(b, c0, filters, 3)
    c4r = b.pool(x, "max", 3, 2, 1)
    return concat([c1l, c2l, c3r, c4l]) + concat([c1r, c2r, c1, c4r])


def normal_combinations(b: GraphBuilder, x_left: Value, x_right: Value, filters: int, first: bool) -> Value:
    """The five combinations of a normal or first cell, ``5 * filters`` channels, unmaterialized.

    They differ in one branch: comb 0's 3x3 separable reads ``x_right`` in a first cell and
    ``x_left`` in a normal cell.
    """
    c0l = branch_separable(b, x_right, filters, 5)
    c0r = branch_separable(b, x_right if first else x_left, filters, 3)
    c1l = branch_separable(b, x_left, filters, 5)
    c1r = branch_separable(b, x_left, filters, 3)
    c2l = b.pool(x_right, "avg", 3, 1, 1)
    c3l = b.pool(x_left, "avg", 3, 1, 1)
    c3r = b.pool(x_left, "avg", 3, 1, 1)
    c4l = branch_separable(b, x_right, filters, 3)
    return concat([c0l, c1l, c2l, c3l, c4l]) + concat([c0r, c1r, x_left, c3r, x_right])


def stem0(b: GraphBuilder, x: Value, filters: int) -> Value:
    """The first stem, a block: ``x`` (the stem convolution) -> ``4 * filters`` channels at half size."""
    return b.end_block(reduction_combinations(b, relu_conv(b, x, filters), x, filters, stem=True))


def stem1(b: GraphBuilder, x: Value, x_prev: Value, filters: int) -> Value:
    """The second stem, a block: reads stem 0 (``x``) and the stem convolution (``x_prev``, twice its size)."""
    x_left = relu_conv(b, x, filters)
    # Summed, as IOS does; NASNet concatenates the two paths (to ``filters`` channels).
    x_right = b.identity(relu_conv(b, x_prev, filters // 2, 2) + relu_conv(b, x_prev, filters // 2, 2))
    return b.end_block(reduction_combinations(b, x_left, x_right, filters))


def first_cell(b: GraphBuilder, x: Value, x_prev: Value, filters: int) -> Value:
    """The first cell of a stage, a block: ``x_prev`` is twice ``x``'s size; outputs ``6 * filters``."""
    x_left = b.identity(concat([relu_conv(b, x_prev, filters // 2, 2), relu_conv(b, x_prev, filters // 2, 2)]))
    x_right = relu_conv(b, x, filters)
    combinations = b.identity(normal_combinations(b, x_left, x_right, filters, first=True))
    return b.end_block(concat([x_left, combinations]))


def normal_cell(b: GraphBuilder, x: Value, x_prev: Value, filters: int) -> Value:
    """A normal cell, a block: outputs ``5 * filters`` channels (IOS leaves ``x_left`` out)."""
    x_left = relu_conv(b, x_prev, filters)
    x_right = relu_conv(b, x, filters)
    return b.end_block(normal_combinations(b, x_left, x_right, filters, first=False))


def reduction_cell(b: GraphBuilder, x: Value, x_prev: Value, filters: int) -> Value:
    """A reduction cell, a block: halves height and width, outputs ``4 * filters`` channels."""
    x_left = relu_conv(b, x_prev, filters)
    x_right = relu_conv(b, x, filters)
    return b.end_block(reduction_combinations(b, x_right, x_left, filters))


def nasnet() -> Graph:
    """NASNet-A large as IOS builds it, 3x331x331: 377 operators in 25 blocks, output 3360x1x1."""
    b = GraphBuilder("nasnet", channels=3, height=331, width=331)
    conv0 = b.end_block(b.conv(b.input, STEM_FILTERS, 3, stride=2, act="none"))
    x_prev = stem0(b, conv0, FILTERS // 4)
    x = stem1(b, x_prev, conv0, FILTERS // 2)
    for stage in range(3):
        filters = FILTERS * 2**stage
        if stage:
            # x_prev stays: the first cell after a reduction reads the cell before the reduction's input.
            x = reduction_cell(b, x, x_prev, filters)
        x_prev, x = x, first_cell(b, x, x_prev, filters)
        for _ in range(NORMAL_CELLS):
            x_prev, x = x, normal_cell(b, x, x_prev, filters)
    x = b.end_block(b.activation(x, "relu"))
    b.end_block(b.pool(x, "global_avg"))
    return b.build()
