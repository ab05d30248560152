// Shared device helpers for every kernels/*.cu: dtype codes, bf16 conversion (round to nearest
// even, as PyTorch does), GELU variants, block-wide sums. Args structs use only 8-byte
// pointers, 4-byte ints/floats and explicit padding, so their C# mirrors (ZeTT.Kernels,
// [StructLayout(Sequential)]) have the same layout; each .cu exports a layout table
// (sizeof, then offsetof of each field in order) and a comma-separated field-name list that
// tests read from the PTX text.
#pragma once
#include <cstddef>
#include <cstdint>

#define ZETT_F32 0
#define ZETT_BF16 1

#define ZETT_ACT_NONE 0
#define ZETT_ACT_GELU_TANH 1
#define ZETT_ACT_GELU_ERF 2
#define ZETT_ACT_SILU 3
#define ZETT_ACT_RELU 4

__device__ __forceinline__ float zett_bf16_to_f32(uint16_t v) {
    return __uint_as_float(static_cast<uint32_t>(v) << 16);
}

__device__ __forceinline__ uint16_t zett_f32_to_bf16(float f) {
    uint32_t bits = __float_as_uint(f);
    if ((bits & 0x7FFFFFFFu) > 0x7F800000u) {
        return static_cast<uint16_t>((bits >> 16) | 0x0040u);  // quiet NaN stays NaN
    }
    bits += 0x7FFFu + ((bits >> 16) & 1u);
    return static_cast<uint16_t>(bits >> 16);
}

__device__ __forceinline__ float zett_load(const void* p, int dtype, size_t i) {
    return dtype == ZETT_BF16 ? zett_bf16_to_f32(static_cast<const uint16_t*>(p)[i])
                              : static_cast<const float*>(p)[i];
}

__device__ __forceinline__ void zett_store(void* p, int dtype, size_t i, float v) {
    if (dtype == ZETT_BF16) {
        static_cast<uint16_t*>(p)[i] = zett_f32_to_bf16(v);
    } else {
        static_cast<float*>(p)[i] = v;
    }
}

// PyTorch's F.gelu(approximate="none"): 0.5·x·(1 + erf(x/√2)).
__device__ __forceinline__ float zett_gelu_erf(float x) {
    return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
}

// PyTorch's F.gelu(approximate="tanh"): 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
__device__ __forceinline__ float zett_gelu_tanh(float x) {
    const float k = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}

// SiLU (swish): x·σ(x).
__device__ __forceinline__ float zett_silu(float x) { return x / (1.0f + expf(-x)); }

__device__ __forceinline__ float zett_activate(float x, int act) {
    return act == ZETT_ACT_GELU_TANH ? zett_gelu_tanh(x)
         : act == ZETT_ACT_GELU_ERF ? zett_gelu_erf(x)
         : act == ZETT_ACT_SILU ? zett_silu(x)
         : act == ZETT_ACT_RELU ? fmaxf(x, 0.0f)
         : x;
}

// d act(x) / dx, the derivatives of the forms above (written out, not approximated):
//   GELU erf:  Φ(x) + x·φ(x)
//   GELU tanh: 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t = tanh(u)
//   SiLU:      σ(x)·(1 + x·(1 − σ(x)))
//   ReLU:      [x > 0]
__device__ __forceinline__ float zett_activate_grad(float x, int act) {
    if (act == ZETT_ACT_GELU_ERF) {
        const float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        const float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
        return cdf + x * pdf;
    }
    if (act == ZETT_ACT_GELU_TANH) {
        const float k = 0.7978845608028654f;
        const float t = tanhf(k * (x + 0.044715f * x * x * x));
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 0.134145f * x * x);
    }
    if (act == ZETT_ACT_SILU) {
        const float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    if (act == ZETT_ACT_RELU) return x > 0.0f ? 1.0f : 0.0f;
    return 1.0f;
}

__device__ __forceinline__ float zett_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
    return v;
}

__device__ __forceinline__ float zett_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
    return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// `scratch` holds 32 floats; the function syncs before returning so scratch can be reused.
__device__ __forceinline__ float zett_block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = zett_warp_sum(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    float total = lane < warps ? scratch[lane] : 0.0f;
    total = zett_warp_sum(total);
    __syncthreads();
    return total;
}
