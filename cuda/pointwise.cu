// Element-wise kernels of the ios-core engine: y = clip(act(a op b), low, high) over strided 4-D views.
//
// Every tensor is a view of the arena with its own element strides, passed in iteration order (the
// host orders the four dimensions so that the last is y's fastest), so one kernel serves copies,
// gathers into concatenations, sums of terms, products, activations and clips, in NCHW and NHWC
// alike. A stride of 0 broadcasts an operand (a C x 1 x 1 scale over H and W), and the four
// dimensions need not be N, C, H, W: a channel shuffle is a copy over (n, i, j, pixel) with permuted
// strides. y may be a itself (accumulation in place): each thread reads its element of a before it
// writes the same element of y, so no pointer is __restrict__.

#include "activation.cuh"

enum PointwiseOp { OP_NONE = 0, OP_ADD = 1, OP_MUL = 2 };

extern "C" __global__ void pointwise_f32(
    int op, int act, float low, float high, unsigned int total, unsigned int d1, unsigned int d2, unsigned int d3,
    float* y, long long y0, long long y1, long long y2, long long y3,
    const float* a, long long a0, long long a1, long long a2, long long a3,
    const float* b, long long b0, long long b1, long long b2, long long b3)
{
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        unsigned int i3 = i % d3, t = i / d3;
        unsigned int i2 = t % d2;
        t /= d2;
        unsigned int i1 = t % d1, i0 = t / d1;
        float v = a[i0 * a0 + i1 * a1 + i2 * a2 + i3 * a3];
        if (op != OP_NONE) {
            float w = b[i0 * b0 + i1 * b1 + i2 * b2 + i3 * b3];
            v = op == OP_ADD ? v + w : v * w;
        }
        y[i0 * y0 + i1 * y1 + i2 * y2 + i3 * y3] = clamp_keep_nan(activate(act, v), low, high);
    }
}

// Pseudo-random values in [-1, 1) from a hash of the index: what convolutions are autotuned on
// (never zeros, never NaN), written at build time only.
extern "C" __global__ void fill_random_f32(float* y, unsigned int n, unsigned int seed)
{
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned int h = (i ^ seed) * 0x9E3779B1u;
        h ^= h >> 15;
        h *= 0x85EBCA77u;
        h ^= h >> 13;
        y[i] = (float)(h & 0xFFFFFFu) / 8388608.0f - 1.0f;
    }
}
