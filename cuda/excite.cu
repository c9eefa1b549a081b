// A squeeze-and-excitation's three small operators in one kernel of the ios-core engine: a global pool of x, then
// two 1 x 1 convolutions of the pooled pixel, each with its bias and activation,
//     y[n, c] = act2(b2[c] + sum_j W2[c, j] act1(b1[j] + sum_i W1[j, i] pool(x[n, i, :, :]))),
// over strided 4-D views of any of element.cuh's types (excite_v<V><NAME>; weights and biases in the same type,
// W1 as mid x C and W2 as C x mid rows: a 1 x 1 kernel in KRSC or KCRS order alike), computed in float.
//
// One block per sample: each operator needs all of the one before it, and a block's threads meet at
// __syncthreads, where three kernels would each pay a launch. The pool splits the block into `lanes` channel
// lanes of V channels each (neighbouring threads take neighbouring channels: coalesced in NHWC; V = 4 is one vector
// load, nhwc.cuh, where the host has checked the alignment) times blockDim / lanes cell lanes, whose partial
// results meet in shared memory. A block's loads are one multiprocessor's, so it takes the most threads a block can
// have (1024) and vectors: as many loads in flight as the multiprocessor keeps. Then the hidden layer is a warp per
// row of W1 (its loads contiguous), the output a thread per channel over the few hidden values. blockDim is a
// multiple of 32 up to EXCITE_BLOCK, C and mid at most EXCITE_CHANNELS and EXCITE_MID (what the shared memory
// holds). The lowering sends a pool over many cells through a first pass of bands (engine.pooling), so a block
// walks at most a few hundred cells. y never overlaps x.

#include <math.h>

#include "activation.cuh"
#include "element.cuh"
#include "nhwc.cuh"

#define EXCITE_BLOCK 1024     // the most threads of a block (engine.excitation.BLOCK)
#define EXCITE_CHANNELS 4096  // the most channels of x (engine.excitation.MAX_CHANNELS)
#define EXCITE_MID 1024       // the most hidden values (engine.excitation.MAX_MID)

template <int V, class E>
__device__ __forceinline__ void excite(
    int pool_max, int lanes, int C, int H, int W, int mid, int act1, int act2,
    const E* __restrict__ x, long long xn, long long xc, long long xh, long long xw,
    const E* __restrict__ w1, const E* __restrict__ b1, const E* __restrict__ w2, const E* __restrict__ b2,
    E* __restrict__ y, long long yn, long long yc)
{
    __shared__ float partial[EXCITE_BLOCK * V];  // V per thread
    __shared__ float pooled[EXCITE_CHANNELS];
    __shared__ float hidden[EXCITE_MID];
    const int cells = H * W, cell_lanes = (int)blockDim.x / lanes;
    const int lane = (int)threadIdx.x % lanes, cell_lane = (int)threadIdx.x / lanes;
    const E* xs = x + blockIdx.x * xn;
    for (int first = 0; first < C; first += lanes * V) {
        const int c = first + lane * V;
        float acc[V];
#pragma unroll
        for (int i = 0; i < V; ++i) acc[i] = pool_max ? -INFINITY : 0.0f;
        if (c < C && cell_lane < cell_lanes) {
            for (int cell = cell_lane; cell < cells; cell += cell_lanes) {
                float v[V];
                if constexpr (V == 1) v[0] = to_float(xs[c * xc + (cell / W) * xh + (cell % W) * xw]);
                else load_vector<V>(xs + c + (cell / W) * xh + (cell % W) * xw, v);  // channels contiguous
#pragma unroll
                for (int i = 0; i < V; ++i)
                    acc[i] = pool_max ? (v[i] > acc[i] || v[i] != v[i] ? v[i] : acc[i]) : acc[i] + v[i];
            }
        }
#pragma unroll
        for (int i = 0; i < V; ++i) partial[threadIdx.x * V + i] = acc[i];
        __syncthreads();
        if (cell_lane == 0 && c < C) {
            for (int k = 1; k < cell_lanes; ++k) {
#pragma unroll
                for (int i = 0; i < V; ++i) {
                    const float v = partial[(k * lanes + lane) * V + i];
                    acc[i] = pool_max ? (v > acc[i] || v != v ? v : acc[i]) : acc[i] + v;
                }
            }
#pragma unroll
            for (int i = 0; i < V; ++i) pooled[c + i] = pool_max ? acc[i] : acc[i] / cells;
        }
        __syncthreads();
    }
    // the hidden layer: a warp per row of W1 (its loads contiguous), whose lanes' sums meet in shared memory
    const int rows = (int)blockDim.x / 32, row = (int)threadIdx.x / 32, k = (int)threadIdx.x % 32;
    for (int first = 0; first < mid; first += rows) {
        const int j = first + row;
        float sum = 0.0f;
        if (j < mid)
            for (int i = k; i < C; i += 32) sum += to_float(w1[(long long)j * C + i]) * pooled[i];
        partial[threadIdx.x] = sum;
        __syncthreads();
        if (k == 0 && j < mid) {
            float total = to_float(b1[j]);
            for (int m = 0; m < 32; ++m) total += partial[threadIdx.x + m];
            hidden[j] = activate(act1, total);
        }
        __syncthreads();
    }
    // the output: a thread per channel, over the few hidden values
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float sum = to_float(b2[c]);
        for (int j = 0; j < mid; ++j) sum += to_float(w2[(long long)c * mid + j]) * hidden[j];
        y[blockIdx.x * yn + c * yc] = from_float<E>(activate(act2, sum));
    }
}

#define EXCITE(KERNEL, V, NAME, E)                                                                                   \
    extern "C" __global__ void __launch_bounds__(EXCITE_BLOCK) KERNEL##NAME(                                        \
        int pool_max, int lanes, int C, int H, int W, int mid, int act1, int act2,                                   \
        const E* __restrict__ x, long long xn, long long xc, long long xh, long long xw,                             \
        const E* __restrict__ w1, const E* __restrict__ b1, const E* __restrict__ w2, const E* __restrict__ b2,      \
        E* __restrict__ y, long long yn, long long yc)                                                               \
    {                                                                                                                \
        excite<V, E>(pool_max, lanes, C, H, W, mid, act1, act2, x, xn, xc, xh, xw, w1, b1, w2, b2, y, yn, yc);       \
    }

#define EXCITE_INSTANCES(SUFFIX, NAME, E) EXCITE(excite_v1, 1, NAME, E) EXCITE(excite_v4, 4, NAME, E)

FOR_EACH_ELEMENT(EXCITE_INSTANCES)
