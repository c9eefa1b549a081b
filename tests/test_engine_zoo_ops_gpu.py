"""The model zoo's operators on the real engine equal the numpy reference: every graph of `test_engine_zoo_ops`, and a
few at the zoo's own sizes, in both layouts and both precisions (TF32: relative L2 <= 1e-2; fp32-strict: <= 1e-4).

Run through the device tool (``pytest -m gpu tests/test_engine_zoo_ops_gpu.py``); without PyCUDA, the cuDNN frontend
or a GPU every test here is skipped, saying which.
"""

from __future__ import annotations

import numpy as np
import pytest
from gpu_guard import require_gpu
from test_engine_cases import one_stream
from test_engine_zoo_ops import GRAPHS, NEW_ACTIVATIONS, zoo_paths

from ios_core import schedule as S
from ios_core.ir import ChannelShuffle, Conv, Graph, GraphBuilder, LayerNorm, Pad, Pool, Softmax, concat
from ios_core.precision import TOLERANCE

pytestmark = pytest.mark.gpu
require_gpu()

from ios_core.engine import PlanOptions, build_plan  # noqa: E402 -- only once a GPU is known to be there
from ios_core.reference import relative_error, run_graph  # noqa: E402
from ios_core.weights import make_input, make_weights  # noqa: E402


def convnext_block(channels: int = 96, size: int = 28) -> Graph:
    """ConvNeXt's block at its own width: depthwise 7x7, LayerNorm over channels (a warp per pixel in NHWC), the
    MLP as 1x1 convolutions with GELU, a residual sum; then a classifier head with a softmax over 1000 classes."""
    b = GraphBuilder("convnext_block", channels, size, size)
    x = b.node(Conv(channels, (7, 7), padding=(3, 3), groups=channels), b.input)
    mlp = b.conv(b.conv(b.node(LayerNorm(1e-6), x), 4 * channels, 1, act="gelu"), channels, 1, act="none")
    body = b.end_block(b.add(mlp, b.input))
    pooled = b.node(LayerNorm(1e-6), b.pool(body, "global_avg"))
    b.end_block(b.node(Softmax(), b.conv(pooled, 1000, 1, act="none")))
    return b.build()


def mobilenet_v3_block(channels: int = 72, size: int = 28) -> Graph:
    """MobileNetV3's inverted residual with squeeze-excitation: hardswish, a depthwise 5x5 with TF-style "same"
    padding, the SE scale (a C x 1 x 1 operand broadcast in one multiply), hardsigmoid, ReLU6, a clip."""
    b = GraphBuilder("mobilenet_v3_block", 24, size, size)
    expanded = b.conv(b.input, channels, 1, act="hardswish")
    dw = b.node(Conv(channels, (5, 5), (2, 2), (1, 1), groups=channels, act="hardswish", padding_end=(2, 2)), expanded)
    scale = b.conv(b.conv(b.pool(dw, "global_avg"), 24, 1, act="relu6"), channels, 1, act="hardsigmoid")
    projected = b.conv(b.mul(dw, scale), 40, 1, act="none")
    b.end_block(b.node(Pool("avg", (3, 3), (2, 2), (1, 1), ceil_mode=True, count_include_pad=True),
                       b.node(Pad((0, 1, 1, 0), 0.5), b.activation(projected, "silu"))))
    return b.build()


def shufflenet_unit(channels: int = 116, size: int = 28) -> Graph:
    """ShuffleNetV2's unit: split, one branch through 1x1 / depthwise / 1x1, concatenate, shuffle in two groups."""
    b = GraphBuilder("shufflenet_unit", 2 * channels, size, size)
    x = b.input
    branch = b.conv(b.conv(b.conv(x[channels:], channels, 1), channels, 3, padding=1, groups=channels, act="none"),
                    channels, 1)
    b.end_block(b.node(ChannelShuffle(2), concat([b.identity(x[:channels]), branch])))
    return b.build()


ZOO_SIZED = {"convnext_block": convnext_block, "mobilenet_v3_block": mobilenet_v3_block,
             "shufflenet_unit": shufflenet_unit}


def check(graph: Graph, precision: str, options: PlanOptions, schedule: S.Schedule | None = None,
          batch: int = 2) -> None:
    weights, x = make_weights(graph), make_input(graph, batch)
    ref = run_graph(graph, x, weights)
    plan = build_plan(graph, schedule or S.greedy(graph), batch, precision, weights, options)
    try:
        eager = plan(x, graph_mode=False)
        plan.poison()
        replayed = plan(x, graph_mode=True)
        assert np.isfinite(eager).all() and np.isfinite(replayed).all(), "a read of memory nothing wrote"
        assert relative_error(eager, ref) <= TOLERANCE[precision]
        assert relative_error(replayed, ref) <= TOLERANCE[precision]
    finally:
        plan.close()


@pytest.mark.parametrize("precision", ["fp32-strict", "fp32"])
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_each_zoo_operator_equals_reference(name, layout, precision):
    check(GRAPHS[name](), precision, PlanOptions(layout=layout, autotune=False))


@pytest.mark.parametrize("pad_asymmetric", [False, True])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_each_zoo_operator_on_cudnn_depthwise_and_exact_barriers_equals_reference(name, pad_asymmetric):
    options = PlanOptions(autotune=False, own_depthwise=False, barrier="exact", pad_asymmetric=pad_asymmetric)
    check(GRAPHS[name](), "fp32-strict", options)


@pytest.mark.parametrize("precision", ["fp32-strict", "fp32"])
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("name", sorted(ZOO_SIZED))
def test_zoo_blocks_at_their_own_sizes_equal_reference(name, layout, precision):
    graph = ZOO_SIZED[name]()
    check(graph, precision, PlanOptions(layout=layout, autotune=False), S.sequential(graph), batch=1)


@pytest.mark.parametrize("act", NEW_ACTIVATIONS)
def test_each_activation_fused_or_not_equals_reference(act):
    b = GraphBuilder("one_conv", 32, 14, 14)
    b.end_block(b.conv(b.conv(b.input, 64, 3, padding=1, act=act), 64, 3, padding=1, groups=64, act=act))
    graph = b.build()
    check(graph, "fp32-strict", PlanOptions(autotune=False), S.sequential(graph))
    check(graph, "fp32", PlanOptions(autotune=True), S.sequential(graph))


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("precision", ["fp32-strict", "fp32"])
@pytest.mark.parametrize("act", ["none", "relu", "hardswish", "silu"])
@pytest.mark.parametrize("addend", ["whole", "slice"])
def test_sums_folded_into_convolutions_equal_reference(addend, act, precision, layout):
    """A residual sum in the convolution's group is cuDNN's addend (or, where no engine fuses it, our pointwise
    kernel's): before an activation it has a node for, one it has not, and none. A slice of a wider tensor stays
    our pointwise kernel's: as cuDNN's addend it gave a wrong sum in fp32-strict NHWC (H100, cuDNN 9.19)."""
    b = GraphBuilder("folded_sums", 64, 14, 14)
    wide = b.conv(b.input, 96, 1, act="relu")
    other = wide[32:64] if addend == "slice" else b.conv(b.input, 32, 1, act="relu")
    residual = b.activation(b.conv(wide, 32, 3, padding=1, act="none") + other, act) if act != "none" else (
        b.add(b.conv(wide, 32, 3, padding=1, act="none"), other))
    b.end_block(b.conv(residual, 16, 1, act="relu"))
    graph = b.build()
    options = PlanOptions(layout=layout, autotune=precision == "fp32")
    plan = build_plan(graph, one_stream(graph), 1, precision, None, options)
    assert bool(plan.program.folded) == (addend == "whole")
    plan.close()
    check(graph, precision, options, one_stream(graph))


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("precision", ["fp32-strict", "fp32", "fp16", "bf16"])
@pytest.mark.parametrize(("pool", "size", "channels"), [("global_avg", 7, 1152), ("global_max", 56, 96),
                                                         ("global_avg", 112, 32)])  # one pass; bands first
def test_squeeze_excitations_folded_equal_reference(pool, size, channels, precision, layout):
    """EfficientNet's squeeze-and-excitation as one kernel of ours (`ExciteTask`), a block per sample: more
    channels than the block has threads, a max, and a pool whose first pass is bands of rows; in every precision."""
    b = GraphBuilder("folded_excitation", channels, size, size)
    x = b.conv(b.input, channels, 3, padding=1, groups=channels, act="silu")
    scale = b.conv(b.conv(b.pool(x, pool), channels // 24, 1, act="silu"), channels, 1, act="sigmoid")
    b.end_block(b.conv(b.mul(x, scale), 16, 1, act="none"))
    graph = b.build()
    options = PlanOptions(layout=layout, autotune=precision == "fp32")
    plan = build_plan(graph, one_stream(graph), 2, precision, None, options)
    assert plan.stats.kernels.get("excite") == 1, "the squeeze-and-excitation did not fold"
    plan.close()
    check(graph, precision, options, one_stream(graph))


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("precision", ["fp32-strict", "fp16"])
def test_pointwise_tasks_in_one_launch_equal_reference(precision, layout):
    """Three sums side by side into a concatenation, as NASNet's cells add their branches: one launch of
    ``pointwise_batch`` (a row of blocks each), its parameter the parts by value; and a sum of four terms with a
    ReLU, as RandWire's nodes sum their inputs: one pass of ``pointwise_sum``."""
    from ios_core.engine import channelwise

    b = GraphBuilder("sums_side_by_side", 32, 14, 14)
    x = b.conv(b.input, 64, 1)
    c1, c2 = b.conv(x, 32, 3, padding=1), b.conv(x, 32, 1)
    total = b.conv(b.activation(c1 + c2 + x[0:32] + x[32:64], "relu"), 32, 1)
    b.end_block(b.identity(concat([b.add(c1, c2), b.add(c2, x[0:32]), b.add(c1, x[32:64]), total])))
    graph = b.build()
    options = PlanOptions(layout=layout, autotune=False)
    plan = build_plan(graph, one_stream(graph), 2, precision, None, options)
    kernels = plan.stats.kernels
    assert kernels.get(channelwise.POINTWISE_BATCH) == kernels.get(channelwise.POINTWISE_SUM) == 1, kernels
    plan.close()
    check(graph, precision, options, one_stream(graph))


@pytest.mark.parametrize("schedule", [S.greedy, one_stream], ids=["greedy", "one_stream"])
@pytest.mark.parametrize("precision", ["fp32-strict", "fp32"])
@pytest.mark.parametrize("path", zoo_paths(), ids=lambda p: p.stem)
def test_every_zoo_network_equals_reference(path, precision, schedule):
    """The committed zoo exports (small resolutions, their own refilled weights) on the engine: the greedy schedule
    runs branches side by side; one stream folds every sum and squeeze-and-excitation that can fold (the greedy one
    had missed DPN-68's sums, wrong as cuDNN's addend where they were a slice)."""
    from zoo_models import load_zoo

    from ios_core.onnx_io import load_onnx

    network = load_onnx(load_zoo(path), name=path.stem.split(".")[0])
    graph, weights = network.graph, network.weights
    x = make_input(graph, 1)
    ref = run_graph(graph, x, weights)
    plan = build_plan(graph, schedule(graph), 1, precision, weights, PlanOptions(autotune=False))
    try:
        out = plan(x)
        assert np.isfinite(out).all() and relative_error(out, ref) <= TOLERANCE[precision]
    finally:
        plan.close()
