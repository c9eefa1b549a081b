// What the NHWC fast paths (depthwise.cu, pool.cu) share: magic-number division for 32-bit index
// decoding, and loads and stores of V consecutive channels converted to and from float.
#pragma once

#include "element.cuh"

// n / d for n < 2^31 as (umulhi(n, magic) + n) >> shift; the host computes (magic, shift) for d.
__device__ __forceinline__ unsigned int divide(unsigned int n, unsigned int magic, unsigned int shift) {
    return (__umulhi(n, magic) + n) >> shift;
}

// V consecutive elements at p as floats. V == 4 is one vector access (float4: 16 bytes; uint2 of four 16-bit
// elements: 8 bytes), for which the host has checked that p is aligned to 4 elements.
template <int V, class E>
__device__ __forceinline__ void load_vector(const E* __restrict__ p, float (&v)[V]) {
    if constexpr (V == 4 && sizeof(E) == 4) {
        const float4 q = __ldg(reinterpret_cast<const float4*>(p));
        v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
    } else if constexpr (V == 4) {
        const uint2 q = __ldg(reinterpret_cast<const uint2*>(p));
        const E* e = reinterpret_cast<const E*>(&q);
#pragma unroll
        for (int i = 0; i < 4; ++i) v[i] = to_float(e[i]);
    } else {
#pragma unroll
        for (int i = 0; i < V; ++i) v[i] = to_float(__ldg(p + i));
    }
}

template <int V, class E>
__device__ __forceinline__ void store_vector(E* __restrict__ p, const float (&v)[V]) {
    if constexpr (V == 4 && sizeof(E) == 4) {
        *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
    } else if constexpr (V == 4) {
        alignas(8) E e[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) e[i] = from_float<E>(v[i]);
        *reinterpret_cast<uint2*>(p) = *reinterpret_cast<const uint2*>(e);
    } else {
#pragma unroll
        for (int i = 0; i < V; ++i) p[i] = from_float<E>(v[i]);
    }
}
