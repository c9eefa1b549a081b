// Activations shared by the engine's kernels. NaN stays NaN (no fmaxf), so reads of poisoned
// (never written) memory show in the output.
#pragma once

enum Activation { ACT_NONE = 0, ACT_RELU = 1, ACT_SIGMOID = 2, ACT_TANH = 3 };

__device__ __forceinline__ float activate(int act, float v) {
    switch (act) {
        case ACT_RELU: return v < 0.0f ? 0.0f : v;
        case ACT_SIGMOID: return 1.0f / (1.0f + expf(-v));
        case ACT_TANH: return tanhf(v);
        default: return v;
    }
}
