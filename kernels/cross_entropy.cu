// Softmax cross-entropy fused with the LM head, one vocabulary chunk at a time, so that at no
// point do [tokens, vocab] logits exist in fp32 (at Mistral-7B shapes, 16k tokens × 32k vocab
// would be 2 GiB; llama-3's 128k vocabulary, 8 GiB).
//
// The launcher (LmHeadCrossEntropy in ZeTT.Kernels) loops over chunks [col0, col0 + cols) of
// the vocabulary: a cuBLAS(Lt) GEMM writes logits[rows, cols] (fp32, row stride ld) =
// hidden · W[col0 : col0 + cols]ᵀ (+ bias[col0 + j], added by these kernels when bias is given),
// then
//   zett_ce_chunk_stats — per row, the online softmax statistics over the chunk merged into the
//     running ones: m' = max(m, max_j z_j), s' = s·e^(m − m') + Σ_j e^(z_j − m') (col0 = 0
//     starts them), and z_target when the row's target falls in the chunk;
//   zett_ce_finish — per row, lse = m + log s and loss = lse − z_target (0 for a negative
//     target — ignored, as PyTorch's −100 — which the gradient pass also skips);
//   zett_ce_chunk_grad (backward, second pass over the chunks with the logits recomputed) —
//     dlogits[r, j] = (e^(z − lse) − [col0 + j = target]) · dloss[r] (dloss null: 1), in
//     out_dtype (the dtype of the next two GEMMs: dhidden += dlogits·W_chunk, dW_chunk =
//     dlogitsᵀ·hidden). It may overwrite the logits (out_dtype fp32, same ld).
// Threads: one block of 256 per row for stats and grad (block max and sum over the chunk);
//   finish: one thread per row. Targets are trusted to lie in [0, vocab) or be negative.
#include <cfloat>
#include "common.cuh"

struct CrossEntropyArgs {
    const float* logits;   //  0  [rows, ld], this chunk's cols columns used
    const int* targets;    //  8  [rows]
    float* row_max;        // 16  [rows] running max
    float* row_sum;        // 24  [rows] running Σ exp(z − max)
    float* target_logit;   // 32  [rows]
    float* loss;           // 40  [rows]
    float* lse;            // 48  [rows]
    const float* dloss;    // 56  [rows] or null (1)
    void* dlogits;         // 64  [rows, ld] in out_dtype
    const void* bias;      // 72  [vocab] in bias_dtype, or null
    int rows;              // 80
    int cols;              // 84
    int ld;                // 88
    int col0;              // 92
    int bias_dtype;        // 96
    int out_dtype;         // 100
};                         // 104

extern "C" __device__ int zett_cross_entropy_layout[] = {
    (int)sizeof(CrossEntropyArgs),
    (int)offsetof(CrossEntropyArgs, logits), (int)offsetof(CrossEntropyArgs, targets),
    (int)offsetof(CrossEntropyArgs, row_max), (int)offsetof(CrossEntropyArgs, row_sum),
    (int)offsetof(CrossEntropyArgs, target_logit), (int)offsetof(CrossEntropyArgs, loss),
    (int)offsetof(CrossEntropyArgs, lse), (int)offsetof(CrossEntropyArgs, dloss),
    (int)offsetof(CrossEntropyArgs, dlogits), (int)offsetof(CrossEntropyArgs, bias),
    (int)offsetof(CrossEntropyArgs, rows), (int)offsetof(CrossEntropyArgs, cols),
    (int)offsetof(CrossEntropyArgs, ld), (int)offsetof(CrossEntropyArgs, col0),
    (int)offsetof(CrossEntropyArgs, bias_dtype), (int)offsetof(CrossEntropyArgs, out_dtype)};
extern "C" __device__ char zett_cross_entropy_fields[] =
    "logits,targets,row_max,row_sum,target_logit,loss,lse,dloss,dlogits,bias,rows,cols,ld,col0,"
    "bias_dtype,out_dtype";

// Logit j of the chunk for row pointer z (bias added when present).
__device__ __forceinline__ float ce_logit(const CrossEntropyArgs& a, const float* z, int j) {
    return a.bias != nullptr ? z[j] + zett_load(a.bias, a.bias_dtype, a.col0 + j) : z[j];
}

__device__ __forceinline__ float ce_block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = zett_warp_max(v);
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    const int warps = blockDim.x >> 5;
    float m = lane < warps ? scratch[lane] : -INFINITY;
    m = zett_warp_max(m);
    __syncthreads();
    return m;
}

extern "C" __global__ void zett_ce_chunk_stats(const CrossEntropyArgs a) {
    __shared__ float scratch[32];
    const int r = blockIdx.x;
    const float* z = a.logits + static_cast<size_t>(r) * a.ld;
    float m = -INFINITY;
    for (int j = threadIdx.x; j < a.cols; j += blockDim.x) m = fmaxf(m, ce_logit(a, z, j));
    m = ce_block_max(m, scratch);
    float s = 0.0f;
    for (int j = threadIdx.x; j < a.cols; j += blockDim.x) s += expf(ce_logit(a, z, j) - m);
    s = zett_block_sum(s, scratch);
    if (threadIdx.x == 0) {
        if (a.col0 == 0) {
            a.row_max[r] = m;
            a.row_sum[r] = s;
            a.target_logit[r] = 0.0f;
        } else {
            const float m0 = a.row_max[r], m1 = fmaxf(m0, m);
            a.row_sum[r] = a.row_sum[r] * expf(m0 - m1) + s * expf(m - m1);
            a.row_max[r] = m1;
        }
        const int t = a.targets[r];
        if (t >= a.col0 && t < a.col0 + a.cols) a.target_logit[r] = ce_logit(a, z, t - a.col0);
    }
}

extern "C" __global__ void zett_ce_finish(const CrossEntropyArgs a) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= a.rows) return;
    const float lse = a.row_max[r] + logf(a.row_sum[r]);
    a.lse[r] = lse;
    a.loss[r] = a.targets[r] < 0 ? 0.0f : lse - a.target_logit[r];
}

extern "C" __global__ void zett_ce_chunk_grad(const CrossEntropyArgs a) {
    const int r = blockIdx.x;
    const float* z = a.logits + static_cast<size_t>(r) * a.ld;
    const size_t o = static_cast<size_t>(r) * a.ld;
    const int t = a.targets[r];
    const bool ignored = t < 0;
    const float g = ignored ? 0.0f : (a.dloss != nullptr ? a.dloss[r] : 1.0f);
    const float lse = a.lse[r];
    for (int j = threadIdx.x; j < a.cols; j += blockDim.x) {
        const float p = expf(ce_logit(a, z, j) - lse);
        zett_store(a.dlogits, a.out_dtype, o + j, (p - (a.col0 + j == t ? 1.0f : 0.0f)) * g);
    }
}
