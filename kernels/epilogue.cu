// GEMM epilogues: bias + activation, and bias + activation + residual add + LayerNorm, fused.
// GEMMs (cuBLAS) write plain fp32 x·Wᵀ; these kernels add the bias and do everything up to the
// next GEMM's input, which they write in that GEMM's dtype (gemm copy), so an activation makes
// one trip through memory per op.
//
// zett_bias_act — out[i] = act(x[i] + bias[i mod cols]), i < count (= rows·cols); act is none,
//   GELU tanh (ProjectorBlock) or GELU erf (encoder FFN). x fp32, out in out_dtype.
//   Threads: grid-stride loop over all elements.
//
// zett_bias_act_residual_ln — per row r of [rows, cols]:
//     t = act(x[r] + bias) + residual[r];  out[r] = LN(t) (eps per call), fp32,
//   and out_gemm[r] the same in gemm_dtype when non-null. Covers the post-LN encoder
//   (act none: LN(W·a + b + a)) and the ProjectorBlock (act tanh: LN(gelu(W·g + b) + x)).
//   out may alias x or residual: each block stages its row in shared memory (cols floats,
//   dynamic) before writing. Threads: one block per row.
#include "common.cuh"

struct BiasActArgs {
    const float* x;    //  0
    const float* bias; //  8
    void* out;         // 16
    long long count;   // 24
    int cols;          // 32
    int act;           // 36
    int out_dtype;     // 40
    int pad0;          // 44
};                     // 48

extern "C" __device__ int zett_bias_act_layout[] = {
    (int)sizeof(BiasActArgs),
    (int)offsetof(BiasActArgs, x), (int)offsetof(BiasActArgs, bias),
    (int)offsetof(BiasActArgs, out), (int)offsetof(BiasActArgs, count),
    (int)offsetof(BiasActArgs, cols), (int)offsetof(BiasActArgs, act),
    (int)offsetof(BiasActArgs, out_dtype), (int)offsetof(BiasActArgs, pad0)};
extern "C" __device__ char zett_bias_act_fields[] = "x,bias,out,count,cols,act,out_dtype,pad0";

extern "C" __global__ void zett_bias_act(const BiasActArgs a) {
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < a.count; i += stride) {
        float v = a.x[i];
        if (a.bias != nullptr) v += a.bias[i % a.cols];
        zett_store(a.out, a.out_dtype, static_cast<size_t>(i), zett_activate(v, a.act));
    }
}

struct ResidualLnArgs {
    const float* x;        //  0
    const float* bias;     //  8
    const float* residual; // 16
    const float* ln_w;     // 24
    const float* ln_b;     // 32
    float* out;            // 40
    void* out_gemm;        // 48
    int rows;              // 56
    int cols;              // 60
    float eps;             // 64
    int act;               // 68
    int gemm_dtype;        // 72
    int pad0;              // 76
};                         // 80

extern "C" __device__ int zett_residual_ln_layout[] = {
    (int)sizeof(ResidualLnArgs),
    (int)offsetof(ResidualLnArgs, x), (int)offsetof(ResidualLnArgs, bias),
    (int)offsetof(ResidualLnArgs, residual), (int)offsetof(ResidualLnArgs, ln_w),
    (int)offsetof(ResidualLnArgs, ln_b), (int)offsetof(ResidualLnArgs, out),
    (int)offsetof(ResidualLnArgs, out_gemm), (int)offsetof(ResidualLnArgs, rows),
    (int)offsetof(ResidualLnArgs, cols), (int)offsetof(ResidualLnArgs, eps),
    (int)offsetof(ResidualLnArgs, act), (int)offsetof(ResidualLnArgs, gemm_dtype),
    (int)offsetof(ResidualLnArgs, pad0)};
extern "C" __device__ char zett_residual_ln_fields[] =
    "x,bias,residual,ln_w,ln_b,out,out_gemm,rows,cols,eps,act,gemm_dtype,pad0";

extern "C" __global__ void zett_bias_act_residual_ln(const ResidualLnArgs a) {
    extern __shared__ float row[];
    __shared__ float scratch[32];
    const size_t o = static_cast<size_t>(blockIdx.x) * a.cols;
    for (int c = threadIdx.x; c < a.cols; c += blockDim.x) {
        float v = a.x[o + c];
        if (a.bias != nullptr) v += a.bias[c];
        row[c] = zett_activate(v, a.act) + a.residual[o + c];
    }
    __syncthreads();
    zett_layernorm_row(row, a.cols, a.eps, a.ln_w, a.ln_b, a.out, a.out_gemm, a.gemm_dtype, o,
                       scratch);
}
