// Pooling kernels of the ios-core engine: max or average over strided 4-D views of any of element.cuh's
// types (each kernel below has an instance per type: pool2d_<suffix>, pool_nhwc_<kind>_v<V>[_f16|_bf16]),
// reduced in float.
// Global pooling is the window H x W at stride 1 without padding. Max propagates NaN, as numpy does.
// Padding is (ph, pw) at the top and left, (eh, ew) at the bottom and right. An average divides by the
// window's cells inside the input, or with count_pad by its cells inside the padded input (PyTorch's
// count_include_pad), never counting what ceil_mode adds past the end padding: the host's output size
// says whether a last, partial window exists (ceil_mode), and every window starts inside the input or
// its top/left padding, so it holds at least one input cell.
// The host (ios_core.engine.pooling) picks one of two families:
//
// pool_nhwc_<max|avg>_v<V>: the fast path, for views with channels innermost (NHWC, channel stride
//   1) whose every element offset fits in 32 bits, any window, stride and padding. A thread reduces
//   the window of one output pixel for V consecutive channels (V = 4: one vector load and store of 4
//   elements, 16 bytes of float or 8 of a 16-bit type, when the host has checked that C, the pixel
//   strides and the base pointers are aligned to 4 elements).
//   Threads are numbered channel vector fastest, then output column, row and sample, so a warp's
//   loads of one input pixel are contiguous; a global pool of fewer than WIDE_CELLS pixels is one
//   thread per (sample, channel vector) walking them, coalesced across channels (a larger one takes
//   the wide kernels below). No grid-stride loop; index math is 32-bit, divisions by runtime sizes use
//   multiply-high magic numbers from the host.
// pool_nhwc_wide_<max|avg>_v<V>: the same views, for windows of many cells (a global pool, or the first
//   pass of a two-pass one: ios_core.engine.pooling.WIDE_CELLS). A block reduces one output pixel's window
//   for up to 32 channel vectors: its threads are `lanes` channel lanes (fastest) times a power of two of
//   cell lanes, each thread walks every cell_lanes-th cell of the window, and the cell lanes' partial
//   results meet in shared memory, halving each round. A one-thread-a-window global pool is latency-bound:
//   a 14 x 14 pool makes 196 loads in a row, here a few dozen. Blocks are numbered channel tile fastest,
//   then output pixel, then sample. The sum runs in another order than the other families' (same max).
// pool2d_<suffix>: the generic fallback for everything else (NCHW, offsets beyond 32 bits): a thread
//   per output element with a grid-stride loop and 64-bit strides. With c_inner the thread index
//   runs (n, oh, ow, c), channel fastest, which coalesces NHWC views; otherwise (n, c, oh, ow).
//
// The families share the window arithmetic below; the per-thread ones give bit-identical outputs.

#include "element.cuh"
#include "indexing.cuh"
#include "nhwc.cuh"

// The input range [lo, hi) that output o's window covers along one axis, the padding cut off; the
// return value is how many of its cells lie inside the padded input (begin padding `pad`, end `pad_end`).
__device__ __forceinline__ int window_range(int o, int stride, int pad, int pad_end, int k, int size, int& lo,
                                            int& hi) {
    lo = o * stride - pad;
    const int padded = min(lo + k, size + pad_end) - lo;
    hi = min(lo + k, size);
    lo = max(lo, 0);
    return padded;
}

// One more cell v into a running max or sum; a NaN wins the max, as in numpy.
__device__ __forceinline__ float combine(bool is_max, float acc, float v) {
    return is_max ? ((v > acc || v != v) ? v : acc) : acc + v;
}

// The max, or the sum divided by `count`, of the window [h0, h1) x [w0, w1) of V consecutive channels at x.
template <int V, class Stride, class E>
__device__ __forceinline__ void reduce_window(bool is_max, const E* __restrict__ x, Stride xh, Stride xw,
                                              int h0, int h1, int w0, int w1, float count, float (&acc)[V])
{
#pragma unroll
    for (int e = 0; e < V; ++e) acc[e] = is_max ? -INFINITY : 0.0f;
    for (int h = h0; h < h1; ++h) {
        for (int w = w0; w < w1; ++w) {
            float v[V];
            load_vector<V>(x + h * xh + w * xw, v);
#pragma unroll
            for (int e = 0; e < V; ++e) acc[e] = combine(is_max, acc[e], v[e]);
        }
    }
    if (!is_max) {
#pragma unroll
        for (int e = 0; e < V; ++e) acc[e] /= count;
    }
}

template <class E>
__device__ __forceinline__ void pool2d(
    int is_max, int N, int C, int H, int W, int OH, int OW,
    int kh, int kw, int sh, int sw, int ph, int pw, int eh, int ew, int count_pad, int c_inner,
    const E* __restrict__ x, long long xn, long long xc, long long xh, long long xw,
    E* __restrict__ y, long long yn, long long yc, long long yh, long long yw)
{
    unsigned int total = (unsigned int)N * C * OH * OW;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        unsigned int c, oh, ow, n;
        decode_output_index(i, C, OH, OW, c_inner, n, c, oh, ow);
        int h0, h1, w0, w1;
        const int rows = window_range((int)oh, sh, ph, eh, kh, H, h0, h1);
        const int columns = window_range((int)ow, sw, pw, ew, kw, W, w0, w1);
        const float count = (float)(count_pad ? rows * columns : (h1 - h0) * (w1 - w0));
        float acc[1];
        reduce_window<1, long long, E>(is_max, x + n * xn + c * xc, xh, xw, h0, h1, w0, w1, count, acc);
        y[n * yn + c * yc + oh * yh + ow * yw] = from_float<E>(acc[0]);
    }
}

#define POOL2D(SUFFIX, NAME, E)                                                                                      \
    extern "C" __global__ void pool2d_##SUFFIX(                                                                      \
        int is_max, int N, int C, int H, int W, int OH, int OW,                                                      \
        int kh, int kw, int sh, int sw, int ph, int pw, int eh, int ew, int count_pad, int c_inner,                  \
        const E* __restrict__ x, long long xn, long long xc, long long xh, long long xw,                             \
        E* __restrict__ y, long long yn, long long yc, long long yh, long long yw)                                   \
    {                                                                                                                \
        pool2d<E>(is_max, N, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, eh, ew, count_pad, c_inner, x, xn, xc, xh,     \
                  xw, y, yn, yc, yh, yw);                                                                            \
    }

FOR_EACH_ELEMENT(POOL2D)

// ---- the NHWC fast path ---------------------------------------------------------------------

template <bool MAX, int V, class E>
__device__ __forceinline__ void pool_nhwc(
    unsigned int items, int C, int H, int W, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,
    int eh, int ew, int count_pad, unsigned int vectors_magic, unsigned int vectors_shift,
    unsigned int columns_magic, unsigned int columns_shift,
    unsigned int rows_magic, unsigned int rows_shift,
    const E* __restrict__ x, int xn, int xh, int xw, E* __restrict__ y, int yn, int yh, int yw)
{
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= items) return;
    const unsigned int q = divide(i, vectors_magic, vectors_shift);  // (n, oh, ow)
    const unsigned int p = divide(q, columns_magic, columns_shift);  // (n, oh)
    const unsigned int n = divide(p, rows_magic, rows_shift);
    const int c = (int)(i - q * (unsigned int)(C / V)) * V, ow = (int)(q - p * OW), oh = (int)(p - n * OH);
    int h0, h1, w0, w1;
    const int rows = window_range(oh, sh, ph, eh, kh, H, h0, h1);
    const int columns = window_range(ow, sw, pw, ew, kw, W, w0, w1);
    const float count = (float)(count_pad ? rows * columns : (h1 - h0) * (w1 - w0));
    float acc[V];
    reduce_window<V, int, E>(MAX, x + (int)n * xn + c, xh, xw, h0, h1, w0, w1, count, acc);
    store_vector<V>(y + (int)n * yn + oh * yh + ow * yw + c, acc);
}

// One named kernel per instantiation and element type (NAME: empty for float, _f16, _bf16), as PyCUDA loads
// functions by name; the list must match FAST_KERNELS in ios_core/engine/pooling.py (a test compiles this
// file and checks).
#define POOL_NHWC(KIND, MAX, V, NAME, E)                                                                             \
    extern "C" __global__ void __launch_bounds__(128) pool_nhwc_##KIND##_v##V##NAME(                                 \
        unsigned int items, int C, int H, int W, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,     \
        int eh, int ew, int count_pad, unsigned int vectors_magic, unsigned int vectors_shift,                       \
        unsigned int columns_magic, unsigned int columns_shift, unsigned int rows_magic, unsigned int rows_shift,    \
        const E* __restrict__ x, int xn, int xh, int xw, E* __restrict__ y, int yn, int yh, int yw)                  \
    {                                                                                                                \
        pool_nhwc<MAX, V, E>(items, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, eh, ew, count_pad, vectors_magic,       \
                             vectors_shift, columns_magic, columns_shift, rows_magic, rows_shift, x, xn, xh, xw,     \
                             y, yn, yh, yw);                                                                         \
    }

#define POOL_NHWC_ALL(SUFFIX, NAME, E)                                                                               \
    POOL_NHWC(max, true, 4, NAME, E) POOL_NHWC(max, true, 1, NAME, E)                                                \
    POOL_NHWC(avg, false, 4, NAME, E) POOL_NHWC(avg, false, 1, NAME, E)

FOR_EACH_ELEMENT(POOL_NHWC_ALL)

// ---- wide windows: a block per output pixel --------------------------------------------------

#define WIDE_BLOCK 256  // the most threads of a wide block: ios_core.engine.pooling.WIDE_BLOCK

template <bool MAX, int V, class E>
__device__ __forceinline__ void pool_nhwc_wide(
    int lanes, int tiles, int C, int H, int W, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,
    int eh, int ew, int count_pad, const E* __restrict__ x, int xn, int xh, int xw, E* __restrict__ y, int yn,
    int yh, int yw)
{
    __shared__ float partial[WIDE_BLOCK * V];
    const int tile = (int)blockIdx.x % tiles, pixel = (int)blockIdx.x / tiles;
    const int n = pixel / (OH * OW), oh = pixel % (OH * OW) / OW, ow = pixel % OW;
    const int lane = (int)threadIdx.x % lanes, cell_lane = (int)threadIdx.x / lanes;
    const int cell_lanes = (int)blockDim.x / lanes, c = (tile * lanes + lane) * V;
    int h0, h1, w0, w1;
    const int rows = window_range(oh, sh, ph, eh, kh, H, h0, h1);
    const int columns = window_range(ow, sw, pw, ew, kw, W, w0, w1);
    const int width = w1 - w0, cells = (h1 - h0) * width;
    float acc[V];
#pragma unroll
    for (int e = 0; e < V; ++e) acc[e] = MAX ? -INFINITY : 0.0f;
    if (c < C) {
        const E* __restrict__ corner = x + n * xn + h0 * xh + w0 * xw + c;
#pragma unroll 4
        for (int cell = cell_lane; cell < cells; cell += cell_lanes) {
            const int r = cell / width;
            float v[V];
            load_vector<V>(corner + r * xh + (cell - r * width) * xw, v);
#pragma unroll
            for (int e = 0; e < V; ++e) acc[e] = combine(MAX, acc[e], v[e]);
        }
    }
    // The cell lanes' results meet in shared memory: each round the lower half takes in the upper half's.
#pragma unroll
    for (int e = 0; e < V; ++e) partial[threadIdx.x * V + e] = acc[e];
    for (int half = cell_lanes / 2; half > 0; half /= 2) {
        __syncthreads();
        if (cell_lane < half) {
#pragma unroll
            for (int e = 0; e < V; ++e) {
                acc[e] = combine(MAX, acc[e], partial[(threadIdx.x + half * lanes) * V + e]);
                partial[threadIdx.x * V + e] = acc[e];
            }
        }
    }
    if (cell_lane == 0 && c < C) {
        if (!MAX) {
            const float count = (float)(count_pad ? rows * columns : cells);
#pragma unroll
            for (int e = 0; e < V; ++e) acc[e] /= count;
        }
        store_vector<V>(y + n * yn + oh * yh + ow * yw + c, acc);
    }
}

// One named kernel per instantiation and element type, as for pool_nhwc; the list must match WIDE_KERNELS in
// ios_core/engine/pooling.py.
#define POOL_NHWC_WIDE(KIND, MAX, V, NAME, E)                                                                        \
    extern "C" __global__ void __launch_bounds__(WIDE_BLOCK) pool_nhwc_wide_##KIND##_v##V##NAME(                     \
        int lanes, int tiles, int C, int H, int W, int OH, int OW, int kh, int kw, int sh, int sw, int ph, int pw,   \
        int eh, int ew, int count_pad, const E* __restrict__ x, int xn, int xh, int xw, E* __restrict__ y, int yn,   \
        int yh, int yw)                                                                                              \
    {                                                                                                                \
        pool_nhwc_wide<MAX, V, E>(lanes, tiles, C, H, W, OH, OW, kh, kw, sh, sw, ph, pw, eh, ew, count_pad, x, xn,   \
                                  xh, xw, y, yn, yh, yw);                                                            \
    }

#define POOL_NHWC_WIDE_ALL(SUFFIX, NAME, E)                                                                          \
    POOL_NHWC_WIDE(max, true, 4, NAME, E) POOL_NHWC_WIDE(max, true, 1, NAME, E)                                      \
    POOL_NHWC_WIDE(avg, false, 4, NAME, E) POOL_NHWC_WIDE(avg, false, 1, NAME, E)

FOR_EACH_ELEMENT(POOL_NHWC_WIDE_ALL)
