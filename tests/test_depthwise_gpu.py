"""Our depthwise convolution kernels: the host's choice among them, and each one against the float64 reference.

On the CPU: `ios_core.engine.depthwise` -- which kernel of ``cuda/depthwise.cu`` a geometry gets,
the magic-number divisions and thread decoding of the fast kernels, the kernel table against the
source -- and the kernels themselves, built for the host with g++ and run thread by thread
(slow: one compile). On the GPU (``pytest -m gpu``, through the device tool; skipped without
PyCUDA, the cuDNN frontend or a GPU): small graphs through the engine, every fast kernel among
them, against `ios_core.reference`.
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import pytest
from gpu_guard import require_gpu
from kernel_harness import (
    ARENA,
    H100_SMS,
    KERNEL_DIR,
    aligned,
    assert_close,
    assert_fits,
    build_for_host,
    decoded_threads,
    guards_intact,
    host_view,
    kernel_params,
    nchw,
    nhwc,
    run_on_gpu,
    run_threads,
)

from ios_core import schedule as S
from ios_core.engine import depthwise as dw
from ios_core.engine import lower
from ios_core.engine.depthwise import DepthwiseCall, Operand
from ios_core.engine.elements import ELEMENTS
from ios_core.ir import Activation, Conv, Graph, GraphBuilder, concat
from ios_core.ir.ops import Shape, rules_of
from ios_core.reference import ACTIVATION_FUNCTIONS, conv2d

SOURCE = KERNEL_DIR / "depthwise.cu"
WEIGHTS = 0x7E00_0000_0000
ZOO_ACTIVATIONS = ("relu6", "hardsigmoid", "hardswish", "silu", "gelu", "gelu_tanh", "sigmoid", "tanh")

# ---- CPU: views and calls as the launcher builds them ------------------------------------------


def output_dims(conv: Conv, x: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    n, c, h, w = x
    return n, *rules_of(conv).shape(conv, (Shape(c, h, w),))


def depthwise_conv(c: int, kernel: int | tuple[int, int] = 3, stride: int = 1, padding: int | None = None,
                   dilation: int = 1, act: str = "none") -> Conv:
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    pad = (k[0] // 2, k[1] // 2) if padding is None else (padding, padding)
    return Conv(c, k, (stride, stride), pad, (dilation, dilation), c, act)


def nhwc_call(conv: Conv, x: Operand, pre_act: str = "relu", y: Operand | None = None, bias: int = WEIGHTS + 4096,
              ) -> DepthwiseCall:
    y = y or nhwc(output_dims(conv, x.dims), base=ARENA + (1 << 30))
    c = x.dims[1]
    return DepthwiseCall(x, y, WEIGHTS, (1, conv.kernel[1] * c, c), bias, conv, pre_act)


GENERIC_MARKER, FAST_MARKER = "depthwise_##SUFFIX(", "depthwise_nhwc_k##K##_s##S##_v##V##_t##T##NAME("


def fast_params(launch: dw.Launch) -> dict[str, int]:
    names = [name for _, name, _ in kernel_params(SOURCE, FAST_MARKER)]
    return dict(zip(names, launch.args, strict=True))


@pytest.fixture
def most_work(monkeypatch):
    """Every shape has enough threads, so the fast path takes the most work per thread (v4 t4 or v1 t4)."""
    monkeypatch.setattr(dw, "THREADS_PER_SM", 0)


# ---- CPU: the kernel table against the source ---------------------------------------------------


def test_signatures_match_the_source():
    assert "".join(letter for letter, _, _ in kernel_params(SOURCE, GENERIC_MARKER)) == dw.GENERIC_SIGNATURE
    assert "".join(letter for letter, _, _ in kernel_params(SOURCE, FAST_MARKER)) == dw.FAST_SIGNATURE


def test_fast_kernels_are_the_ones_the_source_instantiates():
    text = SOURCE.read_text()
    shapes_macro = text[text.index("#define DEPTHWISE_NHWC_SHAPES"):]
    shapes_macro = shapes_macro[:shapes_macro.index("\n\n")]
    shapes = re.findall(r"DEPTHWISE_NHWC\(K, S, (\d), (\d), NAME, E\)", shapes_macro)
    sizes = re.findall(r"DEPTHWISE_NHWC_SHAPES\((\d), (\d), NAME, E\)", text)
    names = {dw.fast_kernel(int(k), int(s), int(v), int(t)) for k, s in sizes for v, t in shapes}
    assert names == set(dw.FAST_KERNELS) and len(dw.FAST_KERNELS) == len(set(dw.FAST_KERNELS)) == 36
    assert set(dw.KERNELS) == {dw.GENERIC, *dw.FAST_KERNELS}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_source_compiles_to_every_kernel_of_the_table(tmp_path):
    out = subprocess.run(
        ["nvcc", "-arch=sm_90", "-std=c++17", "-O3", "-I", str(SOURCE.parent), "-cubin", "-o",
         str(tmp_path / "depthwise.cubin"), str(SOURCE), "--resource-usage"],
        capture_output=True, text=True, check=True,
    ).stderr
    instances = {element.kernel(name) for element in ELEMENTS.values() for name in dw.KERNELS}
    assert set(re.findall(r"Function properties for (\w+)", out)) == instances
    assert all(int(r) <= 128 for r in re.findall(r"Used (\d+) registers", out))


# ---- CPU: arithmetic -----------------------------------------------------------------------------


def test_divider_is_floor_division_below_2_to_31():
    rng = np.random.default_rng(0)
    divisors = [*range(1, 600), 1000, 1023, 1024, 1025, 4095, 65535, 65536, 65537, 1_000_003, 2**30 - 1, 2**30,
                2**30 + 1, 2**31 - 2, 2**31 - 1, *rng.integers(1, 2**31, 200).tolist()]
    for d in divisors:
        magic, shift = dw.divider(d)
        assert 0 < magic < 2**32 and 0 <= shift <= 31
        edges = [0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, 2**31 - 2, 2**31 - 1, (2**31 - 1) // d * d,
                 (2**31 - 1) // d * d - 1]
        n = np.concatenate([np.array([e for e in edges if 0 <= e < 2**31], np.uint64),
                            rng.integers(0, 2**31, 1000, dtype=np.uint64)])
        quotient = (((n * np.uint64(magic)) >> np.uint64(32)) + n) >> np.uint64(shift)
        np.testing.assert_array_equal(quotient, n // np.uint64(d), err_msg=f"divisor {d}")


def test_divider_refuses_what_it_cannot_divide():
    for d in (0, -3, 2**31):
        with pytest.raises(ValueError, match="divisor"):
            dw.divider(d)


# ---- CPU: the choice of kernel -------------------------------------------------------------------


@pytest.mark.parametrize("kernel", dw.FAST_KERNEL_SIZES)
@pytest.mark.parametrize("stride", dw.FAST_STRIDES)
def test_nhwc_3_5_7_strides_1_2_take_a_fast_kernel(most_work, kernel, stride):
    call = nhwc_call(depthwise_conv(32, kernel, stride), nhwc((2, 32, 17, 17)))
    assert dw.fast_path_refusal(call) is None and dw.vectorizable(call)
    assert dw.launch(call, H100_SMS).kernel == f"depthwise_nhwc_k{kernel}_s{stride}_v4_t4"


@pytest.mark.parametrize(("conv", "x", "pre_act", "why"), [
    (depthwise_conv(8), nchw((1, 8, 9, 9)), "relu", "NCHW"),
    (depthwise_conv(8, dilation=2, padding=2), nhwc((1, 8, 9, 9)), "relu", "dilation"),
    (depthwise_conv(8, (3, 5)), nhwc((1, 8, 9, 9)), "relu", "kernel"),
    (depthwise_conv(8, 9), nhwc((1, 8, 19, 19)), "relu", "kernel"),
    (depthwise_conv(8, 1, padding=0), nhwc((1, 8, 9, 9)), "relu", "kernel"),
    (depthwise_conv(8, 3, 3), nhwc((1, 8, 9, 9)), "relu", "stride"),
    (Conv(8, (3, 3), (1, 2), (1, 1), groups=8), nhwc((1, 8, 9, 9)), "relu", "stride"),
    (depthwise_conv(8), nhwc((1, 8, 9, 9)), "sigmoid", "activation"),
    (depthwise_conv(8, act="tanh"), nhwc((1, 8, 9, 9)), "tanh", "activation"),
    (depthwise_conv(8), nhwc((2**16, 8, 64, 64)), "relu", "32 bits"),
    (depthwise_conv(8), nhwc((2, 8, 64, 64), channels=2**20), "relu", "32 bits"),
])
def test_everything_else_takes_the_generic_kernel(conv, x, pre_act, why):
    y = Operand(ARENA + (1 << 40), output_dims(conv, x.dims), x.strides) if x.strides[1] != 1 else None
    call = nhwc_call(conv, x, pre_act, y)
    if x.strides[1] != 1:  # NCHW: the plan stores these weights C x R x S
        call = DepthwiseCall(x, call.y, WEIGHTS, (9, 3, 1), call.bias, conv, pre_act)
    assert why in dw.fast_path_refusal(call)
    if why != "32 bits":
        launch = dw.launch(call, H100_SMS)
        assert launch.kernel == dw.GENERIC and len(launch.args) == len(dw.GENERIC_SIGNATURE)
        assert launch.grid[0] <= H100_SMS * dw.GENERIC_BLOCKS_PER_SM and launch.block == (dw.GENERIC_BLOCK, 1, 1)


def test_generic_kernel_refuses_more_outputs_than_its_index_holds():
    conv = depthwise_conv(8, dilation=2, padding=2)
    x = nhwc((2**16, 8, 64, 64))
    with pytest.raises(ValueError, match="32-bit"):
        dw.launch(nhwc_call(conv, x), H100_SMS)


@pytest.mark.parametrize(("x", "y", "bias", "vector"), [
    (nhwc((1, 16, 9, 9)), None, WEIGHTS + 4096, True),
    (nhwc((1, 16, 9, 9), channels=48, channel=16), None, WEIGHTS + 4096, True),  # an aligned channel slice
    (nhwc((1, 6, 9, 9)), None, WEIGHTS + 4096, False),  # C % 4
    (nhwc((1, 8, 9, 9), channels=14), None, WEIGHTS + 4096, False),  # pixel stride 14
    (nhwc((1, 8, 9, 9), channels=16, channel=2), None, WEIGHTS + 4096, False),  # starts 8 bytes off
    (nhwc((1, 8, 9, 9)), nhwc((1, 8, 9, 9), channels=10, base=ARENA + (1 << 30)), WEIGHTS + 4096, False),
    (nhwc((1, 8, 9, 9)), nhwc((1, 8, 9, 9), channels=16, channel=4, base=ARENA + (1 << 30)), WEIGHTS + 4096, True),
    (nhwc((1, 8, 9, 9)), None, WEIGHTS + 4100, False),  # bias off 16 bytes
])
def test_float4_only_where_channels_strides_and_addresses_align(most_work, x, y, bias, vector):
    call = nhwc_call(depthwise_conv(x.dims[1]), x, y=y, bias=bias)
    assert dw.fast_path_refusal(call) is None
    assert dw.vectorizable(call) is vector
    assert dw.launch(call, H100_SMS).kernel.endswith(f"_v{4 if vector else 1}_t4")


@pytest.mark.parametrize(("dims", "vector", "outputs"), [
    ((128, 64, 83, 83), 4, 4),  # plenty of threads: the most work per thread
    ((16, 84, 42, 42), 4, 4),
    ((16, 168, 21, 21), 4, 2),
    ((16, 336, 11, 11), 4, 1),
    ((1, 336, 11, 11), 1, 1),  # batch 1, small layer: spread it over the SMs
    ((16, 42, 83, 83), 1, 4),  # C % 4: scalar
    ((1, 42, 42, 42), 1, 1),
])
def test_work_per_thread_shrinks_until_every_sm_has_threads(dims, vector, outputs):
    call = nhwc_call(depthwise_conv(dims[1], 5), nhwc(dims))
    assert dw.fast_shape(call, H100_SMS) == (vector, outputs)
    shapes = dw.VECTOR_SHAPES if dw.vectorizable(call) else dw.SCALAR_SHAPES
    chosen = shapes.index((vector, outputs))
    enough = H100_SMS * dw.THREADS_PER_SM
    assert all(dw.fast_threads(call, *shape) < enough for shape in shapes[:chosen])
    assert chosen == len(shapes) - 1 or dw.fast_threads(call, vector, outputs) >= enough


@pytest.mark.parametrize("shape", dw.FAST_SHAPES)
@pytest.mark.parametrize(("dims", "stride"), [((3, 8, 13, 11), 1), ((2, 12, 10, 17), 2), ((1, 4, 1, 1), 1)])
def test_fast_threads_decode_to_every_output_tile_once(monkeypatch, shape, dims, stride):
    monkeypatch.setattr(dw, "fast_shape", lambda call, sms: shape)
    call = nhwc_call(depthwise_conv(dims[1], 3, stride), nhwc(dims))
    launch = dw.launch(call, H100_SMS)
    p, (vector, outputs) = fast_params(launch), shape
    n, c, oh, ow = call.y.dims
    vectors, tiles = c // vector, -(-ow // outputs)
    assert p["items"] == n * oh * tiles * vectors == dw.fast_threads(call, vector, outputs)
    assert launch.grid[0] * launch.block[0] >= p["items"] > (launch.grid[0] - 1) * launch.block[0]

    decoded = decoded_threads(p, [("vectors", vectors), ("tiles", tiles), ("rows", oh)])
    assert (decoded < np.array([n, oh, tiles, vectors], np.uint64)).all()
    assert len(np.unique(decoded, axis=0)) == p["items"]
    assert (p["C"], p["OH"], p["OW"]) == (c, oh, ow) and (p["x"], p["y"]) == (call.x.address, call.y.address)


@pytest.mark.parametrize("x", [nhwc((2, 8, 9, 9)), nchw((2, 8, 9, 9)), nhwc((3, 6, 7, 5), channels=10, channel=2)])
def test_arguments_fit_their_signature(x):
    conv = depthwise_conv(x.dims[1])
    call = nhwc_call(conv, x)
    if x.strides[1] != 1:
        call = DepthwiseCall(x, Operand(ARENA + (1 << 30), output_dims(conv, x.dims), x.strides), WEIGHTS, (9, 3, 1),
                             WEIGHTS + 4096, conv, "relu")
    launch = dw.launch(call, H100_SMS)
    assert_fits(launch, dw.KERNELS[launch.kernel])


# ---- CPU: the kernels themselves, compiled for the host and run thread by thread -----------------


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory):
    """``depthwise.cu`` built for the CPU (slow: one compile); see `kernel_harness.build_for_host`."""
    markers = {name: GENERIC_MARKER if name == dw.GENERIC else FAST_MARKER for name in dw.KERNELS}
    return build_for_host(SOURCE, markers, tmp_path_factory.mktemp("host_kernels"))


@dataclass(frozen=True)
class HostCase:
    """A depthwise convolution of a (batch, C, H, W) input; x and y may be slices of wider buffers."""

    channels: int
    size: tuple[int, int]
    conv: Conv
    pre_act: str = "relu"
    batch: int = 2
    layout: str = "nhwc"
    x_slice: tuple[int, int] = (0, 0)  # (first channel, buffer channels); 0 channels: the view's own
    y_slice: tuple[int, int] = (0, 0)


def run_on_host(lib: ctypes.CDLL, case: HostCase, reverse: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """The kernel's output, the float64 reference and the kernel's name; checks nothing is written off y's slice."""
    rng = np.random.default_rng(0)
    c, (h, w), conv = case.channels, case.size, case.conv
    x = rng.standard_normal((case.batch, c, h, w)).astype(np.float32)
    weight = rng.standard_normal((c, 1, *conv.kernel)).astype(np.float32)
    bias = rng.standard_normal(c).astype(np.float32)
    _, _, oh, ow = output_dims(conv, x.shape)

    def buffer(channel: int, total: int, hw: tuple[int, int]) -> np.ndarray:
        total = total or c
        return aligned((case.batch, *hw, total) if case.layout == "nhwc" else (case.batch, total, *hw))

    xb, yb = buffer(*case.x_slice, (h, w)), buffer(*case.y_slice, (oh, ow))
    to_layout = (0, 2, 3, 1) if case.layout == "nhwc" else (0, 1, 2, 3)
    channel_axis = 3 if case.layout == "nhwc" else 1
    np.moveaxis(xb, channel_axis, 0)[case.x_slice[0]:case.x_slice[0] + c] = np.moveaxis(x.transpose(to_layout),
                                                                                         channel_axis, 0)
    kernel = aligned(weight[:, 0].transpose(1, 2, 0).shape if case.layout == "nhwc" else weight[:, 0].shape)
    kernel[...] = weight[:, 0].transpose(1, 2, 0) if case.layout == "nhwc" else weight[:, 0]
    b = aligned((c,))
    b[...] = bias
    r, s_ = conv.kernel
    strides = (1, s_ * c, c) if case.layout == "nhwc" else (r * s_, s_, 1)
    call = DepthwiseCall(host_view(xb, case.layout, case.x_slice[0], c), host_view(yb, case.layout, case.y_slice[0], c),
                         kernel.ctypes.data, strides, b.ctypes.data, conv, case.pre_act)
    launch = dw.launch(call, H100_SMS)
    run_threads(lib, launch, dw.KERNELS[launch.kernel], reverse)
    assert all(guards_intact(a) for a in (xb, yb, kernel, b)), "written outside a buffer"

    y = np.moveaxis(yb, channel_axis, 0)
    first = case.y_slice[0]
    assert np.isnan(y[:first]).all() and np.isnan(y[first + c:]).all(), "written outside y's channels"
    out = np.moveaxis(y[first:first + c], 0, channel_axis)
    out = out.transpose(0, 3, 1, 2) if case.layout == "nhwc" else out
    pre = ACTIVATION_FUNCTIONS[case.pre_act](x.astype(np.float64))
    ref = conv2d(conv, [pre], {"weight": weight.astype(np.float64), "bias": bias.astype(np.float64)})
    return out, ref, launch.kernel


HOST_CASES = {
    "k3s1-vector": HostCase(16, (13, 11), depthwise_conv(16, 3, 1)),
    "k5s2-vector-batch3": HostCase(8, (17, 15), depthwise_conv(8, 5, 2), batch=3),
    "k7s1-scalar-act-relu": HostCase(6, (9, 13), depthwise_conv(6, 7, 1, act="relu"), "none"),
    "k3s2-no-padding": HostCase(7, (12, 10), depthwise_conv(7, 3, 2, padding=0), batch=3),
    "k5s1-uneven-padding": HostCase(12, (10, 9), Conv(12, (5, 5), (1, 1), (0, 2), groups=12)),
    "k7s2-wide-padding": HostCase(4, (8, 8), depthwise_conv(4, 7, 2, padding=4)),
    "one-pixel": HostCase(4, (1, 1), depthwise_conv(4, 3, 1)),
    "x-slice-vector": HostCase(8, (9, 11), depthwise_conv(8, 3, 1), x_slice=(8, 24)),
    "x-y-slices-scalar": HostCase(5, (9, 11), depthwise_conv(5, 5, 2), x_slice=(6, 11), y_slice=(3, 13)),
    "y-slice-vector": HostCase(8, (9, 11), depthwise_conv(8, 7, 1), y_slice=(4, 16)),
    "dilation2-generic": HostCase(8, (11, 11), depthwise_conv(8, 3, 1, padding=2, dilation=2)),
    "k3x5-generic": HostCase(8, (11, 11), Conv(8, (3, 5), (1, 1), (1, 2), groups=8)),
    "k3s2-same-padding-vector": HostCase(8, (10, 9), Conv(8, (3, 3), (2, 2), (0, 0), padding_end=(1, 1), groups=8)),
    "k5s2-asymmetric-nchw-generic": HostCase(
        6, (11, 10), Conv(6, (5, 5), (2, 2), (1, 2), padding_end=(2, 1), groups=6), layout="nchw"
    ),
    "sigmoid-generic": HostCase(8, (9, 9), depthwise_conv(8, 3), "sigmoid"),
    **{f"k3s2-{act}": HostCase(8, (9, 9), depthwise_conv(8, 3, 2, act=act)) for act in ZOO_ACTIVATIONS},
    "nchw-generic": HostCase(8, (13, 11), depthwise_conv(8, 5, 2), layout="nchw", x_slice=(2, 12)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(HOST_CASES))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("threads_per_sm", [0, dw.THREADS_PER_SM])  # the most work per thread; as dispatched
def test_kernels_on_the_host_equal_reference(host_kernels, monkeypatch, case, threads_per_sm, reverse):
    monkeypatch.setattr(dw, "THREADS_PER_SM", threads_per_sm)
    out, ref, kernel = run_on_host(host_kernels, HOST_CASES[case], reverse)
    assert (kernel == dw.GENERIC) is case.endswith("generic")
    assert_close(out, ref)


def each_fast_kernel(test):
    """Parametrize ``test`` over every fast kernel: kernel size, stride and (channels, outputs) per thread."""
    test = pytest.mark.parametrize("shape", dw.FAST_SHAPES, ids=lambda s: f"v{s[0]}t{s[1]}")(test)
    test = pytest.mark.parametrize("stride", dw.FAST_STRIDES)(test)
    return pytest.mark.parametrize("kernel", dw.FAST_KERNEL_SIZES)(test)


@pytest.mark.slow
@each_fast_kernel
def test_every_fast_kernel_on_the_host_equals_reference(host_kernels, monkeypatch, kernel, stride, shape):
    monkeypatch.setattr(dw, "fast_shape", lambda call, sms: shape)
    case = HostCase(16, (15, 13), depthwise_conv(16, kernel, stride), x_slice=(4, 24))
    for reverse in (False, True):
        out, ref, name = run_on_host(host_kernels, case, reverse=reverse)
        assert name == dw.fast_kernel(kernel, stride, *shape)
        assert_close(out, ref)


# ---- graphs: the engine's own views (CPU), run on the GPU below ----------------------------------


def depthwise_graph(c: int, size: tuple[int, int], conv: Conv, pre_act: str = "relu") -> Graph:
    """One depthwise convolution of the input, ``pre_act`` folded into it as in `relu_sep_conv`."""
    b = GraphBuilder("depthwise", c, *size)
    y = b.sequential(b.input, Activation(pre_act), conv) if pre_act != "none" else b.node(conv, b.input)
    b.end_block(y)
    return b.build()


def slice_graph(first: int, second: int) -> Graph:
    """Depthwise convolutions that read and write channel slices of concatenations (the engine hosts them in place)."""
    b = GraphBuilder("slices", 12, 9, 11)
    a = b.conv(b.input, first, 1, act="none")
    c = b.conv(b.input, second, 1, act="none")
    cat = b.identity(concat([a, c]))
    d1 = b.sequential(a, Activation("relu"), depthwise_conv(first))
    d2 = b.node(depthwise_conv(second, 5), c)
    out = b.identity(concat([d1, d2]))
    b.end_block(b.add(out, cat))
    return b.build()


@pytest.mark.parametrize(("first", "second", "vector"), [(8, 8, True), (6, 5, False)])
def test_slices_of_concatenations_reach_the_kernels(first, second, vector):
    graph = slice_graph(first, second)
    program = lower(graph, S.sequential(graph), 2)
    tasks = [t for t in program.tasks if getattr(t, "depthwise", False)]
    assert len(tasks) == 2
    for task in tasks:
        for view in (task.x, task.y):
            assert program.buffers[view.buffer].channels == first + second  # a slice of a wider buffer
        offset, dims, strides = program.locate(task.x)
        y_offset, y_dims, y_strides = program.locate(task.y)
        x, y = Operand(ARENA + 4 * offset, dims, strides), Operand(ARENA + 4 * y_offset, y_dims, y_strides)
        call = nhwc_call(task.conv, x, task.pre_act, y)
        assert dw.fast_path_refusal(call) is None and dw.vectorizable(call) is vector
    assert {t.pre_act for t in tasks} == {"relu", "none"}
    assert any(program.locate(t.x)[0] % (first + second) for t in tasks)  # one starts past channel 0


# ---- GPU -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu():
    require_gpu()


@pytest.mark.gpu
@each_fast_kernel
def test_every_fast_kernel_equals_reference(gpu, monkeypatch, kernel, stride, shape):
    """Each kernel forced in turn on a 16-channel 15x13 input: W not divisible by 2 or 4, borders on every side."""
    monkeypatch.setattr(dw, "fast_shape", lambda call, sms: shape)
    graph = depthwise_graph(16, (15, 13), depthwise_conv(16, kernel, stride))
    out, ref, kernels = run_on_gpu(graph, 2)
    assert dw.fast_kernel(kernel, stride, *shape) in kernels
    assert_close(out, ref)


GPU_CASES = {  # name: (channels, (H, W), conv, pre_act, batch, layout, expected kernel)
    "k3s1-relu-vector": (16, (13, 11), depthwise_conv(16, 3, 1), "relu", 2, "nhwc", "depthwise_nhwc_k3_s1_v4_t4"),
    "k5s2-vector": (8, (17, 15), depthwise_conv(8, 5, 2), "relu", 3, "nhwc", "depthwise_nhwc_k5_s2_v4_t4"),
    "k7s1-scalar-act-relu": (6, (9, 13), depthwise_conv(6, 7, 1, act="relu"), "none", 2, "nhwc",
                             "depthwise_nhwc_k7_s1_v1_t4"),
    "k3s2-scalar-no-padding": (7, (12, 10), depthwise_conv(7, 3, 2, padding=0), "relu", 3, "nhwc",
                               "depthwise_nhwc_k3_s2_v1_t4"),
    "k5s1-uneven-padding": (12, (10, 9), Conv(12, (5, 5), (1, 1), (0, 2), groups=12), "relu", 2, "nhwc",
                            "depthwise_nhwc_k5_s1_v4_t4"),
    "k7s2-wide-padding": (4, (8, 8), depthwise_conv(4, 7, 2, padding=4), "relu", 2, "nhwc",
                          "depthwise_nhwc_k7_s2_v4_t4"),
    "dilation2-generic": (8, (11, 11), depthwise_conv(8, 3, 1, padding=2, dilation=2), "relu", 2, "nhwc",
                          dw.GENERIC),
    "k3x5-generic": (8, (11, 11), Conv(8, (3, 5), (1, 1), (1, 2), groups=8), "relu", 2, "nhwc", dw.GENERIC),
    "sigmoid-generic": (8, (9, 9), depthwise_conv(8, 3), "sigmoid", 2, "nhwc", dw.GENERIC),
    **{f"k3s1-{act}-vector": (8, (9, 9), depthwise_conv(8, 3, act=act), "relu", 2, "nhwc", "depthwise_nhwc_k3_s1_v4_t4")
       for act in ZOO_ACTIVATIONS},
    "nchw-generic": (8, (13, 11), depthwise_conv(8, 5, 2), "relu", 2, "nchw", dw.GENERIC),
}


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(GPU_CASES))
def test_depthwise_equals_reference(gpu, most_work, case):
    channels, size, conv, pre_act, batch, layout, kernel = GPU_CASES[case]
    out, ref, kernels = run_on_gpu(depthwise_graph(channels, size, conv, pre_act), batch, layout)
    assert kernels["depthwise"] == kernels[kernel] == 1
    assert_close(out, ref)


@pytest.mark.gpu
@pytest.mark.parametrize(("channels", "size", "batch"), [(32, (21, 21), 16), (42, (83, 83), 4), (672, (11, 11), 1)])
def test_depthwise_as_dispatched_equals_reference(gpu, channels, size, batch):
    """NasNet-like layers with the work per thread the host picks for this GPU."""
    graph = depthwise_graph(channels, size, depthwise_conv(channels, 5, 1))
    out, ref, kernels = run_on_gpu(graph, batch)
    assert kernels["depthwise"] == 1 and any(name.startswith("depthwise_nhwc_k5_s1_") for name in kernels)
    assert_close(out, ref)


@pytest.mark.gpu
@pytest.mark.parametrize(("first", "second", "vector"), [(8, 8, True), (6, 5, False)])
def test_depthwise_on_slices_of_concatenations_equals_reference(gpu, most_work, first, second, vector):
    out, ref, kernels = run_on_gpu(slice_graph(first, second), 3)
    fast = [name for name in kernels if name.startswith("depthwise_nhwc_")]
    assert kernels["depthwise"] == 2 and fast and all(name.endswith(f"_v{4 if vector else 1}_t4") for name in fast)
    assert_close(out, ref)
