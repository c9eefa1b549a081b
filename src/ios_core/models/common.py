"""Building blocks shared by several models."""

from __future__ import annotations

from ios_core.ir import Activation, Conv, GraphBuilder, IntOrPair, Value, pair


def relu_sep_conv(
    b: GraphBuilder, x: Value, out_channels: int, kernel: IntOrPair, stride: IntOrPair = 1, padding: IntOrPair = 0
) -> Value:
    """ReLU, depthwise ``kernel`` convolution, 1x1 pointwise convolution: one `Sequential` operator.

    IOS's ``relu_sep_conv``, the operator of every RandWire node and of NASNet's separable branches.
    The depthwise convolution keeps ``x``'s channels and carries the stride; neither convolution
    has an activation of its own.
    """
    depthwise = Conv(x.channels, pair(kernel), pair(stride), pair(padding), groups=x.channels)
    pointwise = Conv(out_channels, (1, 1))
    return b.sequential(x, Activation("relu"), depthwise, pointwise)
