// Embedding stage of the hypernetwork (ZETT.md §3 steps 1, 2 and 4).
//
// zett_surface_embed — per surface-form id t (the packed computed positions), with V0 =
// original_vocab:
//     id = ids[t]; main = min(id, V0-1)
//     out[t, :] = id < V0 ? in_w ⊙ source[main, :] + in_b     (in_w/in_b null: no rescale)
//                         : fallback[id - V0, :]               (never rescaled)
//   source [V, D] in fp32 or bf16 (source_dtype), fallback [F, D] fp32, out [tokens, D] in
//   out_dtype (the input projection's GEMM input). Ids are validated on the host.
//   Threads: one block per position t (gridDim.x = tokens), threads stride over D.
//
// zett_roberta_embed_ln — RoBERTa embeddings + LayerNorm, fused, per packed sequence token t
//   (tokens of them). With x the input projector's output [surface tokens, H], src[t] the
//   index of t's surface row (or -1 for the language position) and pos_index[t] its position p
//   in its row:
//     h[t] = (x[src[t]] + type0) + pos[pos_index[t]]   when src[t] ≥ 0 (PyTorch's order)
//     h[t] = lang                                      otherwise (no pos/type added)
//     out[t] = LN(h[t]) with eps, fp32; out_gemm (optional) the same in gemm_dtype.
//   Threads: one block per token; the row is staged in shared memory (H floats, dynamic) for
//   the two-pass LayerNorm.
#include "common.cuh"

struct SurfaceEmbedArgs {
    const int* ids;        //  0
    const void* source;    //  8
    const float* fallback; // 16
    const float* in_w;     // 24
    const float* in_b;     // 32
    void* out;             // 40
    int tokens;            // 48
    int width;             // 52
    int original_vocab;    // 56
    int source_dtype;      // 60
    int out_dtype;         // 64
    int pad0;              // 68
};                         // 72

extern "C" __device__ int zett_surface_embed_layout[] = {
    (int)sizeof(SurfaceEmbedArgs),
    (int)offsetof(SurfaceEmbedArgs, ids), (int)offsetof(SurfaceEmbedArgs, source),
    (int)offsetof(SurfaceEmbedArgs, fallback), (int)offsetof(SurfaceEmbedArgs, in_w),
    (int)offsetof(SurfaceEmbedArgs, in_b), (int)offsetof(SurfaceEmbedArgs, out),
    (int)offsetof(SurfaceEmbedArgs, tokens), (int)offsetof(SurfaceEmbedArgs, width),
    (int)offsetof(SurfaceEmbedArgs, original_vocab),
    (int)offsetof(SurfaceEmbedArgs, source_dtype), (int)offsetof(SurfaceEmbedArgs, out_dtype),
    (int)offsetof(SurfaceEmbedArgs, pad0)};
extern "C" __device__ char zett_surface_embed_fields[] =
    "ids,source,fallback,in_w,in_b,out,tokens,width,original_vocab,source_dtype,out_dtype,pad0";

extern "C" __global__ void zett_surface_embed(const SurfaceEmbedArgs a) {
    const int t = blockIdx.x;
    const int id = a.ids[t];
    const size_t d = static_cast<size_t>(a.width);
    const size_t o = static_cast<size_t>(t) * d;
    if (id >= a.original_vocab) {
        const float* fb = a.fallback + static_cast<size_t>(id - a.original_vocab) * d;
        for (int c = threadIdx.x; c < a.width; c += blockDim.x) zett_store(a.out, a.out_dtype, o + c, fb[c]);
        return;
    }
    const size_t s = static_cast<size_t>(id) * d;
    for (int c = threadIdx.x; c < a.width; c += blockDim.x) {
        float x = zett_load(a.source, a.source_dtype, s + c);
        if (a.in_w != nullptr) x = a.in_w[c] * x + a.in_b[c];
        zett_store(a.out, a.out_dtype, o + c, x);
    }
}

struct RobertaEmbedArgs {
    const float* x;        //  0
    const float* pos;      //  8
    const float* type0;    // 16
    const float* lang;     // 24
    const float* ln_w;     // 32
    const float* ln_b;     // 40
    float* out;            // 48
    void* out_gemm;        // 56
    const int* src;        // 64
    const int* pos_index;  // 72
    int tokens;            // 80
    int hidden;            // 84
    float eps;             // 88
    int gemm_dtype;        // 92
};                         // 96

extern "C" __device__ int zett_roberta_embed_layout[] = {
    (int)sizeof(RobertaEmbedArgs),
    (int)offsetof(RobertaEmbedArgs, x), (int)offsetof(RobertaEmbedArgs, pos),
    (int)offsetof(RobertaEmbedArgs, type0), (int)offsetof(RobertaEmbedArgs, lang),
    (int)offsetof(RobertaEmbedArgs, ln_w), (int)offsetof(RobertaEmbedArgs, ln_b),
    (int)offsetof(RobertaEmbedArgs, out), (int)offsetof(RobertaEmbedArgs, out_gemm),
    (int)offsetof(RobertaEmbedArgs, src), (int)offsetof(RobertaEmbedArgs, pos_index),
    (int)offsetof(RobertaEmbedArgs, tokens), (int)offsetof(RobertaEmbedArgs, hidden),
    (int)offsetof(RobertaEmbedArgs, eps), (int)offsetof(RobertaEmbedArgs, gemm_dtype)};
extern "C" __device__ char zett_roberta_embed_fields[] =
    "x,pos,type0,lang,ln_w,ln_b,out,out_gemm,src,pos_index,tokens,hidden,eps,gemm_dtype";

extern "C" __global__ void zett_roberta_embed_ln(const RobertaEmbedArgs a) {
    extern __shared__ float row[];
    __shared__ float scratch[32];
    const int out_row = blockIdx.x;
    const int s = a.src[out_row], p = a.pos_index[out_row];
    const int h = a.hidden;
    if (s >= 0) {
        const float* x = a.x + static_cast<size_t>(s) * h;
        const float* pe = a.pos + static_cast<size_t>(p) * h;
        for (int c = threadIdx.x; c < h; c += blockDim.x) row[c] = (x[c] + a.type0[c]) + pe[c];
    } else {
        for (int c = threadIdx.x; c < h; c += blockDim.x) row[c] = a.lang[c];
    }
    __syncthreads();
    zett_layernorm_row(row, h, a.eps, a.ln_w, a.ln_b, a.out, a.out_gemm, a.gemm_dtype,
                       static_cast<size_t>(out_row) * h, scratch);
}
