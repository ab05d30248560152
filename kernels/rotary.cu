// Rotary position embeddings (RoPE), forward and backward (the backward is the inverse rotation,
// sign = −1), applied out of place (out may be x: each pair is read before it is written).
//
//   x, out [tokens, heads, head_dim] windows: token t, head h at t·row_stride + h·head_dim
//   (x_row_stride and out_row_stride may differ, so Q and K can be read straight out of a fused
//   QKV projection). positions [tokens] int32 (absolute positions, KV cache included).
//   inv_freq [rotary_dim / 2] fp32, computed by the caller (base^(−2i/rotary_dim), or a scaled
//   variant): the kernel does not know any RoPE-scaling scheme.
//   Only the first rotary_dim of head_dim columns rotate (GPT-NeoX's partial rotary); the rest
//   are copied. Pair i (i < rotary_dim/2) at angle θ = position · inv_freq[i] is
//     style 0 (half split, Hugging Face's rotate_half: Llama, Mistral, Qwen2, Gemma, GPT-NeoX):
//       columns (i, i + rotary_dim/2)
//     style 1 (interleaved, GPT-J / original Meta checkpoints): columns (2i, 2i + 1)
//   and becomes (a·cos θ − b·sin θ, b·cos θ + a·sin θ) with sin θ multiplied by sign.
//   cos/sin are fp32 sincosf of the fp32 angle (as PyTorch computes them before any cast).
// Threads: grid-stride over (token, head, j) with j < head_dim − rotary_dim/2: the first
//   rotary_dim/2 values of j are pairs, the rest the copied columns.
#include "common.cuh"

struct RotaryArgs {
    const void* x;        //  0
    void* out;            //  8
    const int* positions; // 16
    const float* inv_freq;// 24
    int tokens;           // 32
    int heads;            // 36
    int head_dim;         // 40
    int rotary_dim;       // 44
    int x_row_stride;     // 48
    int out_row_stride;   // 52
    int style;            // 56
    float sign;           // 60
    int x_dtype;          // 64
    int out_dtype;        // 68
};                        // 72

extern "C" __device__ int zett_rotary_layout[] = {
    (int)sizeof(RotaryArgs),
    (int)offsetof(RotaryArgs, x), (int)offsetof(RotaryArgs, out),
    (int)offsetof(RotaryArgs, positions), (int)offsetof(RotaryArgs, inv_freq),
    (int)offsetof(RotaryArgs, tokens), (int)offsetof(RotaryArgs, heads),
    (int)offsetof(RotaryArgs, head_dim), (int)offsetof(RotaryArgs, rotary_dim),
    (int)offsetof(RotaryArgs, x_row_stride), (int)offsetof(RotaryArgs, out_row_stride),
    (int)offsetof(RotaryArgs, style), (int)offsetof(RotaryArgs, sign),
    (int)offsetof(RotaryArgs, x_dtype), (int)offsetof(RotaryArgs, out_dtype)};
extern "C" __device__ char zett_rotary_fields[] =
    "x,out,positions,inv_freq,tokens,heads,head_dim,rotary_dim,x_row_stride,out_row_stride,"
    "style,sign,x_dtype,out_dtype";

extern "C" __global__ void zett_rotary(const RotaryArgs a) {
    const int half = a.rotary_dim / 2;
    const int per_head = a.head_dim - half;
    const long long count = static_cast<long long>(a.tokens) * a.heads * per_head;
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long idx = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         idx < count; idx += stride) {
        const int j = static_cast<int>(idx % per_head);
        const long long th = idx / per_head;
        const int h = static_cast<int>(th % a.heads);
        const int t = static_cast<int>(th / a.heads);
        const size_t xi = static_cast<size_t>(t) * a.x_row_stride + static_cast<size_t>(h) * a.head_dim;
        const size_t oi = static_cast<size_t>(t) * a.out_row_stride + static_cast<size_t>(h) * a.head_dim;
        if (j < half) {
            const int c0 = a.style == 0 ? j : 2 * j;
            const int c1 = a.style == 0 ? j + half : 2 * j + 1;
            float sn, cs;
            sincosf(static_cast<float>(a.positions[t]) * a.inv_freq[j], &sn, &cs);
            sn *= a.sign;
            const float x0 = zett_load(a.x, a.x_dtype, xi + c0);
            const float x1 = zett_load(a.x, a.x_dtype, xi + c1);
            zett_store(a.out, a.out_dtype, oi + c0, x0 * cs - x1 * sn);
            zett_store(a.out, a.out_dtype, oi + c1, x1 * cs + x0 * sn);
        } else {
            const int c = a.rotary_dim + (j - half);
            zett_store(a.out, a.out_dtype, oi + c, zett_load(a.x, a.x_dtype, xi + c));
        }
    }
}
