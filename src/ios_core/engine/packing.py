"""How a convolution's weights lie in GPU memory: its kernel in the order the launch's strides promise, then its bias.

A *pack* is one convolution's kernel, zeros up to the next `ARENA_ALIGNMENT` bytes, and its bias, all in the
plan's element type (`ios_core.engine.elements`: converted once, here, before the upload); a
LayerNorm's pack is its per-channel weight the same way (one dimension: nothing to reorder), then its bias.
The kernel is KRSC in NHWC and KCRS in NCHW (`kernel_strides`); our depthwise kernel reads C x R x S
weights, stored R x S x C in NHWC, where neighbouring threads take neighbouring channels, so that a
warp's loads are contiguous (`depthwise_strides`). A whole plan lays its packs end to end in one buffer
(`lay_out`); a stage plan uploads each pack alone (`ios_core.engine.gpu`). Plain numpy: no GPU here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ios_core.engine.elements import Element
from ios_core.engine.memory import align
from ios_core.engine.program import ARENA_ALIGNMENT, ConvTask, Weighted
from ios_core.weights import Params


@dataclass(frozen=True)
class Pack:
    """One convolution's weights as uploaded: ``host`` (the element type's host copy: kernel, padding, bias), where
    the bias starts
    (``bias_at``, bytes) and the kernel's dims (K, C, R, S) as the IR holds them."""

    host: np.ndarray
    bias_at: int
    dims: tuple[int, ...]


def kernel_array(params: Params, layout: str, ours: bool) -> np.ndarray:
    """The kernel as float32 in the order its strides promise (see the module); ``ours``: our depthwise kernel."""
    w = params["weight"].astype(np.float32)
    if w.ndim == 1:
        return w
    if ours:
        return np.ascontiguousarray(w[:, 0].transpose(1, 2, 0) if layout == "nhwc" else w[:, 0])
    return np.ascontiguousarray(w.transpose(0, 2, 3, 1) if layout == "nhwc" else w)


def ours(task: Weighted, own_depthwise: bool) -> bool:
    """Whether ``task``'s weights are read by our depthwise kernel (in its own order) when ``own_depthwise``."""
    return isinstance(task, ConvTask) and task.depthwise and own_depthwise


def pack(params: Params, layout: str, ours: bool, element: Element) -> Pack:
    """The pack of one convolution's ``weight`` and ``bias`` in ``element`` (see the module)."""
    kernel = element.to_storage(kernel_array(params, layout, ours))
    bias = element.to_storage(params["bias"])
    at = align(kernel.nbytes, ARENA_ALIGNMENT)
    host = np.zeros((at + bias.nbytes) // kernel.itemsize, kernel.dtype)
    host[:kernel.size] = kernel.ravel()
    host[at // kernel.itemsize:] = bias
    return Pack(host, at, tuple(params["weight"].shape))


def lay_out(packs: Sequence[Pack]) -> tuple[np.ndarray, list[int], int]:
    """``packs`` (of one element type) end to end, each from a multiple of `ARENA_ALIGNMENT`: the host buffer (at
    least that many bytes), each pack's byte offset in it, and the bytes they take."""
    offsets, end = [], 0
    for p in packs:
        offsets.append(end)
        end = align(end + p.host.nbytes, ARENA_ALIGNMENT)
    dtype = packs[0].host.dtype if packs else np.dtype(np.float32)
    host = np.zeros(max(end, ARENA_ALIGNMENT) // dtype.itemsize, dtype)
    for offset, p in zip(offsets, packs, strict=True):
        host[offset // dtype.itemsize:offset // dtype.itemsize + p.host.size] = p.host
    return host, offsets, end


def kernel_strides(dims: tuple[int, ...], layout: str) -> tuple[int, ...]:
    """Element strides of a (K, C, R, S) kernel as `kernel_array` lays it out (for cuDNN)."""
    k, c, r, s = dims
    return (c * r * s, 1, s * c, c) if layout == "nhwc" else (c * r * s, r * s, s, 1)


def one_pixel_strides(dims: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, ...]:
    """The strides cuDNN is told for an (N, C, H, W) tensor: where H = W = 1 the H and W strides never meet a
    nonzero index, so they are given as the N stride -- what the same bytes have in NHWC. In NCHW such a tensor's C,
    H and W strides are all 1, and cuDNN's heuristic engine choice computed the head test graph (a classifier:
    convolutions on 1 x 1) wrong from them in NCHW and right in NHWC (H100, cuDNN 9.19). Other tensors: unchanged."""
    _, _, h, w = dims
    return (strides[0], strides[1], strides[0], strides[0]) if h == w == 1 else tuple(strides)


def depthwise_strides(dims: tuple[int, ...], layout: str) -> tuple[int, int, int]:
    """Element strides (c, r, s) of a depthwise kernel of dims (C, 1, R, S) as `kernel_array` lays it out for ours."""
    c, _, r, s = dims
    return (1, s * c, c) if layout == "nhwc" else (r * s, s, 1)
