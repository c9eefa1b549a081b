// Constant padding of the ios-core engine: y = x padded by (top, left) and as many rows and columns
// below and right as y has, filled with `value`; a negative top or left crops. One launch writes
// every element of y (the fill and the copy), a thread per output element with a grid-stride loop
// and 64-bit strides; with c_inner the thread index runs (n, oh, ow, c), channel fastest, which
// coalesces NHWC views, otherwise (n, c, oh, ow). Elements are any of element.cuh's (pad_<suffix>).
#include "element.cuh"
#include "indexing.cuh"

template <class E>
__device__ __forceinline__ void pad(
    int N, int C, int OH, int OW, int top, int left, int H, int W, float value, int c_inner,
    const E* __restrict__ x, long long xn, long long xc, long long xh, long long xw,
    E* __restrict__ y, long long yn, long long yc, long long yh, long long yw)
{
    const E fill = from_float<E>(value);
    unsigned int total = (unsigned int)N * C * OH * OW;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        unsigned int c, oh, ow, n;
        decode_output_index(i, C, OH, OW, c_inner, n, c, oh, ow);
        const int h = (int)oh - top, w = (int)ow - left;
        const bool inside = (unsigned int)h < (unsigned int)H && (unsigned int)w < (unsigned int)W;
        y[n * yn + c * yc + oh * yh + ow * yw] = inside ? x[n * xn + c * xc + h * xh + w * xw] : fill;
    }
}

#define PAD(SUFFIX, NAME, E)                                                                                         \
    extern "C" __global__ void pad_##SUFFIX(                                                                         \
        int N, int C, int OH, int OW, int top, int left, int H, int W, float value, int c_inner,                     \
        const E* __restrict__ x, long long xn, long long xc, long long xh, long long xw,                             \
        E* __restrict__ y, long long yn, long long yc, long long yh, long long yw)                                   \
    {                                                                                                                \
        pad<E>(N, C, OH, OW, top, left, H, W, value, c_inner, x, xn, xc, xh, xw, y, yn, yc, yh, yw);                 \
    }

FOR_EACH_ELEMENT(PAD)
