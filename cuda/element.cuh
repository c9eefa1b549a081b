// The element types our kernels store tensors in -- float, __half, __nv_bfloat16 -- and their conversions to and
// from float, in which every kernel computes. Each kernel is a template on the element type E; its extern "C"
// instances are named <kernel>_f32, _f16 and _bf16 (fast kernels: <kernel>, <kernel>_f16, <kernel>_bf16), the
// suffixes of ios_core.engine.elements. FOR_EACH_ELEMENT(X) expands X(suffix, fast name suffix, type) once per
// type; -DELEMENT_ONLY=<0|1|2> keeps float's, __half's or __nv_bfloat16's alone (a plan loads one type: a third
// of the compile time).
#pragma once

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

// float to E, rounded to nearest even (a NaN stays NaN).
template <class E> __device__ __forceinline__ E from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
    return __float2bfloat16_rn(v);
}

#if !defined(ELEMENT_ONLY) || ELEMENT_ONLY == 0
#define ELEMENT_F32(X) X(f32, , float)
#else
#define ELEMENT_F32(X)
#endif
#if !defined(ELEMENT_ONLY) || ELEMENT_ONLY == 1
#define ELEMENT_F16(X) X(f16, _f16, __half)
#else
#define ELEMENT_F16(X)
#endif
#if !defined(ELEMENT_ONLY) || ELEMENT_ONLY == 2
#define ELEMENT_BF16(X) X(bf16, _bf16, __nv_bfloat16)
#else
#define ELEMENT_BF16(X)
#endif
#define FOR_EACH_ELEMENT(X) ELEMENT_F32(X) ELEMENT_F16(X) ELEMENT_BF16(X)
