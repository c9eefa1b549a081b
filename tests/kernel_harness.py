"""What the tests of our CUDA kernels (``cuda/*.cu``) share: operands, host builds, GPU runs.

- Views as the launchers describe them (`ios_core.engine.depthwise.Operand`), made up (``nhwc``,
  ``nchw``) or of numpy buffers (``host_view``).
- A kernel file built for the CPU with g++ behind a shim of the CUDA builtins it uses (``__half`` as g++'s
  ``_Float16``, ``__nv_bfloat16`` as its bits, both rounded to nearest even), for one element type (its
  instances: ``pointwise_f16``, ``pool_nhwc_max_v4_f16``); a launch then runs thread by thread, in order or
  in reverse (a thread that writes another's output shows
  in one order or the other), on NaN-filled buffers with NaN guards around them; or warp by warp,
  a warp's 32 lanes as concurrent host threads that meet at each shuffle; or block by block, a block's
  threads as concurrent host threads that meet at each ``__syncthreads``.
- A graph run through the engine on the GPU, against `ios_core.reference`.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ios_core import schedule as S
from ios_core.engine import PlanOptions, build_plan
from ios_core.engine.depthwise import Launch, Operand
from ios_core.engine.elements import ELEMENTS, Element
from ios_core.ir import Graph
from ios_core.reference import run_graph
from ios_core.weights import make_input, make_weights

KERNEL_DIR = Path(__file__).resolve().parents[1] / "cuda"
ARENA = 0x7F00_0000_0000  # a device-like address, 256-byte aligned
H100_SMS = 132

# ---- views ---------------------------------------------------------------------------------------


def nhwc(dims: tuple[int, int, int, int], channels: int | None = None, channel: int = 0, base: int = ARENA) -> Operand:
    """A channel slice ``[channel, channel + C)`` of an NHWC buffer of ``channels`` channels."""
    n, c, h, w = dims
    total = channels or c
    return Operand(base + 4 * channel, dims, (h * w * total, 1, w * total, total))


def nchw(dims: tuple[int, int, int, int], base: int = ARENA) -> Operand:
    n, c, h, w = dims
    return Operand(base, dims, (c * h * w, h * w, w, 1))


def host_view(buffer: np.ndarray, layout: str, channel: int, channels: int) -> Operand:
    """Channels ``[channel, channel + channels)`` of an NHWC or NCHW buffer, as the plan's pointers describe them."""
    if layout == "nhwc":
        n, h, w, total = buffer.shape
        return Operand(buffer.ctypes.data + 4 * channel, (n, channels, h, w), (h * w * total, 1, w * total, total))
    n, total, h, w = buffer.shape
    return Operand(buffer.ctypes.data + 4 * channel * h * w, (n, channels, h, w), (total * h * w, h * w, w, 1))


# ---- declarations, arguments and results ---------------------------------------------------------


def kernel_params(source: Path, marker: str) -> list[tuple[str, str, str]]:
    """``(signature letter, name, declaration)`` of each parameter of the kernel declared right after ``marker``."""
    text = source.read_text()
    start = text.index(marker) + len(marker)
    params = text[start : text.index(")", start)].replace("\\", " ")
    found = []
    for param in (" ".join(p.split()) for p in params.split(",")):
        kind, name = param.rsplit(" ", 1)
        letter = ("P" if "*" in kind else "I" if kind.startswith("unsigned") else "q" if "long long" in kind
                  else "f" if kind.endswith("float") else "i")
        found.append((letter, name.lstrip("*"), param))
    return found


def assert_fits(launch: Launch, signature: str) -> None:
    """Every argument an int within the range of its PyCUDA signature letter, or a float for ``f``."""
    bounds = {"i": (-(2**31), 2**31), "I": (0, 2**32), "q": (-(2**63), 2**63), "P": (0, 2**64)}
    for arg, letter in zip(launch.args, signature, strict=True):
        if letter == "f":
            assert isinstance(arg, float)
        else:
            assert isinstance(arg, int) and bounds[letter][0] <= arg < bounds[letter][1]


def assert_close(out: np.ndarray, ref: np.ndarray) -> None:
    """Every element within 1e-5 of the output's scale (fp32 over a few dozen terms), so a wrong term shows."""
    error = np.abs(out.astype(np.float64) - ref)
    assert np.isfinite(out).all(), "NaN or inf: a read of memory nothing wrote"
    worst = np.unravel_index(error.argmax(), error.shape)
    assert error.max() <= 1e-5 * max(np.abs(ref).max(), 1.0), f"max error {error.max()} at (n, c, h, w) = {worst}"


# ---- kernels on the host -------------------------------------------------------------------------

HOST_SHIM = r"""
#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>
using std::max;
using std::min;
struct Dim3 { unsigned int x, y, z; };
static thread_local Dim3 blockIdx, threadIdx;
static Dim3 blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __shared__ static  // one block runs at a time (launch_blocks)
struct float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct uint2 { unsigned int x, y; };
struct __half { _Float16 value; };
inline float __half2float(__half h) { return (float)h.value; }
inline __half __float2half_rn(float f) { return {(_Float16)f}; }  // g++ rounds to nearest even
struct __nv_bfloat16 { uint16_t bits; };
inline float __bfloat162float(__nv_bfloat16 b) {
    const uint32_t u = (uint32_t)b.bits << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if (f != f) return {(uint16_t)((u >> 16) | 0x40)};
    return {(uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16)};
}
template <class T> inline T __ldg(const T* p) { return *p; }
inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned int)(((uint64_t)a * b) >> 32); }
// Threads of the host that wait for each other: meet() returns once all `size` have come.
struct Barrier {
    std::mutex mutex;
    std::condition_variable turned;
    const unsigned int size;
    unsigned int arrived = 0;
    unsigned long round = 0;
    explicit Barrier(unsigned int size) : size(size) {}
    void meet() {
        std::unique_lock<std::mutex> lock(mutex);
        const unsigned long mine = round;
        if (++arrived == size) { arrived = 0; ++round; turned.notify_all(); }
        else turned.wait(lock, [&] { return round != mine; });
    }
};
// A warp whose 32 lanes run as threads of the host, meeting at each shuffle (launch_warps); a lane run alone
// (launch) has no warp and must not shuffle.
struct Warp {
    Barrier barrier{32};
    float values[32];
};
static thread_local Warp* warp = nullptr;
inline float __shfl_xor_sync(unsigned int, float v, int offset) {
    if (warp == nullptr) std::abort();
    const unsigned int lane = threadIdx.x % 32;
    warp->values[lane] = v;
    warp->barrier.meet();
    const float other = warp->values[lane ^ (unsigned int)offset];
    warp->barrier.meet();
    return other;
}
// A block whose threads run as threads of the host, meeting at each __syncthreads (launch_blocks); a thread run
// alone (launch, launch_warps) has no block and must not synchronize.
static thread_local Barrier* block_of_thread = nullptr;
inline void __syncthreads() {
    if (block_of_thread == nullptr) std::abort();
    block_of_thread->meet();
}
#include "{source}"
template <class... P, class... A>
void launch(void (*kernel)(P...), unsigned int grid, unsigned int block, int reverse, A... args) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned int i = 0; i < grid * block; ++i) {
        unsigned int j = reverse ? grid * block - 1 - i : i;
        blockIdx = {j / block, 0, 0};
        threadIdx = {j % block, 0, 0};
        kernel(args...);
    }
}
// Threads first .. first + count - 1 of the launch (numbered block by block) at once, each a thread of the host
// that runs `join` first (pointing its warp or block at the one it shares with the others).
template <class Join, class... P, class... A>
void run_together(unsigned int first, unsigned int count, Join join, void (*kernel)(P...), A... args) {
    std::vector<std::thread> threads;
    for (unsigned int k = 0; k < count; ++k) {
        threads.emplace_back([&, k] {
            join();
            blockIdx = {(first + k) / blockDim.x, 0, 0};
            threadIdx = {(first + k) % blockDim.x, 0, 0};
            kernel(args...);
        });
    }
    for (auto& t : threads) t.join();
}
// Warp by warp (last first when reverse), each warp's 32 lanes concurrently; block is a multiple of 32.
template <class... P, class... A>
void launch_warps(void (*kernel)(P...), unsigned int grid, unsigned int block, int reverse, A... args) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    const unsigned int warps = grid * block / 32;
    for (unsigned int i = 0; i < warps; ++i) {
        Warp shared;
        run_together(32 * (reverse ? warps - 1 - i : i), 32, [&] { warp = &shared; }, kernel, args...);
    }
}
// Block by block (last first when reverse), each block's threads concurrently, so that they can synchronize.
template <class... P, class... A>
void launch_blocks(void (*kernel)(P...), unsigned int grid, unsigned int block, int reverse, A... args) {
    gridDim = {grid, 1, 1};
    blockDim = {block, 1, 1};
    for (unsigned int i = 0; i < grid; ++i) {
        Barrier shared(block);
        run_together(block * (reverse ? grid - 1 - i : i), block, [&] { block_of_thread = &shared; }, kernel,
                     args...);
    }
}
"""
LAUNCHERS = ("launch", "launch_warps", "launch_blocks")
"""How a launch's threads run on the host: one after another; warp by warp; block by block (see the shim)."""
CTYPES = {"i": ctypes.c_int, "I": ctypes.c_uint, "q": ctypes.c_longlong, "P": ctypes.c_void_p, "f": ctypes.c_float}
ELEMENT_TYPES = {"f32": "float", "f16": "__half", "bf16": "__nv_bfloat16"}  # by suffix, as cuda/element.cuh's
F32 = ELEMENTS["float32"]


def marker(kernel: str) -> str:
    """The text the parameter list of a kernel's every instance follows in its source: its instance macro's
    (``pointwise_f32`` is ``pointwise_##SUFFIX(``)."""
    return kernel.rsplit("_", 1)[0] + "_##SUFFIX("


def build_for_host(source: Path, markers: dict[str, str], folder: Path, element: Element = F32,
                   extra: str = "") -> ctypes.CDLL:
    """``source`` built for the CPU: ``host_<kernel>(grid, block, reverse, args...)`` runs a launch's threads.

    ``markers`` maps each kernel, by its float32 name, to the text its parameter list follows in the source (see
    `kernel_params`); ``element``'s instance of it runs, its element type ``E`` in the parameters. ``extra`` is
    host code of the caller's own after them, for a launch the generic launchers do not make.
    """
    compiler = shutil.which("g++") or pytest.skip("g++ is not installed")
    lines = [HOST_SHIM.replace("{source}", source.name), f"using E = {ELEMENT_TYPES[element.suffix]};"]
    for f32_name, marker in markers.items():
        name = element.kernel(f32_name)
        params = kernel_params(source, marker)
        for launcher in LAUNCHERS:
            lines.append(
                f'extern "C" void host_{launcher}_{name}(unsigned int grid, unsigned int block, int reverse, '
                f"{', '.join(p for _, _, p in params)}) {{ {launcher}({name}, grid, block, reverse, "
                f"{', '.join(n for _, n, _ in params)}); }}"
            )
    lines.append(extra)
    (folder / "host.cpp").write_text("\n".join(lines))
    library = folder / "host.so"
    command = [compiler, "-std=c++17", "-O1", "-fno-strict-aliasing", "-shared", "-fPIC", "-pthread",
               f"-DELEMENT_ONLY={element.only}", "-I", str(source.parent)]  # that type's instances alone
    subprocess.run([*command, "-o", str(library), str(folder / "host.cpp")], check=True, capture_output=True)
    return ctypes.CDLL(str(library))


def run_threads(lib: ctypes.CDLL, launch: Launch, signature: str, reverse: bool = False, warps: bool = False,
                element: Element = F32, blocks: bool = False) -> None:
    """Every thread of ``launch`` (its kernel's ``element`` instance), one after another (last first when
    ``reverse``); with ``warps``, warp by warp, the 32 lanes of each running concurrently so that they can shuffle;
    with ``blocks``, block by block, each block's threads concurrently so that they can synchronize."""
    launcher = "launch_blocks" if blocks else "launch_warps" if warps else "launch"
    fn = getattr(lib, f"host_{launcher}_{element.kernel(launch.kernel)}")
    fn.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_int] + [CTYPES[t] for t in signature]
    fn(launch.grid[0], launch.block[0], int(reverse), *launch.args)


def aligned(shape: tuple[int, ...]) -> np.ndarray:
    """A NaN-filled float32 array starting on a 64-byte boundary, like the arena's buffers, with NaN guards around."""
    size = int(np.prod(shape))
    raw = np.full(size + 128, np.nan, np.float32)
    start = 48 + (-(raw.ctypes.data + 4 * 48) % 64) // 4
    return raw[start : start + size].reshape(shape)


def guards_intact(array: np.ndarray) -> bool:
    raw = array.base
    while raw.base is not None:
        raw = raw.base
    start = (array.ctypes.data - raw.ctypes.data) // 4
    return bool(np.isnan(raw[:start]).all() and np.isnan(raw[start + array.size :]).all())


# ---- graphs on the GPU ---------------------------------------------------------------------------


def run_on_gpu(graph: Graph, batch: int, layout: str = "nhwc") -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """The engine's output (eager, on an arena poisoned with NaN), the float64 reference, and the kernels used."""
    weights = make_weights(graph)
    x = make_input(graph, batch)
    options = PlanOptions(layout=layout, autotune=False)
    plan = build_plan(graph, S.sequential(graph), batch, "fp32-strict", weights, options)
    try:
        return plan(x, graph_mode=False), run_graph(graph, x, weights), dict(plan.stats.kernels)
    finally:
        plan.close()


def decoded_threads(params: dict[str, int], levels: list[tuple[str, int]]) -> np.ndarray:
    """Every thread index of a fast kernel decoded as the kernel does it, by the magic-number divisions in
    ``params`` (``<level>_magic``, ``<level>_shift``) for ``levels`` (name, size), fastest first: one row per
    thread, slowest index first (the sample), then each level's digit."""

    def divide(x: np.ndarray, magic: int, shift: int) -> np.ndarray:
        return (((x * np.uint64(magic)) >> np.uint64(32)) + x) >> np.uint64(shift)

    rest, digits = np.arange(params["items"], dtype=np.uint64), []
    for name, size in levels:
        quotient = divide(rest, params[f"{name}_magic"], params[f"{name}_shift"])
        digits.append(rest - quotient * np.uint64(size))
        rest = quotient
    return np.stack([rest, *reversed(digits)], 1)
