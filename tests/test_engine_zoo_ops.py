"""The model zoo's operators on the engine, without a GPU.

- Programs: each operator lowered in both layouts and run by the program simulator equals the reference (float64,
  <= 1e-9), under the sequential and the greedy schedule, streams in either order.
- Kernels: ``pointwise.cu`` (broadcast, clip, shuffle), ``pad.cu`` and ``norm.cu`` built for the host and run thread
  by thread (`kernel_harness`) against the reference; their signatures against the sources.
- The GPU half on the fake GPU (`fake_gpu`): every launch inside the plan's memory with arguments that fit, and
  which activations cuDNN fuses.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
from fake_gpu import REGION, FakeGpu, launch_parts
from kernel_harness import (
    H100_SMS,
    KERNEL_DIR,
    aligned,
    assert_fits,
    build_for_host,
    guards_intact,
    host_view,
    kernel_params,
    marker,
    nchw,
    nhwc,
    run_threads,
)
from test_engine_barrier import any_order
from test_engine_barrier import check as barrier_check
from test_engine_cases import one_stream

from ios_core import schedule as S
from ios_core.engine import PlanOptions, depthwise, excitation, lower, pooling, simulate
from ios_core.engine import channelwise as cw
from ios_core.engine.depthwise import Launch, Operand
from ios_core.engine.program import (
    ACTIVATIONS,
    POINTWISE_OPS,
    POINTWISE_SIGNATURE,
    ConvTask,
    NormTask,
    PadTask,
    PointwiseTask,
    ShuffleTask,
)
from ios_core.ir import (
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
from ios_core.reference import ACTIVATION_FUNCTIONS, KERNELS, relative_error, run_graph
from ios_core.weights import make_input, make_weights

NEW_ACTIVATIONS = ("relu6", "hardsigmoid", "hardswish", "silu", "gelu", "gelu_tanh")
BATCH = 2


def activations() -> Graph:
    """Every new activation fused into a convolution, a depthwise one (and ahead of it in a sequential), and alone."""
    b = GraphBuilder("activations", 8, 7, 7)
    x = b.input
    outs = []
    for act in NEW_ACTIVATIONS:
        y = b.conv(b.conv(x, 8, 3, padding=1, act=act), 8, 3, padding=1, act=act, groups=8)
        outs.append(b.activation(y, act))
        outs.append(b.sequential(x, Activation(act), Conv(8, (3, 3), padding=(1, 1), groups=8, act=act)))
    b.end_block(b.add(*outs))
    return b.build()


def padded_convs() -> Graph:
    """Asymmetric padding (TensorFlow's "same" at stride 2) on a dense, a grouped and a depthwise convolution."""
    b = GraphBuilder("padded_convs", 8, 9, 9)
    x = b.input
    dense = b.node(Conv(8, (3, 3), (2, 2), (0, 0), padding_end=(1, 1), act="relu"), x)
    grouped = b.node(Conv(8, (3, 3), (2, 2), (1, 0), padding_end=(0, 1), groups=2), x)
    depthwise = b.node(Conv(8, (5, 5), (2, 2), (1, 1), padding_end=(2, 2), groups=8, act="hardswish"), x)
    wide = b.node(Conv(8, (3, 5), (1, 1), (0, 2), padding_end=(2, 2), groups=8), x)
    b.end_block(b.add(dense, grouped, depthwise, b.pool(wide, "max", 2, 2, 0)))
    return b.build()


POOLS = (
    Pool("max", (3, 3), (2, 2), ceil_mode=True),  # googlenet's
    Pool("avg", (3, 3), (2, 2), (1, 1), ceil_mode=True, count_include_pad=True),
    Pool("avg", (3, 3), (2, 2), (1, 1), ceil_mode=True),
    Pool("avg", (3, 3), (1, 1), (1, 1), count_include_pad=True),  # inception's
    Pool("max", (3, 3), (2, 2), (0, 0), padding_end=(1, 1)),  # nasnet's "same"
    Pool("avg", (3, 3), (2, 2), (1, 0), padding_end=(1, 2), count_include_pad=True),
    Pool("avg", (2, 2), (2, 2), ceil_mode=True, count_include_pad=True),
)


def pools(pool: Pool) -> Graph:
    b = GraphBuilder("pools", 8, 8, 8)
    y = b.node(pool, b.conv(b.input, 8, 1))
    b.end_block(b.conv(y, 8, 1))
    return b.build()


def squeeze_excitation() -> Graph:
    """The scale of a squeeze-and-excitation block (C x 1 x 1 times C x H x W, either order), a broadcast sum of
    three operands, and a broadcast operand that is a slice of a concatenation."""
    b = GraphBuilder("squeeze_excitation", 8, 6, 6)
    x = b.conv(b.input, 8, 3, padding=1)
    squeezed = b.pool(x, "global_avg")
    scale = b.conv(b.conv(squeezed, 4, 1, act="relu"), 8, 1, act="hardsigmoid")
    scaled = b.mul(x, scale)
    shift = b.conv(squeezed, 16, 1, act="none")
    summed = b.add(b.conv(scaled, 8, 1, act="none"), shift[0:8], shift[8:16])
    product = b.mul(scale, summed, scale)
    b.end_block(concat([product, scaled]))
    return b.build()


def shuffles() -> Graph:
    """A channel shuffle of a slice of a concatenation (ShuffleNet's split then shuffle), of a sum, and trivial ones."""
    b = GraphBuilder("shuffles", 8, 5, 5)
    left = b.conv(b.input, 8, 1)
    right = b.conv(b.input, 8, 3, padding=1, groups=8, act="none")
    both = concat([left, right])
    mixed = b.node(ChannelShuffle(2), both)
    of_sum = b.node(ChannelShuffle(4), left + right)
    slice_shuffle = b.node(ChannelShuffle(3), both[1:13])
    trivial = b.node(ChannelShuffle(16), both)
    b.end_block(concat([b.add(mixed, trivial, b.node(ChannelShuffle(1), both)), of_sum, slice_shuffle]))
    return b.build()


def pads_and_clips() -> Graph:
    """Pads with a value, crops (negative pads), both at once, and clips."""
    b = GraphBuilder("pads_and_clips", 4, 7, 7)
    x = b.conv(b.input, 8, 1)
    padded = b.node(Pad((1, 0, 2, 3), -0.5), x)  # 10 x 10
    cropped = b.node(Pad((-1, -2, 0, -1)), x)  # 6 x 4
    mixed = b.node(Pad((2, -1, -3, 1)), x)  # 6 x 7
    clipped = b.node(Clip(-0.25, 0.5), x[2:6])
    averaged = b.node(Pool("avg", (1, 2), (1, 1), (0, 1), (0, 0), count_include_pad=True), mixed)
    body = b.add(
        b.conv(padded, 8, (5, 4), act="none"),
        averaged,
        b.node(Pad((0, 0, 0, 1)), b.node(Pad((0, 0, 0, 2), 0.25), cropped)),
    )
    b.end_block(b.add(body, b.node(Pad((0, 0, -1, 0)), b.conv(clipped, 8, 1, act="relu6"))))
    return b.build()


def norms() -> Graph:
    """LayerNorm and softmax over channels, on whole outputs and on channel slices (ConvNeXt's block, a classifier)."""
    b = GraphBuilder("norms", 8, 5, 5)
    x = b.conv(b.input, 16, 3, padding=1, act="none")
    normed = b.node(LayerNorm(1e-6), x)
    sliced = b.node(LayerNorm(), x[4:12])
    mlp = b.conv(b.conv(normed, 32, 1, act="gelu"), 16, 1, act="none")
    soft = b.node(Softmax(), x[0:6])
    b.end_block(concat([b.add(mlp, x), sliced, soft, b.node(Softmax(), b.node(LayerNorm(), x[0:1]))]))
    return b.build()


def head() -> Graph:
    """A classifier head: a convolution whose kernel is the whole C x H x W input (a Gemm on the flattened input),
    1 x 1 convolutions on K x 1 x 1, a LayerNorm and a softmax over the classes."""
    b = GraphBuilder("head", 8, 4, 5)
    body = b.conv(b.input, 16, 3, padding=1)
    flat = b.conv(body, 32, (4, 5), act="relu")
    pooled = b.conv(b.pool(body, "global_avg"), 32, 1, act="gelu_tanh")
    b.end_block(b.node(Softmax(), b.conv(b.node(LayerNorm(), b.add(flat, pooled)), 10, 1, act="none")))
    return b.build()


GRAPHS = {
    "activations": activations,
    "padded_convs": padded_convs,
    "squeeze_excitation": squeeze_excitation,
    "shuffles": shuffles,
    "pads_and_clips": pads_and_clips,
    "norms": norms,
    "head": head,
    **{f"pool{i}": (lambda pool=pool: pools(pool)) for i, pool in enumerate(POOLS)},
}


def simulated(graph: Graph, schedule: S.Schedule, layout: str, reverse: bool = False) -> float:
    weights, x = make_weights(graph), make_input(graph, BATCH)
    program = lower(graph, schedule, BATCH, layout)
    out = simulate(program, graph, weights, {"input": x}, reverse)[graph.output]
    return relative_error(out, run_graph(graph, x, weights))


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_each_zoo_operator_simulates_as_the_reference(name, layout):
    graph = GRAPHS[name]()
    assert simulated(graph, S.sequential(graph), layout) <= 1e-9
    greedy = S.greedy(graph)
    assert simulated(graph, greedy, layout) <= 1e-9
    assert simulated(graph, greedy, layout, reverse=True) <= 1e-9


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_exact_barriers_wait_for_every_hazard_and_any_order_they_allow_computes_the_reference(name, layout):
    graph = GRAPHS[name]()
    program = lower(graph, S.greedy(graph), BATCH, layout)
    barrier_check(program)
    weights, x = make_weights(graph), make_input(graph, BATCH)
    for seed in range(3):
        out = simulate(program, graph, weights, {"input": x}, order=any_order(program, seed))[graph.output]
        assert relative_error(out, run_graph(graph, x, weights)) <= 1e-9


@pytest.mark.parametrize("pad_asymmetric", [False, True])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_cudnn_depthwise_lowering_simulates_as_the_reference(name, pad_asymmetric):
    graph = GRAPHS[name]()
    weights, x = make_weights(graph), make_input(graph, BATCH)
    program = lower(graph, S.greedy(graph), BATCH, "nhwc", own_depthwise=False, pad_asymmetric=pad_asymmetric)
    out = simulate(program, graph, weights, {"input": x})[graph.output]
    assert relative_error(out, run_graph(graph, x, weights)) <= 1e-9
    convs = [t.conv for t in program.tasks if isinstance(t, ConvTask)]
    assert all(c.padding_end in (None, c.padding) for c in convs) or not pad_asymmetric


def test_each_zoo_operator_lowers_to_its_one_task():
    cases = {"shuffles": ShuffleTask, "pads_and_clips": PadTask, "norms": NormTask}
    for name, kind in cases.items():
        graph = GRAPHS[name]()
        program = lower(graph, S.sequential(graph), 1, "nhwc")
        for node in graph.operators:
            if isinstance(node.op, (ChannelShuffle, Pad, LayerNorm, Softmax)):
                tasks = [t for t in program.tasks if t.node == node.name]
                trivial = isinstance(node.op, ChannelShuffle) and node.op.groups in (1, node.inputs[0].channels)
                expected = (
                    PointwiseTask if trivial else kind if not isinstance(node.op, (LayerNorm, Softmax)) else NormTask
                )
                assert [type(t) for t in tasks][-1:] == [expected], (name, node.name, tasks)


def test_a_broadcast_operand_is_read_in_place_not_copied():
    graph = squeeze_excitation()
    program = lower(graph, S.sequential(graph), 1, "nhwc")
    scale = program.values["conv3"]
    mul = [t for t in program.tasks if t.node == "mul1"]
    assert len(mul) == 1 and scale in mul[0].reads()
    assert "mul1" in str(program) and "conv3" in str(program)


def test_clip_and_shuffle_print_on_one_line():
    graph = pads_and_clips()
    text = str(lower(graph, S.sequential(graph), 1, "nchw"))
    assert "clip(" in text and "pad 1 0 2 3 (-0.5)" in text
    assert "shuffle g2" in str(lower(shuffles(), S.sequential(shuffles()), 1, "nhwc"))


# ---- CPU: our kernels for these operators, compiled for the host and run thread by thread --------

SOURCES = {"pointwise_f32": "pointwise.cu", cw.PAD: "pad.cu", cw.NORM: "norm.cu"}
SIGNATURES = {"pointwise_f32": POINTWISE_SIGNATURE, cw.PAD: cw.PAD_SIGNATURE, cw.NORM: cw.NORM_SIGNATURE}


def test_signatures_match_the_sources():
    for kernel, file in SOURCES.items():
        letters = "".join(letter for letter, _, _ in kernel_params(KERNEL_DIR / file, marker(kernel)))
        assert letters == SIGNATURES[kernel], kernel


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
@pytest.mark.parametrize("file", sorted(set(SOURCES.values())))
def test_sources_compile_without_warnings(tmp_path, file):
    out = subprocess.run(
        ["nvcc", "-arch=sm_90", "-std=c++17", "-O3", "-I", str(KERNEL_DIR), "-cubin", "-o", str(tmp_path / "k.cubin"),
         str(KERNEL_DIR / file)],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    assert "warning" not in out.lower()


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> dict[str, ctypes.CDLL]:
    """Each kernel's source built for the CPU (`kernel_harness.build_for_host`), by kernel name."""
    return {
        kernel: build_for_host(KERNEL_DIR / file, {kernel: marker(kernel)}, tmp_path_factory.mktemp(kernel))
        for kernel, file in SOURCES.items()
    }


def placed(x: np.ndarray, layout: str, first: int = 0, total: int = 0) -> tuple[np.ndarray, Operand]:
    """A NaN-filled buffer of ``total`` channels (x's own when 0) holding NCHW ``x`` from channel ``first``."""
    n, c, h, w = x.shape
    total = total or c
    buffer = aligned((n, h, w, total) if layout == "nhwc" else (n, total, h, w))
    view = host_view(buffer, layout, first, c)
    channels = buffer[..., first : first + c] if layout == "nhwc" else buffer[:, first : first + c]
    channels[...] = x.transpose(0, 2, 3, 1) if layout == "nhwc" else x
    return buffer, view


def empty(dims: tuple[int, int, int, int], layout: str, first: int = 0, total: int = 0) -> tuple[np.ndarray, Operand]:
    return placed(np.full(dims, np.nan, np.float32), layout, first, total)


def read(buffer: np.ndarray, layout: str, first: int, c: int) -> np.ndarray:
    """Channels ``[first, first + c)`` as NCHW; nothing else of the buffer written, nothing outside it."""
    nchw = buffer.transpose(0, 3, 1, 2) if layout == "nhwc" else buffer
    assert np.isnan(nchw[:, :first]).all() and np.isnan(nchw[:, first + c :]).all(), "written outside the view"
    assert guards_intact(buffer), "written outside the buffer"
    return nchw[:, first : first + c]


def pointwise(lib: dict, args: tuple, total: int, reverse: bool) -> None:
    run_threads(lib["pointwise_f32"], Launch("pointwise_f32", (-(-total // 64), 1), (64, 1, 1), args),
                POINTWISE_SIGNATURE, reverse)


RNG = np.random.default_rng(0)


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("reverse", [False, True])
def test_pointwise_broadcasts_and_clips_on_the_host(host, layout, reverse):
    x = RNG.standard_normal((2, 6, 5, 4)).astype(np.float32)
    scale = RNG.standard_normal((2, 6, 1, 1)).astype(np.float32)
    xb, xv = placed(x, layout, 2, 10)
    sb, sv = placed(scale, layout, 1, 7)
    yb, yv = empty(x.shape, layout, 3, 12)
    args = cw.pointwise_args(yv, sv, xv, "mul", "hardswish", (-0.25, 0.5))
    pointwise(host, args, x.size, reverse)
    expected = np.clip(ACTIVATION_FUNCTIONS["hardswish"]((scale * x).astype(np.float64)), -0.25, 0.5)
    np.testing.assert_allclose(read(yb, layout, 3, 6), expected, rtol=1e-6, atol=1e-6)
    assert read(sb, layout, 1, 6).shape == scale.shape and read(xb, layout, 2, 6).shape == x.shape


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize(("channels", "groups"), [(12, 2), (12, 3), (8, 4), (6, 6)])
def test_a_shuffle_is_one_strided_copy_on_the_host(host, layout, channels, groups):
    x = RNG.standard_normal((2, channels, 3, 5)).astype(np.float32)
    xb, xv = placed(x, layout, 4, channels + 8)
    yb, yv = empty(x.shape, layout, 1, channels + 3)
    y_view, x_view = cw.shuffle_views(xv, yv, groups)
    pointwise(host, cw.pointwise_args(y_view, x_view, None, "none", "none"), x.size, False)
    expected = KERNELS[ChannelShuffle](ChannelShuffle(groups), [x], {})
    np.testing.assert_array_equal(read(yb, layout, 1, channels), expected)


PAD_CASES = [((1, 0, 2, 3), -0.5), ((-1, -2, 0, -1), 0.0), ((2, -1, -3, 1), 1.5), ((0, 0, 0, 0), 0.0)]


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize(("pads", "value"), PAD_CASES)
def test_pad_on_the_host_equals_reference(host, layout, pads, value):
    x = RNG.standard_normal((2, 5, 6, 7)).astype(np.float32)
    op = Pad(pads, value)
    expected = KERNELS[Pad](op, [x.astype(np.float64)], {})
    xb, xv = placed(x, layout, 3, 9)
    yb, yv = empty(expected.shape, layout, 2, 8)
    launch = cw.pad_launch(xv, yv, pads, value, H100_SMS)
    assert_fits(launch, cw.PAD_SIGNATURE)
    for reverse in (False, True):
        run_threads(host[cw.PAD], launch, cw.PAD_SIGNATURE, reverse)
        np.testing.assert_array_equal(read(yb, layout, 2, 5), expected.astype(np.float32))


NORM_CASES = {  # (N, C, H, W), layout, (first channel, buffer channels), threads per pixel
    "nchw-thread": ((2, 24, 5, 3), "nchw", (0, 0), 1),
    "nchw-slice-thread": ((2, 24, 5, 3), "nchw", (3, 40), 1),
    "nhwc-warp": ((2, 24, 5, 3), "nhwc", (0, 0), 32),
    "nhwc-slice-wide-warp": ((1, 100, 3, 2), "nhwc", (5, 120), 32),  # more channels than lanes, not a multiple
    "classifier-warp": ((2, 70, 1, 1), "nchw", (0, 0), 32),
}


@pytest.mark.parametrize("op", [LayerNorm(1e-6), Softmax()], ids=["layer_norm", "softmax"])
@pytest.mark.parametrize("case", list(NORM_CASES))
def test_norms_on_the_host_equal_reference(host, op, case):
    """A thread per pixel runs thread by thread; a warp per pixel as 32 concurrent lanes that shuffle."""
    dims, layout, (first, total), lanes = NORM_CASES[case]
    c = dims[1]
    x = (3 * RNG.standard_normal(dims) + 1).astype(np.float32)
    params = {"weight": RNG.standard_normal(c), "bias": RNG.standard_normal(c)}
    expected = KERNELS[type(op)](op, [x.astype(np.float64)], params if isinstance(op, LayerNorm) else {})
    weights = [aligned((c,)) for _ in range(2)]
    for array, name in zip(weights, ("weight", "bias"), strict=True):
        array[...] = params[name]
    xb, xv = placed(x, layout, first, total)
    yb, yv = empty(x.shape, layout, first, total)
    addresses = (weights[0].ctypes.data, weights[1].ctypes.data) if isinstance(op, LayerNorm) else (0, 0)
    launch = cw.norm_launch(xv, yv, op, addresses, H100_SMS)
    assert launch.args[1] == lanes and launch.block[0] % 32 == 0
    assert_fits(launch, cw.NORM_SIGNATURE)
    run_threads(host[cw.NORM], launch, cw.NORM_SIGNATURE, warps=lanes > 1)
    np.testing.assert_allclose(read(yb, layout, first, c), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("x", "lanes"), [
    (nhwc((1, 96, 56, 56)), 32),  # ConvNeXt's LayerNorm: channels contiguous
    (nchw((1, 1000, 1, 1)), 32),  # a classifier's softmax: a 1 x 1 image holds its channels contiguously
    (nchw((2, 96, 7, 7)), 1),
])  # fmt: skip
def test_a_warp_takes_a_pixel_where_its_channels_are_contiguous(x, lanes):
    launch = cw.norm_launch(x, x, Softmax(), (0, 0), H100_SMS)
    n, _, h, w = x.dims
    assert launch.args[:3] == (1, lanes, n * h * w)
    assert launch.grid[0] <= H100_SMS * cw.BLOCKS_PER_SM and launch.grid[0] * launch.block[0] >= min(
        n * h * w * lanes, H100_SMS * cw.BLOCKS_PER_SM * cw.BLOCK)


# ---- the GPU half on a fake GPU (`fake_gpu`): what a plan of these operators launches -------------


@pytest.fixture
def gpu():
    fake = FakeGpu()
    yield fake
    fake.close()


def signatures() -> dict[str, str]:
    letters = {"<i4": "i", "<f4": "f", "<u4": "I", "<u8": "P", "<i8": "q"}  # a sum's record, field by field
    record = "".join(letters[field.str] for field, _ in cw.POINTWISE_SUM_RECORD.fields.values())
    return {**SIGNATURES, **pooling.KERNELS, **depthwise.KERNELS, **excitation.KERNELS, cw.POINTWISE_SUM: record}


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_a_plan_launches_every_task_inside_its_memory_with_arguments_that_fit(gpu, name, layout):
    graph = GRAPHS[name]()
    options = PlanOptions(layout=layout, autotune=False)
    plan = gpu.engine["plan"].build_plan(graph, S.greedy(graph), 2, "fp32", None, options)
    start = len(gpu.recorder.calls)
    plan.enqueue()
    calls = [call for call in gpu.recorder.calls[start:] if call[0] == "kernel"]
    owned = {gpu.recorder.where(int(m))[0]: m.size for m in (plan.arena, plan.weights, *plan.workspaces) if m}
    for call in calls:
        for kernel, args in launch_parts(call):  # a batch: each part's arguments
            assert_fits(Launch(kernel, call[2], call[3], args), signatures()[kernel])
            for address in (a for a in args if isinstance(a, int) and a >= REGION):
                index, offset = gpu.recorder.where(address)
                assert index in owned and offset < owned[index], call
    launched = Counter(call[1] for call in calls)
    tasks = Counter(type(t) for t in plan.program.tasks)
    assert launched[cw.PAD] == tasks[PadTask] and launched[cw.NORM] == tasks[NormTask]
    assert plan.stats.kernels.get("shuffle", 0) == tasks[ShuffleTask]
    plan.close()


@pytest.mark.parametrize("act", NEW_ACTIVATIONS)
def test_an_activation_no_engine_fuses_runs_in_place_after_the_convolution(gpu, act):
    b = GraphBuilder("one_conv", 8, 6, 6)
    b.end_block(b.conv(b.input, 16, 3, padding=1, act=act))
    graph = b.build()
    plan = gpu.engine["plan"].build_plan(graph, S.sequential(graph), 1, "fp32", None, PlanOptions(autotune=False))
    start = len(gpu.recorder.calls)
    plan.enqueue()
    calls = [call for call in gpu.recorder.calls[start:] if call[0] in ("kernel", "cudnn")]
    graphs = plan.context.library.graphs
    asked = next(iter(graphs))
    assert asked.act == act  # every activation is asked of cuDNN first
    if graphs[asked].fused:
        assert [c[0] for c in calls] == ["cudnn"]
    else:  # then the convolution with its bias (or alone), and the activation (and bias) by our pointwise kernel
        fused = graphs[replace(asked, act="none")].fused
        assert [c[0] for c in calls] == ["cudnn", "kernel"] and calls[1][1] == "pointwise_f32"
        args = calls[1][5]
        assert args[1] == ACTIVATIONS[act] and args[0] == POINTWISE_OPS["none" if fused else "add"]
    plan.close()


def test_asymmetric_padding_reaches_cudnn_as_symmetric_padding_and_a_pad_when_asked(gpu):
    graph = padded_convs()
    options = PlanOptions(autotune=False, own_depthwise=False, pad_asymmetric=True)
    plan = gpu.engine["plan"].build_plan(graph, S.sequential(graph), 1, "fp32", None, options)
    assert all(g.padding_end is None for g in plan.context.library.graphs)
    assert plan.stats.kernels[cw.PAD] == 4
    plan.close()


def test_asymmetric_padding_reaches_cudnn_as_pre_and_post_padding(gpu):
    graph = padded_convs()
    plan = gpu.engine["plan"].build_plan(graph, S.sequential(graph), 1, "fp32", None,
                                         PlanOptions(autotune=False, own_depthwise=False))
    pads = {(g.padding, g.padding_end) for g in plan.context.library.graphs}
    assert pads == {((0, 0), (1, 1)), ((1, 0), (0, 1)), ((1, 1), (2, 2)), ((0, 2), (2, 2))}
    symmetric = [g for g in plan.context.library.graphs if g.padding_end is None]
    assert all("padding_end" not in g.key() for g in symmetric)
    plan.close()


def test_a_frontend_without_pre_and_post_padding_gets_symmetric_convolutions_and_pads(gpu, monkeypatch):
    import cudnn  # the fake's, in sys.modules while the fixture holds it

    monkeypatch.setattr(cudnn.pygraph.conv_fprop, "__doc__", "conv_fprop(image, weight, padding=[], stride=[])")
    graph = padded_convs()
    options = PlanOptions(autotune=False, own_depthwise=False)
    plan = gpu.engine["plan"].build_plan(graph, S.sequential(graph), 1, "fp32", None, options)
    assert plan.options.pad_asymmetric and all(g.padding_end is None for g in plan.context.library.graphs)
    plan.close()


# ---- the zoo's networks themselves (`tests/zoo`, small resolutions) through the simulator -------------


def zoo_paths() -> list:
    """The committed zoo exports; none where the ``onnx`` package is missing."""
    try:
        from zoo_models import zoo_files
    except ImportError:
        return []
    return zoo_files()


@pytest.mark.slow
@pytest.mark.parametrize("path", zoo_paths(), ids=lambda p: p.stem)
def test_every_zoo_network_simulates_as_the_reference(path):
    from zoo_models import load_zoo

    from ios_core.onnx_io import load_onnx

    network = load_onnx(load_zoo(path), name=path.stem.split(".")[0])
    graph, weights = network.graph, network.weights
    x = make_input(graph, 1)
    # one schedule per export, the exporters' graphs being the same networks: greedy stages for TorchScript's, and
    # one stream for dynamo's, where every sum that can fold into its convolution does
    schedule = one_stream(graph) if path.stem.endswith("dynamo") else S.greedy(graph)
    program = lower(graph, schedule, 1, "nhwc")
    out = simulate(program, graph, weights, {"input": x})[graph.output]
    assert relative_error(out, run_graph(graph, x, weights)) <= 1e-9
