// Pooling kernel of the ios-core engine: max or average (padding excluded) over strided 4-D views.
//
// One thread per output element. With c_inner the thread index runs (n, oh, ow, c), channel
// fastest, which coalesces NHWC views; otherwise (n, c, oh, ow) for NCHW. Global pooling is the
// window H x W at stride 1 without padding.

#include "indexing.cuh"

extern "C" __global__ void pool2d_f32(
    int is_max, int N, int C, int H, int W, int OH, int OW,
    int kh, int kw, int sh, int sw, int ph, int pw, int c_inner,
    const float* __restrict__ x, long long xn, long long xc, long long xh, long long xw,
    float* __restrict__ y, long long yn, long long yc, long long yh, long long yw)
{
    unsigned int total = (unsigned int)N * C * OH * OW;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        unsigned int c, oh, ow, n;
        decode_output_index(i, C, OH, OW, c_inner, n, c, oh, ow);
        const float* base = x + n * xn + c * xc;
        int h0 = (int)oh * sh - ph, w0 = (int)ow * sw - pw;
        int h1 = min(h0 + kh, H), w1 = min(w0 + kw, W);
        h0 = max(h0, 0);
        w0 = max(w0, 0);
        float acc = is_max ? -INFINITY : 0.0f;
        for (int h = h0; h < h1; ++h) {
            for (int w = w0; w < w1; ++w) {
                float v = base[h * xh + w * xw];
                acc = is_max ? ((v > acc || v != v) ? v : acc) : acc + v;  // NaN propagates, as in numpy
            }
        }
        if (!is_max) acc /= (float)((h1 - h0) * (w1 - w0));
        y[n * yn + c * yc + oh * yh + ow * yw] = acc;
    }
}
