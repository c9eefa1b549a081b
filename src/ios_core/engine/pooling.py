"""Which kernel of ``cuda/pool.cu`` runs a pooling, and with what launch: plain Python.

Two families (the file's header says how each works):

- ``pool_nhwc_<max|avg>_v<V>``, the fast path: channels innermost in x and y and every element
  offset of x and y within 32 bits; any window, stride and padding, global pooling included. A
  thread reduces one output pixel's window for V channels; V = 4 (one access of 4 elements: float4, or 8
  bytes of a 16-bit type) needs C and the pixel strides multiples of 4 and both base addresses aligned to 4
  elements.
- ``pool_nhwc_wide_<max|avg>_v<V>``, the same views with a window of at least `WIDE_CELLS` cells (a global pool):
  a block of threads reduces each output pixel's window (`wide_lanes`), where one thread walking it all would wait
  on memory once per cell. A global pool over more than `one_pass_cells` pixels is split by the lowering into
  equal bands of rows first (`first_pass_rows`), so that no thread walks more than about `WIDE_LOADS` cells.
- ``pool2d_f32``, the generic fallback for everything else (NCHW, offsets beyond 32 bits).

Kernels are named here as their float32 instances; a 16-bit plan launches the same choice's instance for its
element type (`ios_core.engine.elements.Element.kernel`).

As for depthwise convolutions (`ios_core.engine.depthwise`, whose views, launches and magic-number
divisions this module shares), the choice is made on the host once per task when the plan is
built, apart from `ios_core.engine.gpu.launch` so that it is tested without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from ios_core.engine.depthwise import INT32_MAX, Launch, Operand, divider, vectors_aligned
from ios_core.ir import Pool

GENERIC = "pool2d_f32"
GENERIC_SIGNATURE = "i" * 17 + "Pqqqq" * 2
FAST_SIGNATURE = "I" + "i" * 14 + "I" * 6 + "Piii" * 2
FAST_KINDS = ("max", "avg")
FAST_VECTORS = (4, 1)  # channels per thread, most work first
FAST_BLOCK = 128
GENERIC_BLOCK = 256
GENERIC_BLOCKS_PER_SM = 16  # the generic kernel's grid-stride loop covers the rest
THREADS_PER_SM = 1024  # float4 only when it still leaves this many threads per SM: small pools spread wider


def fast_kernel(kind: str, vector: int) -> str:
    """The fast kernel for ``kind`` (max or avg) pooling of ``vector`` channels a thread."""
    return f"pool_nhwc_{kind}_v{vector}"


FAST_KERNELS = tuple(fast_kernel(kind, vector) for kind in FAST_KINDS for vector in FAST_VECTORS)

WIDE_SIGNATURE = "i" * 16 + "Piii" * 2
WIDE_CELLS = 16
"""A window of at least this many cells is reduced by a block of threads (the wide kernels), not by one thread."""
WIDE_BLOCK = 256  # pool.cu's WIDE_BLOCK: its shared memory holds this many threads' partial results
WIDE_CHANNEL_LANES = 32  # channel vectors a wide block covers: a warp's loads of one cell are contiguous
WIDE_LOADS = 16
"""About the most cells one thread of a wide block walks in a row; a global pool over more is split in two passes
(`first_pass_rows`). Not yet tuned on a GPU."""


def wide_kernel(kind: str, vector: int) -> str:
    """The wide kernel for ``kind`` (max or avg) pooling of ``vector`` channels a thread."""
    return f"pool_nhwc_wide_{kind}_v{vector}"


WIDE_KERNELS = tuple(wide_kernel(kind, vector) for kind in FAST_KINDS for vector in FAST_VECTORS)
KERNELS = {GENERIC: GENERIC_SIGNATURE, **{name: FAST_SIGNATURE for name in FAST_KERNELS},
           **{name: WIDE_SIGNATURE for name in WIDE_KERNELS}}
"""Every kernel of ``pool.cu`` by name, with its PyCUDA ``prepare`` signature."""


@dataclass(frozen=True)
class PoolCall:
    """``y = pool(x)`` as the launcher sees it."""

    x: Operand
    y: Operand
    pool: Pool

    @property
    def kind(self) -> str:
        """``max`` or ``avg``: a global pool is the same reduction over the whole image."""
        return self.pool.kind.removeprefix("global_")

    def window(self) -> tuple[int, ...]:
        """``(kh, kw, sh, sw, ph, pw, eh, ew, count_pad)``: kernel, stride, top/left and bottom/right padding, and
        whether an average counts padding cells; a global pool's window is the whole input."""
        if self.pool.kind.startswith("global"):
            return (*self.x.dims[2:], 1, 1, 0, 0, 0, 0, 0)
        top, left, bottom, right = self.pool.pads
        return (*self.pool.kernel, *self.pool.stride, top, left, bottom, right, int(self.pool.count_include_pad))


def fast_path_refusal(call: PoolCall) -> str | None:
    """Why ``call`` must take the generic kernel, or None when a fast one runs it."""
    n, c, oh, ow = call.y.dims
    checks = (
        (call.x.strides[1] == 1 and call.y.strides[1] == 1, "channels are not innermost (NCHW)"),
        (max(call.x.extent(), call.y.extent(), n * oh * ow * c) <= INT32_MAX, "offsets beyond 32 bits"),
    )
    return next((why for ok, why in checks if not ok), None)


def vectorizable(call: PoolCall) -> bool:
    """Whether accesses of 4 elements of x and y are aligned (`ios_core.engine.depthwise.vectors_aligned`)."""
    return vectors_aligned((call.x, call.y))


def fast_threads(call: PoolCall, vector: int) -> int:
    """Threads of a fast kernel: one per sample, output pixel and ``vector`` channels."""
    n, c, oh, ow = call.y.dims
    return n * oh * ow * (c // vector)


def fast_vector(call: PoolCall, sms: int) -> int:
    """Channels per thread: 4 where aligned and every SM still gets ``THREADS_PER_SM`` threads, else 1.

    A float4 thread issues a quarter of the instructions per byte; but at batch 1 a small pool
    would then run on a few SMs, and is latency-bound there.
    """
    vectors = FAST_VECTORS if vectorizable(call) else FAST_VECTORS[-1:]
    enough = sms * THREADS_PER_SM
    return next((v for v in vectors if fast_threads(call, v) >= enough), vectors[-1])


def fast_launch(call: PoolCall, vector: int) -> Launch:
    """The fast kernel for ``call`` at ``vector`` channels a thread (which the caller has checked it allows)."""
    (_, c, h, w), (_, _, oh, ow) = call.x.dims, call.y.dims
    threads = fast_threads(call, vector)
    dividers = (*divider(c // vector), *divider(ow), *divider(oh))
    x, y = (call.x.address, *call.x.pixel_strides), (call.y.address, *call.y.pixel_strides)
    args = (threads, c, h, w, oh, ow, *call.window(), *dividers, *x, *y)
    return Launch(fast_kernel(call.kind, vector), (-(-threads // FAST_BLOCK), 1), (FAST_BLOCK, 1, 1), args)


def wide_lanes(vectors: int) -> tuple[int, int]:
    """``(channel lanes, cell lanes)`` of a wide block over ``vectors`` channel vectors: up to
    `WIDE_CHANNEL_LANES` of channels, and of cells the largest power of two (the block's halving reduction) that
    keeps the block within `WIDE_BLOCK` threads."""
    channels = min(WIDE_CHANNEL_LANES, vectors)
    return channels, 1 << ((WIDE_BLOCK // channels).bit_length() - 1)


def one_pass_cells(channels: int) -> int:
    """The most cells a wide block reduces in one pass over ``channels`` channels (in vectors of 4 where they
    divide): `WIDE_LOADS` per cell lane."""
    return WIDE_LOADS * wide_lanes(channels // 4 if channels % 4 == 0 else channels)[1]


def first_pass_rows(channels: int, height: int, width: int) -> int | None:
    """How many rows each output of a global pool's first pass pools, where the pool is too wide for one pass: the
    most that divide ``height`` (so that the mean of the bands' means is the mean) within `one_pass_cells`, one
    at least; None for one pass."""
    most = one_pass_cells(channels)
    if height * width <= most or height == 1:
        return None
    return max(rows for rows in range(1, height + 1) if height % rows == 0 and (rows * width <= most or rows == 1))


def is_wide(call: PoolCall) -> bool:
    """Whether ``call``'s windows are wide enough for a block each (`WIDE_CELLS`)."""
    kh, kw = call.window()[:2]
    return kh * kw >= WIDE_CELLS


def wide_launch(call: PoolCall, vector: int) -> Launch:
    """The wide kernel for ``call`` at ``vector`` channels a thread (which the caller has checked it allows)."""
    (n, c, h, w), (_, _, oh, ow) = call.x.dims, call.y.dims
    lanes, cell_lanes = wide_lanes(c // vector)
    tiles = -(-(c // vector) // lanes)
    x, y = (call.x.address, *call.x.pixel_strides), (call.y.address, *call.y.pixel_strides)
    args = (lanes, tiles, c, h, w, oh, ow, *call.window(), *x, *y)
    return Launch(wide_kernel(call.kind, vector), (tiles * oh * ow * n, 1), (lanes * cell_lanes, 1, 1), args)


def generic_launch(call: PoolCall, sms: int) -> Launch:
    """``pool2d_f32`` for ``call``, whatever its layout."""
    (n, c, h, w), (_, _, oh, ow) = call.x.dims, call.y.dims
    total = n * c * oh * ow
    if total > INT32_MAX:
        raise ValueError(f"{total} outputs overflow {GENERIC}'s 32-bit index")
    c_inner = int(call.y.strides[1] == 1)  # threads walk channels fastest: coalesced in NHWC
    x, y = (call.x.address, *call.x.strides), (call.y.address, *call.y.strides)
    args = (int(call.kind == "max"), n, c, h, w, oh, ow, *call.window(), c_inner, *x, *y)
    grid = (min(-(-total // GENERIC_BLOCK), sms * GENERIC_BLOCKS_PER_SM), 1)
    return Launch(GENERIC, grid, (GENERIC_BLOCK, 1, 1), args)


def launch(call: PoolCall, sms: int) -> Launch:
    """The kernel, grid, block and arguments that run ``call`` on a GPU of ``sms`` multiprocessors."""
    if fast_path_refusal(call) is None:
        if is_wide(call):  # a block a window: 4 channels a thread wherever aligned, whatever the batch
            return wide_launch(call, FAST_VECTORS[0] if vectorizable(call) else FAST_VECTORS[-1])
        return fast_launch(call, fast_vector(call, sms))
    return generic_launch(call, sms)
