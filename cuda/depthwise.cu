// Depthwise convolution (groups = input channels = output channels) of the ios-core engine:
// y = act(conv(pre_act(x), w) + b) over strided 4-D views of any of element.cuh's types (x, w, b and y in one
// type; every kernel has an instance per type), accumulated in float (FFMA).
//
// pre_act applies an activation to each input value as it is loaded (the relu that starts NasNet's
// and RandWire's separable convolutions), saving a pass over memory; padding contributes zero, as
// it pads the activated tensor. The host (ios_core.engine.depthwise) picks one of two families:
//
// depthwise_nhwc_k<K>_s<S>_v<V>_t<T>: the fast path, for NHWC views (channel stride 1), a square
//   K x K kernel (3, 5, 7), equal strides S (1, 2), no dilation, pre_act none or relu, any act, and
//   tensors whose every element offset fits in 32 bits. A thread computes T consecutive outputs along W
//   for V consecutive channels (V = 4: vector loads and stores of 4 elements, 16 bytes of float or 8 of a
//   16-bit type, when the host has checked that C, the pixel strides and the base pointers are aligned
//   to 4 elements). Threads are numbered channel
//   vector fastest, then W tile, then output row, then sample, so a warp's loads of one input pixel
//   are contiguous. Per output row of the kernel the thread loads each input column of its window
//   once ((T - 1) * S + K columns) and uses it for every output it touches, with the row's weights
//   in registers; weights and bias are read once per thread. Windows wholly inside the input skip
//   every bounds check. Index math is 32-bit, divisions by runtime sizes use multiply-high magic
//   numbers from the host.
// depthwise_<suffix>: the generic fallback for everything else (NCHW, dilation, other kernels or
//   strides, 64-bit strides): a thread per output with a grid-stride loop, a bounds check per tap.
//   Weights are C x R x S with strides (wc, wr, ws).
#include "activation.cuh"
#include "element.cuh"
#include "indexing.cuh"
#include "nhwc.cuh"

template <class E>
__device__ __forceinline__ void depthwise(
    int N, int C, int H, int W, int OH, int OW, int R, int S,
    int sh, int sw, int ph, int pw, int dh, int dw, int pre_act, int act, int c_inner,
    const E* __restrict__ x, long long xn, long long xc, long long xh, long long xw,
    const E* __restrict__ w, int wc, int wr, int ws, const E* __restrict__ bias,
    E* __restrict__ y, long long yn, long long yc, long long yh, long long yw)
{
    unsigned int total = (unsigned int)N * C * OH * OW;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        unsigned int c, oh, ow, n;
        decode_output_index(i, C, OH, OW, c_inner, n, c, oh, ow);
        const E* xc0 = x + n * xn + c * xc;
        const E* wc0 = w + c * wc;
        int h0 = (int)oh * sh - ph, w0 = (int)ow * sw - pw;
        float acc = to_float(bias[c]);
        for (int r = 0; r < R; ++r) {
            int h = h0 + r * dh;
            if (h < 0 || h >= H) continue;
            for (int s = 0; s < S; ++s) {
                int ww = w0 + s * dw;
                if (ww < 0 || ww >= W) continue;
                acc = fmaf(activate(pre_act, to_float(xc0[h * xh + ww * xw])), to_float(wc0[r * wr + s * ws]), acc);
            }
        }
        y[n * yn + c * yc + oh * yh + ow * yw] = from_float<E>(activate(act, acc));
    }
}

#define DEPTHWISE(SUFFIX, NAME, E)                                                                                   \
    extern "C" __global__ void depthwise_##SUFFIX(                                                                   \
        int N, int C, int H, int W, int OH, int OW, int R, int S,                                                    \
        int sh, int sw, int ph, int pw, int dh, int dw, int pre_act, int act, int c_inner,                           \
        const E* __restrict__ x, long long xn, long long xc, long long xh, long long xw,                             \
        const E* __restrict__ w, int wc, int wr, int ws, const E* __restrict__ bias,                                 \
        E* __restrict__ y, long long yn, long long yc, long long yh, long long yw)                                   \
    {                                                                                                                \
        depthwise<E>(N, C, H, W, OH, OW, R, S, sh, sw, ph, pw, dh, dw, pre_act, act, c_inner, x, xn, xc, xh, xw,     \
                     w, wc, wr, ws, bias, y, yn, yc, yh, yw);                                                        \
    }

FOR_EACH_ELEMENT(DEPTHWISE)

// ---- the NHWC fast path ---------------------------------------------------------------------

// max(v, low) that keeps NaN (as activate() does): low 0 is the relu, -inf none; one FMNMX on sm_80+.
__device__ __forceinline__ float at_least(float v, float low) {
#if __CUDA_ARCH__ >= 800
    float r;
    asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(v), "f"(low));
    return r;
#else
    return v < low ? low : v;
#endif
}

// acc[t] += sum over the K x K window of output t. x points at (sample, channel), w at the channel
// of the R x S x C weights; (h0, w0) is the window's top-left input pixel. Each loaded value is
// raised to at least `low` (0: pre_act relu; -inf: none). BORDER: some of the window lies in
// the padding, whose taps are skipped (they contribute zero, not low).
template <int K, int S, int V, int T, bool BORDER, class E>
__device__ __forceinline__ void accumulate(const E* __restrict__ x, int xh, int xw, int H, int W, int h0, int w0,
                                           const E* __restrict__ w, int C, float low, float (&acc)[T][V])
{
    constexpr int WINDOW = (T - 1) * S + K;  // input columns the T outputs read
#pragma unroll
    for (int r = 0; r < K; ++r) {
        const int h = h0 + r;
        if (BORDER && (unsigned int)h >= (unsigned int)H) continue;
        float wr[K][V];
#pragma unroll
        for (int s = 0; s < K; ++s) load_vector<V>(w + (r * K + s) * C, wr[s]);
        const E* row = x + h * xh;
#pragma unroll
        for (int j = 0; j < WINDOW; ++j) {
            const int col = w0 + j;
            if (BORDER && (unsigned int)col >= (unsigned int)W) continue;
            float v[V];
            load_vector<V>(row + col * xw, v);
#pragma unroll
            for (int e = 0; e < V; ++e) v[e] = at_least(v[e], low);
#pragma unroll
            for (int t = 0; t < T; ++t) {
                const int s = j - t * S;  // the tap of output t that column j feeds
                if (s < 0 || s >= K) continue;
#pragma unroll
                for (int e = 0; e < V; ++e) acc[t][e] = fmaf(v[e], wr[s][e], acc[t][e]);
            }
        }
    }
}

template <int K, int S, int V, int T, class E>
__device__ __forceinline__ void depthwise_nhwc(
    unsigned int items, int C, int H, int W, int OH, int OW, int ph, int pw, int pre_act, int act,
    unsigned int vectors_magic, unsigned int vectors_shift, unsigned int tiles_magic, unsigned int tiles_shift,
    unsigned int rows_magic, unsigned int rows_shift,
    const E* __restrict__ x, int xn, int xh, int xw, const E* __restrict__ w,
    const E* __restrict__ bias, E* __restrict__ y, int yn, int yh, int yw)
{
    const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= items) return;
    const unsigned int vectors = C / V, tiles = (OW + T - 1) / T;
    const unsigned int q = divide(i, vectors_magic, vectors_shift);
    const unsigned int p = divide(q, tiles_magic, tiles_shift);
    const unsigned int n = divide(p, rows_magic, rows_shift);
    const int c = (int)(i - q * vectors) * V, ow0 = (int)(q - p * tiles) * T, oh = (int)(p - n * OH);
    const int h0 = oh * S - ph, w0 = ow0 * S - pw;
    constexpr int WINDOW = (T - 1) * S + K;

    float acc[T][V];
    float b[V];
    load_vector<V>(bias + c, b);
#pragma unroll
    for (int t = 0; t < T; ++t)
#pragma unroll
        for (int e = 0; e < V; ++e) acc[t][e] = b[e];

    const E* xs = x + (int)n * xn + c;
    const E* ws = w + c;
    const bool inside = h0 >= 0 && h0 + K <= H && w0 >= 0 && w0 + WINDOW <= W;
    const float pre_low = pre_act == ACT_RELU ? 0.0f : -INFINITY;  // the host sends only none or relu here
    if (inside) accumulate<K, S, V, T, false>(xs, xh, xw, H, W, h0, w0, ws, C, pre_low, acc);
    else accumulate<K, S, V, T, true>(xs, xh, xw, H, W, h0, w0, ws, C, pre_low, acc);

    const float act_low = act == ACT_RELU ? 0.0f : -INFINITY;
    E* out = y + (int)n * yn + oh * yh + c;
#pragma unroll
    for (int t = 0; t < T; ++t) {
        if (ow0 + t >= OW) break;
#pragma unroll
        for (int e = 0; e < V; ++e)  // relu by one FMNMX; the zoo's other activations by the shared function
            acc[t][e] = act <= ACT_RELU ? at_least(acc[t][e], act_low) : activate(act, acc[t][e]);
        store_vector<V>(out + (ow0 + t) * yw, acc[t]);
    }
}

// One named kernel per instantiation and element type (NAME: empty for float, _f16, _bf16), as PyCUDA loads
// functions by name; the list must match FAST_KERNELS in ios_core/engine/depthwise.py (a test compiles this
// file and checks).
#define DEPTHWISE_NHWC(K, S, V, T, NAME, E)                                                                          \
    extern "C" __global__ void __launch_bounds__(128) depthwise_nhwc_k##K##_s##S##_v##V##_t##T##NAME(                \
        unsigned int items, int C, int H, int W, int OH, int OW, int ph, int pw, int pre_act, int act,               \
        unsigned int vectors_magic, unsigned int vectors_shift, unsigned int tiles_magic, unsigned int tiles_shift,  \
        unsigned int rows_magic, unsigned int rows_shift, const E* __restrict__ x, int xn, int xh, int xw,           \
        const E* __restrict__ w, const E* __restrict__ bias, E* __restrict__ y, int yn, int yh, int yw)              \
    {                                                                                                                \
        depthwise_nhwc<K, S, V, T, E>(items, C, H, W, OH, OW, ph, pw, pre_act, act, vectors_magic, vectors_shift,    \
                                      tiles_magic, tiles_shift, rows_magic, rows_shift, x, xn, xh, xw, w, bias, y,   \
                                      yn, yh, yw);                                                                   \
    }

#define DEPTHWISE_NHWC_SHAPES(K, S, NAME, E)                                                                         \
    DEPTHWISE_NHWC(K, S, 4, 4, NAME, E) DEPTHWISE_NHWC(K, S, 4, 2, NAME, E) DEPTHWISE_NHWC(K, S, 4, 1, NAME, E)      \
    DEPTHWISE_NHWC(K, S, 1, 4, NAME, E) DEPTHWISE_NHWC(K, S, 1, 2, NAME, E) DEPTHWISE_NHWC(K, S, 1, 1, NAME, E)

#define DEPTHWISE_NHWC_ALL(SUFFIX, NAME, E)                                                                          \
    DEPTHWISE_NHWC_SHAPES(3, 1, NAME, E) DEPTHWISE_NHWC_SHAPES(3, 2, NAME, E)                                        \
    DEPTHWISE_NHWC_SHAPES(5, 1, NAME, E) DEPTHWISE_NHWC_SHAPES(5, 2, NAME, E)                                        \
    DEPTHWISE_NHWC_SHAPES(7, 1, NAME, E) DEPTHWISE_NHWC_SHAPES(7, 2, NAME, E)

FOR_EACH_ELEMENT(DEPTHWISE_NHWC_ALL)
