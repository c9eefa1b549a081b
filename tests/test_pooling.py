"""Our pooling kernels: the host's choice among them, and each one against the float64 reference.

On the CPU: `ios_core.engine.pooling` -- which kernel of ``cuda/pool.cu`` a pooling gets, the
fast kernels' thread decoding, the kernel table against the source -- and the kernels themselves,
built for the host with g++ and run thread by thread (`kernel_harness`). On the GPU (``pytest -m
gpu``, through the device tool; skipped without PyCUDA, the cuDNN frontend or a GPU): small graphs
with pools through the engine against `ios_core.reference`.
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
from ios_core.engine import PoolTask, lower
from ios_core.engine import pooling as pl
from ios_core.engine.depthwise import Operand
from ios_core.engine.elements import ELEMENTS
from ios_core.engine.pooling import PoolCall
from ios_core.ir import Graph, GraphBuilder, Pool, concat
from ios_core.ir.ops import Shape, rules_of
from ios_core.reference import pool2d

SOURCE = KERNEL_DIR / "pool.cu"
GENERIC_MARKER, FAST_MARKER = "pool2d_##SUFFIX(", "pool_nhwc_##KIND##_v##V##NAME("
WIDE_MARKER = "pool_nhwc_wide_##KIND##_v##V##NAME("
OUTPUT = ARENA + (1 << 30)

# ---- CPU: calls as the launcher builds them ----------------------------------------------------


def square(kind: str, kernel: int = 3, stride: int = 1, padding: int = 0) -> Pool:
    return Pool(kind, (kernel, kernel), (stride, stride), (padding, padding))


def output_dims(pool: Pool, x: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    n, c, h, w = x
    return n, *rules_of(pool).shape(pool, (Shape(c, h, w),))


def nhwc_call(pool: Pool, x: Operand, y: Operand | None = None) -> PoolCall:
    return PoolCall(x, y or nhwc(output_dims(pool, x.dims), base=OUTPUT), pool)


@pytest.fixture
def most_work(monkeypatch):
    """Every pool has enough threads, so the fast path takes float4 wherever it is aligned."""
    monkeypatch.setattr(pl, "THREADS_PER_SM", 0)


# ---- CPU: the kernel table against the source -----------------------------------------------------


def test_signatures_match_the_source():
    assert "".join(letter for letter, _, _ in kernel_params(SOURCE, GENERIC_MARKER)) == pl.GENERIC_SIGNATURE
    assert "".join(letter for letter, _, _ in kernel_params(SOURCE, FAST_MARKER)) == pl.FAST_SIGNATURE
    assert "".join(letter for letter, _, _ in kernel_params(SOURCE, WIDE_MARKER)) == pl.WIDE_SIGNATURE


def test_fast_kernels_are_the_ones_the_source_instantiates():
    instances = re.findall(r"POOL_NHWC\((\w+), (true|false), (\d), NAME, E\)", SOURCE.read_text())
    assert all((kind == "max") == (is_max == "true") for kind, is_max, _ in instances)
    names = [pl.fast_kernel(kind, int(vector)) for kind, _, vector in instances]
    assert sorted(names) == sorted(pl.FAST_KERNELS) and len(set(names)) == 4
    wide = re.findall(r"POOL_NHWC_WIDE\((\w+), (true|false), (\d), NAME, E\)", SOURCE.read_text())
    assert all((kind == "max") == (is_max == "true") for kind, is_max, _ in wide)
    assert sorted(pl.wide_kernel(kind, int(vector)) for kind, _, vector in wide) == sorted(pl.WIDE_KERNELS)
    assert set(pl.KERNELS) == {pl.GENERIC, *pl.FAST_KERNELS, *pl.WIDE_KERNELS} and len(pl.KERNELS) == 9


def test_the_wide_block_fits_the_shared_memory_of_the_source():
    assert f"#define WIDE_BLOCK {pl.WIDE_BLOCK} " in SOURCE.read_text()
    for vectors in (1, 3, 8, 10, 32, 500):
        lanes, cell_lanes = pl.wide_lanes(vectors)
        assert lanes == min(vectors, 32) and lanes * cell_lanes <= pl.WIDE_BLOCK < lanes * cell_lanes * 2
        assert cell_lanes & (cell_lanes - 1) == 0  # the block's halving reduction


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_source_compiles_without_warnings_to_every_kernel_of_the_table(tmp_path):
    out = subprocess.run(
        ["nvcc", "-arch=sm_90", "-std=c++17", "-O3", "-I", str(KERNEL_DIR), "-cubin", "-o", str(tmp_path / "p.cubin"),
         str(SOURCE), "--resource-usage"],
        capture_output=True, text=True, check=True,
    ).stderr  # fmt: skip
    assert "warning" not in out.lower()
    instances = {element.kernel(name) for element in ELEMENTS.values() for name in pl.KERNELS}
    assert set(re.findall(r"Function properties for (\w+)", out)) == instances


# ---- CPU: the choice of kernel -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool", "dims", "kernel", "window"),
    [
        (square("max", 3, 2), (2, 64, 147, 147), "pool_nhwc_max_v4", (3, 3, 2, 2, 0, 0, 0, 0, 0)),
        (square("avg", 3, 1, 1), (2, 192, 35, 35), "pool_nhwc_avg_v4", (3, 3, 1, 1, 1, 1, 1, 1, 0)),
        (Pool("avg", (3, 2), (2, 1), (1, 0)), (1, 8, 9, 7), "pool_nhwc_avg_v4", (3, 2, 2, 1, 1, 0, 1, 0, 0)),
        (Pool("global_max"), (1, 16, 3, 5), "pool_nhwc_max_v4", (3, 5, 1, 1, 0, 0, 0, 0, 0)),  # 15 cells
        (Pool("avg", (3, 3), (2, 2), (1, 0), (0, 2), True, True), (1, 8, 9, 9), "pool_nhwc_avg_v4",
         (3, 3, 2, 2, 1, 0, 0, 2, 1)),
    ],
)
def test_nhwc_pools_take_a_fast_kernel(most_work, pool, dims, kernel, window):
    call = nhwc_call(pool, nhwc(dims))
    assert pl.fast_path_refusal(call) is None and pl.vectorizable(call)
    launch = pl.launch(call, H100_SMS)
    assert launch.kernel == kernel and launch.args[6:15] == window
    assert launch.block == (pl.FAST_BLOCK, 1, 1)


@pytest.mark.parametrize(
    ("pool", "dims", "kernel", "grid", "block"),
    [  # grid: channel tiles x output pixels x samples; block: channel lanes x cell lanes
        (Pool("global_avg"), (2, 2048, 8, 8), "pool_nhwc_wide_avg_v4", 16 * 2, 32 * 8),
        (Pool("global_max"), (1, 16, 5, 7), "pool_nhwc_wide_max_v4", 1, 4 * 64),  # 35 cells
        (Pool("global_avg"), (1, 42, 7, 7), "pool_nhwc_wide_avg_v1", 2, 32 * 8),  # C % 4: scalar, two tiles
        (Pool("max", (4, 112), (4, 112)), (1, 32, 112, 112), "pool_nhwc_wide_max_v4", 28, 8 * 32),  # a band pass
    ],
)
def test_wide_windows_take_a_block_each(pool, dims, kernel, grid, block):
    launch = pl.launch(nhwc_call(pool, nhwc(dims)), H100_SMS)
    assert launch.kernel == kernel and launch.grid == (grid, 1) and launch.block == (block, 1, 1)
    p = dict(zip([name for _, name, _ in kernel_params(SOURCE, WIDE_MARKER)], launch.args, strict=True))
    assert p["lanes"] * pl.wide_lanes(p["lanes"])[1] == block and p["tiles"] * p["OH"] * p["OW"] * dims[0] == grid


@pytest.mark.parametrize("pool", [square("max", 3, 2), square("avg", 3, 1, 1), Pool("global_avg")])
def test_nchw_takes_the_generic_kernel(pool):
    x = nchw((2, 8, 9, 9))
    call = PoolCall(x, nchw(output_dims(pool, x.dims), base=OUTPUT), pool)
    assert "NCHW" in pl.fast_path_refusal(call)
    launch = pl.launch(call, H100_SMS)
    assert launch.kernel == pl.GENERIC and launch.args[0] == int(pool.kind.endswith("max"))
    assert launch.args[16] == (pool.kind == "global_avg")  # c_inner; a 1 x 1 NCHW output has channel stride 1
    assert launch.grid[0] <= H100_SMS * pl.GENERIC_BLOCKS_PER_SM and launch.block == (pl.GENERIC_BLOCK, 1, 1)


@pytest.mark.parametrize(
    "x",
    [nhwc((2**11, 64, 147, 147)), nhwc((2, 8, 64, 64), channels=2**20)],  # a big batch; a slice of a huge buffer
)
def test_offsets_beyond_32_bits_take_the_generic_kernel(x):
    call = nhwc_call(square("max", 3, 2), x)
    assert "32 bits" in pl.fast_path_refusal(call)
    launch = pl.launch(call, H100_SMS)
    assert launch.kernel == pl.GENERIC and launch.args[16] == 1  # c_inner: NHWC order coalesces


def test_generic_kernel_refuses_more_outputs_than_its_index_holds():
    x = nchw((2**16, 8, 64, 64))
    with pytest.raises(ValueError, match="32-bit"):
        pl.launch(PoolCall(x, nchw(x.dims, base=OUTPUT), square("max", 3, 1, 1)), H100_SMS)


@pytest.mark.parametrize(
    ("x", "y", "vector"),
    [
        (nhwc((1, 16, 9, 9)), None, True),
        (nhwc((1, 16, 9, 9), channels=48, channel=16), None, True),  # an aligned channel slice
        (nhwc((1, 6, 9, 9)), None, False),  # C % 4
        (nhwc((1, 8, 9, 9), channels=14), None, False),  # pixel stride 14
        (nhwc((1, 8, 9, 9), channels=16, channel=2), None, False),  # starts 8 bytes off
        (nhwc((1, 8, 9, 9)), nhwc((1, 8, 9, 9), channels=10, base=OUTPUT), False),
        (nhwc((1, 8, 9, 9)), nhwc((1, 8, 9, 9), channels=16, channel=6, base=OUTPUT), False),
        (nhwc((1, 8, 9, 9)), nhwc((1, 8, 9, 9), channels=16, channel=4, base=OUTPUT), True),
    ],
)
def test_float4_only_where_channels_strides_and_addresses_align(most_work, x, y, vector):
    call = nhwc_call(square("avg", 3, 1, 1), x, y)
    assert pl.fast_path_refusal(call) is None and pl.vectorizable(call) is vector
    assert pl.launch(call, H100_SMS).kernel == pl.fast_kernel("avg", 4 if vector else 1)


@pytest.mark.parametrize(
    ("pool", "dims", "vector"),
    [
        (square("max", 3, 2), (128, 64, 147, 147), 4),  # plenty of threads
        (square("avg", 3, 1, 1), (16, 288, 35, 35), 4),
        (square("max", 3, 2), (1, 64, 147, 147), 1),  # batch 1: spread over the SMs
        (square("avg", 3, 1, 1), (128, 42, 21, 21), 1),  # C % 4: scalar
    ],
)
def test_float4_only_while_every_sm_keeps_enough_threads(pool, dims, vector):
    call = nhwc_call(pool, nhwc(dims))
    assert pl.fast_vector(call, H100_SMS) == vector
    assert vector == 1 or pl.fast_threads(call, vector) >= H100_SMS * pl.THREADS_PER_SM


@pytest.mark.parametrize("vector", pl.FAST_VECTORS)
@pytest.mark.parametrize(
    ("pool", "dims"),
    [
        (square("max", 3, 2), (3, 8, 13, 11)),
        (square("avg", 3, 1, 1), (2, 12, 10, 17)),
        (Pool("global_avg"), (3, 4, 5, 5)),
    ],
)
def test_fast_threads_decode_to_every_output_once(pool, dims, vector):
    call = nhwc_call(pool, nhwc(dims))
    launch = pl.fast_launch(call, vector)
    p = dict(zip([name for _, name, _ in kernel_params(SOURCE, FAST_MARKER)], launch.args, strict=True))
    n, c, oh, ow = call.y.dims
    vectors = c // vector
    assert p["items"] == n * oh * ow * vectors == pl.fast_threads(call, vector)
    assert launch.grid[0] * launch.block[0] >= p["items"] > (launch.grid[0] - 1) * launch.block[0]

    decoded = decoded_threads(p, [("vectors", vectors), ("columns", ow), ("rows", oh)])
    assert (decoded < np.array([n, oh, ow, vectors], np.uint64)).all()
    assert len(np.unique(decoded, axis=0)) == p["items"]
    assert (p["C"], p["OH"], p["OW"]) == (c, oh, ow) and (p["x"], p["y"]) == (call.x.address, call.y.address)


@pytest.mark.parametrize("x", [nhwc((2, 8, 9, 9)), nchw((2, 8, 9, 9)), nhwc((3, 6, 7, 5), channels=10, channel=2)])
@pytest.mark.parametrize("pool", [square("max", 3, 2, 1), Pool("global_avg")])
def test_arguments_fit_their_signature(x, pool):
    y = Operand(OUTPUT, output_dims(pool, x.dims), x.strides) if x.strides[1] != 1 else None
    launch = pl.launch(nhwc_call(pool, x, y), H100_SMS)
    assert_fits(launch, pl.KERNELS[launch.kernel])


# ---- CPU: the kernels themselves, compiled for the host and run thread by thread -----------------


def host_markers() -> dict[str, str]:
    """Each kernel of ``pool.cu`` by its float32 name, with the text its parameter list follows (`build_for_host`)."""
    return {name: GENERIC_MARKER if name == pl.GENERIC else WIDE_MARKER if name in pl.WIDE_KERNELS else FAST_MARKER
            for name in pl.KERNELS}


@pytest.fixture(scope="module")
def host_kernels(tmp_path_factory) -> ctypes.CDLL:
    """``pool.cu`` built for the CPU; see `kernel_harness.build_for_host`."""
    return build_for_host(SOURCE, host_markers(), tmp_path_factory.mktemp("pool_kernels"))


@dataclass(frozen=True)
class HostCase:
    """A pooling of a (batch, C, H, W) input; x and y may be slices of wider buffers."""

    pool: Pool
    channels: int
    size: tuple[int, int]
    kernel: str  # the kernel the launcher picks when every SM has enough threads
    batch: int = 2
    layout: str = "nhwc"
    x_slice: tuple[int, int] = (0, 0)  # (first channel, buffer channels); 0 channels: the view's own
    y_slice: tuple[int, int] = (0, 0)
    nans: int = 0  # input values set to NaN


def host_call(case: HostCase) -> tuple[PoolCall, np.ndarray, np.ndarray, np.ndarray]:
    """The call on fresh host buffers, the NCHW input it holds, and the x and y buffers."""
    rng = np.random.default_rng(0)
    c, (h, w), pool = case.channels, case.size, case.pool
    x = rng.standard_normal((case.batch, c, h, w)).astype(np.float32)
    x.flat[rng.choice(x.size, case.nans, replace=False)] = np.nan
    _, _, oh, ow = output_dims(pool, x.shape)

    def buffer(total: int, hw: tuple[int, int]) -> np.ndarray:
        total = total or c
        return aligned((case.batch, *hw, total) if case.layout == "nhwc" else (case.batch, total, *hw))

    (x_first, x_total), (y_first, y_total) = case.x_slice, case.y_slice
    xb, yb = buffer(x_total, (h, w)), buffer(y_total, (oh, ow))
    x_channels = xb[..., x_first : x_first + c] if case.layout == "nhwc" else xb[:, x_first : x_first + c]
    x_channels[...] = x.transpose(0, 2, 3, 1) if case.layout == "nhwc" else x
    call = PoolCall(host_view(xb, case.layout, x_first, c), host_view(yb, case.layout, y_first, c), pool)
    return call, x, xb, yb


def y_channels(case: HostCase, yb: np.ndarray) -> np.ndarray:
    """y's channels as NCHW; checks that nothing was written to the other channels of its buffer."""
    y = np.moveaxis(yb, 3 if case.layout == "nhwc" else 1, 1)
    first, c = case.y_slice[0], case.channels
    assert np.isnan(y[:, :first]).all() and np.isnan(y[:, first + c :]).all(), "written outside y's channels"
    return y[:, first : first + c]


def run_on_host(lib: ctypes.CDLL, case: HostCase, reverse: bool = False, generic: bool = False) -> tuple:
    """The kernel's output (NCHW), the float64 reference and the kernel's name; checks writes stay in y's slice."""
    call, x, xb, yb = host_call(case)
    launch = pl.generic_launch(call, H100_SMS) if generic else pl.launch(call, H100_SMS)
    run_threads(lib, launch, pl.KERNELS[launch.kernel], reverse, blocks=launch.kernel in pl.WIDE_KERNELS)
    assert guards_intact(xb) and guards_intact(yb), "written outside a buffer"
    return y_channels(case, yb), pool2d(case.pool, [x.astype(np.float64)], {}), launch.kernel


def assert_pooled(out: np.ndarray, ref: np.ndarray, kind: str) -> None:
    """Max is exact, NaN where numpy has NaN; an average is within fp32 rounding of a few dozen terms."""
    if kind.endswith("max"):
        np.testing.assert_array_equal(out, ref.astype(np.float32))
    else:
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


HOST_CASES = {
    "max-s2-no-padding-vector": HostCase(square("max", 3, 2), 8, (11, 11), "pool_nhwc_max_v4"),
    "max-s1-padding-nan-scalar": HostCase(square("max", 3, 1, 1), 5, (9, 8), "pool_nhwc_max_v1", nans=6),
    "max-s2-padding-slices-vector": HostCase(
        square("max", 3, 2, 1), 8, (10, 9), "pool_nhwc_max_v4", batch=3, x_slice=(4, 16), y_slice=(8, 20), nans=4
    ),
    "avg-s1-padding-x-slice-vector": HostCase(square("avg", 3, 1, 1), 8, (9, 9), "pool_nhwc_avg_v4", x_slice=(4, 16)),
    "avg-s2-padding-slices-scalar": HostCase(
        square("avg", 3, 2, 1), 7, (10, 9), "pool_nhwc_avg_v1", batch=3, x_slice=(2, 11), y_slice=(3, 13)
    ),
    "avg-uneven-window-vector": HostCase(Pool("avg", (3, 2), (2, 1), (1, 0)), 4, (9, 7), "pool_nhwc_avg_v4"),
    "avg-nan-scalar": HostCase(square("avg", 2, 2), 6, (8, 8), "pool_nhwc_avg_v1", nans=3),
    "global-avg-y-slice-vector": HostCase(Pool("global_avg"), 12, (7, 9), "pool_nhwc_wide_avg_v4", y_slice=(4, 20)),
    "global-max-nan-scalar": HostCase(Pool("global_max"), 6, (5, 3), "pool_nhwc_max_v1", nans=2),
    "global-max-nan-wide-scalar": HostCase(Pool("global_max"), 6, (8, 9), "pool_nhwc_wide_max_v1", nans=5),
    "global-max-tiles-wide-vector": HostCase(Pool("global_max"), 144, (6, 7), "pool_nhwc_wide_max_v4", batch=3,
                                             x_slice=(4, 152)),
    "global-avg-slices-wide-scalar": HostCase(Pool("global_avg"), 5, (6, 7), "pool_nhwc_wide_avg_v1", batch=1,
                                              x_slice=(1, 9), y_slice=(2, 8)),
    "avg-band-wide-vector": HostCase(Pool("avg", (4, 10), (4, 10)), 8, (8, 10), "pool_nhwc_wide_avg_v4"),
    "max-nchw-generic": HostCase(square("max", 3, 2, 1), 8, (11, 10), pl.GENERIC, layout="nchw", x_slice=(2, 12)),
    "avg-nchw-generic": HostCase(square("avg", 3, 1, 1), 5, (7, 9), pl.GENERIC, layout="nchw", y_slice=(1, 8)),
    "global-avg-nchw-generic": HostCase(Pool("global_avg"), 6, (6, 5), pl.GENERIC, layout="nchw"),
    "max-ceil-vector": HostCase(Pool("max", (3, 3), (2, 2), ceil_mode=True), 8, (10, 8), "pool_nhwc_max_v4"),
    "avg-ceil-count-pad-scalar": HostCase(
        Pool("avg", (3, 3), (2, 2), (1, 1), ceil_mode=True, count_include_pad=True), 5, (10, 9), "pool_nhwc_avg_v1"
    ),
    "avg-asymmetric-count-pad-vector": HostCase(
        Pool("avg", (3, 3), (2, 2), (0, 1), (1, 0), count_include_pad=True), 8, (9, 10), "pool_nhwc_avg_v4"
    ),
    "avg-ceil-nchw-generic": HostCase(
        Pool("avg", (2, 3), (2, 2), (0, 1), ceil_mode=True), 6, (7, 8), pl.GENERIC, layout="nchw"
    ),
    "avg-count-pad-nchw-generic": HostCase(
        Pool("avg", (3, 3), (1, 2), (1, 0), (2, 2), count_include_pad=True), 4, (6, 7), pl.GENERIC, layout="nchw"
    ),
}


def test_host_cases_cover_every_kernel():
    assert {case.kernel for case in HOST_CASES.values()} == set(pl.KERNELS)


@pytest.mark.parametrize("case", list(HOST_CASES))
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("threads_per_sm", [0, pl.THREADS_PER_SM])  # float4 wherever aligned; as dispatched
def test_kernels_on_the_host_equal_reference(host_kernels, monkeypatch, case, reverse, threads_per_sm):
    monkeypatch.setattr(pl, "THREADS_PER_SM", threads_per_sm)
    out, ref, kernel = run_on_host(host_kernels, HOST_CASES[case], reverse)
    expected = HOST_CASES[case].kernel  # these pools are small: one thread a window takes float4 with most_work
    assert kernel == (expected.replace("_v4", "_v1") if threads_per_sm and expected in pl.FAST_KERNELS else expected)
    assert_pooled(out, ref, HOST_CASES[case].pool.kind)


@pytest.mark.parametrize("case", [name for name, case in HOST_CASES.items() if case.layout == "nhwc"])
def test_fast_and_generic_kernels_agree_bit_for_bit(host_kernels, most_work, case):
    fast, _, _ = run_on_host(host_kernels, HOST_CASES[case])
    generic, _, kernel = run_on_host(host_kernels, HOST_CASES[case], generic=True)
    assert kernel == pl.GENERIC
    if HOST_CASES[case].kernel.startswith("pool_nhwc_wide_avg"):  # a block sums in another order
        np.testing.assert_allclose(fast, generic, rtol=1e-6, atol=1e-7)
    else:
        np.testing.assert_array_equal(fast, generic)


# ---- graphs: the engine's own views (CPU), run on the GPU below ----------------------------------


def pool_graph(channels: int, size: tuple[int, int], pool: Pool) -> Graph:
    b = GraphBuilder("pool", channels, *size)
    b.end_block(b.node(pool, b.input))
    return b.build()


def inception_like(first: int) -> Graph:
    """An Inception-like block whose pools read and write channel slices of concatenations, then a global pool.

    The max pool lands in the block's concatenation at channel ``first``: float4 where ``first`` is a
    multiple of 4.
    """
    b = GraphBuilder("inception_like", 16, 17, 17)
    tower = b.conv(b.node(square("avg", 3, 1, 1), b.input), 12, 1, act="relu")
    cat = concat([b.conv(b.input, first, 1, act="relu"), b.node(square("max", 3, 1, 1), b.input), tower])
    x = b.end_block(b.identity(cat))
    reduced = concat([b.node(square("max", 3, 2), x), b.conv(x, 8, 3, 2, act="relu")])
    x = b.end_block(b.identity(reduced))
    b.end_block(b.node(Pool("global_avg"), x))
    return b.build()


@pytest.mark.parametrize(("first", "vector"), [(20, True), (6, False)])
def test_pools_on_slices_of_concatenations_reach_the_kernels(first, vector):
    graph = inception_like(first)
    program = lower(graph, S.sequential(graph), 2)
    tasks = [t for t in program.tasks if isinstance(t, PoolTask)]
    assert len(tasks) == 4

    def call(task) -> PoolCall:
        (x_offset, x_dims, xs), (y_offset, y_dims, ys) = program.locate(task.x), program.locate(task.y)
        return PoolCall(Operand(ARENA + 4 * x_offset, x_dims, xs), Operand(ARENA + 4 * y_offset, y_dims, ys), task.pool)

    calls = [call(task) for task in tasks]
    assert all(pl.fast_path_refusal(c) is None for c in calls)
    in_place = [c for c in calls if c.pool == square("max", 3, 1, 1)]
    assert len(in_place) == 1 and in_place[0].y.pixel_strides[2] == first + 16 + 12  # a slice of the concatenation
    assert pl.vectorizable(in_place[0]) is vector


# ---- GPU -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu():
    require_gpu()


GPU_CASES = {  # name: (channels, (H, W), pool, batch, layout, kernel when every SM has enough threads)
    "inception-max-s2": (288, (35, 35), square("max", 3, 2), 2, "nhwc", "pool_nhwc_max_v4"),
    "inception-avg-s1": (192, (35, 35), square("avg", 3, 1, 1), 2, "nhwc", "pool_nhwc_avg_v4"),
    "inception-global-avg": (2048, (8, 8), Pool("global_avg"), 2, "nhwc", "pool_nhwc_wide_avg_v4"),
    "squeezenet-max-s2": (64, (55, 55), square("max", 3, 2), 2, "nhwc", "pool_nhwc_max_v4"),
    "nasnet-odd-avg-s2": (11, (21, 21), square("avg", 3, 2, 1), 3, "nhwc", "pool_nhwc_avg_v1"),
    "nasnet-odd-max-s1": (42, (11, 11), square("max", 3, 1, 1), 2, "nhwc", "pool_nhwc_max_v1"),
    "global-max": (24, (7, 5), Pool("global_max"), 2, "nhwc", "pool_nhwc_wide_max_v4"),
    "global-avg-scalar": (42, (7, 7), Pool("global_avg"), 1, "nhwc", "pool_nhwc_wide_avg_v1"),  # one pass: 49 cells
    "nchw-avg": (16, (13, 11), square("avg", 3, 1, 1), 2, "nchw", pl.GENERIC),
    "nchw-max": (16, (13, 11), square("max", 3, 2, 1), 2, "nchw", pl.GENERIC),
}


@pytest.mark.gpu
@pytest.mark.parametrize("case", list(GPU_CASES))
def test_pool_equals_reference(gpu, most_work, case):
    channels, size, pool, batch, layout, kernel = GPU_CASES[case]
    out, ref, kernels = run_on_gpu(pool_graph(channels, size, pool), batch, layout)
    assert kernels["pool"] == kernels[kernel] == 1
    assert_close(out, ref)


@pytest.mark.gpu
@pytest.mark.parametrize("case", [name for name, case in GPU_CASES.items() if case[4] == "nhwc"])
def test_pool_as_dispatched_equals_reference(gpu, case):
    channels, size, pool, batch, layout, kernel = GPU_CASES[case]
    out, ref, kernels = run_on_gpu(pool_graph(channels, size, pool), batch, layout)
    assert kernels["pool"] == 1 and kernels.keys() & {kernel, kernel.replace("_v4", "_v1")}
    assert_close(out, ref)


@pytest.mark.gpu
@pytest.mark.parametrize(("first", "vector"), [(20, True), (6, False)])
def test_pools_on_slices_of_concatenations_equal_reference(gpu, most_work, first, vector):
    out, ref, kernels = run_on_gpu(inception_like(first), 2)
    fast = [name for name in kernels if name.startswith("pool_nhwc_")]
    assert kernels["pool"] == 4 and pl.GENERIC not in kernels
    assert ("pool_nhwc_max_v4" in fast) is vector and ("pool_nhwc_max_v1" in fast) is not vector
    assert_close(out, ref)


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("channels", "size", "kind"),
    [(32, (112, 112), "global_avg"), (96, (56, 56), "global_max"), (672, (14, 14), "global_avg"),
     (6, (60, 61), "global_avg")],
)
def test_global_pools_in_bands_equal_reference(gpu, channels, size, kind):
    # squeeze-excitation's pools: bands of rows by the wide kernel, then the bands (engine.pooling.first_pass_rows)
    out, ref, kernels = run_on_gpu(pool_graph(channels, size, Pool(kind)), 1)
    assert kernels["pool"] == 2 and kernels.keys() & set(pl.WIDE_KERNELS)
    assert_close(out, ref)
