// Constant padding of the ios-core engine: y = x padded by (top, left) and as many rows and columns
// below and right as y has, filled with `value`; a negative top or left crops. One launch writes
// every element of y (the fill and the copy), a thread per output element with a grid-stride loop
// and 64-bit strides; with c_inner the thread index runs (n, oh, ow, c), channel fastest, which
// coalesces NHWC views, otherwise (n, c, oh, ow).
#include "indexing.cuh"

extern "C" __global__ void pad_f32(
    int N, int C, int OH, int OW, int top, int left, int H, int W, float value, int c_inner,
    const float* __restrict__ x, long long xn, long long xc, long long xh, long long xw,
    float* __restrict__ y, long long yn, long long yc, long long yh, long long yw)
{
    unsigned int total = (unsigned int)N * C * OH * OW;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        unsigned int c, oh, ow, n;
        decode_output_index(i, C, OH, OW, c_inner, n, c, oh, ow);
        const int h = (int)oh - top, w = (int)ow - left;
        const bool inside = (unsigned int)h < (unsigned int)H && (unsigned int)w < (unsigned int)W;
        y[n * yn + c * yc + oh * yh + ow * yw] = inside ? x[n * xn + c * xc + h * xh + w * xw] : value;
    }
}
