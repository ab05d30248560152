// Residual adds, scales and column sums.
//
// zett_axpby — out[i] = alpha·x[i] + beta·y[i] (y optional: out = alpha·x), i < count, each of
//   x, y, out in its own dtype; out may be x or y. Covers the residual add (1, 1), scaled
//   embeddings and logits, gradient accumulation (out = y = the gradient, x the new term) and
//   the backward of a scale. Threads: grid-stride loop, 256 per block.
//
// zett_sum_rows — out[c] = beta·out[c] + Σ_{r < rows} x[r·ld + c] (fp32 sums in row order,
//   deterministic), x in x_dtype, out fp32. The second stage of the norms' parameter gradients
//   and the bias gradient of a linear layer (Σ over tokens of dy). Threads: one per column,
//   grid (ceil(cols/256)).
#include "common.cuh"

struct AxpbyArgs {
    const void* x;     //  0
    const void* y;     //  8
    void* out;         // 16
    long long count;   // 24
    float alpha;       // 32
    float beta;        // 36
    int x_dtype;       // 40
    int y_dtype;       // 44
    int out_dtype;     // 48
    int pad0;          // 52
};                     // 56

extern "C" __device__ int zett_axpby_layout[] = {
    (int)sizeof(AxpbyArgs),
    (int)offsetof(AxpbyArgs, x), (int)offsetof(AxpbyArgs, y), (int)offsetof(AxpbyArgs, out),
    (int)offsetof(AxpbyArgs, count), (int)offsetof(AxpbyArgs, alpha),
    (int)offsetof(AxpbyArgs, beta), (int)offsetof(AxpbyArgs, x_dtype),
    (int)offsetof(AxpbyArgs, y_dtype), (int)offsetof(AxpbyArgs, out_dtype),
    (int)offsetof(AxpbyArgs, pad0)};
extern "C" __device__ char zett_axpby_fields[] =
    "x,y,out,count,alpha,beta,x_dtype,y_dtype,out_dtype,pad0";

struct SumRowsArgs {
    const void* x;     //  0
    float* out;        //  8
    int rows;          // 16
    int cols;          // 20
    int ld;            // 24
    float beta;        // 28
    int x_dtype;       // 32
    int pad0;          // 36
};                     // 40

extern "C" __device__ int zett_sum_rows_layout[] = {
    (int)sizeof(SumRowsArgs),
    (int)offsetof(SumRowsArgs, x), (int)offsetof(SumRowsArgs, out),
    (int)offsetof(SumRowsArgs, rows), (int)offsetof(SumRowsArgs, cols),
    (int)offsetof(SumRowsArgs, ld), (int)offsetof(SumRowsArgs, beta),
    (int)offsetof(SumRowsArgs, x_dtype), (int)offsetof(SumRowsArgs, pad0)};
extern "C" __device__ char zett_sum_rows_fields[] = "x,out,rows,cols,ld,beta,x_dtype,pad0";

extern "C" __global__ void zett_axpby(const AxpbyArgs a) {
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < a.count; i += stride) {
        float v = a.alpha * zett_load(a.x, a.x_dtype, i);
        if (a.y != nullptr) v += a.beta * zett_load(a.y, a.y_dtype, i);
        zett_store(a.out, a.out_dtype, i, v);
    }
}

extern "C" __global__ void zett_sum_rows(const SumRowsArgs a) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= a.cols) return;
    float s = 0.0f;
    for (int r = 0; r < a.rows; r++) s += zett_load(a.x, a.x_dtype, static_cast<size_t>(r) * a.ld + c);
    a.out[c] = a.beta == 0.0f ? s : a.beta * a.out[c] + s;
}

// zett_copy_strided — dst[idx] = src[idx] (or = value when src is null) over a tensor of up to
//   6 dimensions, each side with its own element strides and dtype: the op layer's Copy (KV
//   cache writes, contiguous copies of views, dtype conversion) and Fill. Threads: grid-stride
//   over the elements in row-major order of the shape.
#define ZETT_COPY_MAX_RANK 6

struct CopyArgs {
    const void* src;                       //   0
    void* dst;                             //   8
    long long count;                       //  16
    long long shape[ZETT_COPY_MAX_RANK];   //  24
    long long src_strides[ZETT_COPY_MAX_RANK];  //  72
    long long dst_strides[ZETT_COPY_MAX_RANK];  // 120
    int rank;                              // 168
    int src_dtype;                         // 172
    int dst_dtype;                         // 176
    float value;                           // 180
};                                         // 184

extern "C" __device__ int zett_copy_layout[] = {
    (int)sizeof(CopyArgs),
    (int)offsetof(CopyArgs, src), (int)offsetof(CopyArgs, dst), (int)offsetof(CopyArgs, count),
    (int)offsetof(CopyArgs, shape), (int)offsetof(CopyArgs, src_strides),
    (int)offsetof(CopyArgs, dst_strides), (int)offsetof(CopyArgs, rank),
    (int)offsetof(CopyArgs, src_dtype), (int)offsetof(CopyArgs, dst_dtype),
    (int)offsetof(CopyArgs, value)};
extern "C" __device__ char zett_copy_fields[] =
    "src,dst,count,shape,src_strides,dst_strides,rank,src_dtype,dst_dtype,value";

extern "C" __global__ void zett_copy_strided(const CopyArgs a) {
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < a.count; i += stride) {
        long long rest = i, so = 0, d_o = 0;
        for (int d = a.rank - 1; d >= 0; d--) {
            const long long n = a.shape[d];
            const long long c = rest % n;
            rest /= n;
            so += c * a.src_strides[d];
            d_o += c * a.dst_strides[d];
        }
        const float v = a.src != nullptr ? zett_load(a.src, a.src_dtype, so) : a.value;
        zett_store(a.dst, a.dst_dtype, d_o, v);
    }
}
