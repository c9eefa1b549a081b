// What the NHWC fast paths (depthwise.cu, pool.cu) share: magic-number division for 32-bit index
// decoding, and loads and stores of V consecutive channels.
#pragma once

// n / d for n < 2^31 as (umulhi(n, magic) + n) >> shift; the host computes (magic, shift) for d.
__device__ __forceinline__ unsigned int divide(unsigned int n, unsigned int magic, unsigned int shift) {
    return (__umulhi(n, magic) + n) >> shift;
}

// V consecutive floats at p; p is 16-byte aligned when V == 4 (checked on the host).
template <int V>
__device__ __forceinline__ void load_vector(const float* __restrict__ p, float (&v)[V]) {
    if constexpr (V == 4) {
        const float4 q = __ldg(reinterpret_cast<const float4*>(p));
        v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
    } else {
#pragma unroll
        for (int e = 0; e < V; ++e) v[e] = __ldg(p + e);
    }
}

template <int V>
__device__ __forceinline__ void store_vector(float* __restrict__ p, const float (&v)[V]) {
    if constexpr (V == 4) {
        *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
#pragma unroll
        for (int e = 0; e < V; ++e) p[e] = v[e];
    }
}
