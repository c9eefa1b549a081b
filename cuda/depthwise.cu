// Depthwise convolution (groups = input channels = output channels) of the ios-core engine:
// y = act(conv(pre_act(x), w) + b) over strided 4-D views, in fp32 (FFMA: exact in both precisions).
//
// cuDNN's fp32 grouped-direct kernel spends ~18 us on a 42x83x83 5x5 depthwise convolution that
// moves 2.3 MB; this one is a thread per output, channel fastest for NHWC (c_inner) so that a
// warp's loads of one input pixel are contiguous. pre_act applies an activation to each input
// value as it is loaded (the relu that starts NasNet's and RandWire's separable convolutions),
// saving a pass over memory; padding contributes zero, as it pads the activated tensor.
// Weights are C x R x S with strides (wc, wr, ws).
#include "activation.cuh"
#include "indexing.cuh"

extern "C" __global__ void depthwise_f32(
    int N, int C, int H, int W, int OH, int OW, int R, int S,
    int sh, int sw, int ph, int pw, int dh, int dw, int pre_act, int act, int c_inner,
    const float* __restrict__ x, long long xn, long long xc, long long xh, long long xw,
    const float* __restrict__ w, int wc, int wr, int ws, const float* __restrict__ bias,
    float* __restrict__ y, long long yn, long long yc, long long yh, long long yw)
{
    unsigned int total = (unsigned int)N * C * OH * OW;
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        unsigned int c, oh, ow, n;
        decode_output_index(i, C, OH, OW, c_inner, n, c, oh, ow);
        const float* xc0 = x + n * xn + c * xc;
        const float* wc0 = w + c * wc;
        int h0 = (int)oh * sh - ph, w0 = (int)ow * sw - pw;
        float acc = bias[c];
        for (int r = 0; r < R; ++r) {
            int h = h0 + r * dh;
            if (h < 0 || h >= H) continue;
            for (int s = 0; s < S; ++s) {
                int ww = w0 + s * dw;
                if (ww < 0 || ww >= W) continue;
                acc = fmaf(activate(pre_act, xc0[h * xh + ww * xw]), wc0[r * wr + s * ws], acc);
            }
        }
        y[n * yn + c * yc + oh * yh + ow * yw] = activate(act, acc);
    }
}
