// Masked multi-head self-attention for short packed sequences (at most 32 tokens a row,
// head_dim ≤ 128), fused: bias add, scores, mask, fp32 softmax and P·V in one kernel.
//
//   Packed rows: row r's tokens are row_start[r] .. row_start[r+1] (at most max_seq of them) of
//     the token matrices; a row attends over its own tokens only.
//   qkv [tokens, 3H] fp32: the fused QKV GEMM output (columns: Q heads | K heads | V heads,
//     each heads·head_dim = H wide, head-major), bias qkv_bias [3H] added here.
//   ids [tokens], src [tokens]: token t is attended as a key iff src[t] < 0 (the language
//     position) or ids[t] != pad_id.
//   score[i, j] = (q_i · k_j)·scale + (attended(j) ? 0 : -FLT_MAX) — the most negative float,
//     as Hugging Face adds; a row whose keys are all masked therefore attends uniformly over
//     its tokens, and a masked key otherwise gets weight exactly 0 (why skipping trailing
//     padding is exact).
//   out [tokens, H] in out_dtype (the output projection's GEMM input), head h at columns
//     h·head_dim.
// Threads: one block per (head, row) — gridDim (heads, rows) — of 128 threads. Q, K and V of
// that head (seq × head_dim each, rows padded by one float against bank conflicts) and the
// scores (seq × seq) live in dynamic shared memory sized for max_seq; one warp per query row
// does the softmax with one key per lane.
#include <cfloat>
#include "common.cuh"

struct AttentionArgs {
    const float* qkv;      //  0
    const float* qkv_bias; //  8
    const int* ids;        // 16
    const int* src;        // 24
    const int* row_start;  // 32
    void* out;             // 40
    int rows;              // 48
    int max_seq;           // 52
    int heads;             // 56
    int head_dim;          // 60
    int pad_id;            // 64
    float scale;           // 68
    int out_dtype;         // 72
    int pad0;              // 76
};                         // 80

extern "C" __device__ int zett_attention_layout[] = {
    (int)sizeof(AttentionArgs),
    (int)offsetof(AttentionArgs, qkv), (int)offsetof(AttentionArgs, qkv_bias),
    (int)offsetof(AttentionArgs, ids), (int)offsetof(AttentionArgs, src),
    (int)offsetof(AttentionArgs, row_start), (int)offsetof(AttentionArgs, out),
    (int)offsetof(AttentionArgs, rows), (int)offsetof(AttentionArgs, max_seq),
    (int)offsetof(AttentionArgs, heads), (int)offsetof(AttentionArgs, head_dim),
    (int)offsetof(AttentionArgs, pad_id), (int)offsetof(AttentionArgs, scale),
    (int)offsetof(AttentionArgs, out_dtype), (int)offsetof(AttentionArgs, pad0)};
extern "C" __device__ char zett_attention_fields[] =
    "qkv,qkv_bias,ids,src,row_start,out,rows,max_seq,heads,head_dim,pad_id,scale,out_dtype,pad0";

extern "C" __global__ void zett_attention(const AttentionArgs a) {
    extern __shared__ float smem[];
    const int h = blockIdx.x, r = blockIdx.y;
    const int t0 = a.row_start[r], seq = a.row_start[r + 1] - t0;
    const int hd = a.head_dim, ld = hd + 1;
    const int hidden = a.heads * hd;
    float* q = smem;                 // [seq][ld]
    float* k = q + seq * ld;         // [seq][ld]
    float* v = k + seq * ld;         // [seq][ld]
    float* p = v + seq * ld;         // [seq][seq]
    float* mask = p + seq * seq;     // [seq]

    for (int idx = threadIdx.x; idx < seq * hd; idx += blockDim.x) {
        const int s = idx / hd, d = idx % hd;
        const size_t base = (static_cast<size_t>(t0) + s) * 3 * hidden + h * hd + d;
        float bq = 0.0f, bk = 0.0f, bv = 0.0f;
        if (a.qkv_bias != nullptr) {
            bq = a.qkv_bias[h * hd + d];
            bk = a.qkv_bias[hidden + h * hd + d];
            bv = a.qkv_bias[2 * hidden + h * hd + d];
        }
        q[s * ld + d] = a.qkv[base] + bq;
        k[s * ld + d] = a.qkv[base + hidden] + bk;
        v[s * ld + d] = a.qkv[base + 2 * hidden] + bv;
    }
    for (int s = threadIdx.x; s < seq; s += blockDim.x) {
        const int t = t0 + s;
        const bool attended = a.src[t] < 0 || a.ids[t] != a.pad_id;
        mask[s] = attended ? 0.0f : -FLT_MAX;
    }
    __syncthreads();

    for (int idx = threadIdx.x; idx < seq * seq; idx += blockDim.x) {
        const int i = idx / seq, j = idx % seq;
        float dot = 0.0f;
        for (int d = 0; d < hd; d++) dot += q[i * ld + d] * k[j * ld + d];
        p[idx] = dot * a.scale + mask[j];
    }
    __syncthreads();

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int i = warp; i < seq; i += warps) {
        const float s = lane < seq ? p[i * seq + lane] : -INFINITY;
        const float m = zett_warp_max(s);
        const float e = lane < seq ? expf(s - m) : 0.0f;
        const float sum = zett_warp_sum(e);
        if (lane < seq) p[i * seq + lane] = e / sum;
    }
    __syncthreads();

    for (int idx = threadIdx.x; idx < seq * hd; idx += blockDim.x) {
        const int i = idx / hd, d = idx % hd;
        float o = 0.0f;
        for (int j = 0; j < seq; j++) o += p[i * seq + j] * v[j * ld + d];
        zett_store(a.out, a.out_dtype, (static_cast<size_t>(t0) + i) * hidden + h * hd + d, o);
    }
}
