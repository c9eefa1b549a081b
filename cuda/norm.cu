// Operators over the channels of each pixel in the ios-core engine: LayerNorm (normalize, then scale and
// shift per channel) and softmax, over strided 4-D views of any of element.cuh's types (norm_<suffix>; a
// LayerNorm's weight and bias in the same type), computed in float.
//
// `lanes` threads share a pixel: 32 (a warp) where channels are contiguous (NHWC, or a 1 x 1 image),
// so a warp's loads of one pixel are coalesced and its sums meet by shuffles; 1 elsewhere (NCHW),
// where neighbouring threads take neighbouring pixels and so read neighbouring addresses. Pixels are
// walked by a grid-stride loop whose bounds are the same for every lane of a pixel, so the lanes of a
// warp stay converged at each shuffle. LayerNorm takes two passes for the moments (the mean, then the
// mean squared deviation: no cancellation), a third to write; softmax subtracts the maximum before
// exponentiating. y never overlaps x.

#include <math.h>

#include "element.cuh"

enum NormKind { NORM_LAYER = 0, NORM_SOFTMAX = 1 };

// The sum (or the max) of v over the `lanes` lanes of a pixel, known to each of them.
template <bool MAX>
__device__ __forceinline__ float across_lanes(float v, int lanes) {
    for (int offset = lanes / 2; offset > 0; offset /= 2) {
        const float other = __shfl_xor_sync(0xffffffffu, v, offset);
        v = MAX ? (other > v || other != other ? other : v) : v + other;
    }
    return v;
}

template <class E>
__device__ __forceinline__ void norm(
    int kind, int lanes, unsigned int pixels, int C, int H, int W, float eps,
    const E* __restrict__ x, long long xn, long long xc, long long xh, long long xw,
    const E* __restrict__ weight, const E* __restrict__ bias,
    E* __restrict__ y, long long yn, long long yc, long long yh, long long yw)
{
    const int lane = (int)(threadIdx.x % (unsigned int)lanes);  // lanes divides 32, which divides the block
    const unsigned int step = gridDim.x * blockDim.x / lanes;
    for (unsigned int p = (blockIdx.x * blockDim.x + threadIdx.x) / lanes; p < pixels; p += step) {
        const unsigned int w = p % W, q = p / W, h = q % H, n = q / H;
        const E* xp = x + n * xn + h * xh + w * xw;
        E* yp = y + n * yn + h * yh + w * yw;
        if (kind == NORM_LAYER) {
            float sum = 0.0f;
            for (int c = lane; c < C; c += lanes) sum += to_float(xp[c * xc]);
            const float mean = across_lanes<false>(sum, lanes) / C;
            float squares = 0.0f;
            for (int c = lane; c < C; c += lanes) {
                const float d = to_float(xp[c * xc]) - mean;
                squares += d * d;
            }
            const float scale = 1.0f / sqrtf(across_lanes<false>(squares, lanes) / C + eps);
            for (int c = lane; c < C; c += lanes) {
                const float v = (to_float(xp[c * xc]) - mean) * scale;
                yp[c * yc] = from_float<E>(v * to_float(weight[c]) + to_float(bias[c]));
            }
        } else {
            float most = -INFINITY;
            for (int c = lane; c < C; c += lanes) {
                const float v = to_float(xp[c * xc]);
                most = v > most || v != v ? v : most;
            }
            most = across_lanes<true>(most, lanes);
            float sum = 0.0f;
            for (int c = lane; c < C; c += lanes) sum += expf(to_float(xp[c * xc]) - most);
            const float inverse = 1.0f / across_lanes<false>(sum, lanes);
            for (int c = lane; c < C; c += lanes)
                yp[c * yc] = from_float<E>(expf(to_float(xp[c * xc]) - most) * inverse);
        }
    }
}

#define NORM(SUFFIX, NAME, E)                                                                                        \
    extern "C" __global__ void norm_##SUFFIX(                                                                        \
        int kind, int lanes, unsigned int pixels, int C, int H, int W, float eps,                                    \
        const E* __restrict__ x, long long xn, long long xc, long long xh, long long xw,                             \
        const E* __restrict__ weight, const E* __restrict__ bias,                                                    \
        E* __restrict__ y, long long yn, long long yc, long long yh, long long yw)                                   \
    {                                                                                                                \
        norm<E>(kind, lanes, pixels, C, H, W, eps, x, xn, xc, xh, xw, weight, bias, y, yn, yc, yh, yw);              \
    }

FOR_EACH_ELEMENT(NORM)
