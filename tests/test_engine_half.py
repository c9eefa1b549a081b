"""fp16 and bf16 in the engine without a GPU: element types, arena sizes, weight packs, kernel instances and
launches on the fake GPU (`fake_gpu`), and our templated kernels run thread by thread on the host (`kernel_harness`)."""

from __future__ import annotations

import numpy as np
import pytest
from fake_gpu import FakeGpu
from kernel_harness import KERNEL_DIR, build_for_host, marker, run_threads
from test_engine_cases import SCHEDULES
from test_pooling import host_markers

from ios_core import models
from ios_core.engine import PlanOptions, lower, verify
from ios_core.engine import channelwise as cw
from ios_core.engine import depthwise as dw
from ios_core.engine import pooling as pl
from ios_core.engine.depthwise import Launch, Operand
from ios_core.engine.elements import ELEMENTS, ENGINE_PRECISIONS, element_of
from ios_core.engine.program import POINTWISE_SIGNATURE
from ios_core.ir import Conv, LayerNorm, Pool
from ios_core.precision import PRECISIONS
from ios_core.reference import KERNELS, conv2d, pool2d

HALF = ("fp16", "bf16")


# ---- the element table ---------------------------------------------------------------------------


def test_every_precision_has_its_element():
    assert ENGINE_PRECISIONS == PRECISIONS
    assert {p: element_of(p).itemsize for p in PRECISIONS} == {"fp32": 4, "fp32-strict": 4, "fp16": 2, "bf16": 2}


def test_kernel_instances_are_named_by_their_element_suffix():
    f16, bf16, f32 = ELEMENTS["float16"], ELEMENTS["bfloat16"], ELEMENTS["float32"]
    assert [f32.kernel("pointwise_f32"), f16.kernel("pointwise_f32"), bf16.kernel("pool2d_f32")] == [
        "pointwise_f32", "pointwise_f16", "pool2d_bf16"]
    assert [f32.kernel("pool_nhwc_max_v4"), f16.kernel("pool_nhwc_max_v4")] == ["pool_nhwc_max_v4",
                                                                                "pool_nhwc_max_v4_f16"]


def test_bfloat16_rounds_to_nearest_even_and_keeps_nan_and_infinity():
    bf16 = ELEMENTS["bfloat16"]
    x = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -3.3, np.inf, -np.inf, np.nan, 3e38], np.float32)
    back = bf16.to_float32(bf16.to_storage(x))
    np.testing.assert_array_equal(back[:3], [1.0, 1.0, 1 + 2**-6])  # ties go to the even mantissa
    assert abs(back[3] + 3.3) <= 3.3 * 2**-8 and np.isposinf(back[4]) and np.isneginf(back[5])
    assert np.isnan(back[6]) and np.isfinite(back[7])
    rng = np.random.default_rng(0).standard_normal(10_000).astype(np.float32)
    assert np.abs(bf16.to_float32(bf16.to_storage(rng)) - rng).max() <= np.abs(rng).max() * 2**-8


def test_float16_is_numpys():
    f16 = ELEMENTS["float16"]
    x = np.random.default_rng(1).standard_normal(100).astype(np.float32)
    np.testing.assert_array_equal(f16.to_storage(x), x.astype(np.float16))


# ---- lowering: arena bytes by element size -------------------------------------------------------


@pytest.mark.parametrize("name", ["inception_v3", "nasnet", "randwire", "squeezenet"])
def test_16_bit_programs_take_half_the_bytes_of_each_buffer_and_stay_valid(name):
    graph = models.get(name)
    schedule = SCHEDULES["merged_greedy"](graph)
    wide = lower(graph, schedule, 2, "nhwc", itemsize=4)
    narrow = lower(graph, schedule, 2, "nhwc", itemsize=2)
    verify(narrow)
    assert all(o % 256 == 0 for o in narrow.offsets)
    assert all(narrow.buffer_bytes(b.index) * 2 == wide.buffer_bytes(b.index) for b in narrow.buffers
               if b in wide.buffers)
    assert narrow.arena_bytes <= wide.arena_bytes // 2 + 256 * len(narrow.buffers)
    # cuDNN's 16-byte rule holds in bytes: every convolution operand of the 16-bit program starts aligned
    assert all(narrow.aligned(v) for t in narrow.tasks if type(t).__name__ == "ConvTask" and not t.depthwise
               for v in (t.x, t.y))


# ---- the GPU half on the fake GPU ----------------------------------------------------------------


@pytest.fixture
def gpu():
    fake = FakeGpu()
    yield fake
    fake.close()


def half_plan(gpu: FakeGpu, name: str, precision: str, batch: int = 1, **options):
    graph = models.get(name)
    plan = gpu.engine["plan"].build_plan(graph, SCHEDULES["merged_greedy"](graph), batch, precision, None,
                                         PlanOptions(**options))
    return graph, plan


@pytest.mark.parametrize("precision", HALF)
@pytest.mark.parametrize("name", ["inception_v3", "nasnet", "randwire", "squeezenet"])
def test_a_16_bit_plan_launches_its_elements_kernels_and_converts_at_its_boundary(gpu, name, precision):
    element = element_of(precision)
    graph, plan = half_plan(gpu, name, precision)
    assert plan.program.itemsize == 2 and plan.stats.arena_bytes == plan.program.arena_bytes
    start = len(gpu.recorder.calls)
    plan(np.zeros((1, *graph.shapes[graph.input.name]), np.float32))
    calls = gpu.recorder.calls[start:]
    kernels = [c[1] for c in calls if c[0] == "kernel"]
    assert kernels[0] == f"convert_in_{element.suffix}" and kernels[-1] == f"convert_out_{element.suffix}"
    assert all(k.endswith(f"_{element.suffix}") for k in kernels), "a float32 kernel on 16-bit memory"
    uploads = [c for c in calls if c[0] == "htod"]
    assert uploads[0][2] == 4 * int(np.prod(graph.shapes[graph.input.name]))  # the input crosses as float32
    geometries = {g.precision for g in gpu.engine["convs"].conv_library(True, None).graphs}
    assert precision in geometries  # cuDNN graphs (and their tune-cache keys) carry the precision


@pytest.mark.parametrize("barrier", ["stage", "exact"])
def test_the_boundary_conversions_come_first_and_last_on_stream_0_whatever_the_barrier(gpu, barrier):
    graph, plan = half_plan(gpu, "nasnet", "fp16", barrier=barrier)
    start = len(gpu.recorder.calls)
    plan.enqueue()
    calls = [c for c in gpu.recorder.calls[start:] if c[0] in ("kernel", "cudnn", "wait", "record")]
    stream0 = plan.streams[0].handle
    assert calls[0][:2] == ("kernel", "convert_in_f16") and calls[0][4] == stream0
    assert calls[-1][:2] == ("kernel", "convert_out_f16") and calls[-1][4] == stream0
    side = {c[1] for c in calls if c[0] == "wait"} - {stream0}
    assert side, "the plan runs groups on several streams"
    # every side stream is joined into stream 0 before the output is converted
    joins = [c for c in calls if c[0] == "wait" and c[1] == stream0]
    assert joins and gpu.recorder.calls.index(joins[-1], start) < gpu.recorder.calls.index(calls[-1], start)


@pytest.mark.parametrize("precision", HALF)
def test_a_16_bit_plan_is_poisoned_with_its_own_nan_and_uploads_weights_in_its_type(gpu, precision):
    element = element_of(precision)
    graph, plan = half_plan(gpu, "demo", precision)
    poison = [c for c in gpu.recorder.calls if c[0] in ("memset", "memset16")]
    assert poison[-1] == ("memset16", int(plan.arena), element.nan, plan.program.arena_bytes // 2)
    host = gpu.recorder.allocs[gpu.recorder.where(int(plan.weights))[0]].host
    assert host.dtype == np.dtype(element.host)
    fills = [c for c in gpu.recorder.calls if c[0] == "kernel now" and c[1].startswith("fill_random")]
    assert fills and all(c[1] == f"fill_random_{element.suffix}" and c[4][1] == plan.program.arena_bytes // 2
                         for c in fills)


@pytest.mark.parametrize("precision", HALF)
def test_a_16_bit_stage_profiler_times_stages_of_its_element(gpu, precision):
    from ios_core.timing import Timing

    graph = models.get("nasnet")
    stage = max(SCHEDULES["merged_greedy"](graph).stages, key=lambda s: len(s.groups))
    profiler = gpu.engine["stageplan"].gpu_profiler(graph, 1, precision, timing=Timing(warmup=1, number=2, repeat=2))
    assert profiler.program(stage).itemsize == 2
    start = len(gpu.recorder.calls)
    assert profiler.latency(stage) > 0
    kernels = {c[1] for c in gpu.recorder.calls[start:] if c[0] == "kernel"}
    assert kernels and all(k.endswith(f"_{element_of(precision).suffix}") for k in kernels)


# ---- our kernels for 16-bit elements, on the host ------------------------------------------------


def host_array(shape: tuple[int, ...], element, values: np.ndarray | None = None) -> np.ndarray:
    """A 64-byte aligned host copy in ``element`` (NaN where ``values`` is None)."""
    size = int(np.prod(shape))
    raw = np.zeros(size + 64, element.host)
    start = (-raw.ctypes.data % 64) // raw.itemsize
    out = raw[start:start + size].reshape(shape)
    out[...] = element.to_storage(np.full(shape, np.nan, np.float32) if values is None else values)
    return out


def nhwc_operand(array: np.ndarray) -> Operand:
    n, h, w, c = array.shape
    return Operand(array.ctypes.data, (n, c, h, w), (h * w * c, 1, w * c, c), array.itemsize)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_the_pointwise_kernel_adds_and_activates_16_bit_elements_in_float(tmp_path, dtype):
    element = ELEMENTS[dtype]
    lib = build_for_host(KERNEL_DIR / "pointwise.cu", {"pointwise_f32": marker("pointwise_f32")}, tmp_path, element)
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((2, 5, 3, 8)).astype(np.float32) for _ in range(2))
    ha, hb, hy = host_array(a.shape, element, a), host_array(b.shape, element, b), host_array(a.shape, element)
    args = cw.pointwise_args(nhwc_operand(hy), nhwc_operand(ha), nhwc_operand(hb), "add", "relu")
    run_threads(lib, Launch("pointwise_f32", (4, 1), (64, 1, 1), args), POINTWISE_SIGNATURE, element=element)
    exact = np.maximum(element.to_float32(ha) + element.to_float32(hb), 0)
    np.testing.assert_array_equal(element.to_float32(hy), element.to_float32(element.to_storage(exact)))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_the_fast_pools_read_16_bit_vectors_and_equal_the_reference(tmp_path, dtype, kind):
    element = ELEMENTS[dtype]
    lib = build_for_host(KERNEL_DIR / "pool.cu", host_markers(), tmp_path, element)
    x = np.random.default_rng(3).standard_normal((2, 7, 9, 8)).astype(np.float32)  # NHWC, C = 8
    hx = host_array(x.shape, element, x)
    # a window a thread, and a global pool a block (its 63 cells make a wide window)
    for pool, launcher, dims in ((Pool(kind, (3, 3), (2, 2), (1, 1)), pl.fast_launch, (2, 4, 5, 8)),
                                 (Pool(f"global_{kind}"), pl.wide_launch, (2, 1, 1, 8))):
        hy = host_array(dims, element)
        call = pl.PoolCall(nhwc_operand(hx), nhwc_operand(hy), pool)
        assert pl.vectorizable(call)  # 8-byte aligned: four 16-bit channels a load
        launch = launcher(call, 4)
        run_threads(lib, launch, pl.KERNELS[launch.kernel], element=element, blocks=launcher is pl.wide_launch)
        ref = pool2d(pool, [element.to_float32(hx).transpose(0, 3, 1, 2).astype(np.float64)], {})
        out = element.to_float32(hy).transpose(0, 3, 1, 2)
        assert np.abs(out - ref).max() <= 2 * np.abs(ref).max() * (2**-11 if dtype == "float16" else 2**-8)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_the_fast_depthwise_kernel_reads_16_bit_vectors_and_equals_the_reference(tmp_path, monkeypatch, dtype):
    monkeypatch.setattr(dw, "THREADS_PER_SM", 0)  # the most work a thread: four channels, four outputs
    element = ELEMENTS[dtype]
    markers = {name: "depthwise_##SUFFIX(" if name == dw.GENERIC else
               "depthwise_nhwc_k##K##_s##S##_v##V##_t##T##NAME(" for name in dw.KERNELS}
    lib = build_for_host(KERNEL_DIR / "depthwise.cu", markers, tmp_path, element)
    rng = np.random.default_rng(4)
    c = 8
    conv = Conv(c, (3, 3), (1, 1), (1, 1), groups=c, act="relu")
    x = rng.standard_normal((2, 6, 7, c)).astype(np.float32)  # NHWC
    weight, bias = rng.standard_normal((c, 1, 3, 3)) / 3, rng.standard_normal(c)
    hx, hy = host_array(x.shape, element, x), host_array(x.shape, element)
    hw = host_array((3, 3, c), element, weight[:, 0].transpose(1, 2, 0))  # R x S x C, as packing lays it out
    hb = host_array((c,), element, bias)
    call = dw.DepthwiseCall(nhwc_operand(hx), nhwc_operand(hy), hw.ctypes.data, (1, 3 * c, c), hb.ctypes.data, conv)
    assert dw.vectorizable(call)
    launch = dw.launch(call, 1)
    assert launch.kernel == "depthwise_nhwc_k3_s1_v4_t4"
    run_threads(lib, launch, dw.KERNELS[launch.kernel], element=element)
    params = {"weight": element.to_float32(hw).transpose(2, 0, 1)[:, None].astype(np.float64),
              "bias": element.to_float32(hb).astype(np.float64)}
    ref = conv2d(conv, [element.to_float32(hx).transpose(0, 3, 1, 2).astype(np.float64)], params)
    out = element.to_float32(hy).transpose(0, 3, 1, 2)
    assert np.abs(out - ref).max() <= 2 * np.abs(ref).max() * (2**-11 if dtype == "float16" else 2**-8)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_layer_norm_over_16_bit_channels_by_a_warp_equals_the_reference(tmp_path, dtype):
    element = ELEMENTS[dtype]
    lib = build_for_host(KERNEL_DIR / "norm.cu", {cw.NORM: marker(cw.NORM)}, tmp_path, element)
    rng = np.random.default_rng(5)
    x = (3 * rng.standard_normal((2, 3, 4, 40)) + 1).astype(np.float32)  # NHWC, more channels than lanes
    hx, hy = host_array(x.shape, element, x), host_array(x.shape, element)
    weight, bias = (host_array((40,), element, rng.standard_normal(40)) for _ in range(2))
    op = LayerNorm(1e-6)
    launch = cw.norm_launch(nhwc_operand(hx), nhwc_operand(hy), op, (weight.ctypes.data, bias.ctypes.data), 1)
    assert launch.args[1] == 32
    run_threads(lib, launch, cw.NORM_SIGNATURE, warps=True, element=element)
    params = {"weight": element.to_float32(weight), "bias": element.to_float32(bias)}
    ref = KERNELS[LayerNorm](op, [element.to_float32(hx).transpose(0, 3, 1, 2).astype(np.float64)], params)
    out = element.to_float32(hy).transpose(0, 3, 1, 2)
    assert np.abs(out - ref).max() <= 2 * np.abs(ref).max() * (2**-11 if dtype == "float16" else 2**-8)
