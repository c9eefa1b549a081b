"""A squeeze-and-excitation as one kernel (`ios_core.engine.excitation`, ``cuda/excite.cu``): where the lowering
folds it, what the simulator computes of it, the kernel run on the host against the float64 reference, and what a
plan on the fake GPU launches."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from dataclasses import replace

import numpy as np
import pytest
from fake_gpu import REGION, FakeGpu
from hypothesis import given, settings
from hypothesis import strategies as st
from kernel_harness import (
    ELEMENT_TYPES,
    KERNEL_DIR,
    assert_fits,
    build_for_host,
    kernel_params,
    run_threads,
)
from random_graphs import random_graphs
from test_engine_cases import SCHEDULES, one_stream
from test_engine_zoo_ops import empty, placed, read

from ios_core import schedule as S
from ios_core.engine import PlanOptions, lower, simulate
from ios_core.engine import excitation as ex
from ios_core.engine.depthwise import Launch, Operand
from ios_core.engine.elements import ELEMENTS
from ios_core.engine.program import ExciteTask, PoolTask, ProgramError, verify
from ios_core.ir import Conv, Graph, GraphBuilder, Pool
from ios_core.reference import conv2d, pool2d, relative_error, run_graph
from ios_core.weights import make_input, make_weights

RNG = np.random.default_rng(3)


def se_block(channels: int = 24, size: int = 7, mid: int = 6, pool: str = "global_avg", acts=("silu", "sigmoid"),
             reread: bool = False) -> Graph:
    """EfficientNet's squeeze-and-excitation: a depthwise convolution, its global pool, two 1 x 1 convolutions, the
    scale multiplied in; with ``reread``, the pooled pixel is also read by a second excitation beside the squeeze."""
    b = GraphBuilder("se_block", channels, size, size)
    x = b.conv(b.input, channels, 3, padding=1, groups=channels, act="silu")
    pooled = b.pool(x, pool)
    scale = b.conv(b.conv(pooled, mid, 1, act=acts[0]), channels, 1, act=acts[1])
    out = b.conv(b.mul(x, scale), channels, 1, act="none")
    b.end_block(b.mul(out, b.conv(pooled, channels, 1, act="sigmoid")) if reread else out)
    return b.build()


# ---- the lowering ---------------------------------------------------------------------------------


def test_a_squeeze_and_excitation_in_one_group_is_one_task():
    graph = se_block()
    program = lower(graph, one_stream(graph), 1)
    excites = [t for t in program.tasks if isinstance(t, ExciteTask)]
    assert len(excites) == 1 and not any(isinstance(t, PoolTask) for t in program.tasks)
    pool, squeeze, excite = (n.name for n in graph.operators[1:4])
    assert excites[0].node == excite and set(program.folded) == {pool, squeeze}
    assert pool not in program.values and squeeze not in program.values
    assert str(excites[0]).endswith(f"= excite[{squeeze} silu, {excite} sigmoid] global_avg_pool b1[0:24]")


def test_a_first_pass_of_bands_stays_and_the_excitation_pools_the_bands():
    graph = se_block(channels=32, size=112, mid=8)
    program = lower(graph, one_stream(graph), 1)
    kinds = [type(t) for t in program.tasks]
    assert kinds.count(PoolTask) == 1 and kinds.count(ExciteTask) == 1
    band, excite = (t for t in program.tasks if isinstance(t, (PoolTask, ExciteTask)))
    assert excite.x == band.y and program.buffers[band.y.buffer].height > 1


@pytest.mark.parametrize("schedule", [S.sequential, lambda g: one_stream(g)], ids=["own_stages", "one_stream"])
def test_no_fold_where_a_value_is_read_twice_or_the_three_are_apart(schedule):
    reread = se_block(reread=True)
    assert not any(isinstance(t, ExciteTask) for t in lower(reread, schedule(reread), 1).tasks)
    graph = se_block()
    folds = any(isinstance(t, ExciteTask) for t in lower(graph, schedule(graph), 1).tasks)
    assert folds == (schedule is not S.sequential)
    assert lower(graph, one_stream(graph), 1, fold_excitations=False).folded == ()


def test_the_kernel_takes_only_plain_one_by_one_convolutions_within_its_memory():
    dense = Conv(8, (1, 1))
    assert ex.fits(32, dense, replace(dense, out_channels=32))
    assert not ex.fits(32, dense, replace(dense, out_channels=16))
    assert not ex.fits(32, replace(dense, kernel=(3, 3), padding=(1, 1)), replace(dense, out_channels=32))
    assert not ex.fits(32, replace(dense, groups=2), replace(dense, out_channels=32))
    assert not ex.fits(ex.MAX_CHANNELS + 4, dense, replace(dense, out_channels=ex.MAX_CHANNELS + 4))
    assert not ex.fits(32, replace(dense, out_channels=ex.MAX_MID + 1), replace(dense, out_channels=32))


def test_verify_refuses_an_excitation_whose_output_is_not_one_pixel_of_its_channels():
    graph = se_block()
    program = lower(graph, one_stream(graph), 1)
    task = next(t for t in program.tasks if isinstance(t, ExciteTask))
    stages = tuple(tuple(tuple(replace(t, y=t.x) if t is task else t for t in stream) for stream in stage)
                   for stage in program.stages)
    with pytest.raises(ProgramError, match="not one pixel"):
        verify(replace(program, stages=stages))


@pytest.mark.parametrize("pool", ["global_avg", "global_max"])
@pytest.mark.parametrize("size", [7, 56])  # one pass; bands first
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_the_folded_program_simulates_as_the_reference(pool, size, layout):
    graph = se_block(size=size, pool=pool, acts=("relu6", "hardsigmoid"))
    weights, x = make_weights(graph), make_input(graph, 2)
    program = lower(graph, one_stream(graph), 2, layout)
    assert any(isinstance(t, ExciteTask) for t in program.tasks)
    out = simulate(program, graph, weights, {"input": x})[graph.output]
    assert relative_error(out, run_graph(graph, x, weights)) <= 1e-12


@settings(max_examples=50, deadline=None)
@given(random_graphs(max_ops=8, zoo=True), st.sampled_from(list(SCHEDULES)), st.sampled_from(["nhwc", "nchw"]))
def test_random_zoo_graphs_with_their_folds_simulate_as_the_reference(graph, schedule, layout):
    """Squeeze-and-excitations (and sums) among the zoo's other operators, folded wherever a schedule lets them."""
    weights, x = make_weights(graph), make_input(graph, 2)
    program = lower(graph, SCHEDULES[schedule](graph), 2, layout)
    out = simulate(program, graph, weights, {"input": x}, reverse=True)[graph.output]
    assert relative_error(out, run_graph(graph, x, weights)) <= 1e-9


# ---- the kernel on the host ------------------------------------------------------------------------


MARKER = "KERNEL##NAME("  # every instance's parameter list follows its macro's name


def test_the_signature_matches_the_source_and_the_limits_its_shared_memory():
    source = (KERNEL_DIR / "excite.cu").read_text()
    letters = "".join(letter for letter, _, _ in kernel_params(KERNEL_DIR / "excite.cu", MARKER))
    assert letters == ex.SIGNATURE and set(ex.KERNELS.values()) == {ex.SIGNATURE}
    assert sorted(re.findall(r"EXCITE\((excite_v\d), (\d)", source)) == sorted((k, k[-1]) for k in ex.KERNELS)
    for name, value in (("EXCITE_BLOCK", ex.BLOCK), ("EXCITE_CHANNELS", ex.MAX_CHANNELS), ("EXCITE_MID", ex.MAX_MID)):
        assert f"#define {name} {value} " in source


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_the_source_compiles_without_warnings(tmp_path):
    out = subprocess.run(
        ["nvcc", "-arch=sm_90", "-std=c++17", "-O3", "-I", str(KERNEL_DIR), "-cubin", "-o", str(tmp_path / "k.cubin"),
         str(KERNEL_DIR / "excite.cu")],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    assert "warning" not in out.lower()


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> dict[str, ctypes.CDLL]:
    """The kernels built for the CPU, by element type."""
    return {suffix: build_for_host(KERNEL_DIR / "excite.cu", dict.fromkeys(ex.KERNELS, MARKER),
                                   tmp_path_factory.mktemp(suffix), element)
            for element in ELEMENTS.values() if (suffix := element.suffix) in ELEMENT_TYPES}


HOST_CASES = {  # (n, C, H, W), mid, pool, acts, layout, (first channel, channels of x's buffer), kernel
    "efficientnet-late": ((1, 40, 7, 7), 10, "global_avg", ("silu", "sigmoid"), "nhwc", (0, 0), "excite_v4"),
    "more-channels-than-threads": ((2, 1030, 2, 1), 20, "global_avg", ("relu", "hardsigmoid"), "nhwc", (3, 1040),
                                   "excite_v1"),
    "more-vectors-than-threads": ((1, 4104, 1, 2), 9, "global_max", ("silu", "sigmoid"), "nhwc", (0, 0), "excite_v4"),
    "more-rows-than-warps": ((1, 16, 28, 1), 40, "global_max", ("relu6", "sigmoid"), "nhwc", (4, 24), "excite_v4"),
    "nchw-cell-lanes": ((3, 12, 5, 6), 3, "global_avg", ("silu", "sigmoid"), "nchw", (2, 20), "excite_v1"),
}


@pytest.mark.parametrize("case", list(HOST_CASES))
@pytest.mark.parametrize("reverse", [False, True])
def test_the_kernel_on_the_host_equals_the_reference(host, case, reverse):
    """A block's threads run concurrently on the host, meeting at each __syncthreads; blocks in either order."""
    dims, mid, kind, acts, layout, (first, total), kernel = HOST_CASES[case]
    n, c, _, _ = dims
    x = RNG.standard_normal(dims).astype(np.float32)
    if kind == "global_max":
        x[0, 3, -1, 0] = np.nan  # the max keeps a NaN, as the reference does
    convs = (Conv(mid, (1, 1), act=acts[0]), Conv(c, (1, 1), act=acts[1]))
    params = [{"weight": RNG.standard_normal((conv.out_channels, k, 1, 1)) / np.sqrt(k),
               "bias": RNG.standard_normal(conv.out_channels)} for conv, k in zip(convs, (c, mid), strict=True)]
    expected = pool2d(Pool(kind), [x.astype(np.float64)], {})
    for conv, p in zip(convs, params, strict=True):
        expected = conv2d(conv, [expected], p)
    arrays = [np.ascontiguousarray(p[name], np.float32).ravel() for p in params for name in ("weight", "bias")]
    _, xv = placed(x, layout, first, total)
    yb, yv = empty((n, c, 1, 1), layout, first, total)
    launch = ex.excite_launch(xv, yv, kind, convs, tuple(a.ctypes.data for a in arrays))
    assert launch.kernel == kernel and launch.grid == (n, 1) and launch.block == (ex.BLOCK, 1, 1)
    assert launch.args[1] == (min(c // int(kernel[-1]), ex.BLOCK) if layout == "nhwc" else 1)
    assert_fits(launch, ex.SIGNATURE)
    run_threads(host["f32"], launch, ex.SIGNATURE, reverse, blocks=True)
    out = read(yb, layout, first, c)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("suffix", ["f16", "bf16"])
def test_the_half_precision_instances_compute_in_float(host, suffix):
    element = next(e for e in ELEMENTS.values() if e.suffix == suffix)
    dims, mid = (1, 24, 4, 4), 6
    x = RNG.standard_normal(dims)
    convs = (Conv(mid, (1, 1), act="silu"), Conv(24, (1, 1), act="sigmoid"))
    params = [{"weight": RNG.standard_normal((conv.out_channels, k, 1, 1)) / np.sqrt(k),
               "bias": RNG.standard_normal(conv.out_channels)} for conv, k in zip(convs, (24, mid), strict=True)]
    stored = [element.to_storage(p[name].astype(np.float32).ravel()) for p in params for name in ("weight", "bias")]
    expected = pool2d(Pool("global_avg"), [element.to_float32(element.to_storage(x.astype(np.float32)))], {})
    for conv, p in zip(convs, params, strict=True):
        expected = conv2d(conv, [expected], {k: element.to_float32(element.to_storage(v.astype(np.float32)))
                                             for k, v in p.items()})
    xs = np.ascontiguousarray(element.to_storage(x.astype(np.float32)).transpose(0, 2, 3, 1))
    ys = np.zeros((1, 1, 1, 24), xs.dtype)
    item = xs.itemsize
    xv = Operand(xs.ctypes.data, dims, (16 * 24, 1, 4 * 24, 24), item)
    yv = Operand(ys.ctypes.data, (1, 24, 1, 1), (24, 1, 24, 24), item)
    launch = ex.excite_launch(xv, yv, "global_avg", convs, tuple(a.ctypes.data for a in stored))
    assert launch.kernel == "excite_v4"
    run_threads(host[suffix], launch, ex.SIGNATURE, blocks=True, element=element)
    out = element.to_float32(ys).reshape(1, 24, 1, 1)
    np.testing.assert_allclose(out, expected, rtol=1e-2, atol=1e-2)


# ---- the GPU half on a fake GPU ---------------------------------------------------------------------


@pytest.fixture
def gpu():
    fake = FakeGpu()
    yield fake
    fake.close()


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_a_plan_launches_the_excitation_with_its_weights_inside_their_memory(gpu, layout):
    graph = se_block()
    plan = gpu.engine["plan"].build_plan(graph, one_stream(graph), 2, "fp32", None,
                                         PlanOptions(layout=layout, autotune=False))
    start = len(gpu.recorder.calls)
    plan.enqueue()
    calls = [call for call in gpu.recorder.calls[start:] if call[0] == "kernel" and call[1] in ex.KERNELS]
    assert len(calls) == 1 and plan.stats.kernels["excite"] == 1
    call = calls[0]
    assert call[1] == ("excite_v4" if layout == "nhwc" else "excite_v1")
    assert_fits(Launch(call[1], call[2], call[3], call[5]), ex.SIGNATURE)
    w1, b1, w2, b2 = call[5][13:17]
    weights = gpu.recorder.where(int(plan.weights))[0]
    assert all(gpu.recorder.where(a)[0] == weights for a in (w1, b1, w2, b2) if a >= REGION)
    assert w1 < b1 < w2 < b2 or w2 < b2 < w1 < b1  # two packs, each its kernel then its bias
    plan.close()
