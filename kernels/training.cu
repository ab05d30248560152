// The op layer's training kernels: the per-column scale and shift of the hypernetwork's
// rescalers (forward and backward) and the AdamW update, so that neither takes a host round
// trip on the GPU.
//
// zett_scale_shift — out[r, c] = x[r, c]·scale[c] (+ shift[c]) over rows with their own row
//   strides (column views of a wider tensor); grid-stride over rows·cols. The product and the
//   sum are rounded one at a time (__fmul_rn, __fadd_rn: no contraction into an FMA), as the
//   CPU backend computes them, so fp32 results are bit-identical to it. The backward's
//   dx = dy·scale is the same kernel without a shift.
// zett_scale_shift_params — dScale and dShift, deterministic in two stages as the norms'
//   parameter gradients: grid (ceil(cols/256), chunks), thread → column, the rows of a chunk in
//   order: ds_partial[chunk, c] = Σ dy·x, db_partial[chunk, c] = Σ dy; zett_sum_rows
//   (residual.cu) then adds the chunk rows in order into the gradients.
// zett_adamw — optax's adamw, one element per thread (grid-stride):
//   g = grad·grad_scale; m = β1·m + (1 − β1)·g; v = β2·v + (1 − β2)·g·g;
//   p −= lr·(m / c1 / (√(v / c2) + eps) + wd·p), c1 = 1 − β1^t, c2 = 1 − β2^t (from the host).
//   Every operation rounded on its own in the CPU backend's order (__f*_rn, IEEE division and
//   square root), so fp32 parameters and moments are bit-identical to the CPU's update.
#include "common.cuh"

struct ScaleShiftArgs {
    const void* x;        //  0
    const void* scale;    //  8
    const void* shift;    // 16  or null
    void* out;            // 24
    int rows;             // 32
    int cols;             // 36
    int ld_x;             // 40
    int ld_out;           // 44
    int x_dtype;          // 48
    int scale_dtype;      // 52
    int shift_dtype;      // 56
    int out_dtype;        // 60
};                        // 64

extern "C" __device__ int zett_scale_shift_layout[] = {
    (int)sizeof(ScaleShiftArgs),
    (int)offsetof(ScaleShiftArgs, x), (int)offsetof(ScaleShiftArgs, scale),
    (int)offsetof(ScaleShiftArgs, shift), (int)offsetof(ScaleShiftArgs, out),
    (int)offsetof(ScaleShiftArgs, rows), (int)offsetof(ScaleShiftArgs, cols),
    (int)offsetof(ScaleShiftArgs, ld_x), (int)offsetof(ScaleShiftArgs, ld_out),
    (int)offsetof(ScaleShiftArgs, x_dtype), (int)offsetof(ScaleShiftArgs, scale_dtype),
    (int)offsetof(ScaleShiftArgs, shift_dtype), (int)offsetof(ScaleShiftArgs, out_dtype)};
extern "C" __device__ char zett_scale_shift_fields[] =
    "x,scale,shift,out,rows,cols,ld_x,ld_out,x_dtype,scale_dtype,shift_dtype,out_dtype";

struct ScaleShiftBwdArgs {
    const void* dy;       //  0
    const void* x;        //  8
    float* ds_partial;    // 16  [chunks, cols] or null
    float* db_partial;    // 24  [chunks, cols] or null
    int rows;             // 32
    int cols;             // 36
    int ld_dy;            // 40
    int ld_x;             // 44
    int rows_per_chunk;   // 48
    int dy_dtype;         // 52
    int x_dtype;          // 56
    int pad0;             // 60
};                        // 64

extern "C" __device__ int zett_scale_shift_bwd_layout[] = {
    (int)sizeof(ScaleShiftBwdArgs),
    (int)offsetof(ScaleShiftBwdArgs, dy), (int)offsetof(ScaleShiftBwdArgs, x),
    (int)offsetof(ScaleShiftBwdArgs, ds_partial), (int)offsetof(ScaleShiftBwdArgs, db_partial),
    (int)offsetof(ScaleShiftBwdArgs, rows), (int)offsetof(ScaleShiftBwdArgs, cols),
    (int)offsetof(ScaleShiftBwdArgs, ld_dy), (int)offsetof(ScaleShiftBwdArgs, ld_x),
    (int)offsetof(ScaleShiftBwdArgs, rows_per_chunk), (int)offsetof(ScaleShiftBwdArgs, dy_dtype),
    (int)offsetof(ScaleShiftBwdArgs, x_dtype), (int)offsetof(ScaleShiftBwdArgs, pad0)};
extern "C" __device__ char zett_scale_shift_bwd_fields[] =
    "dy,x,ds_partial,db_partial,rows,cols,ld_dy,ld_x,rows_per_chunk,dy_dtype,x_dtype,pad0";

struct AdamWArgs {
    void* param;              //  0
    const void* grad;         //  8
    void* m;                  // 16
    void* v;                  // 24
    long long count;          // 32
    float lr;                 // 40
    float beta1;              // 44
    float beta2;              // 48
    float one_minus_beta1;    // 52
    float one_minus_beta2;    // 56
    float c1;                 // 60
    float c2;                 // 64
    float eps;                // 68
    float weight_decay;       // 72
    float grad_scale;         // 76
    int param_dtype;          // 80
    int grad_dtype;           // 84
    int state_dtype;          // 88
    int pad0;                 // 92
};                            // 96

extern "C" __device__ int zett_adamw_layout[] = {
    (int)sizeof(AdamWArgs),
    (int)offsetof(AdamWArgs, param), (int)offsetof(AdamWArgs, grad), (int)offsetof(AdamWArgs, m),
    (int)offsetof(AdamWArgs, v), (int)offsetof(AdamWArgs, count), (int)offsetof(AdamWArgs, lr),
    (int)offsetof(AdamWArgs, beta1), (int)offsetof(AdamWArgs, beta2),
    (int)offsetof(AdamWArgs, one_minus_beta1), (int)offsetof(AdamWArgs, one_minus_beta2),
    (int)offsetof(AdamWArgs, c1), (int)offsetof(AdamWArgs, c2), (int)offsetof(AdamWArgs, eps),
    (int)offsetof(AdamWArgs, weight_decay), (int)offsetof(AdamWArgs, grad_scale),
    (int)offsetof(AdamWArgs, param_dtype), (int)offsetof(AdamWArgs, grad_dtype),
    (int)offsetof(AdamWArgs, state_dtype), (int)offsetof(AdamWArgs, pad0)};
extern "C" __device__ char zett_adamw_fields[] =
    "param,grad,m,v,count,lr,beta1,beta2,one_minus_beta1,one_minus_beta2,c1,c2,eps,"
    "weight_decay,grad_scale,param_dtype,grad_dtype,state_dtype,pad0";

extern "C" __global__ void zett_scale_shift(const ScaleShiftArgs a) {
    const long long count = static_cast<long long>(a.rows) * a.cols;
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < count; i += stride) {
        const long long r = i / a.cols;
        const int c = static_cast<int>(i - r * a.cols);
        float v = __fmul_rn(zett_load(a.x, a.x_dtype, static_cast<size_t>(r) * a.ld_x + c),
                            zett_load(a.scale, a.scale_dtype, c));
        if (a.shift != nullptr) v = __fadd_rn(v, zett_load(a.shift, a.shift_dtype, c));
        zett_store(a.out, a.out_dtype, static_cast<size_t>(r) * a.ld_out + c, v);
    }
}

extern "C" __global__ void zett_scale_shift_params(const ScaleShiftBwdArgs a) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= a.cols) return;
    const int r0 = blockIdx.y * a.rows_per_chunk, r1 = min(a.rows, r0 + a.rows_per_chunk);
    float ds = 0.0f, db = 0.0f;
    for (int row = r0; row < r1; row++) {
        const float dy = zett_load(a.dy, a.dy_dtype, static_cast<size_t>(row) * a.ld_dy + c);
        ds = __fadd_rn(ds, __fmul_rn(dy, zett_load(a.x, a.x_dtype,
                                                   static_cast<size_t>(row) * a.ld_x + c)));
        db = __fadd_rn(db, dy);
    }
    const size_t p = static_cast<size_t>(blockIdx.y) * a.cols + c;
    if (a.ds_partial != nullptr) a.ds_partial[p] = ds;
    if (a.db_partial != nullptr) a.db_partial[p] = db;
}

extern "C" __global__ void zett_adamw(const AdamWArgs a) {
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
         i < a.count; i += stride) {
        const float g = __fmul_rn(zett_load(a.grad, a.grad_dtype, i), a.grad_scale);
        const float m = __fadd_rn(__fmul_rn(a.beta1, zett_load(a.m, a.state_dtype, i)),
                                  __fmul_rn(a.one_minus_beta1, g));
        const float v = __fadd_rn(__fmul_rn(a.beta2, zett_load(a.v, a.state_dtype, i)),
                                  __fmul_rn(__fmul_rn(a.one_minus_beta2, g), g));
        zett_store(a.m, a.state_dtype, i, m);
        zett_store(a.v, a.state_dtype, i, v);
        const float p = zett_load(a.param, a.param_dtype, i);
        const float denom = __fadd_rn(__fsqrt_rn(__fdiv_rn(v, a.c2)), a.eps);
        const float update = __fadd_rn(__fdiv_rn(__fdiv_rn(m, a.c1), denom),
                                       __fmul_rn(a.weight_decay, p));
        zett_store(a.param, a.param_dtype, i, __fsub_rn(p, __fmul_rn(a.lr, update)));
    }
}
