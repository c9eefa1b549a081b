"""How our kernel runs a squeeze-and-excitation (``cuda/excite.cu``), and with what launch: plain Python.

A squeeze-and-excitation scales a tensor's channels by ``act2(W2 act1(W1 pool(x) + b1) + b2)``: a global pool,
then two 1 x 1 convolutions of one pixel. Run as three kernels, each is a launch that does almost nothing; the
lowering folds the three into one `ios_core.engine.program.ExciteTask` (`fits` says where the kernel can take
them), which ``excite_v<V>`` runs with a block per sample: ``excite_v4`` where four channels are one aligned vector
load (`vector`), ``excite_v1`` elsewhere.

As for `ios_core.engine.pooling`, the launch is chosen on the host once per task when the plan is built, apart
from `ios_core.engine.gpu.launch`, so that it is tested without a GPU.
"""

from __future__ import annotations

from ios_core.engine.depthwise import Launch, Operand, vectors_aligned
from ios_core.engine.program import ACTIVATIONS
from ios_core.ir import Conv

SIGNATURE = "i" * 8 + "Pqqqq" + "PPPP" + "Pqq"
VECTORS = (4, 1)  # channels a thread loads at once, most first
KERNELS = {f"excite_v{v}": SIGNATURE for v in VECTORS}
"""Every kernel of ``excite.cu`` by name (its float32 instance), with its PyCUDA ``prepare`` signature."""
BLOCK = 1024  # excite.cu's EXCITE_BLOCK
MAX_CHANNELS = 4096  # excite.cu's EXCITE_CHANNELS: the pooled pixel in shared memory
MAX_MID = 1024  # excite.cu's EXCITE_MID: the hidden values in shared memory


def one_pixel_dense(conv: Conv) -> bool:
    """Whether ``conv`` is a plain 1 x 1 convolution (a dense layer on a pooled pixel): what the kernel computes."""
    return (conv.kernel == (1, 1) and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
            and conv.pads == (0, 0, 0, 0))


def fits(channels: int, squeeze: Conv, excite: Conv) -> bool:
    """Whether the kernel takes a squeeze-and-excitation over ``channels``: both convolutions plain 1 x 1, back to
    ``channels``, within its shared memory."""
    return (one_pixel_dense(squeeze) and one_pixel_dense(excite) and excite.out_channels == channels
            and channels <= MAX_CHANNELS and squeeze.out_channels <= MAX_MID)


def vector(x: Operand) -> int:
    """Channels a thread loads at once from ``x``: 4 where they are contiguous and such loads are aligned
    (`ios_core.engine.depthwise.vectors_aligned`: one float4, or 8 bytes of a 16-bit type), else 1."""
    return 4 if x.strides[1] == 1 and vectors_aligned((x,)) else 1


def excite_launch(x: Operand, y: Operand, kind: str, convs: tuple[Conv, Conv], weights: tuple[int, int, int, int]
                  ) -> Launch:
    """The kernel for ``y = excite(squeeze(pool(x)))``: ``kind`` the pool's (``global_avg`` or ``global_max``),
    ``convs`` the squeeze and the excitation, ``weights`` the addresses of their kernels and biases (W1, b1, W2,
    b2)."""
    n, c, h, w = x.dims
    squeeze, excite = convs
    v = vector(x)
    # channel lanes where channels are contiguous (a warp's loads of one cell coalesce), else cell lanes alone,
    # where neighbouring threads then read neighbouring cells
    lanes = min(c // v, BLOCK) if x.strides[1] == 1 else 1
    args = (int(kind == "global_max"), lanes, c, h, w, squeeze.out_channels, ACTIVATIONS[squeeze.act],
            ACTIVATIONS[excite.act], x.address, *x.strides, *weights, y.address, y.strides[0], y.strides[1])
    return Launch(f"excite_v{v}", (n, 1), (BLOCK, 1, 1), args)
