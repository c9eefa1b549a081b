// Element-wise kernels of the ios-core engine: y = clip(act(a op b), low, high) over strided 4-D views.
//
// Every tensor is a view of the arena with its own element strides, passed in iteration order (the
// host orders the four dimensions so that the last is y's fastest), so one kernel serves copies,
// gathers into concatenations, sums of terms, products, activations and clips, in NCHW and NHWC
// alike. A stride of 0 broadcasts an operand (a C x 1 x 1 scale over H and W), and the four
// dimensions need not be N, C, H, W: a channel shuffle is a copy over (n, i, j, pixel) with permuted
// strides. y may be a itself (accumulation in place): each thread reads its element of a before it
// writes the same element of y, so no pointer is __restrict__. Elements are float, __half or
// __nv_bfloat16 (element.cuh), the arithmetic float. pointwise_batch_* runs up to 16 independent such
// tasks in one launch, a row of blocks each; pointwise_sum_* a sum of up to 8 terms in one pass.

#include "activation.cuh"
#include "element.cuh"

enum PointwiseOp { OP_NONE = 0, OP_ADD = 1, OP_MUL = 2 };

// Element i of the iteration order (d0 x d1 x d2 x d3, the last fastest) as its four indices, and its offset in a
// view of strides s0..s3 in that order.
struct Position {
    unsigned int i0, i1, i2, i3;
};

__device__ __forceinline__ Position position(unsigned int i, unsigned int d1, unsigned int d2, unsigned int d3)
{
    Position p;
    p.i3 = i % d3;
    i /= d3;
    p.i2 = i % d2;
    i /= d2;
    p.i1 = i % d1;
    p.i0 = i / d1;
    return p;
}

__device__ __forceinline__ long long offset(const Position& p, long long s0, long long s1, long long s2, long long s3)
{
    return p.i0 * s0 + p.i1 * s1 + p.i2 * s2 + p.i3 * s3;
}

template <class E>
__device__ __forceinline__ void pointwise(
    int op, int act, float low, float high, unsigned int total, unsigned int d1, unsigned int d2, unsigned int d3,
    E* y, long long y0, long long y1, long long y2, long long y3,
    const E* a, long long a0, long long a1, long long a2, long long a3,
    const E* b, long long b0, long long b1, long long b2, long long b3)
{
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < total; i += gridDim.x * blockDim.x) {
        const Position p = position(i, d1, d2, d3);
        float v = to_float(a[offset(p, a0, a1, a2, a3)]);
        if (op != OP_NONE) {
            float w = to_float(b[offset(p, b0, b1, b2, b3)]);
            v = op == OP_ADD ? v + w : v * w;
        }
        y[offset(p, y0, y1, y2, y3)] = from_float<E>(clamp_keep_nan(activate(act, v), low, high));
    }
}

// One part of a batch of independent pointwise tasks: pointwise()'s arguments, in its order, as the host packs them
// (ios_core.engine.channelwise.POINTWISE_PART): 32 bytes of scalars, then each view's address and strides, 152 in all.
struct PointwisePart {
    int op, act;
    float low, high;
    unsigned int total, d1, d2, d3;
    unsigned long long y;
    long long y0, y1, y2, y3;
    unsigned long long a;
    long long a0, a1, a2, a3;
    unsigned long long b;
    long long b0, b1, b2, b3;
};

// Up to POINTWISE_BATCH parts, passed by value (2,432 bytes of the 4 KB a launch's parameters may take), so that a
// batch needs no memory of its own; blockIdx.y picks the part, and the grid has as many rows as there are parts.
#define POINTWISE_BATCH 16
struct PointwiseBatch {
    PointwisePart parts[POINTWISE_BATCH];
};

// The parts of a batch side by side, each a task of its own: one launch where a run of independent pointwise tasks
// on one stream took one each.
template <class E>
__device__ __forceinline__ void pointwise_batch(const PointwiseBatch& batch)
{
    const PointwisePart& p = batch.parts[blockIdx.y];
    pointwise<E>(p.op, p.act, p.low, p.high, p.total, p.d1, p.d2, p.d3,
                 reinterpret_cast<E*>(p.y), p.y0, p.y1, p.y2, p.y3,
                 reinterpret_cast<const E*>(p.a), p.a0, p.a1, p.a2, p.a3,
                 reinterpret_cast<const E*>(p.b), p.b0, p.b1, p.b2, p.b3);
}

// A view of a sum's term: its address and strides in the output's iteration order.
struct PointwiseView {
    unsigned long long at;
    long long s0, s1, s2, s3;
};

// y = clip(act(x_0 + x_1 + ... + x_{terms-1}), low, high): a sum of up to POINTWISE_TERMS terms in one pass, where
// the lowering's chain of additions into y took a launch and a pass over y per term. Passed by value, as a batch.
// A term may be y itself (the chain's first, accumulated in place): each thread reads every term of its element
// before it writes it.
#define POINTWISE_TERMS 8
struct PointwiseSum {
    int act, terms;
    float low, high;
    unsigned int total, d1, d2, d3;
    PointwiseView y;
    PointwiseView x[POINTWISE_TERMS];
};

template <class E>
__device__ __forceinline__ void pointwise_sum(const PointwiseSum& sum)
{
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < sum.total; i += gridDim.x * blockDim.x) {
        const Position p = position(i, sum.d1, sum.d2, sum.d3);
        float v = 0.0f;
        for (int k = 0; k < sum.terms; ++k) {
            const PointwiseView& x = sum.x[k];
            v += to_float(reinterpret_cast<const E*>(x.at)[offset(p, x.s0, x.s1, x.s2, x.s3)]);
        }
        const PointwiseView& y = sum.y;
        reinterpret_cast<E*>(y.at)[offset(p, y.s0, y.s1, y.s2, y.s3)] =
            from_float<E>(clamp_keep_nan(activate(sum.act, v), sum.low, sum.high));
    }
}

// Pseudo-random values in [-1, 1) from a hash of the index: what convolutions are autotuned on
// (never zeros, never NaN), written at build time only.
template <class E>
__device__ __forceinline__ void fill_random(E* y, unsigned int n, unsigned int seed)
{
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        unsigned int h = (i ^ seed) * 0x9E3779B1u;
        h ^= h >> 15;
        h *= 0x85EBCA77u;
        h ^= h >> 13;
        y[i] = from_float<E>((float)(h & 0xFFFFFFu) / 8388608.0f - 1.0f);
    }
}

// y = x converted between float and the element type E, n contiguous elements: a plan's input enters its
// arena and its output leaves it this way when the arena holds 16-bit elements.
template <class From, class To>
__device__ __forceinline__ void convert(const From* __restrict__ x, To* __restrict__ y, unsigned int n)
{
    for (unsigned int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = from_float<To>(to_float(x[i]));
}

#define POINTWISE(SUFFIX, NAME, E)                                                                                   \
    extern "C" __global__ void pointwise_##SUFFIX(                                                                   \
        int op, int act, float low, float high, unsigned int total, unsigned int d1, unsigned int d2,                \
        unsigned int d3, E* y, long long y0, long long y1, long long y2, long long y3,                               \
        const E* a, long long a0, long long a1, long long a2, long long a3,                                          \
        const E* b, long long b0, long long b1, long long b2, long long b3)                                          \
    {                                                                                                                \
        pointwise<E>(op, act, low, high, total, d1, d2, d3, y, y0, y1, y2, y3, a, a0, a1, a2, a3, b, b0, b1, b2, b3); \
    }                                                                                                                \
    extern "C" __global__ void pointwise_batch_##SUFFIX(const __grid_constant__ PointwiseBatch batch)               \
    {                                                                                                                \
        pointwise_batch<E>(batch);                                                                                   \
    }                                                                                                                \
    extern "C" __global__ void pointwise_sum_##SUFFIX(const __grid_constant__ PointwiseSum sum)                     \
    {                                                                                                                \
        pointwise_sum<E>(sum);                                                                                       \
    }                                                                                                                \
    extern "C" __global__ void fill_random_##SUFFIX(E* y, unsigned int n, unsigned int seed)                         \
    {                                                                                                                \
        fill_random<E>(y, n, seed);                                                                                  \
    }                                                                                                                \
    extern "C" __global__ void convert_in_##SUFFIX(const float* __restrict__ x, E* __restrict__ y, unsigned int n)   \
    {                                                                                                                \
        convert<float, E>(x, y, n);                                                                                  \
    }                                                                                                                \
    extern "C" __global__ void convert_out_##SUFFIX(const E* __restrict__ x, float* __restrict__ y, unsigned int n)  \
    {                                                                                                                \
        convert<E, float>(x, y, n);                                                                                  \
    }

FOR_EACH_ELEMENT(POINTWISE)
