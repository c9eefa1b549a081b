"""Which kernel of ``cuda/depthwise.cu`` runs a depthwise convolution, and with what launch: plain Python.

Two families (the file's header says how each works):

- ``depthwise_nhwc_k<K>_s<S>_v<V>_t<T>``, the fast path: channels innermost in x and y, a square
  3, 5 or 7 kernel, equal strides 1 or 2, no dilation, pre_act none or relu (any act), and every
  element offset of x and y within 32 bits. A thread computes T outputs along W for V channels;
  V = 4 (one vector access of 4 elements: float4, or 8 bytes of a 16-bit type) needs C and the pixel strides
  multiples of 4 and all four base addresses aligned to 4 elements.
- ``depthwise_f32``, the generic fallback for everything else (NCHW, dilation, other kernels).

Kernels are named here as their float32 instances; a 16-bit plan launches the same choice's instance for its
element type (``depthwise_f16``, ``depthwise_nhwc_k3_s1_v4_t4_bf16``: `ios_core.engine.elements.Element.kernel`).

The choice is made on the host from the geometry alone, once per task when the plan is built, so
a launch costs nothing more than before. It lives here, apart from `ios_core.engine.gpu.launch`
(which imports PyCUDA and the cuDNN frontend), so that it is tested without a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from ios_core.engine.program import ACTIVATIONS
from ios_core.ir import Conv

GENERIC = "depthwise_f32"
GENERIC_SIGNATURE = "i" * 17 + "Pqqqq" + "PiiiP" + "Pqqqq"
FAST_SIGNATURE = "I" + "i" * 9 + "I" * 6 + "Piii" + "PP" + "Piii"
FAST_KERNEL_SIZES = (3, 5, 7)
FAST_STRIDES = (1, 2)
FAST_PRE_ACTIVATIONS = ("none", "relu")  # applied to every loaded value by one max; the output's act may be any
VECTOR_SHAPES = ((4, 4), (4, 2), (4, 1), (1, 1))  # (channels, outputs) per thread, most work first
SCALAR_SHAPES = ((1, 4), (1, 2), (1, 1))
FAST_SHAPES = tuple(dict.fromkeys(VECTOR_SHAPES + SCALAR_SHAPES))  # each instantiated once
FAST_BLOCK = 128
GENERIC_BLOCK = 256
GENERIC_BLOCKS_PER_SM = 16  # the generic kernel's grid-stride loop covers the rest
THREADS_PER_SM = 1024  # a thread does less work when that gives more threads than this per SM
INT32_MAX = 2**31 - 1


def fast_kernel(kernel: int, stride: int, vector: int, outputs: int) -> str:
    """The fast kernel for a square ``kernel`` at ``stride``, ``vector`` channels x ``outputs`` columns a thread."""
    return f"depthwise_nhwc_k{kernel}_s{stride}_v{vector}_t{outputs}"


FAST_KERNELS = tuple(
    fast_kernel(k, s, v, t) for k in FAST_KERNEL_SIZES for s in FAST_STRIDES for v, t in FAST_SHAPES
)
KERNELS = {GENERIC: GENERIC_SIGNATURE, **{name: FAST_SIGNATURE for name in FAST_KERNELS}}
"""Every kernel of ``depthwise.cu`` by name, with its PyCUDA ``prepare`` signature."""


@dataclass(frozen=True)
class Operand:
    """A tensor view: byte address, dims (N, C, H, W), strides in elements, and the bytes of an element."""

    address: int
    dims: tuple[int, int, int, int]
    strides: tuple[int, int, int, int]
    itemsize: int = 4

    @property
    def pixel_strides(self) -> tuple[int, int, int]:
        """Strides of N, H and W: what the fast kernels take (their channel stride is 1)."""
        return self.strides[0], self.strides[2], self.strides[3]

    def extent(self) -> int:
        """One past the largest element offset the view reaches (strides are non-negative)."""
        return sum((d - 1) * s for d, s in zip(self.dims, self.strides, strict=True)) + 1


@dataclass(frozen=True)
class DepthwiseCall:
    """``y = act(conv(pre_act(x), w) + bias)`` as the launcher sees it; ``weight_strides`` are (c, r, s) in elements."""

    x: Operand
    y: Operand
    weights: int
    weight_strides: tuple[int, int, int]
    bias: int
    conv: Conv
    pre_act: str = "none"


@dataclass(frozen=True)
class Launch:
    """A kernel by name (of ``depthwise.cu``, or of ``pool.cu`` for `ios_core.engine.pooling`), its grid and block,
    and its arguments in signature order."""

    kernel: str
    grid: tuple[int, int]
    block: tuple[int, int, int]
    args: tuple[int, ...]


def divider(d: int) -> tuple[int, int]:
    """``(magic, shift)`` with ``n // d == (((n * magic) >> 32) + n) >> shift`` for ``0 <= n < 2**31``.

    The round-up multiply-high division of Granlund and Montgomery, as PyTorch's ``IntDivider``;
    ``depthwise.cu``'s ``divide`` computes it with ``__umulhi``.
    """
    if not 1 <= d <= INT32_MAX:
        raise ValueError(f"divisor {d} outside [1, 2**31)")
    shift = (d - 1).bit_length()
    return ((1 << 32) * ((1 << shift) - d)) // d + 1, shift


def fast_path_refusal(call: DepthwiseCall) -> str | None:
    """Why ``call`` must take the generic kernel, or None when a fast one runs it."""
    (n, c, _, _), (_, _, oh, ow) = call.x.dims, call.y.dims
    conv = call.conv
    checks = (
        (call.x.strides[1] == 1 and call.y.strides[1] == 1, "channels are not innermost (NCHW)"),
        (conv.kernel[0] == conv.kernel[1] in FAST_KERNEL_SIZES, f"kernel {conv.kernel} is not 3x3, 5x5 or 7x7"),
        (conv.stride[0] == conv.stride[1] in FAST_STRIDES, f"stride {conv.stride} is not 1 or 2 both ways"),
        (conv.dilation == (1, 1), f"dilation {conv.dilation}"),
        (call.pre_act in FAST_PRE_ACTIVATIONS, "an input activation other than relu"),
        (call.weight_strides == (1, conv.kernel[1] * c, c), "weights are not R x S x C"),
        (max(call.x.extent(), call.y.extent(), n * oh * ow * c) <= INT32_MAX, "offsets beyond 32 bits"),
    )
    return next((why for ok, why in checks if not ok), None)


def vectors_aligned(views: tuple[Operand, ...], addresses: tuple[int, ...] = ()) -> bool:
    """Whether accesses of 4 elements of ``views`` (channels innermost) are aligned: C and every pixel stride
    multiples of 4, every view's and every other one of ``addresses`` aligned to 4 elements (16 bytes of float32, 8
    of a 16-bit type): the one rule of our kernels' vector loads and stores (depthwise, pooling, excitation)."""
    strides = [s for view in views for s in view.pixel_strides]
    vector = 4 * views[0].itemsize
    return (views[0].dims[1] % 4 == 0 and all(s % 4 == 0 for s in strides)
            and all(a % vector == 0 for a in (*(view.address for view in views), *addresses)))


def vectorizable(call: DepthwiseCall) -> bool:
    """Whether accesses of 4 elements are aligned (`vectors_aligned`), the weights and bias too (they are in the
    activations' type)."""
    return vectors_aligned((call.x, call.y), (call.weights, call.bias))


def fast_threads(call: DepthwiseCall, vector: int, outputs: int) -> int:
    """Threads of a fast kernel: one per sample, output row, tile of ``outputs`` columns and ``vector`` channels."""
    n, c, oh, ow = call.y.dims
    return n * oh * -(-ow // outputs) * (c // vector)


def fast_shape(call: DepthwiseCall, sms: int) -> tuple[int, int]:
    """``(vector, outputs)`` per thread: the most work per thread that still gives every SM enough threads.

    More work per thread amortizes index math, weight loads and the overlap of neighbouring input
    windows; but at batch 1 a small layer would then run on a few SMs, so work per thread shrinks
    until there are ``THREADS_PER_SM`` threads per SM (or none is left to shrink).
    """
    shapes = VECTOR_SHAPES if vectorizable(call) else SCALAR_SHAPES
    enough = sms * THREADS_PER_SM
    return next((shape for shape in shapes if fast_threads(call, *shape) >= enough), shapes[-1])


def launch(call: DepthwiseCall, sms: int) -> Launch:
    """The kernel, grid, block and arguments that run ``call`` on a GPU of ``sms`` multiprocessors."""
    conv, pre_act, act = call.conv, ACTIVATIONS[call.pre_act], ACTIVATIONS[call.conv.act]
    (n, c, h, w), (_, _, oh, ow) = call.x.dims, call.y.dims
    if fast_path_refusal(call) is None:
        vector, outputs = fast_shape(call, sms)
        threads = fast_threads(call, vector, outputs)
        args = (threads, c, h, w, oh, ow, *conv.padding, pre_act, act, *divider(c // vector),
                *divider(-(-ow // outputs)), *divider(oh), call.x.address, *call.x.pixel_strides, call.weights,
                call.bias, call.y.address, *call.y.pixel_strides)
        name = fast_kernel(conv.kernel[0], conv.stride[0], vector, outputs)
        return Launch(name, (-(-threads // FAST_BLOCK), 1), (FAST_BLOCK, 1, 1), args)
    total = n * c * oh * ow
    if total > INT32_MAX:
        raise ValueError(f"{total} outputs overflow {GENERIC}'s 32-bit index")
    args = (n, c, h, w, oh, ow, *conv.kernel, *conv.stride, *conv.padding, *conv.dilation, pre_act, act,
            int(call.y.strides[1] == 1), call.x.address, *call.x.strides, call.weights, *call.weight_strides,
            call.bias, call.y.address, *call.y.strides)
    grid = (min(-(-total // GENERIC_BLOCK), sms * GENERIC_BLOCKS_PER_SM), 1)
    return Launch(GENERIC, grid, (GENERIC_BLOCK, 1, 1), args)
