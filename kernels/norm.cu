// RMSNorm and LayerNorm over the last dimension, forward and backward.
//
//   x [rows, cols] in x_dtype; weight, bias [cols] in w_dtype (either may be absent: no
//   affine); residual [rows, cols] in res_dtype or absent: the norm of x + residual, the sum
//   formed in fp32 and never stored (a residual connection fused in); out [rows, cols] in
//   out_dtype, which may be x or residual itself (each thread writes an element only after its
//   last read of it); statistics fp32 [rows]: rstd, and mean for
//   LayerNorm. unit_offset = 1 multiplies by (1 + w) (gemma's RMSNorm).
//   RMSNorm:   y = x · r · w̃,        r = (mean(x²) + eps)^-½
//   LayerNorm: y = (x − μ) · r · w̃ + b, r = (var(x) + eps)^-½ (biased variance, two-pass as
//   PyTorch), with w̃ = w (+1).
//   All arithmetic is fp32; x is read from global memory twice (three times for LayerNorm) —
//   a row is at most a few KiB and stays in L1/L2.
//
// zett_rmsnorm_forward / zett_layernorm_forward: one block per row (RowBlock threads), block
//   sums in common.cuh.
// zett_rmsnorm_backward / zett_layernorm_backward: dx per row, one block per row, from the saved
//   statistics:  g = dy ∘ w̃,  x̂ = x·r (RMS) or (x − μ)·r (LN),
//   RMS: dx = r·(g − x̂·mean(g ∘ x̂));  LN: dx = r·(g − mean(g) − x̂·mean(g ∘ x̂)).
// zett_norm_backward_params: the weight and bias gradients, deterministic in two stages: grid
//   (ceil(cols/256), chunks), thread → column, each block sums rows_per_chunk rows in order into
//   dw_partial[chunk, c] = Σ dy·x̂ and db_partial[chunk, c] = Σ dy; zett_sum_rows
//   (residual.cu) then adds the chunk rows up in order.
#include "common.cuh"

struct NormArgs {
    const void* x;       //  0
    const void* weight;  //  8
    const void* bias;    // 16
    void* out;           // 24
    float* mean;         // 32  LayerNorm only
    float* rstd;         // 40
    int rows;            // 48
    int cols;            // 52
    float eps;           // 56
    int x_dtype;         // 60
    int w_dtype;         // 64
    int out_dtype;       // 68
    int unit_offset;     // 72
    int res_dtype;       // 76
    const void* residual; // 80  or null
};                       // 88

extern "C" __device__ int zett_norm_layout[] = {
    (int)sizeof(NormArgs),
    (int)offsetof(NormArgs, x), (int)offsetof(NormArgs, weight), (int)offsetof(NormArgs, bias),
    (int)offsetof(NormArgs, out), (int)offsetof(NormArgs, mean), (int)offsetof(NormArgs, rstd),
    (int)offsetof(NormArgs, rows), (int)offsetof(NormArgs, cols), (int)offsetof(NormArgs, eps),
    (int)offsetof(NormArgs, x_dtype), (int)offsetof(NormArgs, w_dtype),
    (int)offsetof(NormArgs, out_dtype), (int)offsetof(NormArgs, unit_offset),
    (int)offsetof(NormArgs, res_dtype), (int)offsetof(NormArgs, residual)};
extern "C" __device__ char zett_norm_fields[] =
    "x,weight,bias,out,mean,rstd,rows,cols,eps,x_dtype,w_dtype,out_dtype,unit_offset,res_dtype,"
    "residual";

struct NormBwdArgs {
    const void* x;         //  0
    const void* weight;    //  8
    const void* dy;        // 16
    const float* mean;     // 24  LayerNorm only (null: RMSNorm)
    const float* rstd;     // 32
    void* dx;              // 40
    float* dw_partial;     // 48  [chunks, cols] or null
    float* db_partial;     // 56  [chunks, cols] or null
    int rows;              // 64
    int cols;              // 68
    int rows_per_chunk;    // 72
    int x_dtype;           // 76
    int w_dtype;           // 80
    int dy_dtype;          // 84
    int dx_dtype;          // 88
    int unit_offset;       // 92
};                         // 96

extern "C" __device__ int zett_norm_bwd_layout[] = {
    (int)sizeof(NormBwdArgs),
    (int)offsetof(NormBwdArgs, x), (int)offsetof(NormBwdArgs, weight),
    (int)offsetof(NormBwdArgs, dy), (int)offsetof(NormBwdArgs, mean),
    (int)offsetof(NormBwdArgs, rstd), (int)offsetof(NormBwdArgs, dx),
    (int)offsetof(NormBwdArgs, dw_partial), (int)offsetof(NormBwdArgs, db_partial),
    (int)offsetof(NormBwdArgs, rows), (int)offsetof(NormBwdArgs, cols),
    (int)offsetof(NormBwdArgs, rows_per_chunk), (int)offsetof(NormBwdArgs, x_dtype),
    (int)offsetof(NormBwdArgs, w_dtype), (int)offsetof(NormBwdArgs, dy_dtype),
    (int)offsetof(NormBwdArgs, dx_dtype), (int)offsetof(NormBwdArgs, unit_offset)};
extern "C" __device__ char zett_norm_bwd_fields[] =
    "x,weight,dy,mean,rstd,dx,dw_partial,db_partial,rows,cols,rows_per_chunk,x_dtype,w_dtype,"
    "dy_dtype,dx_dtype,unit_offset";

__device__ __forceinline__ float norm_weight(const void* w, int dtype, int c, int unit_offset) {
    return (w != nullptr ? zett_load(w, dtype, c) : (unit_offset ? 0.0f : 1.0f))
        + (unit_offset ? 1.0f : 0.0f);
}

// The norm's input element i: x, plus the residual when there is one (fp32).
__device__ __forceinline__ float norm_input(const NormArgs& a, size_t i) {
    const float v = zett_load(a.x, a.x_dtype, i);
    return a.residual != nullptr ? v + zett_load(a.residual, a.res_dtype, i) : v;
}

extern "C" __global__ void zett_rmsnorm_forward(const NormArgs a) {
    __shared__ float scratch[32];
    const size_t o = static_cast<size_t>(blockIdx.x) * a.cols;
    float q = 0.0f;
    for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
        const float v = norm_input(a, o + c);
        q += v * v;
    }
    const float r = rsqrtf(zett_block_sum(q, scratch) / a.cols + a.eps);
    for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
        const float y = norm_input(a, o + c) * r
            * norm_weight(a.weight, a.w_dtype, c, a.unit_offset);
        zett_store(a.out, a.out_dtype, o + c, y);
    }
    if (threadIdx.x == 0) a.rstd[blockIdx.x] = r;
}

extern "C" __global__ void zett_layernorm_forward(const NormArgs a) {
    __shared__ float scratch[32];
    const size_t o = static_cast<size_t>(blockIdx.x) * a.cols;
    float s = 0.0f;
    for (int c = threadIdx.x; c < a.cols; c += blockDim.x) s += norm_input(a, o + c);
    const float mu = zett_block_sum(s, scratch) / a.cols;
    float q = 0.0f;
    for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
        const float d = norm_input(a, o + c) - mu;
        q += d * d;
    }
    const float r = rsqrtf(zett_block_sum(q, scratch) / a.cols + a.eps);
    for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
        float y = (norm_input(a, o + c) - mu) * r
            * norm_weight(a.weight, a.w_dtype, c, a.unit_offset);
        if (a.bias != nullptr) y += zett_load(a.bias, a.w_dtype, c);
        zett_store(a.out, a.out_dtype, o + c, y);
    }
    if (threadIdx.x == 0) {
        a.mean[blockIdx.x] = mu;
        a.rstd[blockIdx.x] = r;
    }
}

// dx of both norms (mean == nullptr: RMSNorm).
extern "C" __global__ void zett_norm_backward(const NormBwdArgs a) {
    __shared__ float scratch[32];
    const int row = blockIdx.x;
    const size_t o = static_cast<size_t>(row) * a.cols;
    const bool ln = a.mean != nullptr;
    const float mu = ln ? a.mean[row] : 0.0f, r = a.rstd[row];
    float sg = 0.0f, sgx = 0.0f;
    for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
        const float g = zett_load(a.dy, a.dy_dtype, o + c)
            * norm_weight(a.weight, a.w_dtype, c, a.unit_offset);
        const float xh = (zett_load(a.x, a.x_dtype, o + c) - mu) * r;
        sg += g;
        sgx += g * xh;
    }
    const float mean_g = ln ? zett_block_sum(sg, scratch) / a.cols : 0.0f;
    const float mean_gx = zett_block_sum(sgx, scratch) / a.cols;
    for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
        const float g = zett_load(a.dy, a.dy_dtype, o + c)
            * norm_weight(a.weight, a.w_dtype, c, a.unit_offset);
        const float xh = (zett_load(a.x, a.x_dtype, o + c) - mu) * r;
        zett_store(a.dx, a.dx_dtype, o + c, r * (g - mean_g - xh * mean_gx));
    }
}

extern "C" __global__ void zett_norm_backward_params(const NormBwdArgs a) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= a.cols) return;
    const int r0 = blockIdx.y * a.rows_per_chunk, r1 = min(a.rows, r0 + a.rows_per_chunk);
    const bool ln = a.mean != nullptr;
    float dw = 0.0f, db = 0.0f;
    for (int row = r0; row < r1; row++) {
        const size_t o = static_cast<size_t>(row) * a.cols + c;
        const float dy = zett_load(a.dy, a.dy_dtype, o);
        const float xh = (zett_load(a.x, a.x_dtype, o) - (ln ? a.mean[row] : 0.0f)) * a.rstd[row];
        dw += dy * xh;
        db += dy;
    }
    const size_t p = static_cast<size_t>(blockIdx.y) * a.cols + c;
    if (a.dw_partial != nullptr) a.dw_partial[p] = dw;
    if (a.db_partial != nullptr) a.db_partial[p] = db;
}
