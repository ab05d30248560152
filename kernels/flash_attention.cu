// Causal self-attention for long sequences (2k–8k tokens and beyond), tiled in the
// flash-attention manner: no [T, T] matrix is ever stored, per head only O(T) statistics.
//
//   q [batch, q_len, heads, D], k and v [batch, kv_len, kv_heads, D], out [batch, q_len, heads, D]
//   in bf16 or fp32 (in_dtype / out_dtype), each with its own token (row) stride and batch
//   stride in elements, head h at columns h·D of a token row (so Q, K and V may be column
//   windows of one fused QKV projection). D ≤ 128.
//   Query i sits at absolute position i + q_offset (q_offset = kv_len − q_len when a KV cache
//   holds earlier tokens). It sees key j iff j < kv_lens[b] (when kv_lens is given: padded
//   batches, the hypernetwork's masked attention) and, when causal, j ≤ i + q_offset and, with
//   window > 0, (i + q_offset) − j < window (Mistral's sliding window: the window counts the
//   query itself).
//   GQA: query head h reads kv head h / (heads / kv_heads).
//   score = (q·k)·scale; out = softmax(score)·V; lse [batch, heads, q_len] fp32 = the natural
//   log of the softmax denominator (max + log Σ exp), saved for the backward. A query that sees
//   no key writes 0 and lse = −inf.
//
// Forward (zett_flash_attn_forward): one block of 256 threads per (64-query tile, batch·head) —
//   grid (ceil(q_len/64), batch·heads). Four threads own a query row (thread t: row t/4, lane
//   t%4 of the row); each keeps 1/4 of the row's output (columns lane, lane+4, …: ≤ 32 fp32
//   registers) and the running max and sum. Key/value tiles of 32 rows are staged in shared
//   memory (fp32, rows padded by one float so that the eight rows a warp reads at once fall in
//   eight banks); a thread scores 8 of the 32 keys, the row's four threads combine max and sum
//   by shuffles, and the probabilities go through shared memory for P·V. Scores and sums are
//   fp32 whatever the storage dtype. Key tiles that the causal mask (or the window) hides
//   entirely are never loaded.
//
// Backward (FlashAttention-2's recomputation, but without atomics so that it is
//   deterministic): zett_flash_attn_bwd_preprocess computes delta = rowsum(dO ∘ O) [batch,
//   heads, q_len] fp32 (one warp per query row and head); zett_flash_attn_bwd_dq recomputes
//   P = exp(score − lse) per (query tile, key tile), dP = dO·Vᵀ, dS = P ∘ (dP − delta) and
//   accumulates dQ = scale·dS·K — grid and thread mapping as the forward, with dO staged next to
//   Q (dO, dQ, dK, dV have strides of their own, so gradients may land in dense buffers or in
//   one fused dQKV buffer); zett_flash_attn_bwd_dkdv takes one block per (64-key tile, batch·kv head), four threads
//   per key row, and loops over the query heads of its group and the 32-query tiles that see
//   the key tile: dV += Pᵀ·dO, dK += scale·dSᵀ·Q. Every sum runs in a fixed order, so two runs
//   give the same bits. The score matrix is recomputed twice (once per backward kernel): the
//   price of determinism without a [T, T] buffer.
#include <cfloat>
#include "common.cuh"

#define FA_BR 64       // query rows per forward / dq block
#define FA_BC 32       // key rows per staged tile in forward / dq
#define FA_BKV 64      // key rows per dkdv block
#define FA_BQ 32       // query rows per staged tile in dkdv
#define FA_THREADS 256
#define FA_MAXD 128
#define FA_PER_THREAD (FA_MAXD / 4)

struct FlashFwdArgs {
    const void* q;               //   0
    const void* k;               //   8
    const void* v;               //  16
    void* out;                   //  24
    float* lse;                  //  32
    const int* kv_lens;          //  40  [batch] or null (all kv_len keys valid)
    long long q_batch_stride;    //  48
    long long k_batch_stride;    //  56
    long long v_batch_stride;    //  64
    long long o_batch_stride;    //  72
    int q_row_stride;            //  80
    int k_row_stride;            //  84
    int v_row_stride;            //  88
    int o_row_stride;            //  92
    int batch;                   //  96
    int q_len;                   // 100
    int kv_len;                  // 104
    int q_offset;                // 108
    int heads;                   // 112
    int kv_heads;                // 116
    int head_dim;                // 120
    int window;                  // 124
    float scale;                 // 128
    int in_dtype;                // 132
    int out_dtype;               // 136
    int causal;                  // 140
};                               // 144

extern "C" __device__ int zett_flash_fwd_layout[] = {
    (int)sizeof(FlashFwdArgs),
    (int)offsetof(FlashFwdArgs, q), (int)offsetof(FlashFwdArgs, k),
    (int)offsetof(FlashFwdArgs, v), (int)offsetof(FlashFwdArgs, out),
    (int)offsetof(FlashFwdArgs, lse), (int)offsetof(FlashFwdArgs, kv_lens),
    (int)offsetof(FlashFwdArgs, q_batch_stride),
    (int)offsetof(FlashFwdArgs, k_batch_stride), (int)offsetof(FlashFwdArgs, v_batch_stride),
    (int)offsetof(FlashFwdArgs, o_batch_stride), (int)offsetof(FlashFwdArgs, q_row_stride),
    (int)offsetof(FlashFwdArgs, k_row_stride), (int)offsetof(FlashFwdArgs, v_row_stride),
    (int)offsetof(FlashFwdArgs, o_row_stride), (int)offsetof(FlashFwdArgs, batch),
    (int)offsetof(FlashFwdArgs, q_len), (int)offsetof(FlashFwdArgs, kv_len),
    (int)offsetof(FlashFwdArgs, q_offset), (int)offsetof(FlashFwdArgs, heads),
    (int)offsetof(FlashFwdArgs, kv_heads), (int)offsetof(FlashFwdArgs, head_dim),
    (int)offsetof(FlashFwdArgs, window), (int)offsetof(FlashFwdArgs, scale),
    (int)offsetof(FlashFwdArgs, in_dtype), (int)offsetof(FlashFwdArgs, out_dtype),
    (int)offsetof(FlashFwdArgs, causal)};
extern "C" __device__ char zett_flash_fwd_fields[] =
    "q,k,v,out,lse,kv_lens,q_batch_stride,k_batch_stride,v_batch_stride,o_batch_stride,q_row_stride,"
    "k_row_stride,v_row_stride,o_row_stride,batch,q_len,kv_len,q_offset,heads,kv_heads,head_dim,"
    "window,scale,in_dtype,out_dtype,causal";

struct FlashBwdArgs {
    const void* q;               //   0
    const void* k;               //   8
    const void* v;               //  16
    const void* out;             //  24
    const void* dout;            //  32
    const float* lse;            //  40
    float* delta;                //  48
    void* dq;                    //  56
    void* dk;                    //  64
    void* dv;                    //  72
    const int* kv_lens;          //  80
    long long q_batch_stride;    //  88
    long long k_batch_stride;    //  96
    long long v_batch_stride;    // 104
    long long o_batch_stride;    // 112
    int q_row_stride;            // 120
    int k_row_stride;            // 124
    int v_row_stride;            // 128
    int o_row_stride;            // 132
    int batch;                   // 136
    int q_len;                   // 140
    int kv_len;                  // 144
    int q_offset;                // 148
    int heads;                   // 152
    int kv_heads;                // 156
    int head_dim;                // 160
    int window;                  // 164
    float scale;                 // 168
    int in_dtype;                // 172  (q, k, v, out, dout)
    int grad_dtype;              // 176  (dq, dk, dv)
    int causal;                  // 180
    long long do_batch_stride;   // 184  dout
    long long dq_batch_stride;   // 192
    long long dk_batch_stride;   // 200
    long long dv_batch_stride;   // 208
    int do_row_stride;           // 216
    int dq_row_stride;           // 220
    int dk_row_stride;           // 224
    int dv_row_stride;           // 228
};                               // 232

extern "C" __device__ int zett_flash_bwd_layout[] = {
    (int)sizeof(FlashBwdArgs),
    (int)offsetof(FlashBwdArgs, q), (int)offsetof(FlashBwdArgs, k),
    (int)offsetof(FlashBwdArgs, v), (int)offsetof(FlashBwdArgs, out),
    (int)offsetof(FlashBwdArgs, dout), (int)offsetof(FlashBwdArgs, lse),
    (int)offsetof(FlashBwdArgs, delta), (int)offsetof(FlashBwdArgs, dq),
    (int)offsetof(FlashBwdArgs, dk), (int)offsetof(FlashBwdArgs, dv),
    (int)offsetof(FlashBwdArgs, kv_lens), (int)offsetof(FlashBwdArgs, q_batch_stride), (int)offsetof(FlashBwdArgs, k_batch_stride),
    (int)offsetof(FlashBwdArgs, v_batch_stride), (int)offsetof(FlashBwdArgs, o_batch_stride),
    (int)offsetof(FlashBwdArgs, q_row_stride), (int)offsetof(FlashBwdArgs, k_row_stride),
    (int)offsetof(FlashBwdArgs, v_row_stride), (int)offsetof(FlashBwdArgs, o_row_stride),
    (int)offsetof(FlashBwdArgs, batch), (int)offsetof(FlashBwdArgs, q_len),
    (int)offsetof(FlashBwdArgs, kv_len), (int)offsetof(FlashBwdArgs, q_offset),
    (int)offsetof(FlashBwdArgs, heads), (int)offsetof(FlashBwdArgs, kv_heads),
    (int)offsetof(FlashBwdArgs, head_dim), (int)offsetof(FlashBwdArgs, window),
    (int)offsetof(FlashBwdArgs, scale), (int)offsetof(FlashBwdArgs, in_dtype),
    (int)offsetof(FlashBwdArgs, grad_dtype), (int)offsetof(FlashBwdArgs, causal),
    (int)offsetof(FlashBwdArgs, do_batch_stride), (int)offsetof(FlashBwdArgs, dq_batch_stride),
    (int)offsetof(FlashBwdArgs, dk_batch_stride), (int)offsetof(FlashBwdArgs, dv_batch_stride),
    (int)offsetof(FlashBwdArgs, do_row_stride), (int)offsetof(FlashBwdArgs, dq_row_stride),
    (int)offsetof(FlashBwdArgs, dk_row_stride), (int)offsetof(FlashBwdArgs, dv_row_stride)};
extern "C" __device__ char zett_flash_bwd_fields[] =
    "q,k,v,out,dout,lse,delta,dq,dk,dv,kv_lens,q_batch_stride,k_batch_stride,v_batch_stride,"
    "o_batch_stride,q_row_stride,k_row_stride,v_row_stride,o_row_stride,batch,q_len,kv_len,"
    "q_offset,heads,kv_heads,head_dim,window,scale,in_dtype,grad_dtype,causal,do_batch_stride,"
    "dq_batch_stride,dk_batch_stride,dv_batch_stride,do_row_stride,dq_row_stride,dk_row_stride,"
    "dv_row_stride";

// Key j visible from query i (local index)? kv_len here is the sequence's valid key count.
__device__ __forceinline__ bool fa_visible(int i, int j, int q_len, int kv_len, int q_offset,
                                           int window, int causal) {
    const int pos = i + q_offset;
    return i < q_len && j < kv_len
        && (!causal || (j <= pos && (window <= 0 || pos - j < window)));
}

// Keys of sequence b that exist (kv_lens clamps, never extends, kv_len).
__device__ __forceinline__ int fa_valid_keys(const int* kv_lens, int b, int kv_len) {
    return kv_lens != nullptr ? max(0, min(kv_lens[b], kv_len)) : kv_len;
}

// Stages rows [row0, row0 + rows) of one head of a [*, len, *, D] tensor into s[rows][ld] as
// fp32, zeros past len.
__device__ __forceinline__ void fa_stage(float* s, int ld, const void* src, int dtype,
                                         size_t base, int row_stride, int row0, int rows,
                                         int len, int d_count) {
    for (int idx = threadIdx.x; idx < rows * d_count; idx += blockDim.x) {
        const int r = idx / d_count, d = idx - r * d_count;
        const int row = row0 + r;
        s[r * ld + d] = row < len
            ? zett_load(src, dtype, base + static_cast<size_t>(row) * row_stride + d) : 0.0f;
    }
}

// Keys [begin, end) that a query tile [q0, q_last] can see (kv_len: the valid keys).
__device__ __forceinline__ void fa_key_range(int q0, int q_last, int q_offset, int kv_len,
                                             int window, int causal, int tile, int* begin,
                                             int* end) {
    int b = 0;
    if (causal && window > 0) b = max(0, q0 + q_offset - window + 1);
    *begin = (b / tile) * tile;
    *end = causal ? min(kv_len, q_last + q_offset + 1) : kv_len;
}

extern "C" __global__ void __launch_bounds__(FA_THREADS)
zett_flash_attn_forward(const FlashFwdArgs a) {
    extern __shared__ float sm[];
    const int D = a.head_dim, ld = D + 1;
    float* sQ = sm;                   // [FA_BR][ld]
    float* sK = sQ + FA_BR * ld;      // [FA_BC][ld]
    float* sV = sK + FA_BC * ld;      // [FA_BC][ld]
    float* sP = sV + FA_BC * ld;      // [FA_BR][FA_BC + 1]
    const int bh = blockIdx.y, b = bh / a.heads, h = bh - b * a.heads;
    const int kvh = h / (a.heads / a.kv_heads);
    const int q0 = blockIdx.x * FA_BR;
    const int r = threadIdx.x >> 2, sub = threadIdx.x & 3;
    const int qi = q0 + r;

    const size_t qbase = static_cast<size_t>(b) * a.q_batch_stride + static_cast<size_t>(h) * D;
    const size_t kbase = static_cast<size_t>(b) * a.k_batch_stride + static_cast<size_t>(kvh) * D;
    const size_t vbase = static_cast<size_t>(b) * a.v_batch_stride + static_cast<size_t>(kvh) * D;
    fa_stage(sQ, ld, a.q, a.in_dtype, qbase, a.q_row_stride, q0, FA_BR, a.q_len, D);

    float acc[FA_PER_THREAD];
#pragma unroll
    for (int e = 0; e < FA_PER_THREAD; e++) acc[e] = 0.0f;
    float m = -INFINITY, l = 0.0f;

    const int kv_valid = fa_valid_keys(a.kv_lens, b, a.kv_len);
    int k_begin, k_end;
    fa_key_range(q0, min(q0 + FA_BR, a.q_len) - 1, a.q_offset, kv_valid, a.window, a.causal,
                 FA_BC, &k_begin, &k_end);
    for (int k0 = k_begin; k0 < k_end; k0 += FA_BC) {
        __syncthreads();  // the previous tile's P·V is done with sK, sV, sP
        fa_stage(sK, ld, a.k, a.in_dtype, kbase, a.k_row_stride, k0, FA_BC, a.kv_len, D);
        fa_stage(sV, ld, a.v, a.in_dtype, vbase, a.v_row_stride, k0, FA_BC, a.kv_len, D);
        __syncthreads();

        float s[FA_BC / 4];
        float tile_max = -INFINITY;
#pragma unroll
        for (int jj = 0; jj < FA_BC / 4; jj++) {
            const int j = sub + 4 * jj;
            float dot = 0.0f;
            for (int d = 0; d < D; d++) dot += sQ[r * ld + d] * sK[j * ld + d];
            s[jj] = fa_visible(qi, k0 + j, a.q_len, kv_valid, a.q_offset, a.window, a.causal)
                ? dot * a.scale : -INFINITY;
            tile_max = fmaxf(tile_max, s[jj]);
        }
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xFFFFFFFFu, tile_max, 1));
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xFFFFFFFFu, tile_max, 2));
        const float m_new = fmaxf(m, tile_max);
        // exp(−inf − finite) = 0 rescales nothing that exists; a row with nothing visible yet
        // keeps m = −inf and every p = 0.
        const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
        float psum = 0.0f;
#pragma unroll
        for (int jj = 0; jj < FA_BC / 4; jj++) {
            const float p = s[jj] == -INFINITY ? 0.0f : expf(s[jj] - m_new);
            sP[r * (FA_BC + 1) + sub + 4 * jj] = p;
            psum += p;
        }
        psum += __shfl_xor_sync(0xFFFFFFFFu, psum, 1);
        psum += __shfl_xor_sync(0xFFFFFFFFu, psum, 2);
        l = l * corr + psum;
        m = m_new;
        __syncwarp();  // the row's four threads (one warp) wrote sP[r]; they alone read it
#pragma unroll
        for (int e = 0; e < FA_PER_THREAD; e++) acc[e] *= corr;
        for (int j = 0; j < FA_BC; j++) {
            const float p = sP[r * (FA_BC + 1) + j];
#pragma unroll
            for (int e = 0; e < FA_PER_THREAD; e++) {
                const int d = sub + 4 * e;
                if (d < D) acc[e] += p * sV[j * ld + d];
            }
        }
    }

    if (qi < a.q_len) {
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        const size_t obase = static_cast<size_t>(b) * a.o_batch_stride
            + static_cast<size_t>(qi) * a.o_row_stride + static_cast<size_t>(h) * D;
#pragma unroll
        for (int e = 0; e < FA_PER_THREAD; e++) {
            const int d = sub + 4 * e;
            if (d < D) zett_store(a.out, a.out_dtype, obase + d, acc[e] * inv);
        }
        if (sub == 0) {
            a.lse[static_cast<size_t>(bh) * a.q_len + qi] = l > 0.0f ? m + logf(l) : -INFINITY;
        }
    }
}

// delta[b, h, i] = Σ_d dO[b, i, h, d] · O[b, i, h, d]; one warp per (b, h, i), 8 per block.
extern "C" __global__ void zett_flash_attn_bwd_preprocess(const FlashBwdArgs a) {
    const long long row = static_cast<long long>(blockIdx.x) * (blockDim.x >> 5)
        + (threadIdx.x >> 5);
    const long long rows = static_cast<long long>(a.batch) * a.heads * a.q_len;
    if (row >= rows) return;
    const int lane = threadIdx.x & 31;
    const int i = static_cast<int>(row % a.q_len);
    const long long bh = row / a.q_len;
    const int b = static_cast<int>(bh / a.heads), h = static_cast<int>(bh % a.heads);
    const size_t base = static_cast<size_t>(b) * a.o_batch_stride
        + static_cast<size_t>(i) * a.o_row_stride + static_cast<size_t>(h) * a.head_dim;
    const size_t dbase = static_cast<size_t>(b) * a.do_batch_stride
        + static_cast<size_t>(i) * a.do_row_stride + static_cast<size_t>(h) * a.head_dim;
    float s = 0.0f;
    for (int d = lane; d < a.head_dim; d += 32) {
        s += zett_load(a.dout, a.in_dtype, dbase + d) * zett_load(a.out, a.in_dtype, base + d);
    }
    s = zett_warp_sum(s);
    if (lane == 0) a.delta[row] = s;
}

extern "C" __global__ void __launch_bounds__(FA_THREADS)
zett_flash_attn_bwd_dq(const FlashBwdArgs a) {
    extern __shared__ float sm[];
    const int D = a.head_dim, ld = D + 1;
    float* sQ = sm;                   // [FA_BR][ld]
    float* sdO = sQ + FA_BR * ld;     // [FA_BR][ld]
    float* sK = sdO + FA_BR * ld;     // [FA_BC][ld]
    float* sV = sK + FA_BC * ld;      // [FA_BC][ld]
    float* sdS = sV + FA_BC * ld;     // [FA_BR][FA_BC + 1]
    const int bh = blockIdx.y, b = bh / a.heads, h = bh - b * a.heads;
    const int kvh = h / (a.heads / a.kv_heads);
    const int q0 = blockIdx.x * FA_BR;
    const int r = threadIdx.x >> 2, sub = threadIdx.x & 3;
    const int qi = q0 + r;

    const size_t qbase = static_cast<size_t>(b) * a.q_batch_stride + static_cast<size_t>(h) * D;
    const size_t dobase = static_cast<size_t>(b) * a.do_batch_stride + static_cast<size_t>(h) * D;
    const size_t kbase = static_cast<size_t>(b) * a.k_batch_stride + static_cast<size_t>(kvh) * D;
    const size_t vbase = static_cast<size_t>(b) * a.v_batch_stride + static_cast<size_t>(kvh) * D;
    fa_stage(sQ, ld, a.q, a.in_dtype, qbase, a.q_row_stride, q0, FA_BR, a.q_len, D);
    fa_stage(sdO, ld, a.dout, a.in_dtype, dobase, a.do_row_stride, q0, FA_BR, a.q_len, D);
    const size_t stat = static_cast<size_t>(bh) * a.q_len + qi;
    const float lse = qi < a.q_len ? a.lse[stat] : -INFINITY;
    const float delta = qi < a.q_len ? a.delta[stat] : 0.0f;

    float acc[FA_PER_THREAD];
#pragma unroll
    for (int e = 0; e < FA_PER_THREAD; e++) acc[e] = 0.0f;

    const int kv_valid = fa_valid_keys(a.kv_lens, b, a.kv_len);
    int k_begin, k_end;
    fa_key_range(q0, min(q0 + FA_BR, a.q_len) - 1, a.q_offset, kv_valid, a.window, a.causal,
                 FA_BC, &k_begin, &k_end);
    for (int k0 = k_begin; k0 < k_end; k0 += FA_BC) {
        __syncthreads();
        fa_stage(sK, ld, a.k, a.in_dtype, kbase, a.k_row_stride, k0, FA_BC, a.kv_len, D);
        fa_stage(sV, ld, a.v, a.in_dtype, vbase, a.v_row_stride, k0, FA_BC, a.kv_len, D);
        __syncthreads();
#pragma unroll
        for (int jj = 0; jj < FA_BC / 4; jj++) {
            const int j = sub + 4 * jj;
            float ds = 0.0f;
            if (lse != -INFINITY
                && fa_visible(qi, k0 + j, a.q_len, kv_valid, a.q_offset, a.window, a.causal)) {
                float s = 0.0f, dp = 0.0f;
                for (int d = 0; d < D; d++) {
                    s += sQ[r * ld + d] * sK[j * ld + d];
                    dp += sdO[r * ld + d] * sV[j * ld + d];
                }
                const float p = expf(s * a.scale - lse);
                ds = p * (dp - delta);
            }
            sdS[r * (FA_BC + 1) + j] = ds;
        }
        __syncwarp();
        for (int j = 0; j < FA_BC; j++) {
            const float ds = sdS[r * (FA_BC + 1) + j];
#pragma unroll
            for (int e = 0; e < FA_PER_THREAD; e++) {
                const int d = sub + 4 * e;
                if (d < D) acc[e] += ds * sK[j * ld + d];
            }
        }
    }
    if (qi < a.q_len) {
        const size_t o = static_cast<size_t>(b) * a.dq_batch_stride + static_cast<size_t>(h) * D
            + static_cast<size_t>(qi) * a.dq_row_stride;
#pragma unroll
        for (int e = 0; e < FA_PER_THREAD; e++) {
            const int d = sub + 4 * e;
            if (d < D) zett_store(a.dq, a.grad_dtype, o + d, acc[e] * a.scale);
        }
    }
}

extern "C" __global__ void __launch_bounds__(FA_THREADS)
zett_flash_attn_bwd_dkdv(const FlashBwdArgs a) {
    extern __shared__ float sm[];
    const int D = a.head_dim, ld = D + 1;
    float* sK = sm;                   // [FA_BKV][ld]
    float* sV = sK + FA_BKV * ld;     // [FA_BKV][ld]
    float* sQ = sV + FA_BKV * ld;     // [FA_BQ][ld]
    float* sdO = sQ + FA_BQ * ld;     // [FA_BQ][ld]
    float* sP = sdO + FA_BQ * ld;     // [FA_BKV][FA_BQ + 1]  Pᵀ
    float* sdS = sP + FA_BKV * (FA_BQ + 1);  // [FA_BKV][FA_BQ + 1]  dSᵀ
    float* sL = sdS + FA_BKV * (FA_BQ + 1);  // [FA_BQ] lse
    float* sDelta = sL + FA_BQ;              // [FA_BQ]
    const int bkv = blockIdx.y, b = bkv / a.kv_heads, kvh = bkv - b * a.kv_heads;
    const int group = a.heads / a.kv_heads;
    const int k0 = blockIdx.x * FA_BKV;
    const int r = threadIdx.x >> 2, sub = threadIdx.x & 3;
    const int kj = k0 + r;

    const size_t kbase = static_cast<size_t>(b) * a.k_batch_stride + static_cast<size_t>(kvh) * D;
    const size_t vbase = static_cast<size_t>(b) * a.v_batch_stride + static_cast<size_t>(kvh) * D;
    fa_stage(sK, ld, a.k, a.in_dtype, kbase, a.k_row_stride, k0, FA_BKV, a.kv_len, D);
    fa_stage(sV, ld, a.v, a.in_dtype, vbase, a.v_row_stride, k0, FA_BKV, a.kv_len, D);

    float dk[FA_PER_THREAD], dv[FA_PER_THREAD];
#pragma unroll
    for (int e = 0; e < FA_PER_THREAD; e++) dk[e] = dv[e] = 0.0f;

    // Queries that see some key of [k0, k_last]: all of them without the causal mask; with
    // it, position ≥ k0 and, with a window, position < k_last + window. A tile past the
    // sequence's valid keys sees none (its gradients are zeros).
    const int kv_valid = fa_valid_keys(a.kv_lens, b, a.kv_len);
    const int k_last = min(k0 + FA_BKV, a.kv_len) - 1;
    int i_begin = a.causal ? max(0, k0 - a.q_offset) : 0;
    i_begin = (i_begin / FA_BQ) * FA_BQ;
    int i_end = k0 < kv_valid ? a.q_len : 0;
    if (a.causal && a.window > 0) i_end = min(i_end, k_last + a.window - a.q_offset);

    for (int g = 0; g < group; g++) {
        const int h = kvh * group + g;
        const size_t qbase = static_cast<size_t>(b) * a.q_batch_stride
            + static_cast<size_t>(h) * D;
        const size_t dobase = static_cast<size_t>(b) * a.do_batch_stride
            + static_cast<size_t>(h) * D;
        const size_t stat0 = (static_cast<size_t>(b) * a.heads + h) * a.q_len;
        for (int i0 = i_begin; i0 < i_end; i0 += FA_BQ) {
            __syncthreads();
            fa_stage(sQ, ld, a.q, a.in_dtype, qbase, a.q_row_stride, i0, FA_BQ, a.q_len, D);
            fa_stage(sdO, ld, a.dout, a.in_dtype, dobase, a.do_row_stride, i0, FA_BQ, a.q_len,
                     D);
            for (int t = threadIdx.x; t < FA_BQ; t += blockDim.x) {
                const int qi = i0 + t;
                sL[t] = qi < a.q_len ? a.lse[stat0 + qi] : -INFINITY;
                sDelta[t] = qi < a.q_len ? a.delta[stat0 + qi] : 0.0f;
            }
            __syncthreads();
#pragma unroll
            for (int ii = 0; ii < FA_BQ / 4; ii++) {
                const int i = sub + 4 * ii;
                float p = 0.0f, ds = 0.0f;
                if (sL[i] != -INFINITY
                    && fa_visible(i0 + i, kj, a.q_len, kv_valid, a.q_offset, a.window,
                                  a.causal)) {
                    float s = 0.0f, dp = 0.0f;
                    for (int d = 0; d < D; d++) {
                        s += sK[r * ld + d] * sQ[i * ld + d];
                        dp += sV[r * ld + d] * sdO[i * ld + d];
                    }
                    p = expf(s * a.scale - sL[i]);
                    ds = p * (dp - sDelta[i]);
                }
                sP[r * (FA_BQ + 1) + i] = p;
                sdS[r * (FA_BQ + 1) + i] = ds;
            }
            __syncwarp();
            for (int i = 0; i < FA_BQ; i++) {
                const float p = sP[r * (FA_BQ + 1) + i], ds = sdS[r * (FA_BQ + 1) + i];
#pragma unroll
                for (int e = 0; e < FA_PER_THREAD; e++) {
                    const int d = sub + 4 * e;
                    if (d < D) {
                        dv[e] += p * sdO[i * ld + d];
                        dk[e] += ds * sQ[i * ld + d];
                    }
                }
            }
        }
    }
    if (kj < a.kv_len) {
        const size_t ko = static_cast<size_t>(b) * a.dk_batch_stride
            + static_cast<size_t>(kvh) * D + static_cast<size_t>(kj) * a.dk_row_stride;
        const size_t vo = static_cast<size_t>(b) * a.dv_batch_stride
            + static_cast<size_t>(kvh) * D + static_cast<size_t>(kj) * a.dv_row_stride;
#pragma unroll
        for (int e = 0; e < FA_PER_THREAD; e++) {
            const int d = sub + 4 * e;
            if (d < D) {
                zett_store(a.dk, a.grad_dtype, ko + d, dk[e] * a.scale);
                zett_store(a.dv, a.grad_dtype, vo + d, dv[e]);
            }
        }
    }
}

// ---- Tensor-core forward (bf16 Q, K, V; head_dim 64 or 128) --------------------------------
//
// zett_flash_attn_forward_mma64 / _mma128: the forward above on mma.sync.m16n8k16 (bf16 inputs,
//   fp32 accumulation), FlashAttention-2's layout. One block of four warps per (64-query tile,
//   batch·head); warp w owns queries q0 + 16w … + 15, lane (g = lane/4, t = lane%4) rows
//   g and g + 8 of them. The warp's Q fragments stay in registers for the whole pass; key and
//   value tiles of 64 rows are staged in shared memory as bf16 (rows padded by 8 elements, so
//   that the eight rows a fragment load touches fall in distinct banks). Per tile, S = Q·Kᵀ
//   (D/16 × 8 mma), masked and scaled in the log2 domain, the running max and the per-lane
//   partial sums updated (max across the row's four lanes by shuffles, sums reduced once at
//   the end), P rounded to bf16 as the A operand of O += P·V (4 × D/8 mma). Same arguments,
//   masks, lse and fully-masked-row convention as zett_flash_attn_forward; the launcher takes
//   this path only for bf16 inputs with 16-byte aligned rows (FlashAttentionKernels).
//   ZETT_EMULATED_MMA lets a host build supply fm_mma (tests of the fragment layouts).
#define FM_BR 64
#define FM_BC 64
#define FM_THREADS 128

#ifndef ZETT_EMULATED_MMA
// d = a·b + c for one warp: A 16×16 row-major bf16 (4 regs), B 16×8 column-major bf16 (2
// regs), C/D 16×8 fp32 (4 regs), in the PTX ISA's fragment layout.
__device__ __forceinline__ void fm_mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                       uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

// Two floats as a bf16 pair, the first in the low half (the lower column of a fragment).
__device__ __forceinline__ uint32_t fm_pack(float lo, float hi) {
    return static_cast<uint32_t>(zett_f32_to_bf16(lo))
        | (static_cast<uint32_t>(zett_f32_to_bf16(hi)) << 16);
}

template <int D>
__device__ __forceinline__ void fm_forward(const FlashFwdArgs& a, uint16_t* sm) {
    constexpr int LD = D + 8;           // staged row length, bf16 elements
    constexpr int KS = D / 16;          // k-steps of Q·Kᵀ
    constexpr int DN = D / 8;           // n-tiles of the output
    constexpr int NT = FM_BC / 8;       // n-tiles of a score tile
    uint16_t* sK = sm;                  // [FM_BC][LD]
    uint16_t* sV = sK + FM_BC * LD;     // [FM_BC][LD]
    const int bh = blockIdx.y, b = bh / a.heads, h = bh - b * a.heads;
    const int kvh = h / (a.heads / a.kv_heads);
    const int q0 = blockIdx.x * FM_BR;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int g = lane >> 2, t = lane & 3;
    const int r0 = q0 + warp * 16 + g, r1 = r0 + 8;
    const uint16_t* Q = static_cast<const uint16_t*>(a.q);
    const uint16_t* K = static_cast<const uint16_t*>(a.k);
    const uint16_t* V = static_cast<const uint16_t*>(a.v);
    const size_t qbase = static_cast<size_t>(b) * a.q_batch_stride + static_cast<size_t>(h) * D;
    const size_t kbase = static_cast<size_t>(b) * a.k_batch_stride + static_cast<size_t>(kvh) * D;
    const size_t vbase = static_cast<size_t>(b) * a.v_batch_stride + static_cast<size_t>(kvh) * D;

    uint32_t qf[KS][4];
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        const int c = kk * 16 + 2 * t;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int row = (e & 1) ? r1 : r0, col = c + ((e & 2) ? 8 : 0);
            qf[kk][e] = row < a.q_len ? *reinterpret_cast<const uint32_t*>(
                Q + qbase + static_cast<size_t>(row) * a.q_row_stride + col) : 0u;
        }
    }
    float o[DN][4];
#pragma unroll
    for (int dn = 0; dn < DN; dn++) {
#pragma unroll
        for (int e = 0; e < 4; e++) o[dn][e] = 0.0f;
    }
    // Row statistics in the log2 domain (scores times scale·log2 e); l0, l1 are this lane's
    // share of the row sums.
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    const float sl2 = a.scale * 1.4426950408889634f;

    const int kv_valid = fa_valid_keys(a.kv_lens, b, a.kv_len);
    int k_begin, k_end;
    fa_key_range(q0, min(q0 + FM_BR, a.q_len) - 1, a.q_offset, kv_valid, a.window, a.causal,
                 FM_BC, &k_begin, &k_end);
    for (int k0 = k_begin; k0 < k_end; k0 += FM_BC) {
        __syncthreads();  // the previous tile's P·V is done with sK, sV
        for (int idx = threadIdx.x; idx < FM_BC * (D / 8); idx += FM_THREADS) {
            const int row = idx / (D / 8), ch = idx - row * (D / 8);
            const int key = k0 + row;
            uint4 kv = make_uint4(0u, 0u, 0u, 0u), vv = kv;
            if (key < a.kv_len) {
                kv = *reinterpret_cast<const uint4*>(
                    K + kbase + static_cast<size_t>(key) * a.k_row_stride + ch * 8);
                vv = *reinterpret_cast<const uint4*>(
                    V + vbase + static_cast<size_t>(key) * a.v_row_stride + ch * 8);
            }
            *reinterpret_cast<uint4*>(sK + row * LD + ch * 8) = kv;
            *reinterpret_cast<uint4*>(sV + row * LD + ch * 8) = vv;
        }
        __syncthreads();

        float s[NT][4];
#pragma unroll
        for (int j = 0; j < NT; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) s[j][e] = 0.0f;
        }
#pragma unroll
        for (int kk = 0; kk < KS; kk++) {
#pragma unroll
            for (int j = 0; j < NT; j++) {
                const uint16_t* kr = sK + (j * 8 + g) * LD + kk * 16 + 2 * t;
                fm_mma(s[j], qf[kk], *reinterpret_cast<const uint32_t*>(kr),
                       *reinterpret_cast<const uint32_t*>(kr + 8));
            }
        }
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int j = 0; j < NT; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int row = e < 2 ? r0 : r1, key = k0 + j * 8 + 2 * t + (e & 1);
                const float v = fa_visible(row, key, a.q_len, kv_valid, a.q_offset, a.window,
                                           a.causal) ? s[j][e] * sl2 : -INFINITY;
                s[j][e] = v;
                if (e < 2) mx0 = fmaxf(mx0, v); else mx1 = fmaxf(mx1, v);
            }
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xFFFFFFFFu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xFFFFFFFFu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xFFFFFFFFu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xFFFFFFFFu, mx1, 2));
        const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
        // A row with nothing visible yet keeps m = −inf, corr = 0 and every p = 0.
        const float c0 = m0 == -INFINITY ? 0.0f : exp2f(m0 - n0);
        const float c1 = m1 == -INFINITY ? 0.0f : exp2f(m1 - n1);
        float ps0 = 0.0f, ps1 = 0.0f;
#pragma unroll
        for (int j = 0; j < NT; j++) {
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float base = e < 2 ? n0 : n1;
                const float p = s[j][e] == -INFINITY ? 0.0f : exp2f(s[j][e] - base);
                s[j][e] = p;
                if (e < 2) ps0 += p; else ps1 += p;
            }
        }
        l0 = l0 * c0 + ps0;
        l1 = l1 * c1 + ps1;
        m0 = n0;
        m1 = n1;
#pragma unroll
        for (int dn = 0; dn < DN; dn++) {
            o[dn][0] *= c0;
            o[dn][1] *= c0;
            o[dn][2] *= c1;
            o[dn][3] *= c1;
        }
#pragma unroll
        for (int kk = 0; kk < FM_BC / 16; kk++) {
            const uint32_t pa[4] = {fm_pack(s[2 * kk][0], s[2 * kk][1]),
                                    fm_pack(s[2 * kk][2], s[2 * kk][3]),
                                    fm_pack(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                    fm_pack(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int dn = 0; dn < DN; dn++) {
                const uint16_t* vr = sV + (kk * 16 + 2 * t) * LD + dn * 8 + g;
                const uint32_t b0 = static_cast<uint32_t>(vr[0])
                    | (static_cast<uint32_t>(vr[LD]) << 16);
                const uint32_t b1 = static_cast<uint32_t>(vr[8 * LD])
                    | (static_cast<uint32_t>(vr[9 * LD]) << 16);
                fm_mma(o[dn], pa, b0, b1);
            }
        }
    }

    l0 += __shfl_xor_sync(0xFFFFFFFFu, l0, 1);
    l0 += __shfl_xor_sync(0xFFFFFFFFu, l0, 2);
    l1 += __shfl_xor_sync(0xFFFFFFFFu, l1, 1);
    l1 += __shfl_xor_sync(0xFFFFFFFFu, l1, 2);
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int row = half ? r1 : r0;
        const float l = half ? l1 : l0, m = half ? m1 : m0;
        if (row >= a.q_len) continue;
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        const size_t obase = static_cast<size_t>(b) * a.o_batch_stride
            + static_cast<size_t>(row) * a.o_row_stride + static_cast<size_t>(h) * D;
#pragma unroll
        for (int dn = 0; dn < DN; dn++) {
            const int d = dn * 8 + 2 * t;
            zett_store(a.out, a.out_dtype, obase + d, o[dn][half * 2] * inv);
            zett_store(a.out, a.out_dtype, obase + d + 1, o[dn][half * 2 + 1] * inv);
        }
        if (t == 0) {
            a.lse[static_cast<size_t>(bh) * a.q_len + row] =
                l > 0.0f ? (m + log2f(l)) * 0.6931471805599453f : -INFINITY;
        }
    }
}

extern "C" __global__ void __launch_bounds__(FM_THREADS)
zett_flash_attn_forward_mma64(const FlashFwdArgs a) {
    extern __shared__ __align__(16) uint16_t fm_sm64[];
    fm_forward<64>(a, fm_sm64);
}

extern "C" __global__ void __launch_bounds__(FM_THREADS)
zett_flash_attn_forward_mma128(const FlashFwdArgs a) {
    extern __shared__ __align__(16) uint16_t fm_sm128[];
    fm_forward<128>(a, fm_sm128);
}
