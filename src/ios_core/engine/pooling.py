"""Which kernel of ``cuda/pool.cu`` runs a pooling, and with what launch: plain Python.

Two families (the file's header says how each works):

- ``pool_nhwc_<max|avg>_v<V>``, the fast path: channels innermost in x and y and every element
  offset of x and y within 32 bits; any window, stride and padding, global pooling included. A
  thread reduces one output pixel's window for V channels; V = 4 (one access of 4 elements: float4, or 8
  bytes of a 16-bit type) needs C and the pixel strides multiples of 4 and both base addresses aligned to 4
  elements.
- ``pool2d_f32``, the generic fallback for everything else (NCHW, offsets beyond 32 bits).

Kernels are named here as their float32 instances; a 16-bit plan launches the same choice's instance for its
element type (`ios_core.engine.elements.Element.kernel`).

As for depthwise convolutions (`ios_core.engine.depthwise`, whose views, launches and magic-number
divisions this module shares), the choice is made on the host once per task when the plan is
built, apart from `ios_core.engine.gpu.launch` so that it is tested without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from ios_core.engine.depthwise import INT32_MAX, Launch, Operand, divider
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
KERNELS = {GENERIC: GENERIC_SIGNATURE, **{name: FAST_SIGNATURE for name in FAST_KERNELS}}
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
    """Whether accesses of 4 elements are aligned: C and every pixel stride multiples of 4, both base addresses of 4
    elements (16 bytes of float32, 8 of a 16-bit type)."""
    strides = call.x.pixel_strides + call.y.pixel_strides
    addresses = (call.x.address, call.y.address)
    vector = 4 * call.x.itemsize
    return call.x.dims[1] % 4 == 0 and all(s % 4 == 0 for s in strides) and all(a % vector == 0 for a in addresses)


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
        return fast_launch(call, fast_vector(call, sms))
    return generic_launch(call, sms)
