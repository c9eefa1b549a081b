"""Pointwise tasks in a row on one stream sharing launches (`ios_core.engine.channelwise.pointwise_launches`): a
batch of independent ones (``pointwise_batch_f32`` of ``cuda/pointwise.cu``) and a chain of additions into one output
(``pointwise_sum_f32``). Which tasks share a launch, the parameters the host packs, and the kernels run on the host
against numpy; the plans' launches on the fake GPU are in ``test_engine_launch``."""

from __future__ import annotations

import ctypes
from math import inf

import numpy as np
import pytest
from kernel_harness import KERNEL_DIR, assert_close, build_for_host
from test_engine_zoo_ops import empty, placed, read

from ios_core.engine import channelwise as cw
from ios_core.engine.depthwise import Operand
from ios_core.engine.program import PointwiseTask, PoolTask, View
from ios_core.ir import Pool


def add(y: View, a: View, b: View | None = None, act: str = "none") -> PointwiseTask:
    return PointwiseTask("node", y, a, b, "none" if b is None else "add", act)


A, B, C, D = (View(i, 0, 8) for i in range(4))


# ---- which tasks share a launch ------------------------------------------------------------------


def kinds(tasks: list) -> list[tuple[str, int]]:
    return [(kind, len(group)) for kind, group in cw.pointwise_launches(tasks)]


def test_independent_pointwise_tasks_in_a_row_share_a_launch():
    tasks = [add(C, A, B), add(D, A), add(View(5, 0, 8), B, act="relu")]
    assert cw.pointwise_launches(tasks) == [("batch", tasks)]


@pytest.mark.parametrize(("second", "why"), [
    (add(D, C), "reads what the first writes"),
    (add(A, D), "writes what the first reads"),
    (add(View(2, 4, 8), D), "writes channels the first writes"),
])
def test_a_task_that_meets_the_run_starts_a_new_one(second, why):
    assert kinds([add(C, A, B), second]) == [("task", 1), ("task", 1)], why


def test_accumulation_in_place_is_one_part_and_other_tasks_stay_alone():
    in_place, pool = add(A, A, B), PoolTask("pool", D, C, Pool("global_avg"))
    other = add(View(6, 0, 8), B)
    assert kinds([in_place, other, pool, add(C, B)]) == [("batch", 2), ("task", 1), ("task", 1)]


def test_a_run_holds_as_many_parts_as_a_launch_does():
    tasks = [add(View(10 + i, 0, 8), A) for i in range(cw.BATCH_PARTS + 3)]
    assert kinds(tasks) == [("batch", cw.BATCH_PARTS), ("batch", 3)]


def test_a_chain_of_additions_into_one_output_is_one_sum_of_its_terms_in_order():
    chain = [add(D, A, B), add(D, D, C), add(D, D, View(7, 0, 8), act="relu")]
    assert cw.pointwise_launches([*chain, add(View(8, 0, 8), A)]) == [("sum", chain), ("task", [add(View(8, 0, 8), A)])]
    assert cw.sum_terms(chain) == [A, B, C, View(7, 0, 8)]


@pytest.mark.parametrize(("first", "second", "why"), [
    (add(D, A, B, act="relu"), add(D, D, C), "the first applies an activation before the second adds"),
    (add(D, A, B), add(D, D, View(3, 4, 8)), "the new term overlaps the output"),
    (add(D, A, B), add(View(9, 0, 8), D, C), "the second writes elsewhere"),
    (PointwiseTask("node", D, A, B, "mul"), add(D, D, C), "the first multiplies"),
])
def test_a_chain_breaks_where_the_sum_would_differ(first, second, why):
    assert [kind for kind, _ in cw.pointwise_launches([first, second])] != ["sum"], why


def test_a_chain_sums_as_many_terms_as_a_launch_holds():
    chain = [add(D, A, B), *(add(D, D, View(20 + i, 0, 8)) for i in range(cw.SUM_TERMS))]
    assert kinds(chain) == [("sum", cw.SUM_TERMS - 1), ("sum", 2)]


# ---- the parameter -------------------------------------------------------------------------------


def test_the_parameter_is_the_parts_arguments_row_by_row_then_zeros():
    args = [(1, 0, -inf, inf, 96, 8, 3, 4, 0x7F00, 96, 1, 32, 8, 0x8F00, 96, 1, 32, 8, 0x9F00, 0, 1, 0, 0),
            (0, 2, 0.0, 6.0, 10, 1, 1, 10, 0x1000, 10, 1, 1, 1, 0x2000, 10, 1, 1, 1, 0x2000, 10, 1, 1, 1)]
    param = cw.pointwise_batch(args)
    assert len(param) == cw.BATCH_PARTS * 152 and f"{len(param)}s" == cw.POINTWISE_BATCH_SIGNATURE
    table = np.frombuffer(param, cw.POINTWISE_PART)
    assert table[:2].tolist() == args
    assert not table[2:].tobytes().strip(b"\0")
    for count in (0, cw.BATCH_PARTS + 1):
        with pytest.raises(ValueError, match="parts"):
            cw.pointwise_batch(args[:1] * count)


# ---- the kernel on the host ----------------------------------------------------------------------

HOST_BATCH = r"""
// Every thread of a batch's launch, row by row (a part per row), in order or last first.
extern "C" void host_batch(const PointwiseBatch* batch, unsigned int rows, unsigned int grid, unsigned int block,
                           int reverse) {
    gridDim = {grid, rows, 1};
    blockDim = {block, 1, 1};
    for (unsigned int r = 0; r < rows; ++r)
        for (unsigned int i = 0; i < grid * block; ++i) {
            const unsigned int j = reverse ? grid * block - 1 - i : i;
            blockIdx = {j / block, reverse ? rows - 1 - r : r, 0};
            threadIdx = {j % block, 0, 0};
            pointwise_batch_f32(*batch);
        }
}



// Every thread of a sum's launch, in order or last first.
extern "C" void host_sum(const PointwiseSum* sum, unsigned int grid, unsigned int block, int reverse) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned int i = 0; i < grid * block; ++i) {
        const unsigned int j = reverse ? grid * block - 1 - i : i;
        blockIdx = {j / block, 0, 0};
        threadIdx = {j % block, 0, 0};
        pointwise_sum_f32(*sum);
    }
}
"""


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> ctypes.CDLL:
    lib = build_for_host(KERNEL_DIR / "pointwise.cu", {}, tmp_path_factory.mktemp("batch"), extra=HOST_BATCH)
    lib.host_batch.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
    lib.host_sum.argtypes = [ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_int]
    return lib


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_each_part_of_a_batch_computes_its_own_task(host, layout, reverse):
    """Three tasks of three sizes: a sum with a ReLU into a slice of a wider buffer, a copy, a product by a
    broadcast scale clipped to [0, 6]; the grid as wide as the largest needs, so the smaller ones' extra blocks
    must write nothing."""
    rng = np.random.default_rng(1)
    a1, b1 = rng.standard_normal((2, 2, 6, 5, 7))
    a2 = rng.standard_normal((1, 3, 2, 2))
    a3, scale = rng.standard_normal((2, 4, 3, 3)), rng.standard_normal((2, 4, 1, 1))
    inputs = [placed(x, layout) for x in (a1, b1, a2, a3, scale)]
    (_, va1), (_, vb1), (_, va2), (_, va3), (_, vscale) = inputs
    (y1, vy1), (y2, vy2), (y3, vy3) = empty(a1.shape, layout, 4, 10), empty(a2.shape, layout), empty(a3.shape, layout)
    args = [cw.pointwise_args(vy1, va1, vb1, "add", "relu"), cw.pointwise_args(vy2, va2, None, "none", "none"),
            cw.pointwise_args(vy3, va3, vscale, "mul", "none", (0.0, 6.0))]
    largest = max(part[4] for part in args)
    host.host_batch(cw.pointwise_batch(args), len(args), -(-largest // 64), 64, int(reverse))
    assert_close(read(y1, layout, 4, 6), np.maximum(a1 + b1, 0))
    assert_close(read(y2, layout, 0, 3), a2)
    assert_close(read(y3, layout, 0, 4), np.clip(a3 * scale, 0, 6))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
def test_a_sum_adds_every_term_in_one_pass(host, layout, reverse):
    """The output its own first term (the chain accumulated in place), a slice of a wider buffer, a per-channel
    term broadcast over the pixels, and two more; then a ReLU and an upper bound."""
    rng = np.random.default_rng(2)
    dims = (2, 6, 5, 7)
    first, sliced, *others = (rng.standard_normal(dims) for _ in range(4))
    scale = rng.standard_normal((2, 6, 1, 1))
    y, vy = placed(first, layout)
    buffers = [placed(sliced, layout, 3, 12), placed(scale, layout), *(placed(x, layout) for x in others)]
    param = cw.pointwise_sum(vy, [vy, *(view for _, view in buffers)], "relu", (-inf, 2.0))
    host.host_sum(param, -(-int(np.prod(dims)) // 64), 64, int(reverse))
    assert_close(read(y, layout, 0, 6), np.minimum(np.maximum(first + sliced + scale + sum(others), 0), 2.0))


def test_the_sum_parameter_is_its_record_with_unused_terms_zero():
    y = Operand(0x1000, (1, 4, 2, 2), (16, 1, 8, 4))
    param = cw.pointwise_sum(y, [y, Operand(0x2000, (1, 4, 2, 2), (16, 1, 8, 4))], "none")
    record = np.frombuffer(param, cw.POINTWISE_SUM_RECORD)[0]
    assert len(param) == 392 and f"{len(param)}s" == cw.POINTWISE_SUM_SIGNATURE
    assert (record["terms"], record["total"], record["y"], record["x0_"], record["x1_"], record["x2_"]) == (
        2, 16, 0x1000, 0x1000, 0x2000, 0)
    for count in (1, cw.SUM_TERMS + 1):
        with pytest.raises(ValueError, match="terms"):
            cw.pointwise_sum(y, [y] * count, "none")
