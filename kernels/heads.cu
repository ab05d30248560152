// Pooling and output heads (ZETT.md §3 steps 7 and 8).
//
// zett_pool_first — z[r, :] = h[row_start[r], :] (the first packed token of each row) for
//   r < rows; h and z fp32 [.., hidden]; z_gemm (optional) the same in gemm_dtype (the heads' GEMM input).
//   Threads: one block per row, threads stride over hidden.
//
// zett_bias_rescale — out[r, c] = w[c]·(x[r·x_ld + c] + bias[c]) + b[c] for c < cols (w and b
//   null: no rescale; bias null: none). x is a column window of a wider GEMM output (x_ld ≥
//   cols; the launcher offsets x and bias to the window), which splits a single head's output
//   into e_in and e_out, and adds the bias head's bias. out fp32 [rows, cols].
//   Threads: grid-stride loop over rows·cols.
#include "common.cuh"

struct PoolArgs {
    const float* h;         //  0
    float* out;             //  8
    void* out_gemm;         // 16
    const int* row_start;   // 24
    int rows;               // 32
    int hidden;             // 36
    int gemm_dtype;         // 40
    int pad0;               // 44
};                          // 48

extern "C" __device__ int zett_pool_layout[] = {
    (int)sizeof(PoolArgs),
    (int)offsetof(PoolArgs, h), (int)offsetof(PoolArgs, out), (int)offsetof(PoolArgs, out_gemm),
    (int)offsetof(PoolArgs, row_start), (int)offsetof(PoolArgs, rows),
    (int)offsetof(PoolArgs, hidden), (int)offsetof(PoolArgs, gemm_dtype),
    (int)offsetof(PoolArgs, pad0)};
extern "C" __device__ char zett_pool_fields[] = "h,out,out_gemm,row_start,rows,hidden,gemm_dtype,pad0";

extern "C" __global__ void zett_pool_first(const PoolArgs a) {
    const int r = blockIdx.x;
    const float* src = a.h + static_cast<size_t>(a.row_start[r]) * a.hidden;
    const size_t o = static_cast<size_t>(r) * a.hidden;
    for (int c = threadIdx.x; c < a.hidden; c += blockDim.x) {
        a.out[o + c] = src[c];
        if (a.out_gemm != nullptr) zett_store(a.out_gemm, a.gemm_dtype, o + c, src[c]);
    }
}

struct RescaleArgs {
    const float* x;    //  0
    const float* bias; //  8
    const float* w;    // 16
    const float* b;    // 24
    float* out;        // 32
    int rows;          // 40
    int cols;          // 44
    int x_ld;          // 48
    int pad0;          // 52
};                     // 56

extern "C" __device__ int zett_rescale_layout[] = {
    (int)sizeof(RescaleArgs),
    (int)offsetof(RescaleArgs, x), (int)offsetof(RescaleArgs, bias),
    (int)offsetof(RescaleArgs, w), (int)offsetof(RescaleArgs, b),
    (int)offsetof(RescaleArgs, out), (int)offsetof(RescaleArgs, rows),
    (int)offsetof(RescaleArgs, cols), (int)offsetof(RescaleArgs, x_ld),
    (int)offsetof(RescaleArgs, pad0)};
extern "C" __device__ char zett_rescale_fields[] = "x,bias,w,b,out,rows,cols,x_ld,pad0";

extern "C" __global__ void zett_bias_rescale(const RescaleArgs a) {
    const long long count = static_cast<long long>(a.rows) * a.cols;
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; i < count;
         i += stride) {
        const int r = static_cast<int>(i / a.cols), c = static_cast<int>(i % a.cols);
        float t = a.x[static_cast<size_t>(r) * a.x_ld + c];
        if (a.bias != nullptr) t += a.bias[c];
        a.out[i] = a.w != nullptr ? a.w[c] * t + a.b[c] : t;
    }
}
