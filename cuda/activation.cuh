// Activations shared by the engine's kernels. NaN stays NaN (comparisons, never fmaxf/fminf), so reads
// of poisoned (never written) memory show in the output. The enum matches ACTIVATIONS in
// ios_core/engine/program.py; each function is the IR's (ios_core.ir.ACTIVATIONS).
#pragma once

enum Activation {
    ACT_NONE = 0, ACT_RELU = 1, ACT_SIGMOID = 2, ACT_TANH = 3, ACT_RELU6 = 4, ACT_HARDSIGMOID = 5,
    ACT_HARDSWISH = 6, ACT_SILU = 7, ACT_GELU = 8, ACT_GELU_TANH = 9
};

// min(max(v, low), high), NaN kept.
__device__ __forceinline__ float clamp_keep_nan(float v, float low, float high) {
    return v < low ? low : (v > high ? high : v);
}

// PyTorch's hardsigmoid: clip(v / 6 + 1/2, 0, 1).
__device__ __forceinline__ float hardsigmoid(float v) {
    return clamp_keep_nan(v * (1.0f / 6.0f) + 0.5f, 0.0f, 1.0f);
}

__device__ __forceinline__ float activate(int act, float v) {
    switch (act) {
        case ACT_RELU: return v < 0.0f ? 0.0f : v;
        case ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
        case ACT_TANH: return tanhf(v);
        case ACT_RELU6: return clamp_keep_nan(v, 0.0f, 6.0f);
        case ACT_HARDSIGMOID: return hardsigmoid(v);
        case ACT_HARDSWISH: return v * hardsigmoid(v);
        case ACT_SILU: return v / (1.0f + expf(-v));
        case ACT_GELU: return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        case ACT_GELU_TANH: {
            const float inner = 0.79788456080286536f * (v + 0.044715f * v * v * v);  // sqrt(2 / pi)
            return 0.5f * v * (1.0f + tanhf(inner));
        }
        default: return v;
    }
}
